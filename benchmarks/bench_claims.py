"""Large bodies: a claimed ask (``SDK_CLAIM_ABOVE``) beside raw nats-py's object store.

Like with like, on one nats-server, both sides in one process, repeats interleaved:

* **raw nats-py**: what a user writes by hand to move a document with nats-py alone, at
  its best: ``obs.put(name, doc)``, ``obs.get(name, writeinto=BytesIO())`` (nats-py's
  plain ``get`` concatenates bytes, quadratic in the chunks: it would flatter us),
  ``obs.delete(name)``;
* **ours**: ``ref.ask(doc)`` to an agent that answers the length: the body encoded
  (MessagePack), put in the tenant's object store, the message with its claim, the body
  fetched and decoded, the reply, the object deleted.

Ours carries a codec pass, a message and a reply more than the raw side. Reported: MB/s
of document moved per side, and ours / raw as a ratio of medians.

    python benchmarks/bench_claims.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
import uuid
from typing import Any

from motadata_actors import Actor, ActorSystem, Context, NatsServer, Settings

__all__ = ("markdown", "run")

_MIB = 1024 * 1024


class Length(Actor):
    """Answers the length of the bytes it got (the reply stays small)."""

    async def on_message(self, msg: Any, ctx: Context) -> Any:
        return len(msg)


async def _raw(url: str, doc: bytes, times: int) -> float:
    import nats
    from nats.js.api import ObjectStoreConfig

    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=60)
        bucket = f"RAW_{uuid.uuid4().hex[:8]}"
        obs = await js.create_object_store(bucket, config=ObjectStoreConfig(bucket=bucket))
        started = time.perf_counter()
        for i in range(times):
            await obs.put(f"doc-{i}", doc)
            sink = io.BytesIO()
            await obs.get(f"doc-{i}", writeinto=sink)
            assert sink.getbuffer().nbytes == len(doc)
            await obs.delete(f"doc-{i}")
        elapsed = time.perf_counter() - started
        await js.delete_object_store(bucket)
        return elapsed
    finally:
        await nc.close()


async def _ours(url: str, doc: bytes, times: int) -> float:
    settings = Settings(
        nats_urls=(url,), claim_above=_MIB, claim_max_size=4 * len(doc), codec="msgpack"
    )
    async with ActorSystem(f"b{uuid.uuid4().hex[:8]}", settings=settings) as system:
        ref = await system.spawn(Length, name="length")
        started = time.perf_counter()
        for _ in range(times):
            assert await ref.ask(doc, timeout=120) == len(doc)
        return time.perf_counter() - started


async def _run(repeats: int, size: int, times: int, url: str) -> dict[str, Any]:
    doc = os.urandom(size)
    samples: dict[str, list[float]] = {"ours": [], "raw": []}
    for r in range(repeats):
        order = ("ours", "raw") if r % 2 == 0 else ("raw", "ours")
        for side in order:
            seconds = await (_ours if side == "ours" else _raw)(url, doc, times)
            samples[side].append(size * times / seconds / _MIB)
        print(f"  repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    return {"size": size, "times": times, "mib_per_s": samples}


def run(repeats: int, size: int, times: int, url: str | None = None) -> dict[str, Any]:
    """Measure; starts a server unless ``url`` is given."""
    if url is not None:
        return asyncio.run(_run(repeats, size, times, url))
    with NatsServer() as server:
        return asyncio.run(_run(repeats, size, times, server.url))


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown row beside its baseline."""
    ours, raw = result["mib_per_s"]["ours"], result["mib_per_s"]["raw"]
    med = statistics.median
    ratios = [o / r for o, r in zip(ours, raw, strict=True)]
    size = result["size"] // _MIB
    return "\n".join(
        [
            "| scenario | ours | raw nats-py object store (put, get into a buffer, delete) "
            "| ours / raw |",
            "|---|---|---|---|",
            f"| a {size} MiB document, claimed ask (encode, put, message, get, decode, "
            f"reply, delete) | {med(ours):.0f} MiB/s ({min(ours):.0f}-{max(ours):.0f}) | "
            f"{med(raw):.0f} MiB/s ({min(raw):.0f}-{max(raw):.0f}) | {med(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run the large-body benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 MiB, 2 repeats (else 32 MiB, 5)")
    args = parser.parse_args(argv)
    result = run(2, 4 * _MIB, 2) if args.quick else run(5, 32 * _MIB, 2)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
