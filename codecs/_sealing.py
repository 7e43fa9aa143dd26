"""Sealed bodies: end-to-end encryption of message bodies with AES-GCM, keys by id.

A tenant that seals gives its processes the same :class:`KeyRing`: keys by id, one of them
*current*. A sender seals a body (after encoding and compression) with the current key
and names it in ``Sdk-Key-Id``; a receiver opens it with the key of that id, so keys
rotate without downtime: add the new key everywhere, then make it current, then drop the
old one once nothing sealed with it is still on its way. The body's ``Content-Type`` and
``Sdk-Message-Type`` are bound to it (authenticated data), so a sealed body cannot be
replayed under another type; each tenant has keys of its own, so not under another
tenant either. The nats-server and anyone tapping a subject see only ciphertext.

AES-GCM comes from ``cryptography`` (``pip install 'motadata-actors[seal]'``).
"""

from __future__ import annotations

import base64
import binascii
import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any, Final, final

from motadata_actors._errors import ConfigError, SealError

__all__ = ("KeyRing",)

_NONCE: Final = 12
_INSTALL: Final = "pip install 'motadata-actors[seal]'"


def _aesgcm() -> Any:
    try:
        return importlib.import_module("cryptography.hazmat.primitives.ciphers.aead").AESGCM
    except ImportError:
        raise ConfigError(f"sealed bodies need cryptography: {_INSTALL}") from None


@final
class KeyRing:
    """A tenant's AES-GCM keys by id; :attr:`current` seals, any known one opens.

    Args:
        keys: key id -> 16, 24 or 32 random bytes (AES-128/192/256).
        current: the id that seals (the first of ``keys`` when omitted).
        provider: called with an id this ring does not hold (a rotated-in key, say); it
            returns the key's bytes or None. Its answers are remembered.

    Raises:
        ConfigError: no key to seal with, a key of another length, a bad id, or
            cryptography is not installed.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes] | None = None,
        *,
        current: str | None = None,
        provider: Callable[[str], bytes | None] | None = None,
    ) -> None:
        self._keys: dict[str, Any] = {}
        self._provider = provider
        cls = _aesgcm()
        for kid, key in (keys or {}).items():
            self._keys[_check_id(kid)] = _cipher(cls, kid, key)
        if current is None:
            current = next(iter(self._keys), None)
        if current is None:
            raise ConfigError("a key ring needs at least one key to seal with")
        if current not in self._keys:
            found = provider(current) if provider is not None else None
            if found is None:
                raise ConfigError(f"the current key {current!r} is not in the ring")
            self._keys[current] = _cipher(cls, current, found)
        self.current = current
        """The id of the key that seals."""

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """A ring from ``SDK_SEAL_KEYS``: ``id:base64key[,id:base64key...]``, the first current.

        Raises:
            ConfigError: malformed (never showing a key).
        """
        keys: dict[str, bytes] = {}
        for item in text.split(","):
            kid, sep, encoded = item.strip().partition(":")
            if not sep:
                raise ConfigError("SDK_SEAL_KEYS must be id:base64key[,id:base64key...]")
            try:
                keys[kid] = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"SDK_SEAL_KEYS: the key of {kid!r} is not base64") from None
        return cls(keys)

    def _cipher_of(self, kid: str) -> Any:
        cipher = self._keys.get(kid)
        if cipher is None and self._provider is not None:
            key = self._provider(kid)
            if key is not None:
                cipher = self._keys[kid] = _cipher(_aesgcm(), kid, key)
        return cipher

    def seal(self, data: bytes, bound: bytes) -> tuple[str, bytes]:
        """``(key id, nonce + ciphertext)`` of ``data``, ``bound`` authenticated with it."""
        nonce = os.urandom(_NONCE)
        return self.current, nonce + self._keys[self.current].encrypt(nonce, data, bound)

    def open(self, kid: str, data: bytes, bound: bytes) -> bytes:
        """The plaintext of a body sealed with key ``kid``.

        Raises:
            SealError: an unknown key id, a wrong key, or altered bytes.
        """
        cipher = self._cipher_of(kid)
        if cipher is None:
            raise SealError(f"a body sealed with key {kid!r}, which this process does not have")
        if len(data) < _NONCE + 16:
            raise SealError("a sealed body too short to be one")
        try:
            return bytes(cipher.decrypt(data[:_NONCE], data[_NONCE:], bound))
        except Exception:  # cryptography's InvalidTag: nothing more to say, on purpose
            raise SealError(
                f"a sealed body that key {kid!r} does not open (another key, or altered)"
            ) from None

    def __repr__(self) -> str:
        return f"<KeyRing current={self.current!r} keys={sorted(self._keys)}>"  # never a key


def _check_id(kid: object) -> str:
    if (
        not isinstance(kid, str)
        or not kid
        or len(kid) > 64
        or not kid.isascii()
        or any(not (c.isalnum() or c in "-_.") for c in kid)
    ):
        raise ConfigError(f"a key id must be 1-64 characters of [A-Za-z0-9._-], not {kid!r}")
    return kid


def _cipher(cls: Any, kid: str, key: object) -> Any:
    if not isinstance(key, bytes) or len(key) not in (16, 24, 32):
        raise ConfigError(f"key {kid!r} must be 16, 24 or 32 bytes (AES-128/192/256)")
    return cls(key)
