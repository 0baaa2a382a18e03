"""The search space: YAML specs over dotted config keys, checked before Ray starts.

``tune.search_space`` maps a dotted key of :class:`pgnm.config.Config` to one spec::

    mask.grid:           {choice: [16, 32, 64]}
    objective.name:      {grid: [paper, reinforce]}   # every value, times tune.num_samples
    optim.lr:            {loguniform: [0.01, 0.3]}
    policy.mixing_decay: {uniform: [0.8, 0.95]}
    mask.kernel_size:    {randint: [3, 14]}           # upper bound excluded, as in Tune
    mask.sigma:          {quniform: [1.0, 6.0, 0.5]}
    policy.input_size:   64                           # a plain value: fixed for every trial

Every value a spec can yield (each choice, both ends of a range) is applied to the base config
and validated, so a misspelt key or a float for an integer field fails with a
:class:`ConfigError` naming the key -- not minutes later inside a trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgnm.config import Config, ConfigError, with_overrides

# spec name -> (number of arguments, the Python type it yields; None = the listed values')
_SPECS: dict[str, tuple[int | None, type | None]] = {
    "choice": (None, None),
    "grid": (None, None),
    "uniform": (2, float),
    "loguniform": (2, float),
    "quniform": (3, float),
    "randint": (2, int),
    "lograndint": (2, int),
}


def _parse(key: str, spec: Any) -> tuple[str, list[Any]]:
    """``(kind, args)`` for one spec; a plain value is a fixed choice."""
    if not isinstance(spec, Mapping):
        return "fixed", [spec]
    if len(spec) != 1 or next(iter(spec)) not in _SPECS:
        raise ConfigError(
            f"tune.search_space.{key}: expected one of {sorted(_SPECS)} as the only key, "
            f"got {dict(spec)!r}"
        )
    kind, args = next(iter(spec.items()))
    arity, _ = _SPECS[kind]
    if not isinstance(args, list) or not args or (arity is not None and len(args) != arity):
        wanted = "a non-empty list" if arity is None else f"a list of {arity} numbers"
        raise ConfigError(f"tune.search_space.{key}.{kind}: expected {wanted}, got {args!r}")
    return kind, args


def _candidates(kind: str, args: list[Any]) -> list[Any]:
    """Values to validate against the config: every listed value, or a range's ends."""
    if kind in ("fixed", "choice", "grid"):
        return args
    cast = _SPECS[kind][1]
    low, high = args[0], args[1]
    if kind in ("randint", "lograndint"):
        high -= 1  # Tune's integer ranges exclude the upper bound
    return [cast(low), cast(high)]


def validate_space(base: Config, space: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for a key, spec or value the trials could not use."""
    if not space:
        raise ConfigError("tune.search_space is empty: give at least one dotted key to search")
    for key, spec in space.items():
        kind, args = _parse(key, spec)
        for value in _candidates(kind, args):
            try:
                with_overrides(base, {key: value}, f"tune.search_space.{key}")
            except ConfigError as err:
                raise ConfigError(
                    f"tune.search_space.{key} = {value!r} is invalid: {err}"
                ) from None


def to_param_space(space: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray Tune ``param_space`` (flat, dotted keys) for a validated search space."""
    from ray import tune

    domains: dict[str, Any] = {}
    for key, spec in space.items():
        kind, args = _parse(key, spec)
        domains[key] = {
            "fixed": lambda a: a[0],
            "choice": tune.choice,
            "grid": tune.grid_search,
            "uniform": lambda a: tune.uniform(*a),
            "loguniform": lambda a: tune.loguniform(*a),
            "quniform": lambda a: tune.quniform(*a),
            "randint": lambda a: tune.randint(*a),
            "lograndint": lambda a: tune.lograndint(*a),
        }[kind](args)
    return domains


def searched_keys(space: Mapping[str, Any]) -> list[str]:
    """The keys that vary between trials (fixed values excluded)."""
    return [k for k, spec in space.items() if _parse(k, spec)[0] != "fixed"]
