"""Run limits as people give them, in flags and in git config: each in its unit, checked against its range, so
that no value (`-1`, `nan`, `inf`, `1e24`) can turn a limit off or reach the sandbox as something it cannot take.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, NamedTuple

from .errors import InvalidLimit
from .sandbox import Limits


class Range(NamedTuple):
    key: str  # the git config key
    unit: str
    low: int  # inclusive for whole numbers; a timeout must be greater than it
    high: int
    scale: int = 1  # bytes per unit in `Limits`


#: Run limits by their field in `Limits`.
RANGES = {
    "timeout": Range("evogit.timeout", "seconds", 0, 3600),
    "fuel": Range("evogit.fuel", "fuel", 1, 2**63 - 1),
    "memory": Range("evogit.memory", "MiB", 1, 4096, 1 << 20),  # 4 GiB: all a wasm32 module can address
    "max_output": Range("evogit.maxOutput", "bytes", 1, 1 << 30),
    "max_input": Range("evogit.maxInput", "bytes", 1, 1 << 30),
}
_WHOLE = re.compile(r"\s*(\d+)\s*([kmg]?)\s*", re.IGNORECASE)  # git's suffixes: k, m, g = 1024, 1024², 1024³


def parse(name: str, text: str) -> float | int:
    """The value of run limit `name` given as text, in its unit; ValueError says what it must be."""
    r = RANGES[name]
    if name == "timeout":
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not r.low < value <= r.high:  # also refuses nan
            raise ValueError(f"must be a number of seconds greater than {r.low} and at most {r.high}")
        return value
    m = _WHOLE.fullmatch(text)
    number = int(m.group(1)) * 1024 ** " kmg".index((m.group(2) or " ").lower()) if m else None
    if number is None or not r.low <= number <= r.high:
        unit = "" if r.unit == name else f" of {r.unit}"
        raise ValueError(f"must be a whole number{unit} from {r.low} to {r.high:,}")
    return number


def apply(base: Limits, values: dict[str, Any]) -> Limits:
    """`base` with the limits in `values` (parsed, in their units; None means not given) replaced."""
    given = {name: value * RANGES[name].scale for name, value in values.items() if value is not None}
    return dataclasses.replace(base, **given)


def from_config(config: Any, base: Limits) -> Limits:
    """`base` with the limits set in a git config (e.g. `git config evogit.timeout 2`); a bad value is an
    InvalidLimit naming its key."""
    values = {}
    for name, r in RANGES.items():
        if r.key in config:
            text = str(config[r.key])
            try:
                values[name] = parse(name, text)
            except ValueError as e:
                raise InvalidLimit(f"git config {r.key} is {text!r}: it {e}") from None
    return apply(base, values)
