from __future__ import annotations

from pathlib import Path

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


def test_create_otel_tracer_returns_a_real_tracer_in_a_fresh_process(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    script = (
        "from motadata_actors.integrations import create_otel_tracer\n"
        "from opentelemetry import trace\n"
        "tracer = create_otel_tracer(service_name='seed-app')\n"
        "with tracer.start_span('work') as span:\n"
        "    assert span.is_recording()\n"
        "    print(format(span.get_span_context().trace_id, '032x'))\n"
        "provider = trace.get_tracer_provider()\n"
        "print(provider.resource.attributes['service.name'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    trace_id, service = out.stdout.split()
    assert len(trace_id) == 32 and int(trace_id, 16) != 0
    assert service == "seed-app"
