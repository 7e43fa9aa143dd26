"""Codec benchmark: round trips per second and encoded size, ours beside the raw library.

Each row encodes and decodes a representative agent message (eleven fields, nested
params, a list of 20 floats, 200 characters of text), typed (an ``@message`` class)
and untyped (plain dicts), with our codec and with the very library it wraps called
directly (:data:`LIBRARIES`: orjson for JSON, not the standard library's json), like
with like. The cases run interleaved, in an order reversed every repeat; each ratio is
ours / raw in time per round trip, per repeat, reported as median (min-max).

A second table does the same for a 1536-d float32 embedding (a numpy array) per codec:
ours beside the library carrying the same three things by hand (the array's bytes,
dtype and shape, base64 for JSON), and the size beside the embedding as a list of floats.

    python benchmarks/bench_codecs.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import cbor2
import msgpack
import orjson

from motadata_actors.codecs import Codecs, TypeRegistry, field, message

__all__ = ("LIBRARIES", "markdown", "raw_cases", "run")

registry = TypeRegistry()


@message("bench.params.v1", registry=registry)
class Params:
    model: str = field(proto=1)
    temperature: float = field(proto=2)
    top_k: int = field(proto=3)
    stop: list[str] = field(proto=4)


@message("bench.agent_message.v1", registry=registry)
class AgentMessage:
    id: str = field(proto=1)
    kind: str = field(proto=2)
    sender: str = field(proto=3)
    step: int = field(proto=4)
    ok: bool = field(proto=5)
    score: float = field(proto=6)
    params: Params = field(proto=7)
    embedding: list[float] = field(proto=8)
    text: str = field(proto=9)
    parent: str | None = field(proto=10, default=None)
    tags: list[str] = field(proto=11, factory=list)


TEXT = ("Summarise the findings of the research agent for the planner, citing sources. " * 3)[:200]
TYPED = AgentMessage(
    id="msg-7f3a9c2e", kind="tool_call", sender="researcher", step=3, ok=True, score=0.87,
    params=Params(model="small-1", temperature=0.2, top_k=5, stop=["\n\n", "END"]),
    embedding=[i * 0.137 for i in range(20)], text=TEXT, parent=None, tags=["rag", "draft"],
)  # fmt: skip
UNTYPED: dict[str, Any] = {
    "id": TYPED.id, "kind": TYPED.kind, "sender": TYPED.sender, "step": TYPED.step, "ok": TYPED.ok,
    "score": TYPED.score,
    "params": {"model": "small-1", "temperature": 0.2, "top_k": 5, "stop": ["\n\n", "END"]},
    "embedding": list(TYPED.embedding), "text": TEXT, "parent": None, "tags": ["rag", "draft"],
}  # fmt: skip


def raw_protobuf() -> tuple[Callable[[], bytes], Callable[[bytes], Any]]:
    """The protobuf runtime called directly on the generated class, without our layer."""
    codec = Codecs("protobuf", registry=registry).default
    cls = codec._plan(AgentMessage).message_class  # type: ignore[attr-defined]

    def dumps() -> bytes:
        msg = cls(
            id=TYPED.id, kind=TYPED.kind, sender=TYPED.sender, step=TYPED.step, ok=TYPED.ok,
            score=TYPED.score, embedding=TYPED.embedding, text=TYPED.text, tags=TYPED.tags,
        )  # fmt: skip
        msg.params.model, msg.params.temperature, msg.params.top_k = "small-1", 0.2, 5
        msg.params.stop.extend(["\n\n", "END"])
        return msg.SerializeToString()  # type: ignore[no-any-return]

    return dumps, cls.FromString


LIBRARIES = {
    "json": "orjson",
    "msgpack": "msgpack",
    "cbor": "cbor2",
    "protobuf": "protobuf, generated class",
}
"""The library each of our codecs wraps: its raw baseline calls it directly (plain dicts,
except Protobuf, which can only encode its generated message class)."""


def raw_cases() -> dict[str, tuple[Callable[[], bytes], Callable[[bytes], Any]]]:
    """(encode the message, decode bytes) per codec, with the wrapped library alone."""
    return {
        "json": (lambda: orjson.dumps(UNTYPED), orjson.loads),
        "msgpack": (lambda: msgpack.packb(UNTYPED), msgpack.unpackb),
        "cbor": (lambda: cbor2.dumps(UNTYPED), cbor2.loads),
        "protobuf": raw_protobuf(),
    }


def _raw_variant(codec: str) -> str:
    return f"raw {LIBRARIES[codec]}"


def cases() -> list[tuple[str, str, Callable[[], Any]]]:
    """(codec, variant, one round trip) for ours and the raw library, side by side."""
    out: list[tuple[str, str, Callable[[], Any]]] = []
    raw = raw_cases()
    for name in ("json", "msgpack", "cbor", "protobuf"):
        codec = Codecs(name, registry=registry).default
        dumps, loads = raw[name]
        out.append((name, _raw_variant(name), lambda d=dumps, ld=loads: ld(d())))  # type: ignore[misc]
        out.append((name, "ours untyped", lambda c=codec: c.decode(c.encode(UNTYPED))))  # type: ignore[misc]
        out.append((name, "ours typed", lambda c=codec: c.decode(c.encode(TYPED), AgentMessage)))  # type: ignore[misc]
    return out


def sizes() -> dict[str, dict[str, int]]:
    """Encoded size in bytes, untyped and typed, per codec."""
    return {
        name: {
            "untyped": len(Codecs(name, registry=registry).default.encode(UNTYPED)),
            "typed": len(Codecs(name, registry=registry).default.encode(TYPED)),
        }
        for name in ("json", "msgpack", "cbor", "protobuf")
    }


def measure(fn: Callable[[], Any], seconds: float) -> float:
    """Microseconds per call, from one timed batch sized to about ``seconds``."""
    n, start = 0, time.perf_counter()
    batch = 200
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / n * 1e6


def vector_cases() -> list[tuple[str, str, Callable[[], Any]]]:
    """(codec, variant, one round trip) of a 1536-d float32 embedding, ours and by hand."""
    import base64

    import numpy as np

    vector = np.random.default_rng(7).standard_normal(1536).astype(np.float32)

    def by_hand(dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any], b64: bool) -> Any:
        data = base64.b64encode(vector.tobytes()).decode() if b64 else vector.tobytes()
        spec = loads(dumps({"dtype": "<f4", "shape": [1536], "data": data}))
        raw = base64.b64decode(spec["data"]) if b64 else spec["data"]
        return np.frombuffer(raw, dtype=spec["dtype"]).reshape(spec["shape"]).copy()

    libraries = {
        "json": (orjson.dumps, orjson.loads, True),
        "msgpack": (msgpack.packb, msgpack.unpackb, False),
        "cbor": (cbor2.dumps, cbor2.loads, False),
    }
    out: list[tuple[str, str, Callable[[], Any]]] = []
    for name in ("json", "msgpack", "cbor", "protobuf"):
        codec = Codecs(name, registry=registry).default
        if name in libraries:
            dumps, loads, b64 = libraries[name]
            out.append((name, "by hand", lambda d=dumps, ld=loads, b=b64: by_hand(d, ld, b)))  # type: ignore[misc]
        out.append((name, "ours", lambda c=codec: c.decode(c.encode(vector))))  # type: ignore[misc]
    return out


def vector_sizes() -> dict[str, dict[str, int]]:
    """Bytes of the embedding per codec: as a vector, and as a list of 1536 floats."""
    import numpy as np

    vector = np.random.default_rng(7).standard_normal(1536).astype(np.float32)
    return {
        name: {
            "vector": len(Codecs(name).default.encode(vector)),
            "floats": len(Codecs(name).default.encode(vector.tolist())),
        }
        for name in ("json", "msgpack", "cbor", "protobuf")
    }


def _interleaved(
    table: list[tuple[str, str, Callable[[], Any]]], repeats: int, seconds: float
) -> dict[tuple[str, str], list[float]]:
    for _, _, fn in table:  # warm up, and check every case works
        fn()
    samples: dict[tuple[str, str], list[float]] = {(c, v): [] for c, v, _ in table}
    for r in range(repeats):
        for codec, variant, fn in table if r % 2 == 0 else reversed(table):
            samples[(codec, variant)].append(measure(fn, seconds))
        print(f"  repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    return samples


def run_vectors(repeats: int, seconds: float) -> dict[str, Any]:
    """The embedding table: us per round trip, ours / by hand, sizes."""
    samples = _interleaved(vector_cases(), repeats, seconds)
    sizes = vector_sizes()
    rows = []
    for name in ("json", "msgpack", "cbor", "protobuf"):
        ours = samples[(name, "ours")]
        hand = samples.get((name, "by hand"))
        ratios = [o / h for o, h in zip(ours, hand, strict=True)] if hand else []
        rows.append(
            {
                "codec": name,
                "us_per_round_trip": round(statistics.median(ours), 3),
                "by_hand_us": round(statistics.median(hand), 3) if hand else None,
                "ratio_vs_by_hand": round(statistics.median(ratios), 2) if ratios else None,
                **sizes[name],
            }
        )
    return {"rows": rows, "repeats": repeats}


def vector_markdown(result: dict[str, Any]) -> str:
    """The embedding table as Markdown."""
    lines = [
        "| codec | 1536-d float32: us / round trip | by hand with the library | ours / by hand "
        "| bytes as a vector | as a list of floats |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        hand = f"{row['by_hand_us']:.2f}" if row["by_hand_us"] is not None else "-"
        ratio = f"{row['ratio_vs_by_hand']:.2f}x" if row["ratio_vs_by_hand"] is not None else "-"
        lines.append(
            f"| {row['codec']} | {row['us_per_round_trip']:.2f} | {hand} | {ratio} "
            f"| {row['vector']:,} | {row['floats']:,} |"
        )
    return "\n".join(lines)


def run(repeats: int, seconds: float) -> dict[str, Any]:
    """Interleave repeats of every case; return medians, min-max and ratios to the raw library."""
    samples = _interleaved(cases(), repeats, seconds)
    rows = []
    for (codec, variant), us in samples.items():
        median = statistics.median(us)
        base = samples[(codec, _raw_variant(codec))]
        ratios = [o / b for o, b in zip(us, base, strict=True)]
        rows.append(
            {
                "codec": codec,
                "variant": variant,
                "baseline": _raw_variant(codec),
                "us_per_round_trip": round(median, 3),
                "min_us": round(min(us), 3),
                "max_us": round(max(us), 3),
                "round_trips_per_s": round(1e6 / median),
                "ratio_vs_raw": round(statistics.median(ratios), 2),
                "ratio_min": round(min(ratios), 2),
                "ratio_max": round(max(ratios), 2),
            }
        )
    return {"rows": rows, "sizes": sizes(), "repeats": repeats}


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table."""
    lines = [
        "| codec | variant | us / round trip (median, min-max) | round trips/s "
        "| ours / raw library: median (min-max) | size untyped / typed |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        size = result["sizes"][row["codec"]]
        lines.append(
            f"| {row['codec']} | {row['variant']} | {row['us_per_round_trip']:.2f} "
            f"({row['min_us']:.2f}-{row['max_us']:.2f}) | {row['round_trips_per_s']:,} | "
            f"{row['ratio_vs_raw']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) "
            f"vs {row['baseline']} | {size['untyped']} / {size['typed']} B |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the codec benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 short repeats instead of 6")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    repeats, seconds = (4, 0.05) if args.quick else (6, 0.3)
    result = run(repeats, seconds)
    result["vectors"] = run_vectors(repeats, seconds)
    print(markdown(result))
    print()
    print(vector_markdown(result["vectors"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
