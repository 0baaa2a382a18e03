"""pyproject.toml declares what the library imports, in ranges the lock satisfies.

Every third-party module that pgnm/ imports (found with ``ast``) comes from a distribution
declared in ``[project].dependencies``, or, for the optional ones (those behind
``require_extra``, and triton), in the extra that names it; no requirement pins with ``==``
(the pins are requirements/lock.txt's); and the lock, which ``make setup`` installs from,
satisfies every range.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
# Imported only where it is there (pgnm/kernels picks the Triton kernel when it imports).
OPTIONAL = {"triton": {"dev"}}
CHECKOUT_ONLY = {"data_tools", "launch", "benchmarks", "tests", "configs"}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(extra: str | None = None) -> list[Requirement]:
    listed = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


def all_requirements() -> list[Requirement]:
    extras = PROJECT["optional-dependencies"]
    return [*requirements(), *(r for extra in extras for r in requirements(extra))]


def imported_modules() -> dict[str, set[str]]:
    """Absolute imports of pgnm/ (``nvidia.dali`` kept whole: ``nvidia`` is a namespace many
    distributions share) -> the files importing them."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "pgnm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("__future__", "pgnm"):
                    continue
                key = ".".join(name.split(".")[:2]) if top == "nvidia" else top
                found.setdefault(key, set()).add(str(path.relative_to(ROOT)))
    return found


def extras_required() -> dict[str, set[str]]:
    """``require_extra("module", extras, ...)`` calls in pgnm/: module -> the extras named."""
    from pgnm import errors

    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "pgnm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "require_extra":
                module, extras = (getattr(errors, arg.id) if isinstance(arg, ast.Name)
                                  else ast.literal_eval(arg) for arg in node.args[:2])
                names = {extras} if isinstance(extras, str) else set(extras)
                found.setdefault(module, set()).update(names)
    return found


@cache
def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide ``module`` (for a namespace such as
    ``nvidia``, only those holding the named subpackage)."""
    top, _, sub = module.partition(".")
    dists = {normal(d) for d in metadata.packages_distributions().get(top, [])}
    if sub:
        prefix = module.replace(".", "/") + "/"
        dists = {d for d in dists
                 if any(str(f).startswith(prefix) for f in metadata.distribution(d).files or [])}
    return dists


def test_the_library_imports_nothing_from_the_checkout():
    wrong = {m: files for m, files in imported_modules().items() if m in CHECKOUT_ONLY}
    assert not wrong, f"pgnm/ must not import checkout-only code: {wrong}"


def test_every_imported_distribution_is_declared():
    declared = {normal(r.name) for r in requirements()}
    optional = {**OPTIONAL, **extras_required()}
    problems = []
    for module, files in sorted(imported_modules().items()):
        dists = distributions_of(module)
        if not dists:
            problems.append(f"{module} (in {sorted(files)[0]}): no installed distribution")
            continue
        if module in optional or module.split(".")[0] in optional:
            wanted = optional.get(module) or optional[module.split(".")[0]]
            brought = {normal(r.name) for extra in wanted for r in requirements(extra)}
            if not dists & brought:  # alternatives (one DALI per CUDA): one of them brings it
                problems.append(f"{module}: none of the extras {sorted(wanted)} brings "
                                f"{sorted(dists)}")
            if dists & declared:
                problems.append(f"{module} is optional but a hard dependency")
        elif not dists & declared:
            problems.append(f"{module} (in {sorted(files)[0]}): {sorted(dists)} not in "
                            "[project].dependencies")
    assert not problems, "\n".join(problems)


def test_every_required_extra_exists_and_brings_its_module():
    extras = PROJECT["optional-dependencies"]
    wanted = extras_required()
    assert {"nvidia.dali", "optuna"} <= set(wanted)
    for module, names in wanted.items():
        for name in names:
            assert name in extras, f"require_extra names a missing extra {name!r}"
    assert {"dali-cuda12", "dali-cuda13", "dali-cpu", "optuna"} <= set(extras)
    # the CUDA 12 wheel is the CPU choice too: PyPI has no CPU-only DALI (see README)
    assert [r.name for r in requirements("dali-cpu")] == ["nvidia-dali-cuda120"]
    assert [r.name for r in requirements("dali-cuda13")] == ["nvidia-dali-cuda130"]


def test_no_requirement_is_pinned_and_torch_is_a_range():
    pinned = [str(r) for r in all_requirements()
              if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"pins belong in requirements/lock.txt: {pinned}"
    torch = next(r for r in requirements() if r.name == "torch")
    assert torch.specifier.contains("2.5.0") and not torch.specifier.contains("3.0.0")


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[normal(name)] = version.strip()
    return pins


def test_the_lock_satisfies_every_range():
    """``make setup`` installs the lock (-c) with these ranges: every hard dependency, and
    every optional one it installs, must be pinned there inside its range."""
    pins = lock()
    missing = [r.name for r in requirements() if normal(r.name) not in pins]
    assert not missing, f"not in requirements/lock.txt: {missing}"
    outside = [f"{r} (lock: {pins[normal(r.name)]})" for r in all_requirements()
               if normal(r.name) in pins
               and not r.specifier.contains(Version(pins[normal(r.name)]), prereleases=True)]
    assert not outside, f"the lock is outside the declared ranges: {outside}"


def test_every_package_is_listed_for_the_wheel():
    """pyproject lists its packages (pgnm.configs lives outside pgnm/): a new subpackage of
    pgnm/ must be added there, or a wheel would lack it."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "pgnm").rglob("__init__.py")}
    assert found - listed == set(), f"add to [tool.setuptools].packages: {sorted(found - listed)}"
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"pgnm.configs": "configs"}
    assert "pgnm.configs" in listed and (ROOT / "configs" / "__init__.py").is_file()
    assert PROJECT["scripts"] == {"pgnm": "pgnm.cli:main"}
