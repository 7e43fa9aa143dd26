"""Actors: Actor, Context, ActorRef and ActorSystem. Uses ``mailbox``."""

from ._actor import Actor, Context
from ._cell import ActorStatistics
from ._ref import ActorRef
from ._system import ActorSystem

__all__ = ("Actor", "ActorRef", "ActorStatistics", "ActorSystem", "Context")
