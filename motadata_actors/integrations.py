"""The seed documents' factories, as a thin layer over the real components.

Code written against the seed documents keeps working; new code should use
:class:`~motadata_actors.ActorSystem` and :class:`~motadata_actors.codecs.Codecs`
directly (see ``docs/migration.md``). Each factory returns a real component, never a
placeholder: :func:`create_nats_client` a client on a real nats-server,
:func:`create_otel_tracer` an OpenTelemetry SDK tracer, :func:`create_codec_manager`
one of the real codecs.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Self, final

import anyio
import anyio.abc
from opentelemetry import propagate

from motadata_actors._errors import (
    ActorsError,
    CodecError,
    ConfigError,
    EncodeError,
    TransportClosed,
)
from motadata_actors._settings import Settings
from motadata_actors.actors._config import nats_transport
from motadata_actors.codecs import Codec, Codecs, Limits, TypeRegistry
from motadata_actors.mailbox import (
    CONTENT_TYPE,
    Incoming,
    Mailbox,
    NatsServer,
    NatsTransport,
    Subscription,
    check_id,
)
from motadata_actors.telemetry._logging import get_logger

__all__ = (
    "CodecManager",
    "NatsClient",
    "create_codec_manager",
    "create_nats_client",
    "create_otel_tracer",
)

log = get_logger("integrations")

Callback = Callable[[Incoming], Awaitable[None] | None]
"""What :meth:`NatsClient.subscribe` calls for each message (``msg.data`` is the body)."""


@final
class _SharedServer:
    """One embedded nats-server per process for every client without a URL.

    Started by the first such client, stopped when the last one closes: two clients of
    one process (a publisher and a subscriber, say) meet on the same server.
    """

    def __init__(self) -> None:
        self._server: NatsServer | None = None
        self._users = 0
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:  # an asyncio lock belongs to one loop: one per loop (tests run many)
            self._locks = {k: v for k, v in self._locks.items() if not k.is_closed()}
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def acquire(self) -> str:
        """Start the server if needed; return its URL."""
        async with self._lock():
            if self._server is None:
                server = NatsServer()
                await server.__aenter__()
                self._server = server
                log.warning(
                    "no NATS_URL: the NATS client runs an embedded nats-server at %s for "
                    "this process (other processes cannot reach it)", server.url,
                )  # fmt: skip
            self._users += 1
            return self._server.url

    async def release(self) -> None:
        """Stop the server when no client uses it any more."""
        async with self._lock():
            self._users -= 1
            if self._users == 0 and self._server is not None:
                server, self._server = self._server, None
                await server.__aexit__(None, None, None)


_embedded = _SharedServer()


@final
class NatsClient(anyio.abc.AsyncResource):
    """The seed documents' NATS client: ``connect``, ``publish``, ``subscribe``, ``close``.

    Built on :class:`~motadata_actors.mailbox.NatsTransport`: the same subject checks, size
    limits, credentials (``NATS_*`` settings) and typed errors. Without a URL (argument or
    ``NATS_URL``) it uses an embedded nats-server on a free loopback port, shared by every
    such client of the process and stopped when the last one closes. Callbacks run one
    message at a time per subscription, in a task of their own; one that raises is logged
    (logger ``motadata_actors.integrations``) and the next message is delivered.
    """

    def __init__(
        self, url: str | None = None, *, tenant: str = "default", settings: Settings | None = None
    ) -> None:
        self._url = url
        self._tenant = check_id(tenant, "tenant")
        self._settings = settings
        self._capacity = 1000
        self._transport: NatsTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Subscription] = []
        self._codec: Codec | None = None
        self._on_embedded = False
        self._closing = False

    @property
    def url(self) -> str | None:
        """The server this client is connected to, once connected."""
        return self._transport.connected_url if self._transport is not None else None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def aclose(self) -> None:
        """:meth:`close` with its default grace (what leaving ``async with`` does)."""
        await self.close()

    async def connect(self) -> None:
        """Connect (a no-op when connected).

        Raises:
            ConnectionLost: no server answers at the URL.
            ConfigError: bad settings or credentials.
        """
        if self._transport is not None:
            return
        settings = self._settings if self._settings is not None else Settings.from_env()
        urls = [u.strip() for u in self._url.split(",")] if self._url else list(settings.nats_urls)
        if not urls:
            urls = [await _embedded.acquire()]
            self._on_embedded = True
        try:
            transport = nats_transport(
                settings, self._tenant, name="motadata-actors/nats-client", servers=urls
            )
            await transport.start()
        except BaseException:
            await self._stop_server()
            raise
        self._transport = transport
        self._codec = Codecs(settings.codec).default if settings.enable_codec else None
        self._capacity = settings.mailbox_capacity

    def _connected(self) -> NatsTransport:
        if self._transport is None:
            raise TransportClosed("the NATS client is not connected: await client.connect()")
        return self._transport

    def _open(self) -> NatsTransport:
        """The transport, for new subscriptions: refused once closing began."""
        if self._closing:
            raise TransportClosed("the NATS client is closing")
        return self._connected()

    async def publish(
        self, subject: str, payload: Any = b"", *, headers: dict[str, str] | None = None
    ) -> None:
        """Publish ``payload`` on ``subject``: bytes as they are, other values encoded.

        A value that is not bytes is encoded with the ``CODEC_TYPE`` codec and sent with
        its ``Content-Type`` header (with ``ENABLE_CODEC=false``, only bytes are sent).
        Inside an OpenTelemetry span (``create_otel_tracer``), its trace context goes along
        in ``traceparent``/``tracestate``, so a receiver's span joins the same trace.

        Raises:
            SubjectError: a wildcard, empty token or whitespace in ``subject``.
            EncodeError: ``payload`` is outside the value model, or not bytes with
                ``ENABLE_CODEC=false``.
            MessageTooLarge: more than the server's ``max_payload``.
            TransportClosed: not connected.
        """
        transport = self._connected()
        data, headers = self._encode(payload, headers)
        await transport.publish(subject, data, headers=headers)

    def _encode(
        self, payload: Any, headers: dict[str, str] | None
    ) -> tuple[bytes, dict[str, str] | None]:
        """Bytes as they are; other values encoded by the codec, with its Content-Type.

        The active span's trace context is added to the headers (a no-op without one).
        """
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier:
            headers = {**carrier, **(headers or {})}
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return bytes(payload), headers
        if self._codec is None:
            raise EncodeError(
                "raw",
                None,
                f"ENABLE_CODEC=false sends payloads as they are: pass bytes, not "
                f"{type(payload).__name__}, or set ENABLE_CODEC=true to encode with CODEC_TYPE",
            )
        headers = {**(headers or {}), CONTENT_TYPE: self._codec.content_type}
        return self._codec.encode_inline(payload), headers

    async def subscribe(
        self, subject: str, callback: Callback, *, queue: str | None = None
    ) -> Subscription:
        """Call ``callback(msg)`` for each message on ``subject`` (wildcards allowed).

        ``msg`` has ``.subject``, ``.data`` (bytes), ``.headers`` and ``.reply``; the
        callback may be a plain function or a coroutine function. Returns the
        subscription (``await sub.unsubscribe()`` stops it).

        Raises:
            SubjectError: an invalid subject.
            TransportClosed: not connected.
        """
        transport = self._open()
        box: Mailbox[Incoming] = Mailbox(self._capacity)
        sub = await transport.subscribe(subject, queue=queue, mailbox=box)
        task = asyncio.create_task(self._deliver(box, callback, subject), name=f"seed:{subject}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._subs.append(sub)
        return sub

    @staticmethod
    async def _deliver(box: Mailbox[Incoming], callback: Callback, subject: str) -> None:
        async for msg in box:
            try:
                result = callback(msg)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("NATS client callback on %s raised; the next message goes on",
                              subject)  # fmt: skip

    async def request(self, subject: str, payload: Any = b"", *, timeout: float = 5.0) -> Incoming:
        """Publish and wait for the first reply (bytes payloads as they are).

        Raises:
            NoResponders: nobody subscribes to ``subject``.
            AskTimeout: no reply within ``timeout``.
            TransportClosed: not connected.
        """
        transport = self._connected()
        data, headers = self._encode(payload, None)
        return await transport.request(subject, data, headers=headers, timeout=timeout)

    async def close(self, grace: float = 5.0) -> None:
        """Unsubscribe, let callbacks finish what was delivered, and close. Idempotent.

        Callbacks still running after ``grace`` seconds are cancelled; the client can
        publish until then (a callback forwarding a result still can). Called from a
        callback, it does not wait for that callback. The connection is closed whatever
        happens, also when this call is cancelled.
        """
        transport = self._transport
        if transport is None or self._closing:
            return
        self._closing = True
        try:
            for sub in self._subs:
                with contextlib.suppress(ActorsError):
                    await sub.unsubscribe()
                sub.mailbox.close()
            self._subs.clear()
            current = asyncio.current_task()
            others = [task for task in self._tasks if task is not current]
            if others:
                _, late = await asyncio.wait(others, timeout=grace)
                for task in late:
                    task.cancel()
                if late:
                    log.warning("NATS client: %d callback(s) cancelled after %gs at close",
                                len(late), grace)  # fmt: skip
                    await asyncio.wait(late)
        finally:
            self._transport = None
            with anyio.CancelScope(shield=True):
                await transport.aclose()
                await self._stop_server()
            self._closing = False

    async def _stop_server(self) -> None:
        if self._on_embedded:
            self._on_embedded = False
            await _embedded.release()


def create_nats_client(
    url: str | None = None, *, tenant: str = "default", settings: Settings | None = None
) -> NatsClient:
    """Return a :class:`NatsClient` (as the seed documents' factory); ``await connect()`` it.

    ``url`` defaults to ``NATS_URL``; with neither, ``connect`` starts an embedded
    nats-server that :meth:`NatsClient.close` stops. ``tenant`` names its reply inboxes
    (``_INBOX_<tenant>``), as a tenant's NATS user is allowed.

    Raises:
        SubjectError: ``tenant`` is not a valid id.
    """
    return NatsClient(url, tenant=tenant, settings=settings)


@final
class CodecManager:
    """``encode(obj) -> bytes`` and ``decode(bytes) -> obj`` with one codec.

    Typed messages (``@message``) carry their wire name inside the body, so
    ``decode`` gives back an instance of the same class without any header.
    """

    def __init__(self, codec: Codec) -> None:
        self._codec = codec

    @property
    def codec_type(self) -> str:
        """The codec's name: ``json``, ``msgpack``, ``cbor``, ``protobuf`` or a plug-in's."""
        return self._codec.name

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` of what :meth:`encode` returns."""
        return self._codec.content_type

    def encode(self, obj: Any) -> bytes:
        """Encode a value of the model or a typed message.

        Raises:
            EncodeError: the value is outside the model.
        """
        return self._codec.encode_inline(obj)

    def decode(self, data: bytes) -> Any:
        """Decode what :meth:`encode` (of any process using the same codec) produced.

        Raises:
            DecodeError: malformed bytes or a limit exceeded.
        """
        return self._codec.decode(data)


def create_codec_manager(
    codec_type: str | None = None,
    *,
    registry: TypeRegistry | None = None,
    limits: Limits | None = None,
) -> CodecManager:
    """Return a :class:`CodecManager` for ``codec_type`` (as the seed documents' factory).

    Without ``codec_type``, the ``CODEC_TYPE`` setting's codec (JSON when unset).

    Raises:
        ConfigError: ``codec_type`` names no codec (built-in or plug-in) or a plug-in that
            cannot start, or ``CODEC_TYPE`` has a value that names none.
    """
    if codec_type is None:
        codec_type = Settings.from_env().codec
    try:
        return CodecManager(Codecs(codec_type, registry=registry, limits=limits).default)
    except CodecError as exc:  # an unknown name (the message lists the names) or plug-in
        raise ConfigError(f"codec_type={codec_type!r}: {exc}") from None


def create_otel_tracer(service_name: str = "motadata-actors") -> Any:
    """Return an OpenTelemetry tracer (as the seed documents' factory).

    Builds the SDK providers from ``OTEL_*`` (see :func:`motadata_actors.telemetry.setup`)
    once per process, with ``service_name`` as the resource's service name, and returns a
    real tracer: ``with tracer.start_as_current_span(name) as span`` (or ``start_span``).
    """
    from opentelemetry import trace

    from motadata_actors.telemetry import setup

    setup(service_name)
    return trace.get_tracer("motadata_actors.integrations")
