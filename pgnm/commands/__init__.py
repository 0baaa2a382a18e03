"""The commands behind ``pgnm <command>`` and the checkout's ``launch/<command>.py``.

One module each, with ``main(argv=None, prog=None)``; the module's docstring is the command's
help (its first line, the description). Each imports what it needs inside ``main``, so listing
the commands (``pgnm --help``) costs no more than ``import pgnm``.
"""

from __future__ import annotations

NAMES = ("pretrain", "finetune", "tune", "fewshot", "preview")
