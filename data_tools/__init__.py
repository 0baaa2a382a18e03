"""Offline data tools: dataset conversion, sharding and the synthetic RadImageNet generator.

These are command-line tools (``python -m data_tools.<tool>``) that run beside the ``pgnm``
package; the synthetic generator lives in :mod:`data_tools.synth`.
"""
