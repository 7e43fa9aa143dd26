from __future__ import annotations

import pytest

from motadata_actors.codecs import CODEC_NAMES, Codec, Codecs, Limits, TypeRegistry


@pytest.fixture(params=CODEC_NAMES)
def codec_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_codec(
    name: str, registry: TypeRegistry | None = None, limits: Limits | None = None
) -> Codec:
    return Codecs(name, registry=registry, limits=limits).default
