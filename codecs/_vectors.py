"""Vectors: numpy arrays and ``array.array`` in the value model (sans-io, pure).

A vector is a block of numbers of one element type (``dtype``) and a shape, carried as its
raw bytes, so an embedding costs its own size and comes back bit for bit (NaN included:
the bytes are not read as floats). Every codec carries the same three things:

* the element type, as numpy spells it with the byte order first: ``"<f4"`` (float32),
  ``"<f2"``, ``"<f8"``, ``"|i1"``, ``"<i2"``, ``"<i4"``, ``"<i8"``, ``"|u1"``, ``"<u2"``,
  ``"<u4"``, ``"<u8"``;
* the shape, a list of sizes (``[1536]``, ``[4, 768]``), row-major;
* the data, always little-endian.

On the wire: CBOR uses RFC 8746's typed arrays (tag 85 for float32 little-endian, and so
on; tag 40 around it for more than one dimension, and big-endian tags are read too);
MessagePack an extension type (:data:`MSGPACK_EXT`: the RFC 8746 tag number of the element
type, the number of dimensions, each size as a little-endian uint32, the data); Protobuf
``motadata.sdk.Array`` (``dtype``, ``shape``, ``data`` bytes); JSON the reserved map
``{"$array": {"dtype": "<f4", "shape": [1536], "data": "<base64>"}}``.

numpy is optional (extra ``vectors``). Received vectors are numpy arrays when numpy is
installed (writable, native byte order, owning their memory), ``array.array`` otherwise;
a vector ``array.array`` cannot hold (float16, more than one dimension) is then an error
that names the extra. A typed field annotated ``array.array`` or ``numpy.ndarray``
(``numpy.typing.NDArray[numpy.float32]`` fixes the element type) gets exactly that type.
"""

from __future__ import annotations

import array
import base64
import importlib
import struct
import sys
import typing
from typing import Any, Final, NamedTuple

from ._values import ARRAY_KEY, ModelError

__all__ = (
    "ARRAY_KEY",
    "CBOR_NDIM_TAG",
    "CBOR_TAGS",
    "MSGPACK_EXT",
    "Packed",
    "annotation",
    "array_code",
    "as_array",
    "as_ndarray",
    "cbor_typed",
    "dtype_of",
    "from_cbor",
    "from_cbor_ndim",
    "from_json",
    "from_msgpack",
    "is_vector",
    "pack",
    "to_json",
    "to_msgpack",
    "unpack",
)

MSGPACK_EXT: Final = 1
"""The MessagePack extension type code of a vector."""

INSTALL: Final = "pip install 'motadata-actors[vectors]'"
_MAX_DIMS: Final = 32

# dtype (numpy's str, little-endian) -> RFC 8746 tag of its little-endian typed array.
_TAGS: Final = {
    "|u1": 64,
    "<u2": 69,
    "<u4": 70,
    "<u8": 71,
    "|i1": 72,
    "<i2": 77,
    "<i4": 78,
    "<i8": 79,
    "<f2": 84,
    "<f4": 85,
    "<f8": 86,
}
_BY_TAG: Final = {tag: dtype for dtype, tag in _TAGS.items()}
# Big-endian tags (and 68, uint8 "clamped"): the same dtype, data swapped on the way in.
_BY_TAG.update({tag - 4: f">{d[1:]}" for d, tag in _TAGS.items() if d[0] == "<"})
_BY_TAG[68] = "|u1"
CBOR_TAGS: Final = frozenset(_BY_TAG)
"""The RFC 8746 typed-array tags a CBOR body may carry (40 marks more than one dimension)."""
CBOR_NDIM_TAG: Final = 40

# array.array typecode -> dtype of the same kind and size on this platform (and back, the
# first code of a size winning); array.array has no float16.
_DTYPE_OF_CODE: Final = {
    code: f"{'|' if size == 1 else '<'}{'f' if code in 'fd' else 'iu'[code.isupper()]}{size}"
    for code in "bBhHiIlLqQfd"
    for size in [array.array(code).itemsize]
}
_TYPECODES: Final = {dtype: code for code, dtype in reversed(_DTYPE_OF_CODE.items())}
_LITTLE: Final = sys.byteorder == "little"


class Packed(NamedTuple):
    """A vector as it travels: its element type, shape and little-endian bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes


def _numpy() -> Any:
    """The numpy module, imported on first need; None when it is not installed."""
    np = sys.modules.get("numpy")
    if np is None:
        try:
            np = importlib.import_module("numpy")
        except ImportError:
            return None
    return np


def is_vector(value: object) -> bool:
    """Whether ``value`` is a vector: an ``array.array`` or a numpy array."""
    if isinstance(value, array.array):
        return True
    np = sys.modules.get("numpy")  # an ndarray exists only once numpy is imported
    return np is not None and isinstance(value, np.ndarray)


def dtype_of(value: Any) -> str:
    """The wire element type of a vector (``"<f4"``), without touching its data.

    Raises:
        ModelError: an element type outside the model (complex, bool, object, str, ...).
    """
    if isinstance(value, array.array):
        dtype = _DTYPE_OF_CODE.get(value.typecode)
        if dtype is None:
            raise ModelError(f"array.array of typecode {value.typecode!r} is not a vector")
        return dtype
    dt = value.dtype
    dtype = f"{'|' if dt.itemsize == 1 else '<'}{dt.kind}{dt.itemsize}"
    if dtype not in _TAGS:
        raise ModelError(f"numpy arrays of {dt} are not vectors (numbers only: {_names()})")
    return dtype


def pack(value: Any) -> Packed:
    """Return the wire form of a vector.

    Raises:
        ModelError: an element type outside the model, or too many dimensions.
    """
    dtype = dtype_of(value)
    if isinstance(value, array.array):
        if not _LITTLE and value.itemsize > 1:  # pragma: no cover - big-endian hosts
            value = array.array(value.typecode, value)
            value.byteswap()
        return Packed(dtype, (len(value),), value.tobytes())
    if value.ndim > _MAX_DIMS:
        raise ModelError(f"a vector of {value.ndim} dimensions exceeds {_MAX_DIMS}")
    wire, _ = _np_dtypes(dtype)
    if value.dtype != wire:  # big-endian: swapped to the wire's byte order
        value = value.astype(wire)
    return Packed(dtype, value.shape, value.tobytes(order="C"))


_NP_DTYPES: dict[str, Any] = {}


def _np_dtypes(dtype: str) -> tuple[Any, Any]:
    """The (wire, native byte order) numpy dtypes of a wire element type, made once."""
    found = _NP_DTYPES.get(dtype)
    if found is None:
        wire = _numpy().dtype(dtype)
        found = _NP_DTYPES[dtype] = (wire, wire.newbyteorder("="))
    return found


def annotation(tp: Any) -> tuple[bool, str | None] | None:
    """For a field annotation naming a vector type: (numpy?, fixed element type or None).

    ``array.array``, ``numpy.ndarray`` and ``numpy.typing.NDArray[numpy.float32]`` are
    vector annotations; anything else gives None.
    """
    origin = typing.get_origin(tp) or tp
    if origin is array.array:
        return False, None
    if getattr(origin, "__module__", None) != "numpy" or origin.__name__ != "ndarray":
        return None
    args = typing.get_args(tp)  # NDArray[np.float32]: (Any, np.dtype[np.float32])
    scalar = typing.get_args(args[1]) if len(args) == 2 else ()
    if len(scalar) != 1 or not isinstance(scalar[0], type):
        return True, None
    dtype = dtype_of(_numpy().empty(0, dtype=scalar[0]))
    return True, dtype


def _names() -> str:
    return ", ".join(sorted(_TAGS))


def unpack(dtype: object, shape: object, data: object) -> Any:
    """Build a received vector from its wire form, checking every part.

    Raises:
        ModelError: an unknown element type, a bad shape, data of the wrong length, or a
            vector this process cannot hold without numpy.
    """
    if type(dtype) is not str or (dtype not in _TAGS and not _big(dtype)):
        raise ModelError(f"unknown vector element type {dtype!r} (known: {_names()})")
    if type(data) is not bytes:
        raise ModelError("vector data must be bytes")
    dims = _dims(shape)
    size = int(dtype[2:])
    count = 1
    for n in dims:
        count *= n
    if count * size != len(data):
        raise ModelError(
            f"vector of shape {list(dims)} and type {dtype} needs {count * size} bytes, "
            f"has {len(data)}"
        )
    np = _numpy()
    if np is not None:
        wire, native = _np_dtypes(dtype)
        out = np.frombuffer(data, dtype=wire)
        # One copy either way: writable, owning its memory, in native byte order.
        out = out.copy() if wire == native else out.astype(native)
        return out.reshape(dims) if len(dims) != 1 else out
    code = _TYPECODES.get(f"<{dtype[1:]}" if size > 1 else dtype)
    if code is None or len(dims) != 1:
        what = "float16" if code is None else f"{len(dims)} dimensions"
        raise ModelError(f"a vector of {what} needs numpy: {INSTALL}")
    out_array = array.array(code, data)
    if (dtype[0] == ">") == _LITTLE and size > 1:
        out_array.byteswap()
    return out_array


def _big(dtype: str) -> bool:
    return dtype[:1] == ">" and f"<{dtype[1:]}" in _TAGS


def _dims(shape: object) -> tuple[int, ...]:
    if type(shape) is tuple:
        items: Any = shape
    elif type(shape) is list:
        items = shape
    else:
        raise ModelError("vector shape must be a list of sizes")
    if len(items) > _MAX_DIMS:
        raise ModelError(f"a vector of {len(items)} dimensions exceeds {_MAX_DIMS}")
    for n in items:
        if type(n) is not int or not 0 <= n < 2**32:
            raise ModelError(f"vector size {n!r} is not an int in [0, 2**32)")
    return tuple(items)


def array_code(value: Any) -> str:
    """The ``array.array`` typecode that holds vector ``value``.

    Raises:
        ModelError: it has more than one dimension or an element type array.array lacks.
    """
    if isinstance(value, array.array):
        return value.typecode
    code = _TYPECODES.get(dtype_of(value))
    if code is None or value.ndim != 1:
        raise ModelError(
            f"a {value.dtype} vector of shape {list(value.shape)} does not fit an array.array"
        )
    return code


def as_array(value: Any) -> array.array[Any]:
    """Return a vector as an ``array.array`` (one dimension; not float16).

    Raises:
        ModelError: the vector has more than one dimension or no ``array.array`` type.
    """
    code = array_code(value)
    if isinstance(value, array.array):
        return value
    out = array.array(code, pack(value).data)
    if not _LITTLE and out.itemsize > 1:  # pragma: no cover - big-endian hosts
        out.byteswap()
    return out


def as_ndarray(value: Any, dtype: str | None = None) -> Any:
    """Return a vector as a numpy array, checking its element type when one is fixed.

    Raises:
        ModelError: numpy is not installed, or the element type is not ``dtype``.
    """
    np = _numpy()
    if np is None:
        raise ModelError(f"numpy arrays need numpy: {INSTALL}")
    if isinstance(value, array.array):
        value = np.frombuffer(value.tobytes(), dtype=value.typecode).copy()
    if dtype is not None and dtype_of(value) != dtype:
        raise ModelError(f"expected a vector of {np.dtype(dtype)}, got {value.dtype}")
    return value


# -- per codec ------------------------------------------------------------------------


def to_json(packed: Packed) -> dict[str, Any]:
    """The reserved JSON map of a vector."""
    return {
        ARRAY_KEY: {
            "dtype": packed.dtype,
            "shape": list(packed.shape),
            "data": base64.b64encode(packed.data).decode(),
        }
    }


def from_json(spec: object) -> Any:
    """Build a vector from the inside of a JSON ``$array`` map."""
    if type(spec) is not dict or set(spec) != {"dtype", "shape", "data"}:
        raise ModelError("$array must hold a map of dtype, shape and data")
    data = spec["data"]
    if type(data) is not str:
        raise ModelError("$array data must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise ModelError("$array data is not valid base64") from None
    return unpack(spec["dtype"], spec["shape"], raw)


def cbor_typed(packed: Packed) -> tuple[int, bytes, list[int] | None]:
    """(RFC 8746 tag, data, shape for tag 40 or None) of a vector."""
    shape = None if len(packed.shape) == 1 else list(packed.shape)
    return _TAGS[packed.dtype], packed.data, shape


def from_cbor(tag: int, value: object) -> Any:
    """Build a one-dimensional vector from a CBOR typed array (its tag and byte string)."""
    if type(value) is not bytes:
        raise ModelError(f"CBOR tag {tag} must hold a byte string")
    dtype = _BY_TAG[tag]
    size = int(dtype[2:])
    if len(value) % size:
        raise ModelError(f"CBOR typed array of {len(value)} bytes is not whole {dtype} items")
    return unpack(dtype, [len(value) // size], value)


def from_cbor_ndim(value: object) -> Any:
    """Reshape a CBOR tag 40 (``[shape, typed array]``) into a vector of that shape."""
    if type(value) is not list or len(value) != 2 or not is_vector(value[1]):
        raise ModelError("CBOR tag 40 must hold [shape, typed array]")
    dims = _dims(value[0])
    flat = value[1]
    if isinstance(flat, array.array):
        if len(dims) != 1:
            raise ModelError(f"a vector of {len(dims)} dimensions needs numpy: {INSTALL}")
        if dims[0] != len(flat):
            raise ModelError(f"vector shape {list(dims)} does not fit {len(flat)} items")
        return flat
    count = 1
    for n in dims:
        count *= n
    if count != flat.size:
        raise ModelError(f"vector shape {list(dims)} does not fit {flat.size} items")
    return flat.reshape(dims)


_HEAD: Final = struct.Struct("<BB")
_DIM: Final = struct.Struct("<I")


def to_msgpack(packed: Packed) -> bytes:
    """The payload of a vector's MessagePack extension."""
    dims = b"".join(_DIM.pack(n) for n in packed.shape)
    return _HEAD.pack(_TAGS[packed.dtype], len(packed.shape)) + dims + packed.data


def from_msgpack(payload: bytes) -> Any:
    """Build a vector from the payload of its MessagePack extension."""
    if len(payload) < _HEAD.size:
        raise ModelError("vector extension too short")
    tag, ndim = _HEAD.unpack_from(payload)
    dtype = _BY_TAG.get(tag)
    if dtype is None:
        raise ModelError(f"unknown vector element tag {tag}")
    start = _HEAD.size + ndim * _DIM.size
    if len(payload) < start:
        raise ModelError("vector extension too short for its shape")
    dims = [_DIM.unpack_from(payload, _HEAD.size + i * _DIM.size)[0] for i in range(ndim)]
    return unpack(dtype, dims, payload[start:])
