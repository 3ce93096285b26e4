"""Benchmark of aiodatabases against the raw drivers (``python -m bench``).

See ``docs/performance.md`` for what it measures and the latest results.
"""
