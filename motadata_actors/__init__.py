"""motadata-actors: actor-model messaging for AI agents over NATS.

Agents subclass :class:`Actor`; an :class:`ActorSystem` spawns them, each with a
mailbox on the subject ``sdk.agent.<from>.<to>.<tenant>``; they ``tell`` and ``ask``
each other through :class:`ActorRef` s.
"""

import importlib
from typing import TYPE_CHECKING, Any

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    CodecError,
    ConfigError,
    ConnectionLost,
    DecodeError,
    EncodeError,
    MailboxFull,
    MessageExpired,
    MessageTooLarge,
    NoResponders,
    QuotaExceeded,
    RemoteError,
    ReplayError,
    SealError,
    SequenceConflict,
    StateConflict,
    StreamError,
    SubjectError,
    SupervisionError,
    TenantError,
    TransportClosed,
)
from motadata_actors._settings import Settings

if TYPE_CHECKING:
    from motadata_actors.actors import (
        Actor,
        ActorRef,
        ActorStatistics,
        ActorSystem,
        AgentLifecycle,
        AskPolicy,
        AskStream,
        Backoff,
        Context,
        ManualClock,
        Progress,
        Reminder,
        Subscribe,
        SupervisionEvent,
        Supervisor,
        Terminated,
        Workflow,
        WorkflowStep,
    )
    from motadata_actors.codecs import message
    from motadata_actors.mailbox import InProcessTransport, NatsServer, NatsTransport

# The facade loads a layer when one of its names is first used, so importing a leaf
# (``motadata_actors.codecs``, ``motadata_actors.telemetry``) or the errors loads neither
# nats-py nor the actors.
_LAZY = {
    **dict.fromkeys(
        (
            "Actor", "ActorRef", "ActorStatistics", "ActorSystem", "AgentLifecycle", "AskPolicy",
            "AskStream", "Backoff", "Context", "ManualClock", "Progress", "Reminder", "Subscribe",
            "SupervisionEvent",
            "Supervisor", "Terminated",
            "Workflow", "WorkflowStep",
        ),
        "motadata_actors.actors",
    ),
    "message": "motadata_actors.codecs",
    "InProcessTransport": "motadata_actors.mailbox",
    "NatsServer": "motadata_actors.mailbox",
    "NatsTransport": "motadata_actors.mailbox",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'motadata_actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = (
    "Actor",
    "ActorRef",
    "ActorStatistics",
    "ActorSystem",
    "ActorsError",
    "AgentLifecycle",
    "AskPolicy",
    "AskStream",
    "AskTimeout",
    "Backoff",
    "CodecError",
    "ConfigError",
    "ConnectionLost",
    "Context",
    "DecodeError",
    "EncodeError",
    "MailboxFull",
    "MessageExpired",
    "InProcessTransport",
    "ManualClock",
    "MessageTooLarge",
    "NatsServer",
    "NatsTransport",
    "NoResponders",
    "Progress",
    "QuotaExceeded",
    "Reminder",
    "RemoteError",
    "ReplayError",
    "SealError",
    "SequenceConflict",
    "Settings",
    "StateConflict",
    "StreamError",
    "SubjectError",
    "Subscribe",
    "SupervisionError",
    "SupervisionEvent",
    "Supervisor",
    "TenantError",
    "Terminated",
    "TransportClosed",
    "Workflow",
    "WorkflowStep",
    "message",
)

__version__ = "0.1.0"
