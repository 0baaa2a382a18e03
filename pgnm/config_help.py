"""``--help`` for every entry point, generated from the typed config itself.

Each key is listed with its default and the comment written beside (or just above) its field
in ``pgnm/config.py``, so the help cannot drift from the code.
"""

from __future__ import annotations

import inspect
import io
import textwrap
import tokenize
from functools import cache

from pydantic import BaseModel


@cache
def _comments(section: type[BaseModel]) -> dict[str, str]:
    """Field name -> its comment: the one on its line, else the block right above it."""
    lines, _ = inspect.getsourcelines(section)
    source = "".join(lines)
    by_line: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            by_line[token.start[0]] = token.string.lstrip("#").strip()
    found = {}
    for number, line in enumerate(lines, start=1):
        name = line.strip().split(":", 1)[0]
        if name not in section.model_fields or not line.startswith("    " + name):
            continue
        if number in by_line:
            found[name] = by_line[number]
            continue
        above, row = [], number - 1
        while row in by_line and lines[row - 1].strip().startswith("#"):
            above.insert(0, by_line[row])
            row -= 1
        if above:
            found[name] = " ".join(above)
    return found


def _rows(model: BaseModel, prefix: str = "") -> list[tuple[str, str, str]]:
    rows = []
    comments = _comments(type(model))
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            rows += _rows(value, f"{key}.")
        else:
            rows.append((key, repr(value), comments.get(name, "")))
    return rows


def config_keys_help(config: BaseModel, width: int = 100) -> str:
    """Every key of ``config`` with its default, and its description wrapped below it, for an
    argparse epilog."""
    lines = ["config keys (set as key=value, or in the YAML file), with their defaults:"]
    for key, default, description in _rows(config):
        lines.append(f"  {key} = {default}")
        if description:
            lines += textwrap.wrap(description, width, initial_indent=" " * 6,
                                   subsequent_indent=" " * 6)
    return "\n".join(lines)
