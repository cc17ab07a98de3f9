"""Frozen dataclass configs, command-line overrides and their JSON form.

A config is a frozen dataclass whose fields are plain values (int, float, str, bool, Literal, tuples,
`X | None`) or nested config dataclasses. Give each field a comment with `option(default, "why")`.

Overrides come from the command line as `--section.key=value`, `--section.key value`, or, when the leaf
name is unique in the config tree, just `--key value` (so `--lr 0.01` and `--optim.lr=0.01` are the same).
A bool given alone (`--model.bn_gap`) means true. An unknown or ambiguous key, or a value that does not
parse as the field's type, is a `UserError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, TypeVar, get_args, get_origin

from dllab.errors import UserError

C = TypeVar("C")


def option(default: Any, help: str = "") -> Any:
    """A dataclass field with a default and a one-line description (shown by `--help`)."""
    if isinstance(default, list | dict):
        raise TypeError("configs are frozen: use a tuple, not a list or dict")
    return dataclasses.field(default=default, metadata={"help": help})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """`{"optim.lr": 0.01, ...}` for every leaf of a config tree."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, key + "."))
        else:
            out[key] = value
    return out


def _leaf_types(cls: type, prefix: str = "") -> dict[str, tuple[Any, str]]:
    out: dict[str, tuple[Any, str]] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.update(_leaf_types(tp, key + "."))
        else:
            out[key] = (tp, f.metadata.get("help", ""))
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready nested dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[C], data: dict[str, Any], where: str = "config", base: Any = None) -> C:
    """Rebuild a config from `to_dict` output; unknown keys are an error naming them.

    A key the data lacks (a config saved before the option existed) keeps its default in the enclosing
    config, `base` (default: `cls()`): P2GConfig's train.batch_size is 64 even though TrainConfig's is 8.
    """
    if base is None:
        try:
            base = cls()
        except TypeError:  # a config with required fields: only the data's keys
            base = None
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, f"{where}.{name}", getattr(base, name, None))
        else:
            kwargs[name] = _coerce(tp, value, f"{where}.{name}")
    return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Convert a JSON value or a command-line string to the field type `tp`."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in options:
                return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(opt, value, key)
            except UserError as err:
                errors.append(str(err))
        raise UserError(errors[0] if errors else f"{key}: cannot be {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise UserError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
    if origin is tuple:
        args = get_args(tp)
        items = value.split(",") if isinstance(value, str) else list(value)
        items = [i for i in items if not (isinstance(i, str) and i.strip() == "")]
        item_tp = args[0] if args else str
        return tuple(_coerce(item_tp, i.strip() if isinstance(i, str) else i, key) for i in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise UserError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(f"{key}: expected an integer, got {value!r}")
        try:
            if isinstance(value, str):
                return int(value.replace("_", ""))
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise UserError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        return str(value)
    raise TypeError(f"{key}: unsupported config type {tp!r}")


def _resolve_key(key: str, leaves: dict[str, tuple[Any, str]]) -> str:
    if key in leaves:
        return key
    matches = [k for k in leaves if k.rsplit(".", 1)[-1] == key or k.endswith("." + key)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(f"config key --{key} is ambiguous: say one of {', '.join('--' + m for m in matches)}")
    names = list(leaves) + [k.rsplit(".", 1)[-1] for k in leaves]
    close = difflib.get_close_matches(key, names, n=3)
    hint = f"; did you mean {', '.join('--' + c for c in close)}?" if close else ""
    raise UserError(f"unknown config key --{key}{hint} (see --help for the keys)")


def parse_overrides(cfg_cls: type, words: Iterable[str]) -> dict[str, Any]:
    """Turn `["--optim.lr=0.01", "--epochs", "3"]` into `{"optim.lr": 0.01, "epochs": 3}` (typed)."""
    leaves = _leaf_types(cfg_cls)
    words = list(words)
    out: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--") or word == "--":
            raise UserError(f"unexpected argument {word!r}: config overrides look like --key=value")
        body = word[2:]
        if "=" in body:
            key, raw = body.split("=", 1)
            i += 1
        else:
            key = body
            nxt = words[i + 1] if i + 1 < len(words) else None
            full = _resolve_key(key.replace("-", "_"), leaves)
            if leaves[full][0] is bool and (nxt is None or nxt.startswith("--")):
                raw, i = "true", i + 1
            elif nxt is None:
                raise UserError(f"config key --{key} needs a value")
            else:
                raw, i = nxt, i + 2
        full = _resolve_key(key.replace("-", "_"), leaves)
        out[full] = _coerce(leaves[full][0], raw, "--" + full)
    return out


def replace_path(cfg: C, key: str, value: Any) -> C:
    """A copy of `cfg` with the dotted `key` set to `value`."""
    head, _, rest = key.partition(".")
    if rest:
        return dataclasses.replace(cfg, **{head: replace_path(getattr(cfg, head), rest, value)})
    return dataclasses.replace(cfg, **{head: value})


def apply_overrides(cfg: C, words: Iterable[str]) -> C:
    """`cfg` with the command-line overrides applied; see the module docstring for the syntax."""
    for key, value in parse_overrides(type(cfg), words).items():
        cfg = replace_path(cfg, key, value)
    return cfg


def describe(cfg: Any) -> str:
    """One line per key, `--key=default  description`, for `--help` epilogs."""
    leaves = _leaf_types(type(cfg))
    values = flatten(cfg)
    width = max(len(k) + len(_fmt(values[k])) for k in values) + 4
    lines = []
    for key, (_, help_text) in leaves.items():
        left = f"--{key}={_fmt(values[key])}"
        lines.append(f"  {left:<{width}} {help_text}".rstrip())
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def diff(a: Any, b: Any) -> list[str]:
    """Keys whose values differ between two configs of the same class."""
    fa, fb = flatten(a), flatten(b)
    return [k for k in fa if fa[k] != fb.get(k)]
