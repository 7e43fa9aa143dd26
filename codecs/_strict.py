r"""Strict decoding: what every codec refuses besides values outside the model (sans-io, pure).

Rules, the same for every codec (docs/codecs.md lists them):

* Trailing bytes: a body is exactly one value. JSON allows whitespace around it (RFC 8259
  counts it as part of the text); MessagePack and CBOR allow nothing after it. Protobuf has
  no top-level framing and defines concatenated messages as merged (``_protobuf``).
* Duplicate map keys: a map that repeats a key is refused, wherever it sits and however the
  copies are spelled (``"a"`` and ``"\u0061"`` in JSON).
* Integers outside the model, [-2**63, 2**63 - 1], anywhere in the body, the unknown fields
  of a typed message included (the walker sees only the fields it knows). In JSON, an
  integer literal: orjson reads one past 64 bits as a float.

The libraries do part of this (orjson and msgpack refuse trailing bytes, cbor2 repeated
keys); the checks here do the rest, after the library has decoded the body:
``json_check``, ``msgpack_check`` and ``cbor_check`` take the bytes, the decoded value and
the depth and length limits, and return a verdict: 0 in the common case, when the body
keeps the rules and the value is proven plain within the limits (``_values.Walker.back``
has nothing left to do); otherwise the matching ``*_settle`` raises the precise
``BodyError`` for a problem (or, for a JSON float that might have been an integer literal,
finds it was not), and says whether the walker must still look (``NOT_PLAIN``). Repeated
keys are found by counting: a decoded dict keeps one entry per distinct key, so a key
repeats exactly when the body declares more map entries than the value holds.

The checks are C (``_fastcheck``) when it is built: one walk over the decoded value (the
walker's own plain check, tallying as it goes) and one pass over the bytes (for JSON, a
vectorized count of ``:``, and a scan that skips strings only when strings hold colons).
The pure-Python twins below decide the same, exactly and more slowly (a second parse with
the standard library's json, msgpack's pairs hook, cbor2's stream decoder), and leave the
walker all its work: they run without the C extension, and name the culprit after a C
verdict.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from typing import Any, Final

import cbor2
import msgpack

from ._values import INT_MAX, INT_MIN

__all__ = (
    "BodyError",
    "cbor_check",
    "cbor_settle",
    "json_check",
    "json_settle",
    "msgpack_check",
    "msgpack_settle",
    "trailing",
)

# Verdicts, as in _fastcheck.c.
REPEATED_KEY: Final = 1
INT_RANGE: Final = 2
BIG_FLOAT: Final = 3  # JSON: a float of magnitude >= 2**63, maybe an integer literal
TRAILING: Final = 4  # CBOR: the first item does not end where the body does
NOT_PLAIN: Final = 16  # a flag: the walker has work left (the value is not proven plain)

_INT_RANGE: Final = "integer outside 64-bit range"


class BodyError(Exception):
    """A body breaks a rule of strict decoding; the codec turns it into a ``DecodeError``."""


def trailing(count: int) -> BodyError:
    """The error for ``count`` bytes after the top-level value."""
    return BodyError(f"{count} trailing byte{'' if count == 1 else 's'} after the value")


# -- exact, pure Python ------------------------------------------------------------------


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """Build a map from its decoded pairs, refusing a repeated key (a json/msgpack hook)."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise BodyError(f"duplicate map key {key!r}")
            seen.add(key)
    return d


def _json_int(text: str) -> int:
    # 20 characters hold every int of the model ("-9223372036854775808"); valid JSON has no
    # leading zeros, so a longer literal is outside it (and int() is never asked for more).
    if len(text) <= 20:
        value = int(text)
        if INT_MIN <= value <= INT_MAX:
            return value
    shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text.lstrip('-'))} digits)"
    raise BodyError(f"{_INT_RANGE}: {shown}")


def json_exact(data: bytes) -> None:
    """Parse JSON that orjson accepted again, refusing repeated keys and integers past the model.

    Raises:
        BodyError: the first repeated key or out-of-range integer literal, named.
    """
    try:
        json.loads(data, object_pairs_hook=_pairs, parse_int=_json_int)
    except ValueError as exc:  # orjson accepted what json does not: refuse, never crash
        raise BodyError(f"malformed body: {exc}") from None


def int_outside(value: Any, path: str = "$") -> str | None:
    """The path to the first int outside the model in a decoded value, or None."""
    if type(value) is int:
        return None if INT_MIN <= value <= INT_MAX else path
    if type(value) is dict:
        for key, item in value.items():
            found = int_outside(item, f"{path}.{key}")
            if found is not None:
                return found
    elif type(value) is list:
        for i, item in enumerate(value):
            found = int_outside(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def cbor_end_exact(data: bytes) -> int:
    """Where the first CBOR item of ``data`` ends, by decoding it from a stream.

    Only for bodies ``cbor2.loads`` accepted, so its defaults decode them too.
    """
    fp = io.BytesIO(data)
    cbor2.CBORDecoder(fp).decode()
    return fp.tell()


def _json_check(data: bytes, value: Any, max_depth: int, max_length: int) -> int:
    if int_outside(value) is not None:
        return INT_RANGE | NOT_PLAIN
    json_exact(data)
    return NOT_PLAIN


def _msgpack_check(data: bytes, value: Any, max_depth: int, max_length: int) -> int:
    if int_outside(value) is not None:
        return INT_RANGE | NOT_PLAIN
    msgpack.unpackb(data, raw=False, object_pairs_hook=_pairs)
    return NOT_PLAIN


def _cbor_check(data: bytes, value: Any, max_depth: int, max_length: int) -> int:
    if int_outside(value) is not None:
        return INT_RANGE | NOT_PLAIN
    return (TRAILING if cbor_end_exact(data) != len(data) else 0) | NOT_PLAIN


_Check = Callable[[bytes, Any, int, int], int]
json_check: _Check
msgpack_check: _Check
cbor_check: _Check
_cbor_end: Callable[[bytes], int]
try:  # the optional C fast path (setup.py builds it; pure Python is the fallback)
    from ._fastcheck import cbor_check, json_check, msgpack_check
    from ._fastcheck import cbor_end as _cbor_end
except ImportError:  # pragma: no cover - a build without a C compiler
    json_check, msgpack_check, cbor_check = _json_check, _msgpack_check, _cbor_check
    _cbor_end = cbor_end_exact


# -- after a verdict ---------------------------------------------------------------------


def _int_error(value: Any) -> BodyError:
    path = int_outside(value)
    return BodyError(_INT_RANGE if path is None else f"{_INT_RANGE} at {path}")


def _settle(explain: Callable[[bytes, int], None], data: bytes, value: Any, verdict: int) -> bool:
    """Act on a nonzero check verdict: raise for a problem, else say if plain.

    ``explain`` is the format's exact look at a problem the fast check flagged: it names
    it in a ``BodyError``, or returns when the flag was a false alarm.

    Returns:
        Whether the value is plain (else the walker must look at it).

    Raises:
        BodyError: the body breaks a rule.
    """
    problem = verdict & ~NOT_PLAIN
    if problem == INT_RANGE:
        raise _int_error(value)
    if problem:
        explain(data, problem)
    return not verdict & NOT_PLAIN


def _json_problem(data: bytes, problem: int) -> None:
    json_exact(data)  # names a repeated key or an integer literal outside the model
    if problem != BIG_FLOAT:  # the count found what the exact parse did not: refuse
        raise BodyError("duplicate map key")


def _msgpack_problem(data: bytes, problem: int) -> None:
    msgpack.unpackb(data, raw=False, object_pairs_hook=_pairs)  # names the key
    raise BodyError("duplicate map key")


def _cbor_problem(data: bytes, problem: int) -> None:
    end = _cbor_end(data)
    if end < 0:  # more open indefinite-length items than the C scan tracks
        end = cbor_end_exact(data)
    if end != len(data):
        raise trailing(len(data) - end)


json_settle = functools.partial(_settle, _json_problem)
"""Act on a nonzero ``json_check`` verdict (see :func:`_settle`)."""
msgpack_settle = functools.partial(_settle, _msgpack_problem)
"""Act on a nonzero ``msgpack_check`` verdict (see :func:`_settle`)."""
cbor_settle = functools.partial(_settle, _cbor_problem)
"""Act on a nonzero ``cbor_check`` verdict (see :func:`_settle`)."""
