"""motadata-actors: actor-model messaging for AI agents over NATS.

Agents subclass :class:`Actor`; an :class:`ActorSystem` spawns them, each with a
mailbox on the subject ``sdk.agent.<from>.<to>.<tenant>``; they ``tell`` and ``ask``
each other through :class:`ActorRef` s.
"""

from motadata_actors._errors import (
    ActorsError,
    AskTimeout,
    CodecError,
    ConfigError,
    ConnectionLost,
    DecodeError,
    EncodeError,
    MailboxFull,
    MessageTooLarge,
    NoResponders,
    RemoteError,
    ReplayError,
    SequenceConflict,
    StreamError,
    SubjectError,
    SupervisionError,
    TenantError,
    TransportClosed,
)
from motadata_actors._settings import Settings
from motadata_actors.actors import (
    Actor,
    ActorRef,
    ActorStatistics,
    ActorSystem,
    AskPolicy,
    AskStream,
    Backoff,
    Context,
    ManualClock,
    Subscribe,
    SupervisionEvent,
    Supervisor,
    Workflow,
    WorkflowStep,
)
from motadata_actors.codecs import message
from motadata_actors.mailbox import InProcessTransport, NatsServer, NatsTransport

__all__ = (
    "Actor",
    "ActorRef",
    "ActorStatistics",
    "ActorSystem",
    "ActorsError",
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
    "InProcessTransport",
    "ManualClock",
    "MessageTooLarge",
    "NatsServer",
    "NatsTransport",
    "NoResponders",
    "RemoteError",
    "ReplayError",
    "SequenceConflict",
    "Settings",
    "StreamError",
    "SubjectError",
    "Subscribe",
    "SupervisionError",
    "SupervisionEvent",
    "Supervisor",
    "TenantError",
    "TransportClosed",
    "Workflow",
    "WorkflowStep",
    "message",
)

__version__ = "0.1.0"
