"""A TCP transport for nats-py that refuses to send anything unencrypted when TLS is asked for.

Installed by :mod:`._natspy` in place of nats-py's own (see :class:`GuardedTcp`).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, final

__all__ = ("GuardedTcp", "NotEncrypted")


class NotEncrypted(ConnectionError):
    """TLS was asked for, and this connection is not encrypted: nothing is sent over it.

    A ``ConnectionError``: nats-py counts it as a failed connect attempt, like a refused
    socket.
    """

    def __str__(self) -> str:
        return "nats: TLS is required and the server did not upgrade: closed, nothing sent"


@final
class GuardedTcp:
    """nats-py's TCP transport interface, with two faults of nats-py's own fixed.

    nats-py makes a ``TcpTransport`` itself unless one is set before ``connect`` (the
    ``_transport`` hook), and keeps it for every attempt and reconnect.

    1. A failed TLS upgrade must not hang the close that follows. nats-py connects in
       plaintext, reads INFO, then upgrades with ``loop.start_tls``, which moves the socket
       to an SSL protocol. When the handshake fails (an untrusted certificate), asyncio
       closes the socket and tells only the SSL protocol; the plaintext stream writer never
       learns, so its ``wait_closed()`` waits for ever, and nats-py awaits exactly that
       after every failed attempt: entering a system never returned. Here, after a failed
       upgrade the socket is known closed, and ``wait_closed`` does not wait.
    2. TLS, once asked for, is never given up. nats-py upgrades only when the server's INFO
       says ``tls_required``; a ``tls://`` URL or a TLS context does not make it insist, so
       a server without TLS (or a man in the middle posing as one) got the CONNECT,
       credentials included, in plaintext. nats-py writes nothing before its CONNECT, and
       only through this object, so the first write over a connection that should be
       encrypted and is not closes the socket and raises :class:`NotEncrypted` instead: the
       CONNECT never leaves. nats-py counts it as a failed attempt, like a refused login.

    A whole transport of our own, not a subclass of ``TcpTransport``: it owns its streams,
    so no private attribute of nats-py's is read. It implements nats-py's ``Transport``
    interface method for method (nats-py never checks the type; the hooks test checks
    that every abstract method of that interface is here, with the same parameters), so
    this module needs no nats-py import.
    """

    def __init__(self, *, require_tls: bool) -> None:
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        # The plaintext streams, kept after an upgrade: a collected StreamWriter closes
        # its transport, the very socket TLS now runs over.
        self._bare: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._require_tls = require_tls  # TLS settings: every server, discovered ones too
        self._wants_tls = require_tls  # this connection's: also a tls:// URL
        self._encrypted = False
        self._upgrade_failed = False
        self._refused = False

    async def connect(self, uri: Any, buffer_size: int, connect_timeout: int) -> None:
        # nats-py reuses this object for the next attempt without closing the last one's
        # streams when the attempt failed while reconnecting: close them first.
        if self._writer is not None:
            self._writer.close()
        self._wants_tls = self._require_tls or uri.scheme == "tls"
        self._encrypted = self._upgrade_failed = self._refused = False
        self._bare = None
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(host=uri.hostname, port=uri.port, limit=buffer_size),
            connect_timeout,
        )

    async def connect_tls(
        self, uri: Any, ssl_context: ssl.SSLContext, buffer_size: int, connect_timeout: int
    ) -> None:
        writer = self._writer
        assert writer is not None, "connect comes first"
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            upgraded = await asyncio.wait_for(
                loop.start_tls(
                    writer.transport, protocol, ssl_context,
                    server_hostname=uri if isinstance(uri, str) else uri.hostname,
                ),
                connect_timeout,
            )  # fmt: skip
        except BaseException:
            # start_tls closed the socket (on failure, timeout or cancellation alike).
            self._upgrade_failed = True
            raise
        assert upgraded is not None
        assert self._reader is not None
        self._bare = (self._reader, writer)
        self._reader, self._writer = reader, asyncio.StreamWriter(upgraded, protocol, reader, loop)
        self._encrypted = True

    def _check_encrypted(self) -> bool:
        """Whether to write; raises on the first write that would go out unencrypted."""
        if self._refused:
            return False  # the socket is closed: nothing can go out, and nothing must
        if self._wants_tls and not self._encrypted:
            self._refused = True
            if self._writer is not None:
                self._writer.transport.abort()
            raise NotEncrypted
        return True

    def write(self, payload: bytes) -> None:
        if self._check_encrypted() and self._writer is not None:
            self._writer.write(payload)

    def writelines(self, payload: list[bytes]) -> None:
        if self._check_encrypted() and self._writer is not None:
            self._writer.writelines(payload)

    async def read(self, buffer_size: int) -> bytes:
        assert self._reader is not None, "connect comes first"
        return await self._reader.read(buffer_size)

    async def readline(self) -> bytes:
        assert self._reader is not None, "connect comes first"
        return await self._reader.readline()

    async def drain(self) -> None:
        if self._writer is not None:
            await self._writer.drain()

    async def wait_closed(self) -> None:
        if self._upgrade_failed:
            return  # the socket is closed; the plaintext writer would never hear of it
        if self._writer is not None:
            await self._writer.wait_closed()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def at_eof(self) -> bool:
        return self._reader is None or self._reader.at_eof()

    def __bool__(self) -> bool:
        # nats-py makes a transport of its own when the one it has is falsy: this one stays.
        return True
