"""Subjects: building and parsing the SDK's subject kinds (sans-io).

| kind      | subject                              |
|-----------|--------------------------------------|
| agent     | ``sdk.agent.<from>.<to>.<tenant>``   |
| event     | ``sdk.events.<event_type>.<tenant>`` |
| workflow  | ``sdk.workflow.<workflow_id>.<tenant>`` |
| dead letter | ``sdk.dlq.<to>.<tenant>``          |
| status    | ``sdk.status.<kind>.<tenant>``       |

Status events (:data:`STATUS_KINDS`: an agent's life-cycle changes, a handler's progress)
travel on a family of their own, so ``sdk.events.*.<tenant>`` (an actor's ``"*"``
subscription, the tenant's events stream) never carries them. Actors subscribe to them by
the reserved event types ``sdk~lifecycle`` and ``sdk~progress``; no event type of the
application may start with ``sdk~``.

Every token is checked when a subject is built, so a bad token is an error at the
call site and never a silently wrong subject. Agent and tenant ids are stricter
(lowercase ``[a-z0-9_-]``) than other tokens.

A keyed agent (one instance per key of a kind) is addressed by ``<kind>~<key>`` in the
``<to>`` token: ``sdk.agent.client.chat~session-42.acme``. A key is 1 to
:data:`MAX_KEY_LENGTH` characters of ``[A-Za-z0-9_=-]`` (so any base64url string is a
key); ``~`` never appears in a plain name, so the two cannot collide, and every such token
is also a valid JetStream key-value key.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal, final

import attrs

from motadata_actors._errors import SubjectError

__all__ = (
    "KEY_SEPARATOR",
    "MAX_KEY_LENGTH",
    "RESERVED_EVENT_PREFIX",
    "STATUS_KINDS",
    "MAX_TOKEN_LENGTH",
    "Subject",
    "agent_inbox",
    "agent_subject",
    "check_agent",
    "check_id",
    "check_key",
    "check_publish_subject",
    "check_subscribe_subject",
    "check_token",
    "control_subject",
    "dlq_subject",
    "drop_inbox",
    "event_subject",
    "inbox_prefix",
    "is_agent_subject",
    "keyed_name",
    "keep_inbox",
    "new_inbox",
    "parse_subject",
    "split_keyed",
    "status_event_subject",
    "subject_kind",
    "tenant_agents",
    "watch_subject",
    "workflow_subject",
)

MAX_TOKEN_LENGTH = 64
"""The longest token accepted, in characters."""

MAX_KEY_LENGTH = 128
"""The longest key of a keyed agent, in characters."""

KEY_SEPARATOR = "~"
"""Between a keyed agent's kind and its key in the ``<to>`` token."""

STATUS_KINDS: tuple[str, ...] = ("lifecycle", "progress")
"""The kinds of status events: ``sdk.status.<kind>.<tenant>``."""

RESERVED_EVENT_PREFIX = "sdk~"
"""Event types starting with it are the framework's: ``sdk~<kind>`` names a status kind."""

_ID = re.compile(r"[a-z0-9_-]+")
_KEY = re.compile(r"[A-Za-z0-9_=-]+")
# Any printable, non-space character except the subject separators and wildcards.
_TOKEN = re.compile(r"[^\s.*>\x00-\x1f\x7f]+")

_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
_CHECKED: set[str] = set()
_KEPT_INBOXES: set[str] = set()  # reply inboxes used many times: streaming replies
_CHECKED_MAX = 4096

SubjectKind = Literal["agent", "events", "workflow", "dlq", "status"]


def check_token(token: object, what: str = "token") -> str:
    """Return ``token`` if it is a valid subject token, else raise :class:`SubjectError`.

    A token is non-empty, at most :data:`MAX_TOKEN_LENGTH` characters, with no ``.``,
    ``*``, ``>``, whitespace or control characters.
    """
    if not isinstance(token, str):
        raise SubjectError(f"{what} must be a str, not {type(token).__name__}")
    if not token:
        raise SubjectError(f"{what} must not be empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise SubjectError(f"{what} {token[:16]!r}... is longer than {MAX_TOKEN_LENGTH} characters")
    if not _TOKEN.fullmatch(token):
        raise SubjectError(
            f"{what} {token!r} may not contain '.', '*', '>', whitespace or control characters"
        )
    return token


def check_id(value: object, what: str = "id") -> str:
    """Return ``value`` if it is a valid agent or tenant id (lowercase ``[a-z0-9_-]``)."""
    check_token(value, what)
    assert isinstance(value, str)
    if not _ID.fullmatch(value):
        raise SubjectError(f"{what} {value!r} must use only lowercase letters, digits, '_' and '-'")
    return value


def check_key(key: object) -> str:
    """Return ``key`` if it can key an agent (``[A-Za-z0-9_=-]``, 1 to 128 characters).

    Raises:
        SubjectError: not a str, empty, too long, or another character (a hostile key
            such as ``"a.b"``, ``"*"`` or ``"x y"`` never reaches a subject).
    """
    if not isinstance(key, str):
        raise SubjectError(f"a key must be a str, not {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise SubjectError(
            f"key {key[:32]!r} must be 1 to {MAX_KEY_LENGTH} characters of letters, digits, "
            "'_', '-' and '=' (encode others, for instance with base64.urlsafe_b64encode)"
        )
    return key


def keyed_name(kind: str, key: str) -> str:
    """``<kind>~<key>``: the ``<to>`` token of the agent of kind ``kind`` for ``key``."""
    return f"{check_id(kind, 'agent kind')}{KEY_SEPARATOR}{check_key(key)}"


def split_keyed(token: str) -> tuple[str, str | None]:
    """``(kind, key)`` of a keyed ``<to>`` token, ``(name, None)`` of a plain name (unchecked)."""
    kind, sep, key = token.partition(KEY_SEPARATOR)
    return (kind, key) if sep else (token, None)


def check_agent(token: object, what: str = "agent name") -> str:
    """Return ``token`` if it names an agent: a plain name or ``<kind>~<key>``."""
    if isinstance(token, str) and KEY_SEPARATOR in token:
        kind, key = split_keyed(token)
        check_id(kind, f"{what} (kind)")
        check_key(key)
        return token
    return check_id(token, what)


def check_publish_subject(subject: str) -> str:
    """Return ``subject`` if a message can be published on it (no wildcards, no empty tokens).

    Transports call this on every publish; recently checked subjects are remembered.
    """
    if subject in _CHECKED or subject in _KEPT_INBOXES:
        return subject
    tokens = subject.split(".") if isinstance(subject, str) else [""]
    if "*" in tokens or ">" in tokens:
        raise SubjectError(f"cannot publish to wildcard subject {subject!r}")
    if "" in tokens or _BAD_CHARS.search(subject):
        raise SubjectError(
            f"invalid subject {subject!r}: empty token, whitespace or control character"
        )
    if not subject.startswith("_INBOX"):  # reply inboxes are used once: see keep_inbox
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED.add(subject)
    return subject


def keep_inbox(subject: str) -> None:
    """Check a reply inbox that will take many messages once, until :func:`drop_inbox`.

    A streaming reply sends all its parts to one inbox; other inboxes are used once and
    are not remembered.

    Raises:
        SubjectError: not a subject one can publish on.
    """
    _KEPT_INBOXES.add(check_publish_subject(subject))


def drop_inbox(subject: str) -> None:
    """Forget an inbox :func:`keep_inbox` remembered."""
    _KEPT_INBOXES.discard(subject)


def check_subscribe_subject(subject: str) -> tuple[str, ...]:
    """Return the tokens of a subscription subject (wildcards allowed, ``>`` only last)."""
    tokens = tuple(subject.split(".")) if isinstance(subject, str) else ("",)
    if "" in tokens or _BAD_CHARS.search(subject):
        raise SubjectError(
            f"invalid subject {subject!r}: empty token, whitespace or control character"
        )
    if ">" in tokens[:-1]:
        raise SubjectError(f"'>' must be the last token in {subject!r}")
    return tokens


def agent_subject(sender: str, to: str, tenant: str) -> str:
    """``sdk.agent.<from>.<to>.<tenant>``: a message from ``sender`` to agent ``to``."""
    return (
        f"sdk.agent.{check_agent(sender, 'sender')}.{check_agent(to, 'agent name')}"
        f".{check_id(tenant, 'tenant')}"
    )


def is_agent_subject(subject: str) -> bool:
    """Whether ``subject`` is an agent's (``sdk.agent.``...): asks come only there."""
    return subject.startswith("sdk.agent.")


def subject_kind(subject: str) -> str:
    """The kind of an SDK subject by its prefix alone, with no validation.

    ``agent``, ``events``, ``workflow``, ``dlq``, ``status`` or ``system``; ``""`` for other
    subjects.
    """
    end = subject.find(".", 4)
    return subject[4:end] if subject.startswith("sdk.") and end > 0 else ""


def agent_inbox(to: str, tenant: str) -> str:
    """``sdk.agent.*.<to>.<tenant>``: what agent ``to`` subscribes, from any sender."""
    return f"sdk.agent.*.{check_id(to, 'agent name')}.{check_id(tenant, 'tenant')}"


def tenant_agents(tenant: str) -> str:
    """``sdk.agent.*.*.<tenant>``: every agent message of the tenant (the keyed tap)."""
    return f"sdk.agent.*.*.{check_id(tenant, 'tenant')}"


def watch_subject(to: str, tenant: str) -> str:
    """``sdk.watch.<to>.<tenant>``: where agent ``to`` announces its end to its watchers."""
    return f"sdk.watch.{check_agent(to)}.{check_id(tenant, 'tenant')}"


def event_subject(event_type: str, tenant: str) -> str:
    """``sdk.events.<event_type>.<tenant>``.

    Raises:
        SubjectError: a bad token, or a reserved type (``sdk~...``: status events travel on
            :func:`status_event_subject`).
    """
    check_token(event_type, "event type")
    if event_type.startswith(RESERVED_EVENT_PREFIX):
        raise SubjectError(
            f"event type {event_type!r} is reserved: types starting with "
            f"{RESERVED_EVENT_PREFIX!r} are the framework's status events "
            f"({', '.join(RESERVED_EVENT_PREFIX + k for k in STATUS_KINDS)})"
        )
    return f"sdk.events.{event_type}.{check_id(tenant, 'tenant')}"


def status_event_subject(kind: str, tenant: str) -> str:
    """``sdk.status.<kind>.<tenant>``: the tenant's status events of ``kind``.

    ``kind`` is one of :data:`STATUS_KINDS`, or ``*`` for a subscription to all of them.

    Raises:
        SubjectError: another kind, or a bad tenant.
    """
    if kind != "*" and kind not in STATUS_KINDS:
        raise SubjectError(f"status kind {kind!r} is not one of {', '.join(STATUS_KINDS)}")
    return f"sdk.status.{kind}.{check_id(tenant, 'tenant')}"


def workflow_subject(workflow_id: str, tenant: str) -> str:
    """``sdk.workflow.<workflow_id>.<tenant>``."""
    return f"sdk.workflow.{check_token(workflow_id, 'workflow id')}.{check_id(tenant, 'tenant')}"


def dlq_subject(to: str, tenant: str) -> str:
    """``sdk.dlq.<to>.<tenant>``: dead letters addressed to agent ``to``."""
    return f"sdk.dlq.{check_agent(to, 'agent name')}.{check_id(tenant, 'tenant')}"


def inbox_prefix(tenant: str) -> str:
    """``_INBOX_<tenant>``: the tenant's reply-subject prefix."""
    return f"_INBOX_{check_id(tenant, 'tenant')}"


def new_inbox(tenant: str) -> str:
    """A fresh reply inbox of the tenant: ``_INBOX_<tenant>.<random>``."""
    return f"{inbox_prefix(tenant)}.{uuid.uuid4().hex}"


def control_subject(inbox: str) -> str:
    """``<inbox>.ctl``: where a streaming reply's consumer reports progress and cancels."""
    return f"{inbox}.ctl"


@final
@attrs.frozen(slots=True)
class Subject:
    """A parsed SDK subject.

    Attributes:
        kind: ``agent``, ``events``, ``workflow``, ``dlq`` or ``status``.
        tenant: the tenant token (always the last token).
        sender: the sending agent (agent subjects only).
        target: the receiving agent (agent and dlq), the event type, the workflow id, or
            the status kind.
    """

    kind: SubjectKind
    tenant: str
    target: str
    sender: str | None = None

    def __str__(self) -> str:
        if self.kind == "agent":
            assert self.sender is not None
            return agent_subject(self.sender, self.target, self.tenant)
        if self.kind == "events":
            return event_subject(self.target, self.tenant)
        if self.kind == "workflow":
            return workflow_subject(self.target, self.tenant)
        if self.kind == "status":
            return status_event_subject(self.target, self.tenant)
        return dlq_subject(self.target, self.tenant)


def parse_subject(subject: str) -> Subject:
    """Parse a concrete SDK subject (no wildcards) into a :class:`Subject`.

    Raises:
        SubjectError: not one of the four kinds, or a token is invalid.
    """
    parts = subject.split(".") if isinstance(subject, str) else []
    if len(parts) == 5 and parts[:2] == ["sdk", "agent"]:
        _, _, sender, to, tenant = parts
        agent_subject(sender, to, tenant)
        return Subject("agent", tenant, to, sender)
    if len(parts) == 4 and parts[0] == "sdk":
        _, kind, target, tenant = parts
        if kind == "events":
            event_subject(target, tenant)
            return Subject("events", tenant, target)
        if kind == "workflow":
            workflow_subject(target, tenant)
            return Subject("workflow", tenant, target)
        if kind == "dlq":
            dlq_subject(target, tenant)
            return Subject("dlq", tenant, target)
        if kind == "status" and target != "*":
            status_event_subject(target, tenant)
            return Subject("status", tenant, target)
    raise SubjectError(
        f"{subject!r} is not an SDK subject (sdk.agent|events|workflow|dlq|status....)"
    )
