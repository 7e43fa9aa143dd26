"""Codecs: the ``Codec`` protocol, JSON / MessagePack / CBOR / Protobuf, plug-ins, typed messages.

A leaf package: it knows nothing of NATS or actors. See ``_values`` for the value
model every codec carries, and ``_schema`` for how typed messages map to the wire.
"""

from motadata_actors._errors import CodecError, DecodeError, EncodeError, MessageTooLarge

from ._avro import AvroCodec
from ._codec import Codec
from ._codecs import CODEC_NAMES, Codecs
from ._formats import CborCodec, JsonCodec, MsgpackCodec
from ._jsonschema import json_schema
from ._limits import Limits
from ._plugins import ENTRY_POINT_GROUP, CodecFactory, codec_names, register_codec
from ._protobuf import ProtobufCodec
from ._registry import TypeRegistry, default_registry, field, message, wire_name_of
from ._sealing import KeyRing

__all__ = (
    "CODEC_NAMES",
    "ENTRY_POINT_GROUP",
    "AvroCodec",
    "CborCodec",
    "Codec",
    "CodecFactory",
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
    "codec_names",
    "default_registry",
    "field",
    "json_schema",
    "message",
    "register_codec",
    "wire_name_of",
)
