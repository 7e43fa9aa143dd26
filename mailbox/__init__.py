"""Mailboxes: subjects, the header envelope, the mailbox queue, and the transports.

Uses ``codecs`` and ``telemetry``; knows nothing of actors.
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
    TENANT_ID,
    TIMEOUT_MS,
    check_size,
    dead_letter_headers,
    decode_body,
    decode_error,
    encode_body,
    encode_error,
    message_size,
    new_message_id,
)
from ._inprocess import InProcessMessage, InProcessTransport
from ._nats import NatsTransport
from ._queue import Mailbox, MailboxFull, MailboxStatistics
from ._server import NatsServer, find_nats_server
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
from ._transport import DeadLetter, Incoming, Subscription, Transport

__all__ = (
    "ATTEMPT",
    "DeadLetter",
    "CONTENT_TYPE",
    "CORRELATION_ID",
    "DEAD_REASON",
    "ERROR",
    "MAX_TOKEN_LENGTH",
    "MESSAGE_ID",
    "MESSAGE_TYPE",
    "REPLY_TO",
    "TENANT_ID",
    "TIMEOUT_MS",
    "InProcessMessage",
    "InProcessTransport",
    "Incoming",
    "Mailbox",
    "MailboxFull",
    "MailboxStatistics",
    "NatsServer",
    "NatsTransport",
    "Subject",
    "Subscription",
    "Transport",
    "agent_inbox",
    "agent_subject",
    "check_id",
    "check_size",
    "dead_letter_headers",
    "check_token",
    "decode_body",
    "decode_error",
    "dlq_subject",
    "encode_body",
    "encode_error",
    "event_subject",
    "find_nats_server",
    "inbox_prefix",
    "message_size",
    "new_message_id",
    "parse_subject",
    "workflow_subject",
)
