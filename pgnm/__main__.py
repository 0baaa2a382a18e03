"""``python -m pgnm``: the ``pgnm`` command, for launchers that start modules (``torchrun -m
pgnm pretrain ...``, ``deepspeed --module pgnm pretrain ...``)."""

from pgnm.cli import main

if __name__ == "__main__":
    main()
