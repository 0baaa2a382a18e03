"""The ``pgnm`` command: ``pgnm <command> [--config FILE|NAME] [key=value ...]``.

Each command is the code the checkout's ``launch/<command>.py`` runs (``pgnm/commands``), with
the same arguments, output and exit status; ``pgnm <command> --help`` lists every config key.
``--config`` takes a file or the name of a shipped config (``pgnm pretrain --config
pretrain/smoke``; ``pgnm configs`` lists them). Several ranks: ``torchrun --nproc_per_node N
-m pgnm pretrain ...`` or ``deepspeed --num_gpus N --module pgnm pretrain ...``.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence

from pgnm.commands import NAMES

# The deepspeed launcher puts --local_rank=N straight after the program, before the command.
_LOCAL_RANK = re.compile(r"--local[_-]rank(=.*)?$")


def summary(name: str) -> str:
    return (importlib.import_module(f"pgnm.commands.{name}").__doc__ or "").splitlines()[0]


def parser() -> argparse.ArgumentParser:
    from pgnm import __version__

    listing = "\n".join(f"  {name:<10}{summary(name)}" for name in NAMES)
    built = argparse.ArgumentParser(
        prog="pgnm", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="pgnm [-h] [--version] command [--config FILE|NAME] [key=value ...]",
        description="PGNM pretraining of medical-image classifiers.",
        epilog=f"commands:\n{listing}\n  {'configs':<10}list the shipped configs' names\n\n"
               "pgnm <command> --help: the command's options and every config key.")
    built.add_argument("--version", action="version", version=f"pgnm {__version__}")
    built.add_argument("command", choices=[*NAMES, "configs"], metavar="command",
                       help=f"one of {', '.join(NAMES)}, configs")
    return built


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command; returns nothing, so that the console script exits 0 after it (a
    command's own result -- a search's summary -- is for callers of ``pgnm.commands``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    launcher = []
    while args and _LOCAL_RANK.match(args[0]):  # handed on: the command accepts and ignores it
        launcher.append(args.pop(0))
        if "=" not in launcher[-1] and args:
            launcher.append(args.pop(0))
    if args and args[0] in NAMES:
        command = importlib.import_module(f"pgnm.commands.{args[0]}")
        command.main([*launcher, *args[1:]], prog=f"pgnm {args[0]}")
        return
    parser().parse_args(args)  # --help, --version, an error naming the commands, or "configs"
    from pgnm.config_files import config_names

    print("\n".join(config_names()))
