"""The library's loggers: one ``motadata_actors`` tree with a ``NullHandler``.

Applications configure logging; the library only emits records.
"""

from __future__ import annotations

import logging

__all__ = ("get_logger",)

_ROOT = logging.getLogger("motadata_actors")
_ROOT.addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """Return the library logger ``motadata_actors.<name>``."""
    return _ROOT.getChild(name)
