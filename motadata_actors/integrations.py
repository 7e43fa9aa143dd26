"""The seed documents' factories, as a thin layer over the real components.

Code written against the seed documents keeps working; new code should use
:class:`~motadata_actors.ActorSystem` and :class:`~motadata_actors.codecs.Codecs`
directly. Each factory returns a real component, never a placeholder.
"""

from __future__ import annotations

from typing import Any, final

from motadata_actors._errors import ConfigError
from motadata_actors.codecs import CODEC_NAMES, Codec, Codecs, Limits, TypeRegistry

__all__ = ("CodecManager", "create_codec_manager", "create_otel_tracer")


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
        """The codec's name: ``json``, ``msgpack``, ``cbor`` or ``protobuf``."""
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
    codec_type: str = "json",
    *,
    registry: TypeRegistry | None = None,
    limits: Limits | None = None,
) -> CodecManager:
    """Return a :class:`CodecManager` for ``codec_type`` (as the seed documents' factory).

    Raises:
        ConfigError: ``codec_type`` is not one of json, msgpack, cbor, protobuf.
    """
    if codec_type not in CODEC_NAMES:
        raise ConfigError(f"codec_type={codec_type!r} is not one of {', '.join(CODEC_NAMES)}")
    return CodecManager(Codecs(codec_type, registry=registry, limits=limits).default)


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
