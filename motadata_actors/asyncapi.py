"""AsyncAPI 3.0 documents of a tenant: its agents, subjects, message types and events.

:func:`asyncapi_document` is sans-io: a plain function from values (the agents, the JSON
Schema of each message type) to the document, a dict ready for ``json.dumps``. Its values
come from one of two places:

* :func:`system_document`: an :class:`~motadata_actors.ActorSystem` in this process (its
  actors, its type registry);
* :func:`tenant_document`: every process of a tenant, live over NATS (``python -m
  motadata_actors asyncapi``): the status reports say which agents run where and what
  they accept, the tenant's schema registry (``SDK_SCHEMAS_<tenant>``) the JSON Schema of
  each type.

Theory of the document:

* The application it describes is the tenant: its agents receive on their mailboxes
  (``receive`` operations), the system sends status events and dead letters (``send``).
* One channel per agent, ``sdk.agent.{from}.<agent>.<tenant>`` (``<kind>~{key}`` for a
  keyed kind), with two operations: ``<agent>.tell`` (no reply) and ``<agent>.ask`` (a
  reply on the ``replies`` channel, the asker's ``_INBOX_<tenant>.…``). Its messages are
  the ``@message`` classes its actor class lists in ``accepts``, else ``any``: any value
  of the value model.
* One channel per event type an agent is subscribed to (``*``: the parameterised
  ``sdk.events.{event_type}.<tenant>``), with ``send`` and ``receive``; a typed event is
  the message whose wire name, ``.`` as ``_``, is the event type.
* The status events (``sdk.status.lifecycle|progress.<tenant>``) and dead letters
  (``sdk.dlq.{to}.<tenant>``).
* Every known type is a message in ``components.messages`` (headers: the envelope, with
  ``Sdk-Message-Type`` fixed to its wire name) whose payload is its schema in
  ``components.schemas``; nested classes are schemas of their own, and references point
  there (``#/components/schemas/<name>``), since a ``$defs`` reference inside a payload
  would resolve against the document's root.
* Payloads are the JSON the JSON codec writes; other codecs carry the same value model,
  so the schema describes the decoded value whatever the ``Content-Type``.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO, final

import anyio
import attrs
import orjson

from motadata_actors import __version__
from motadata_actors._errors import CodecError, ConfigError
from motadata_actors._settings import Settings
from motadata_actors.codecs import Codecs, json_schema
from motadata_actors.mailbox import check_id

if TYPE_CHECKING:
    from motadata_actors.actors import ActorSystem
    from motadata_actors.mailbox import Transport

__all__ = (
    "AgentInfo",
    "asyncapi_document",
    "system_document",
    "tenant_document",
    "write_tenant_document",
)

ASYNCAPI_VERSION: Final = "3.0.0"

_ANY: Final = "any"  # the message of untyped agents and events: any value
_REPLY: Final = "reply"
_DEAD: Final = "dead_letter"
_ENVELOPE: Final = "Sdk-Envelope"  # the headers every message may carry
_LIFECYCLE: Final = "sdk.lifecycle.v1"
_PROGRESS: Final = "sdk.progress.v1"
_STATUS_TYPES: Final = {"lifecycle": _LIFECYCLE, "progress": _PROGRESS}
_COMPONENT_KEY: Final = re.compile(r"[^\w.\-]")  # what a components key may not contain
_STATUS_SUBSCRIPTIONS: Final = {"sdk~lifecycle": "lifecycle", "sdk~progress": "progress"}


@final
@attrs.frozen(slots=True)
class AgentInfo:
    """One agent (or keyed kind) of a tenant, as the document shows it.

    Attributes:
        name: the agent's name, the ``<to>`` of its subject (a keyed kind's name).
        mailbox: ``core``, ``durable`` or ``keyed``.
        accepts: the wire names of the ``@message`` classes its class lists in
            ``accepts`` (``"*"``: plain values as well); None when it does not say
            (any value).
        events: the event types it is subscribed to (``"*"``: all of the tenant's;
            ``sdk~lifecycle``, ``sdk~progress``: the status events).
        description: what it does (its class's docstring).
        class_name: its actor class, ``module.QualName``, when known.
        replicas: how many processes run it.
    """

    name: str
    mailbox: str = "core"
    accepts: tuple[str, ...] | None = None
    events: tuple[str, ...] = ()
    description: str = ""
    class_name: str = ""
    replicas: int = 1

    @classmethod
    def from_reports(cls, reports: Iterable[Mapping[str, Any]]) -> list[AgentInfo]:
        """The agents of status reports (one per process), merged by name, sorted.

        Replicas are counted; what they accept and their events are the union of what
        each process says.
        """
        merged: dict[str, dict[str, Any]] = {}
        for report in reports:
            for agent in report.get("agents", []):
                if not isinstance(agent, Mapping) or not isinstance(agent.get("name"), str):
                    continue
                row = merged.setdefault(
                    agent["name"],
                    {"mailbox": str(agent.get("mailbox", "core")), "accepts": None,
                     "events": set(), "doc": "", "class": "", "replicas": 0},
                )  # fmt: skip
                row["replicas"] += 1
                if isinstance(agent.get("accepts"), list):
                    row["accepts"] = (row["accepts"] or set()) | {str(w) for w in agent["accepts"]}
                if isinstance(agent.get("events"), list):
                    row["events"] |= {str(e) for e in agent["events"]}
                for key in ("doc", "class"):
                    if isinstance(agent.get(key), str) and not row[key]:
                        row[key] = agent[key]
        return [
            cls(
                name,
                row["mailbox"],
                tuple(sorted(row["accepts"])) if row["accepts"] is not None else None,
                tuple(sorted(row["events"])),
                row["doc"],
                row["class"],
                row["replicas"],
            )
            for name, row in sorted(merged.items())
        ]


# -- the document (sans-io) ---------------------------------------------------------


def asyncapi_document(
    tenant: str,
    agents: Iterable[AgentInfo],
    schemas: Mapping[str, Mapping[str, Any]],
    *,
    servers: Sequence[str] = (),
    content_type: str = "application/json",
    title: str | None = None,
    version: str = __version__,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``tenant`` (a dict, JSON-ready).

    Args:
        tenant: the tenant id.
        agents: its agents.
        schemas: the JSON Schema of each message type known, by wire name (as
            :func:`motadata_actors.codecs.json_schema` makes them); a type an agent
            accepts that is missing here gets a message with an open payload.
        servers: NATS server URLs (credentials are left out of the document).
        content_type: the ``Content-Type`` senders use (the system's codec).
        title: the document's title (default: ``motadata-actors tenant <tenant>``).
        version: the ``info.version``.

    Raises:
        SubjectError: ``tenant`` or an agent name is not a valid id.
    """
    return _Builder(check_id(tenant, "tenant"), schemas, content_type).build(
        sorted(agents, key=lambda a: a.name), servers, title, version
    )


def _pointer(*parts: str) -> str:
    """A JSON pointer into the document (RFC 6901 escapes: an event type may hold ``/``)."""
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": _pointer(*parts)}


def _host(url: str) -> tuple[str, str]:
    """``(protocol, host:port)`` of a NATS URL, without credentials or path."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "nats", url
    host = rest.rpartition("@")[2].split("/", 1)[0]
    return ("nats" if scheme in ("nats", "tls", "") else scheme), host


class _Builder:
    def __init__(
        self, tenant: str, schemas: Mapping[str, Mapping[str, Any]], content_type: str
    ) -> None:
        self.tenant = tenant
        self.content_type = content_type
        self.keys: dict[str, str] = {}  # schema name -> components key
        self.schemas: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.wire_names = {w for w, s in schemas.items() if isinstance(s, Mapping)}
        for wire in sorted(self.wire_names):
            self._add_schema(wire, schemas[wire])

    # -- components ------------------------------------------------------------------

    def _key(self, name: str) -> str:
        """The components key of schema ``name``: unique, of letters, digits, ``._-``."""
        key = self.keys.get(name)
        if key is None:
            base = _COMPONENT_KEY.sub("_", name) or "_"
            key, n = base, 1
            while key in self.keys.values() or key in (_ENVELOPE,):
                n += 1
                key = f"{base}_{n}"
            self.keys[name] = key
        return key

    def _add_schema(self, wire: str, schema: Mapping[str, Any]) -> None:
        body = copy.deepcopy(dict(schema))
        body.pop("$schema", None)
        defs = body.pop("$defs", {})
        entries = {wire: body}
        if isinstance(defs, Mapping):
            entries.update((n, e) for n, e in defs.items() if n != wire and isinstance(e, dict))
        for name, entry in entries.items():
            key = self._key(name)
            if key not in self.schemas:
                self.schemas[key] = self._relink(entry)

    def _relink(self, node: Any) -> Any:
        """``node`` with ``#/$defs/<name>`` references pointing into ``components``."""
        if isinstance(node, dict):
            out = {k: self._relink(v) for k, v in node.items()}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                out["$ref"] = _pointer("components", "schemas", self._key(ref[len("#/$defs/") :]))
            return out
        if isinstance(node, list):
            return [self._relink(v) for v in node]
        return node

    def _headers(self, extra: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
        own: dict[str, Any] = {"type": "object", "properties": extra}
        if required:
            own["required"] = list(required)
        return {"allOf": [_ref("components", "schemas", _ENVELOPE), own]}

    def _message(self, wire: str) -> str:
        """The components key of typed message ``wire`` (added when first used)."""
        key = self._key(wire)
        if key not in self.messages:
            schema = self.schemas.get(key)
            message: dict[str, Any] = {
                "name": wire,
                "title": wire,
                "contentType": self.content_type,
                "headers": self._headers(
                    {"Sdk-Message-Type": {"type": "string", "const": wire}}, ["Sdk-Message-Type"]
                ),
                "correlationId": {"location": "$message.header#/Sdk-Correlation-Id"},
            }
            if schema is None:
                message["summary"] = "its JSON Schema is not in the tenant's schema registry"
                message["payload"] = {}
            else:
                if isinstance(schema.get("description"), str):
                    message["summary"] = schema["description"]
                message["payload"] = _ref("components", "schemas", key)
            self.messages[key] = message
        return key

    def _generic(self, key: str, summary: str, headers: dict[str, Any]) -> str:
        self.messages.setdefault(key, {
            "name": key, "title": key, "summary": summary, "contentType": self.content_type,
            "headers": headers, "payload": {},
            "correlationId": {"location": "$message.header#/Sdk-Correlation-Id"},
        })  # fmt: skip
        return key

    def _any(self) -> str:
        return self._generic(
            _ANY,
            "Any value of the value model (no Sdk-Message-Type): text, numbers, lists, maps...",
            self._headers({}),
        )

    def _envelope(self) -> dict[str, Any]:
        text = {"type": "string"}
        number = {"type": "string", "pattern": "^[0-9]+$"}
        return {
            "type": "object",
            "description": "The envelope: NATS headers, each sent only when it carries "
            "information; a missing header means its default (docs/nats.md).",
            "properties": {
                "Content-Type": {**text, "description": "the body's codec; absent: JSON"},
                "Sdk-Message-Type": {**text, "description": "the wire name of a typed message"},
                "Sdk-Message-Id": {**text, "description": "unique, kept across retries"},
                "Sdk-Correlation-Id": {**text, "description": "the conversation"},
                "Sdk-Tenant-Id": {"type": "string", "const": self.tenant},
                "Sdk-Timeout-Ms": {**number, "description": "asks: ms the asker still waits"},
                "Sdk-Attempt": {**number, "description": "retried asks: the attempt, from 2"},
                "Sdk-Reply-To": {**text, "description": "asks to durable mailboxes: the inbox"},
                "Sdk-Expires": {**number, "description": "tells with a ttl: epoch ms"},
                "Sdk-Key-Id": {**text, "description": "sealed bodies: the key's id"},
                "Sdk-Claim": {**text, "description": "bodies kept in the object store"},
                "Content-Encoding": {"type": "string", "enum": ["zstd"]},
                "Sdk-Stream-Window": {**text, "description": "streaming asks: the credit"},
                "Sdk-Progress-To": {**text, "description": "asks with on_progress: the inbox"},
                "traceparent": {**text, "description": "W3C trace context"},
                "tracestate": text,
                "baggage": text,
            },
        }

    # -- channels and operations -----------------------------------------------------

    def _channel(
        self,
        channel: str,
        address: str,
        messages: Iterable[str],
        *,
        parameters: dict[str, str] | None = None,
        **extra: Any,
    ) -> list[dict[str, str]]:
        """Add channel ``channel``; return references to its messages for operations."""
        names = sorted(set(messages))
        entry: dict[str, Any] = {
            "address": address,
            "messages": {m: _ref("components", "messages", m) for m in names},
        }
        if parameters:
            entry["parameters"] = {p: {"description": d} for p, d in parameters.items()}
        entry.update(extra)
        self.channels[channel] = entry
        return [_ref("channels", channel, "messages", m) for m in names]

    def _agent(self, agent: AgentInfo) -> None:
        name = check_id(agent.name, "agent name")
        accepts = agent.accepts
        messages = (
            [_ANY]
            if accepts is None
            else [self._any() if w == "*" else self._message(w) for w in accepts]
        )
        if accepts is None:
            self._any()
        keyed = agent.mailbox == "keyed"
        to = f"{name}~{{key}}" if keyed else name
        parameters = {"from": "the sender: an agent's name, or a process's client id"}
        if keyed:
            parameters["key"] = "the key of one instance of the kind ([A-Za-z0-9_=-], 1-128)"
        guarantee = {
            "core": "Core NATS mailbox: at most once; replicas share a queue group.",
            "durable": "Durable mailbox (JetStream): at least once, acknowledged after "
            "the handler returns.",
            "keyed": "Keyed kind: one instance per key, activated on demand in one process.",
        }.get(agent.mailbox, "")
        description = " ".join(part for part in (agent.description, guarantee) if part)
        extra: dict[str, Any] = {"title": name, "x-sdk-mailbox": agent.mailbox,
                                 "x-sdk-replicas": agent.replicas}  # fmt: skip
        if description:
            extra["description"] = description
        if agent.class_name:
            extra["x-sdk-class"] = agent.class_name
        channel = f"agent.{name}"
        refs = self._channel(
            channel, f"sdk.agent.{{from}}.{to}.{self.tenant}", messages,
            parameters=parameters, **extra,
        )  # fmt: skip
        self.operations[f"{name}.tell"] = {
            "action": "receive",
            "channel": _ref("channels", channel),
            "title": f"tell {name}",
            "summary": "A one-way message: nothing is sent back.",
            "messages": refs,
        }
        reply: dict[str, Any] = {
            "channel": _ref("channels", "replies"),
            "messages": [_ref("channels", "replies", "messages", _REPLY)],
        }
        if agent.mailbox == "durable":
            reply["address"] = {
                "location": "$message.header#/Sdk-Reply-To",
                "description": "JetStream keeps no reply subject: the asker's inbox is here",
            }
        self.operations[f"{name}.ask"] = {
            "action": "receive",
            "channel": _ref("channels", channel),
            "title": f"ask {name}",
            "summary": "A request: the handler's return value is the reply (Sdk-Timeout-Ms "
            "says how long the asker waits).",
            "messages": refs,
            "reply": reply,
        }

    def _events(self, agents: Sequence[AgentInfo]) -> None:
        subscribers: dict[str, list[str]] = {}
        for agent in agents:
            for event_type in agent.events:
                subscribers.setdefault(event_type, []).append(agent.name)
        # A typed event's type is its wire name with "." as "_".
        typed = {w.replace(".", "_"): w for w in self.wire_names}
        for event_type, names in sorted(subscribers.items()):
            who = ", ".join(sorted(set(names)))
            if event_type in _STATUS_SUBSCRIPTIONS:
                kind = _STATUS_SUBSCRIPTIONS[event_type]
                self.operations[f"status.{kind}.receive"] = {
                    "action": "receive",
                    "channel": _ref("channels", f"status.{kind}"),
                    "summary": f"Followed by {who}.",
                }
                continue
            if event_type == "*":
                channel, address = "events", f"sdk.events.{{event_type}}.{self.tenant}"
                messages = [self._any()]  # typed ones too: any value is any message
                parameters = {"event_type": "one token; a typed event's is its wire name "
                              "with '.' as '_'"}  # fmt: skip
            else:
                channel, address = f"events.{event_type}", f"sdk.events.{event_type}.{self.tenant}"
                wire = typed.get(event_type)
                messages = [self._any() if wire is None else self._message(wire)]
                parameters = {}
            refs = self._channel(
                channel, address, messages, parameters=parameters,
                title=f"events {event_type}", description=f"Events received by {who}.",
            )  # fmt: skip
            self.operations[f"{channel}.receive"] = {
                "action": "receive",
                "channel": _ref("channels", channel),
                "summary": f"Subscribed by {who} (a queue group per agent unless broadcast).",
                "messages": refs,
            }
            self.operations[f"{channel}.send"] = {
                "action": "send",
                "channel": _ref("channels", channel),
                "summary": "Published by ctx.publish or system.publish.",
                "messages": refs,
            }

    def _fixed(self) -> None:
        """Replies, status events and dead letters: every tenant has them."""
        self._generic(
            _REPLY,
            "The reply of an ask: the handler's return value; an error reply names the "
            "error's type in Sdk-Error (the body: type, message, origin); a streamed reply "
            "comes in parts numbered by Sdk-Stream-Seq.",
            self._headers({
                "Sdk-Error": {"type": "string", "description": "an error reply's type name"},
                "Sdk-Stream-Seq": {"type": "string", "pattern": "^[0-9]+$"},
                "Sdk-Stream-End": {"type": "string"},
            }),
        )  # fmt: skip
        self._channel(
            "replies", f"_INBOX_{self.tenant}.{{inbox}}", [_REPLY],
            parameters={"inbox": "the asker's own inbox (the NATS reply subject)"},
            title="replies", description="Where asks are answered.",
        )  # fmt: skip
        for kind, wire in _STATUS_TYPES.items():
            channel = f"status.{kind}"
            refs = self._channel(
                channel, f"sdk.status.{kind}.{self.tenant}", [self._message(wire)],
                title=f"status {kind}",
                description={
                    "lifecycle": "Agents started, crashed, restarted, stopped; keyed "
                    "instances activated and deactivated (python -m motadata_actors status "
                    "--follow).",
                    "progress": "Handlers' ctx.progress reports.",
                }[kind],
            )  # fmt: skip
            self.operations[f"{channel}.send"] = {
                "action": "send",
                "channel": _ref("channels", channel),
                "summary": "Published by every system unless SDK_STATUS_EVENTS=false.",
                "messages": refs,
            }
        self._generic(
            _DEAD,
            "A message that could not be delivered or handled, as it was sent, with the reason.",
            self._headers(
                {"Sdk-Dead-Reason": {"type": "string", "description": "why"}},
                ["Sdk-Dead-Reason"],
            ),
        )
        refs = self._channel(
            "dead_letters", f"sdk.dlq.{{to}}.{self.tenant}", [_DEAD],
            parameters={"to": "the agent the message was for"}, title="dead letters",
            description="Kept by the tenant's dead-letter stream; listed and replayed by "
            "python -m motadata_actors dlq.",
        )  # fmt: skip
        self.operations["dead_letters.send"] = {
            "action": "send",
            "channel": _ref("channels", "dead_letters"),
            "summary": "Undecodable, refused, expired or failed messages.",
            "messages": refs,
        }

    def build(
        self, agents: Sequence[AgentInfo], servers: Sequence[str], title: str | None, version: str
    ) -> dict[str, Any]:
        self.schemas[_ENVELOPE] = self._envelope()
        for agent in agents:
            self._agent(agent)
        self._events(agents)
        self._fixed()
        doc: dict[str, Any] = {
            "asyncapi": ASYNCAPI_VERSION,
            "info": {
                "title": title or f"motadata-actors tenant {self.tenant}",
                "version": version,
                "description": f"The agents, subjects, message types and events of tenant "
                f"{self.tenant!r}, generated by motadata-actors.",
            },
            "defaultContentType": self.content_type,
        }
        hosts = list(dict.fromkeys(_host(u) for u in servers))
        if hosts:
            doc["servers"] = {
                f"nats-{i}": {"host": host, "protocol": protocol}
                for i, (protocol, host) in enumerate(hosts, 1)
            }
        doc["channels"] = dict(sorted(self.channels.items()))
        doc["operations"] = dict(sorted(self.operations.items()))
        doc["components"] = {
            "schemas": dict(sorted(self.schemas.items())),
            "messages": dict(sorted(self.messages.items())),
        }
        return doc


# -- the sources --------------------------------------------------------------------


def _servers_of(transport: Transport) -> list[str]:
    url = getattr(transport, "connected_url", None)
    return [url] if isinstance(url, str) else []


def system_document(system: ActorSystem) -> dict[str, Any]:
    """The AsyncAPI document of what runs in ``system`` (a started one) in this process.

    Its agents are the system's actors, its message types those of its registry and
    those its actors' classes accept; the server is the one it is connected to (none
    for the in-process transport).

    Example::

        async with ActorSystem(tenant="acme") as system:
            await system.spawn(Planner, name="planner")
            document = system_document(system)  # json.dumps(document) to save it
    """
    from motadata_actors.actors._status import actor_class, agent_cells, describe_agents
    from motadata_actors.actors._status_events import ensure_registered

    codecs = system.codecs
    ensure_registered(codecs)  # the status events' types, whatever the registry
    registry = codecs.registry
    schemas = {wire: json_schema(registry.lookup(wire)) for wire in registry.wire_names()}
    described = describe_agents(system.root)
    reports = []
    for stats in system.statistics():
        reports.append({"name": stats.name, "mailbox": stats.mailbox,
                        **described.get(stats.path, {})})  # fmt: skip
    for cell in agent_cells(system.root):  # accepted classes another registry holds
        for entry in getattr(actor_class(cell), "accepts", None) or ():
            wire = getattr(entry, "__sdk_wire_name__", None)
            if isinstance(wire, str) and wire not in schemas:
                schemas[wire] = json_schema(entry)
    return asyncapi_document(
        system.tenant,
        AgentInfo.from_reports([{"agents": reports}]),
        schemas,
        servers=_servers_of(system.transport),
        content_type=codecs.default.content_type,
    )


async def _registry_schemas(transport: Transport, tenant: str) -> dict[str, Any]:
    """The schemas in the tenant's registry bucket (none without JetStream)."""
    from motadata_actors.actors._schemas import read_registry

    return {
        wire: entry["schema"] for wire, entry in (await read_registry(transport, tenant)).items()
    }


async def tenant_document(settings: Settings, tenant: str, *, wait: float = 0.5) -> dict[str, Any]:
    """The AsyncAPI document of every process of ``tenant``, asked live over NATS.

    The processes that answer a status request within ``wait`` seconds say which agents
    run and what they accept; the tenant's schema registry gives each type's schema.

    Raises:
        ConfigError: ``NATS_URL`` is not set (or ``ENABLE_NATS`` is false).
        SubjectError: ``tenant`` is not a valid tenant id.
        ConnectionLost: the server cannot be reached.
    """
    from motadata_actors.actors._config import nats_transport, require_nats
    from motadata_actors.actors._status import gather_status
    from motadata_actors.actors._status_events import AgentLifecycle, Progress

    check_id(tenant, "tenant")
    require_nats(settings, "asyncapi")
    transport = nats_transport(settings, tenant, name="motadata-actors/asyncapi")
    await transport.start()
    try:
        reports = await gather_status(transport, tenant, wait)
        schemas = await _registry_schemas(transport, tenant)
    finally:
        await transport.aclose()
    for cls, wire in ((AgentLifecycle, _LIFECYCLE), (Progress, _PROGRESS)):
        schemas.setdefault(wire, json_schema(cls))
    try:  # what senders configured like this one send
        content_type = Codecs(settings.codec).default.content_type
    except CodecError:  # a plug-in missing here
        content_type = "application/json"
    return asyncapi_document(
        tenant,
        AgentInfo.from_reports(reports),
        schemas,
        servers=settings.nats_urls,
        content_type=content_type,
    )


async def write_tenant_document(
    settings: Settings,
    tenant: str,
    out: Path | None,
    *,
    wait: float = 0.5,
    stdout: TextIO | None = None,
) -> dict[str, Any]:
    """``python -m motadata_actors asyncapi``: write :func:`tenant_document` as JSON.

    To ``out``, or to ``stdout`` (default: ``sys.stdout``) when it is None (JSON is also
    YAML 1.2, for tools that want YAML). With ``out``, a line on ``stdout`` says what it
    holds.

    Raises:
        ConfigError: as :func:`tenant_document`, or ``out`` cannot be written.
    """
    document = await tenant_document(settings, tenant, wait=wait)
    stdout = stdout if stdout is not None else sys.stdout
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    if out is None:
        stdout.write(data.decode())
        stdout.flush()
        return document
    try:
        await anyio.Path(out).write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    agents = sum(1 for op in document["operations"] if op.endswith(".tell"))
    types = len(set(document["components"]["messages"]) - {_ANY, _REPLY, _DEAD})
    print(
        f"wrote {out}: AsyncAPI {ASYNCAPI_VERSION} of tenant {tenant!r}, {agents} agent(s), "
        f"{len(document['channels'])} channel(s), {types} message type(s)",
        file=stdout,
    )
    return document
