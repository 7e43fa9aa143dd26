"""The codec rows compare each codec with the very library it wraps."""

from __future__ import annotations

from motadata_actors.benchmarks import bench_codecs
from motadata_actors.codecs import Codecs


def test_the_json_baseline_is_orjson_like_our_codec() -> None:
    # Same library, same bytes: the standard library's json would add spaces.
    dumps, _ = bench_codecs.raw_cases()["json"]
    assert dumps() == Codecs("json").default.encode(bench_codecs.UNTYPED)
    assert bench_codecs.LIBRARIES["json"] == "orjson"


def test_rows_name_their_baseline() -> None:
    result = bench_codecs.run(1, 0.001)
    json_rows = [r for r in result["rows"] if r["codec"] == "json"]
    assert {r["variant"] for r in json_rows} == {"raw orjson", "ours untyped", "ours typed"}
    assert {r["baseline"] for r in json_rows} == {"raw orjson"}
    assert "vs raw orjson" in bench_codecs.markdown(result)


def test_vector_rows_compare_with_the_library_carrying_the_same_bytes_by_hand() -> None:
    result = bench_codecs.run_vectors(1, 0.001)
    rows = {r["codec"]: r for r in result["rows"]}
    assert set(rows) == {"json", "msgpack", "cbor", "protobuf"}
    for name in ("msgpack", "cbor", "protobuf"):
        assert rows[name]["vector"] <= 6200 < rows[name]["floats"]
    assert rows["protobuf"]["by_hand_us"] is None  # no raw protobuf side: shown as "-"
    table = bench_codecs.vector_markdown(result)
    assert "by hand with the library" in table
    assert "| protobuf |" in table
