"""What the JetStream resources of a tenant are called (sans-io).

Every resource carries its tenant in its name (DESIGN.md), so per-tenant accounts and
permissions cover it without exceptions.
"""

from __future__ import annotations

from ._transport import LogKind

__all__ = (
    "agents_stream",
    "consumer_name",
    "dead_letter_stream",
    "dead_letter_subjects",
    "log_stream",
    "log_subjects",
    "reminder_subject",
    "reminders_stream",
)


def agents_stream(tenant: str) -> str:
    """The stream holding a tenant's durable mailboxes: ``SDK_AGENTS_<tenant>``."""
    return f"SDK_AGENTS_{tenant}"


def consumer_name(agent: str) -> str:
    """The durable consumer every replica of ``agent`` shares: ``agent_<agent>``."""
    return f"agent_{agent}"


def log_stream(kind: LogKind, tenant: str) -> str:
    """The stream keeping a tenant's events or workflows: ``SDK_EVENTS_<tenant>``, ..."""
    return f"SDK_{kind.upper()}_{tenant}"


def log_subjects(kind: LogKind, tenant: str) -> str:
    """What a tenant's ``kind`` stream captures: ``sdk.events.*.<tenant>``, ..."""
    return f"sdk.events.*.{tenant}" if kind == "events" else f"sdk.workflow.*.{tenant}"


def dead_letter_stream(tenant: str) -> str:
    """The JetStream stream that keeps a tenant's dead letters: ``SDK_DLQ_<tenant>``."""
    return f"SDK_DLQ_{tenant}"


def dead_letter_subjects(tenant: str) -> str:
    """What a tenant's dead-letter stream captures: ``sdk.dlq.*.<tenant>``."""
    return f"sdk.dlq.*.{tenant}"


def reminders_stream(tenant: str) -> str:
    """The stream keeping a tenant's reminders: ``SDK_REMINDERS_<tenant>``."""
    return f"SDK_REMINDERS_{tenant}"


def reminder_subject(to: str, name: str, tenant: str) -> str:
    """Where reminder ``name`` of agent ``to`` is defined: ``sdk.reminder.<to>.<name>.<t>``."""
    return f"sdk.reminder.{to}.{name}.{tenant}"
