from __future__ import annotations

import pytest

from motadata_actors import ConfigError, DecodeError, EncodeError
from motadata_actors.codecs import CODEC_NAMES
from motadata_actors.integrations import create_codec_manager

from ..codecs.messages import Point, Task, registry


@pytest.mark.parametrize("codec_type", CODEC_NAMES)
def test_codec_manager_round_trips_values_and_typed_messages(codec_type: str) -> None:
    manager = create_codec_manager(codec_type=codec_type, registry=registry)
    assert manager.codec_type == codec_type
    value = {"n": 1, "b": b"\x01", "l": [None, True, 2.5]}
    assert manager.decode(manager.encode(value)) == value
    task = Task(title="t", where=Point(1.0, 2.0))
    assert manager.decode(manager.encode(task)) == task  # no header needed
    with pytest.raises(EncodeError):
        manager.encode({1, 2})
    with pytest.raises(DecodeError):
        manager.decode(b"\xc1\xff\xfe{")


def test_default_is_json_and_bad_names_are_config_errors() -> None:
    assert create_codec_manager().content_type == "application/json"
    with pytest.raises(ConfigError, match="codec_type='yaml'"):
        create_codec_manager(codec_type="yaml")
