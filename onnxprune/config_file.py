"""Pruning recipes in TOML: `onnxprune prune model.onnx -o out.onnx --config prune.toml`.

A recipe holds what the prune flags hold, under the flags' names with underscores
(`ratio`, `criterion`, `global`, `round_to`, `exclude`, `calib`, `target_macs`, ...),
plus two tables no flag has: `[ratios]` (name glob -> ratio, first match wins) and
`[input_shapes]` (input name -> dims). Paths are relative to the recipe's folder.

    ratio = 0.5
    criterion = "l2"
    exclude = ["stem*"]

    [ratios]
    "layer1.*" = 0.3
    "fc*" = 0.0

`read_config(path)` returns PruneConfig keyword arguments; `to_toml(config)` writes a
config back as a recipe (what `--save-config` writes).
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .config import CRITERIA, RECONSTRUCT, PruneConfig
from .errors import BadInputError


class _Bad(Exception):
    """A value is unusable; the message says what it must be."""


def _number(low: float, high: float, low_open: bool = False, high_open: bool = True):
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    what = f"a number in {left}{low:g}, {high:g}{right}"
    if high == math.inf:
        what = f"a number {'>' if low_open else '>='} {low:g}"

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(what)
        value = float(value)
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high or math.isnan(value):
            raise _Bad(what)
        return value

    return check


def _integer(low: int):
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _Bad(f"an integer >= {low}")
        return value

    return check


def _round_to(value: Any) -> int | str:
    if value == "auto":
        return value
    try:
        return _integer(1)(value)
    except _Bad:
        raise _Bad('an integer >= 1 or "auto"') from None


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad("a non-empty string")
    return value


def _choice(options: tuple[str, ...]):
    def check(value: Any) -> str:
        if value not in options:
            raise _Bad(f"one of {', '.join(repr(o) for o in options)}")
        return value

    return check


def _list_of(item: Callable[[Any], Any], what: str):
    def check(value: Any) -> list:
        if not isinstance(value, list):
            raise _Bad(f"a list of {what}")
        try:
            return [item(v) for v in value]
        except _Bad:
            raise _Bad(f"a list of {what}") from None

    return check


def _dims(value: Any) -> list[int]:
    """[1, 3, 224, 224] or "1x3x224x224"."""
    what = 'positive dims like [1, 3, 224, 224] or "1x3x224x224"'
    if isinstance(value, str):
        try:
            value = [int(d) for d in value.lower().split("x")]
        except ValueError:
            raise _Bad(what) from None
    if not isinstance(value, list) or not value:
        raise _Bad(what)
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value):
        raise _Bad(what)
    return value


_RATIO = _number(0.0, 1.0)
_FRACTION = _number(0.0, 1.0, low_open=True, high_open=False)
_RATIO_LIST = _list_of(_number(0.0, 1.0, low_open=True), "numbers in (0, 1)")


def _ratio_tuple(value: Any) -> tuple[float, ...]:
    return tuple(_RATIO_LIST(value))


# file key -> (PruneConfig field, check); the tables [ratios] and [input_shapes] apart
KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "ratio": ("ratio", _RATIO),
    "head_ratio": ("head_ratio", _RATIO),
    "criterion": ("criterion", _choice(CRITERIA)),
    "global": ("global_ranking", _boolean),
    "round_to": ("round_to", _round_to),
    "min_channels": ("min_channels", _integer(1)),
    "exclude": ("exclude", _list_of(_string, "name globs")),
    "prune_heads": ("prune_heads", _boolean),
    "prune_hidden": ("prune_hidden", _boolean),
    "calib": ("calib", _string),
    "calib_random": ("calib_random", _integer(0)),
    "calib_batch": ("calib_batch", _integer(1)),
    "calib_mask": ("calib_mask", _string),
    "reconstruct": ("reconstruct", _choice(RECONSTRUCT)),
    "ridge": ("ridge", _number(0.0, math.inf, high_open=True)),
    "target_macs": ("target_macs", _FRACTION),
    "target_params": ("target_params", _FRACTION),
    "sensitivity_ratios": ("sensitivity_ratios", _ratio_tuple),
    "validate": ("validate", _boolean),
    "seed": ("seed", _integer(0)),
    "latency": ("latency", _boolean),
    "round_down": ("round_down", _boolean),
}
TABLES = {"ratios": ("name_ratios", _RATIO), "input_shapes": ("input_shapes", _dims)}


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """PruneConfig keyword arguments from a TOML recipe; BadInputError (one line, naming
    the file and the key) for a missing or unreadable file, bad TOML, an unknown key or
    a value of the wrong type or range. `calib` comes back relative to the current
    folder (it is written relative to the recipe's folder)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise BadInputError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"--config {path}: not a file") from None
    except OSError as exc:
        raise BadInputError(f"--config {path}: cannot read it ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in TABLES:
            field, check = TABLES[key]
            values[field] = _table(path, key, value, check)
        elif key in KEYS:
            field, check = KEYS[key]
            try:
                values[field] = check(value)
            except _Bad as bad:
                raise BadInputError(f"{path}: {key} must be {bad}, got {_show(value)}") from None
        else:
            raise BadInputError(f"{path}: unknown key {key!r}{_suggest(key)}")
    if "calib" in values:
        folder = os.path.dirname(os.path.abspath(path))
        values["calib"] = os.path.join(folder, os.path.expanduser(values["calib"]))
    return values


def _table(path: str, key: str, value: Any, check: Callable[[Any], Any]) -> dict:
    if not isinstance(value, dict):
        raise BadInputError(f"{path}: {key} must be a table ([{key}]), got {_show(value)}")
    result = {}
    for name, item in value.items():
        try:
            result[name] = check(item)
        except _Bad as bad:
            raise BadInputError(
                f"{path}: [{key}] {name!r} must be {bad}, got {_show(item)}"
            ) from None
    return result


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, [*KEYS, *TABLES], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict) else "a table"
    return text if len(text) <= 60 else text[:57] + "..."


# -- writing ----------------------------------------------------------------------------


def to_toml(config: PruneConfig, folder: str = ".") -> str:
    """The config as a TOML recipe that `read_config` reads back to the same values
    (calibration arrays passed as a dict cannot be written and are left out; a `calib`
    path is written relative to `folder`, where the recipe goes)."""
    lines = ["# onnxprune recipe: onnxprune prune MODEL -o OUT --config THIS_FILE"]
    for key, (field, _) in KEYS.items():
        value = getattr(config, field)
        if value is None or (field == "calib" and not isinstance(value, str | os.PathLike)):
            continue
        if field == "calib":
            value = _relative(os.fspath(value), folder)
        lines.append(f"{key} = {_toml_value(value)}")
    for key, (field, _) in TABLES.items():
        table = getattr(config, field)
        if table:
            lines += ["", f"[{key}]"]
            lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _relative(path: str, folder: str) -> str:
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    except ValueError:  # another drive (Windows)
        return os.path.abspath(path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, but for DEL)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
