"""Mailboxes: subjects, the header envelope, the mailbox queue, and the transports.

Uses ``codecs`` and ``telemetry``; knows nothing of actors. This package exports what
applications and operators use: the transports and their capabilities, the nats-server
helpers, subjects, the header names of the wire format (for foreign clients) and the
tenancy configuration. The rest (admission, settlement, the credit window, JetStream's
internals) is the actors layer's, imported from the private modules.
"""

from ._envelope import (
    ATTEMPT,
    CONTENT_TYPE,
    CORRELATION_ID,
    DEAD_REASON,
    ERROR,
    MESSAGE_ID,
    MESSAGE_TYPE,
    REPLY_TO,
    STREAM_END,
    STREAM_SEQ,
    STREAM_WINDOW,
    TENANT_ID,
    TIMEOUT_MS,
    decode_body,
    decode_error,
    encode_body,
    encode_error,
    new_message_id,
)
from ._inprocess import InProcessTransport
from ._nats import NatsAuth, NatsTransport
from ._queue import Mailbox, MailboxStatistics
from ._server import NatsCluster, NatsServer, find_nats_server
from ._subjects import (
    MAX_TOKEN_LENGTH,
    Subject,
    agent_inbox,
    agent_subject,
    check_id,
    check_token,
    dlq_subject,
    event_subject,
    inbox_prefix,
    parse_subject,
    workflow_subject,
)
from ._tenancy import TenantUser, server_config, tenant_permissions
from ._transport import (
    DeadLetter,
    DeadLetterStore,
    Durable,
    DurableConfig,
    DurableMessage,
    DurableStore,
    Incoming,
    KeepsDeadLetters,
    Observed,
    StartAt,
    StoredMessage,
    Subscription,
    Transport,
)

__all__ = (
    "ATTEMPT",
    "CONTENT_TYPE",
    "CORRELATION_ID",
    "DEAD_REASON",
    "ERROR",
    "MAX_TOKEN_LENGTH",
    "MESSAGE_ID",
    "MESSAGE_TYPE",
    "REPLY_TO",
    "STREAM_END",
    "STREAM_SEQ",
    "STREAM_WINDOW",
    "TENANT_ID",
    "TIMEOUT_MS",
    "DeadLetter",
    "DeadLetterStore",
    "Durable",
    "DurableConfig",
    "DurableMessage",
    "DurableStore",
    "InProcessTransport",
    "Incoming",
    "KeepsDeadLetters",
    "Mailbox",
    "MailboxStatistics",
    "NatsAuth",
    "NatsCluster",
    "NatsServer",
    "NatsTransport",
    "Observed",
    "StartAt",
    "StoredMessage",
    "Subject",
    "Subscription",
    "TenantUser",
    "Transport",
    "agent_inbox",
    "agent_subject",
    "check_id",
    "check_token",
    "decode_body",
    "decode_error",
    "dlq_subject",
    "encode_body",
    "encode_error",
    "event_subject",
    "find_nats_server",
    "inbox_prefix",
    "new_message_id",
    "parse_subject",
    "server_config",
    "tenant_permissions",
    "workflow_subject",
)
