"""Offline data tools: command-line converters, the shard verifier and the synthetic generator.

These are command-line tools (``python -m data_tools.<tool>``) that run from a checkout beside
the ``pgnm`` package: argument parsing, progress and summaries over the library's shard
contract (:mod:`pgnm.data.sources`, :mod:`pgnm.data.writer`, :mod:`pgnm.data.shards`). The
synthetic RadImageNet generator lives in :mod:`data_tools.synth`.
"""
