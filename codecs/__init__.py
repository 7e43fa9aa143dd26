"""Codecs: the ``Codec`` protocol, JSON / MessagePack / CBOR / Protobuf, typed messages.

A leaf package: it knows nothing of NATS or actors. See ``_values`` for the value
model every codec carries, and ``_schema`` for how typed messages map to the wire.
"""

from motadata_actors._errors import CodecError, DecodeError, EncodeError, MessageTooLarge

from ._codec import Codec
from ._codecs import CODEC_NAMES, Codecs
from ._formats import CborCodec, JsonCodec, MsgpackCodec
from ._limits import Limits
from ._protobuf import ProtobufCodec
from ._registry import TypeRegistry, default_registry, field, message, wire_name_of
from ._sealing import KeyRing

__all__ = (
    "CODEC_NAMES",
    "CborCodec",
    "Codec",
    "CodecError",
    "Codecs",
    "DecodeError",
    "EncodeError",
    "JsonCodec",
    "KeyRing",
    "Limits",
    "MessageTooLarge",
    "MsgpackCodec",
    "ProtobufCodec",
    "TypeRegistry",
    "default_registry",
    "field",
    "message",
    "wire_name_of",
)
