"""The benchmark suite: ours beside raw nats-py, Pykka and plain asyncio, as ratios.

Installed as ``motadata_actors.benchmarks``; run with ``python -m motadata_actors bench``.
"""

__all__ = ()
