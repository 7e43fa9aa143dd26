"""Gateways: agents reachable from outside NATS.

Over HTTP: a plain API with content negotiation, the Agent2Agent protocol (A2A) and MCP
tools, behind bearer tokens per tenant and size and rate limits; and clients for other
A2A agents (:class:`A2ARef`) and MCP servers (:class:`McpTools`).

Needs the optional extra: ``pip install 'motadata-actors[gateway]'``. See docs/gateways.md.
"""

from ._a2a_client import A2ARef, A2AStream
from ._app import Gateway
from ._http import Limits, Problem
from ._mcp import McpTools

__all__ = ("A2ARef", "A2AStream", "Gateway", "Limits", "McpTools", "Problem")
