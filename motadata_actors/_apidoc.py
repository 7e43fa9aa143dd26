"""``python -m motadata_actors apidoc``: the API reference, generated from the docstrings.

pdoc renders the public modules (Google-style docstrings) to static HTML. Any warning it
raises (an annotation it cannot resolve, a broken docstring) fails the build, so the
reference never silently degrades.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

from motadata_actors._errors import ConfigError

__all__ = ("MODULES", "build_api_reference")

MODULES = (
    "motadata_actors",
    "motadata_actors.actors",
    "motadata_actors.mailbox",
    "motadata_actors.codecs",
    "motadata_actors.telemetry",
    "motadata_actors.integrations",
    "motadata_actors.asyncapi",
    "motadata_actors.gateway",
)
"""The documented modules: the public face of each layer."""


def build_api_reference(out: Path) -> list[Path]:
    """Write the HTML reference of :data:`MODULES` into ``out``; return the pages written.

    Raises:
        ConfigError: pdoc is not installed, or it warned about something.
    """
    try:
        # By name: pdoc is an optional extra, so type checkers need not know it.
        pdoc = importlib.import_module("pdoc")
        importlib.import_module("pdoc.render")
    except ImportError:
        raise ConfigError(
            "the API reference is built with pdoc: pip install 'motadata-actors[docs]'"
        ) from None
    pdoc.render.configure(
        docformat="google",
        show_source=False,
        footer_text="motadata-actors: actor-model messaging for AI agents over NATS",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            pdoc.pdoc(*MODULES, output_directory=out)
        except Warning as warning:
            raise ConfigError(f"pdoc warned, so the reference is not built: {warning}") from None
    pages: list[Path] = sorted(out.rglob("*.html"))
    return pages
