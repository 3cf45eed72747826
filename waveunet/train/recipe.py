"""Recipes: TOML files read into typed dataclasses, with ``--set key=value`` overrides.

A recipe is a TOML document whose tables map onto (nested) frozen dataclasses. Reading one is
three steps, each a pure function here:

1. :func:`load_toml` reads the file into a plain dict;
2. :func:`apply_overrides` applies ``section.key=value`` strings (values are TOML, so
   ``train.lr=1e-5``, ``train.optimizer.betas=[0.9, 0.99]``, ``data.root="/data"``; a bare word that
   is not valid TOML is taken as a string, so ``data.format=musdb`` works too);
3. :func:`from_dict` builds the dataclass, checking every key and type: an unknown key or a value
   of the wrong type is a one-line :class:`~waveunet.errors.WaveUNetError` naming the recipe file
   and the dotted key.

:func:`dump_toml` writes the resolved recipe back (``config.toml`` in a run folder), so a run
folder's config is itself a recipe.

TOML has no null: optional settings are ``None`` when the key is absent.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from ..errors import WaveUNetError


def load_toml(path: str | os.PathLike) -> dict:
    """The TOML document at ``path`` as a dict; a missing or malformed file is a WaveUNetError."""
    path = Path(path)
    if not path.is_file():
        raise WaveUNetError(f"{path}: no such recipe file")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise WaveUNetError(f"{path}: not a valid TOML recipe ({error})") from None
    except UnicodeDecodeError:
        raise WaveUNetError(f"{path}: not a valid TOML recipe (not UTF-8 text)") from None


def parse_override(text: str, source: str = "--set") -> tuple[list[str], Any]:
    """``"train.lr=1e-5"`` -> ``(["train", "lr"], 1e-05)``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise WaveUNetError(f"{source}: {text!r} is not of the form section.key=value")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: data.format=musdb
    return key.split("."), value


def apply_overrides(recipe: dict, overrides: list[str], source: str = "--set") -> dict:
    """A copy of ``recipe`` with each ``dotted.key=value`` override set (tables created as needed)."""
    recipe = _deep_copy(recipe)
    for text in overrides:
        keys, value = parse_override(text, source)
        table = recipe
        for depth, key in enumerate(keys[:-1]):
            child = table.setdefault(key, {})
            if not isinstance(child, dict):
                raise WaveUNetError(f"{source}: {'.'.join(keys[:depth + 1])} is a value, not a table, in {text!r}")
            table = child
        table[keys[-1]] = value
    return recipe


def _deep_copy(table: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in table.items()}


# ----------------------------------------------------------------------------- dict -> dataclass


def from_dict(cls: type, table: dict, source: str, prefix: str = ""):
    """Build dataclass ``cls`` from ``table``; nested dataclass fields come from sub-tables.

    Missing keys keep the dataclass defaults. Errors name ``source`` (the recipe file) and the
    dotted key, e.g. ``recipes/m4.toml: unknown key train.learning_rate``.
    """
    if not isinstance(table, dict):
        raise WaveUNetError(f"{source}: {prefix.rstrip('.') or 'recipe'} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in table if key not in fields]
    if unknown:
        known = ", ".join(fields)
        raise WaveUNetError(f"{source}: unknown key {prefix}{unknown[0]} (known keys in this table: {known})")
    missing = [name for name, f in fields.items() if name not in table
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise WaveUNetError(f"{source}: missing {'table' if dataclasses.is_dataclass(hints[missing[0]]) else 'key'} "
                            f"{prefix}{missing[0]}")
    values = {name: _convert(hints[name], value, source, f"{prefix}{name}") for name, value in table.items()}
    try:
        return cls(**values)
    except WaveUNetError as error:
        raise WaveUNetError(f"{source}: {error}") from None
    except (TypeError, ValueError) as error:
        raise WaveUNetError(f"{source}: {prefix.rstrip('.') or 'recipe'}: {error}") from None


def _convert(hint, value, source: str, key: str):
    """``value`` checked against (and converted to) the annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, source, f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:  # an optional field left unset (a preset's, say)
            return None
        choices = [a for a in args if a is not type(None)]
        errors = []
        for choice in choices:
            try:
                return _convert(choice, value, source, key)
            except WaveUNetError as error:
                errors.append(error)
        if isinstance(value, dict) and all(dataclasses.is_dataclass(c) for c in choices):
            # a table meant for one of several dataclasses: report the error of the one it resembles most
            def overlap(choice) -> int:
                return len(set(value) & {f.name for f in dataclasses.fields(choice)})
            raise errors[max(range(len(choices)), key=lambda i: overlap(choices[i]))]
        raise errors[0]
    if origin is list:
        if not isinstance(value, list):
            raise WaveUNetError(f"{source}: {key} must be a list, got {value!r}")
        return [_convert(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list):
            raise WaveUNetError(f"{source}: {key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise WaveUNetError(f"{source}: {key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_convert(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise WaveUNetError(f"{source}: {key} must be a table, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise WaveUNetError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise WaveUNetError(f"{source}: {key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WaveUNetError(f"{source}: {key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise WaveUNetError(f"{source}: {key} must be a string, got {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"recipe field {key}: unsupported annotation {hint!r}")


def to_dict(config) -> dict:
    """A dataclass as nested plain dicts (tuples become lists, ``None`` values are dropped)."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                    if getattr(value, f.name) is not None}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(config)


def resolve_paths(table: dict, keys: list[str], base: Path) -> dict:
    """A copy of ``table`` with the (dotted) path ``keys`` made absolute relative to ``base``.

    ``~`` is expanded; keys that are absent are left absent.
    """
    table = _deep_copy(table)
    for dotted in keys:
        *parents, last = dotted.split(".")
        node = table
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(last), str) and node[last]:
            path = Path(node[last]).expanduser()
            node[last] = str(path if path.is_absolute() else (base / path).resolve())
    return table


def expand_preset(table: dict, source: str, prefix: str = "model") -> dict:
    """A ``[model]`` table with ``preset = "M4"`` replaced by the preset's full config.

    The table's other keys override the preset's fields (``preset = "M4"`` and ``levels = 6``
    is M4 with six levels). Without ``preset`` the table is returned unchanged (a full config).
    """
    if not isinstance(table, dict) or "preset" not in table:
        return table
    from ..models.config import config_to_dict
    from ..models.presets import PRESETS

    table = dict(table)
    name = table.pop("preset")
    if name not in PRESETS:
        raise WaveUNetError(f"{source}: unknown {prefix}.preset {name!r} (presets: {', '.join(PRESETS)})")
    full = config_to_dict(PRESETS[name])
    full.pop("kind")
    changed = any(full.get(key) != value for key, value in table.items())
    if changed and "name" not in table:
        table["name"] = f"{name}-modified"  # the preset's name would claim the preset's architecture
    return {**full, **table}


# ----------------------------------------------------------------------------- dict -> TOML text


def dump_toml(table: dict) -> str:
    """TOML text for a dict of scalars, lists of scalars and sub-tables (what recipes hold)."""
    lines: list[str] = []
    _dump_table(table, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(table: dict, path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines.append(f"\n[{'.'.join(_key(p) for p in path)}]")
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
    for key, sub in tables.items():
        _dump_table(sub, [*path, key], lines)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _string(key)


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
