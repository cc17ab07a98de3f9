"""Frozen dataclass configs, command-line overrides and their JSON form.

A config is a frozen dataclass whose fields are plain values (int, float, str, bool, Literal, tuples,
`X | None`) or nested config dataclasses. Give each field a comment with `option(default, "why")`, and
every numeric field its valid range there too: `option(0.01, "learning rate", gt=0)`,
`option(0.3, "dropout", ge=0, lt=1)`, `option(128, "hidden size", ge=2, multiple_of=2)`. For a tuple of
numbers the range holds for each item, and `min_len=1` asks for at least one item. A field whose valid
values depend on another field of the same config names it: `option(140, "slowest rate", ge=80,
le_field="rate_max")`.

Ranges are stored as `annotated-types` constraints (`Gt`, `Ge`, `Lt`, `Le`, `MultipleOf`, `MinLen`) in
the field's metadata, and one generic check, `validate(cfg)`, tests every leaf of a config tree against
them; `apply_overrides` runs it, so every command-line config is checked before a command touches the
disk. A float must also be finite. The error names each option and its range (`--optim.lr: must be > 0,
got -0.1`).

Why annotated-types and not pydantic: the constraint objects are the maintained, shared vocabulary
(pydantic, hypothesis and msgspec read the same `Gt`/`Ge`/... types) and the package is one small
dependency-free module (~5 ms to import), so configs stay torch-free and `dllab --help` stays quick.
Pydantic dataclasses would validate too, but they cost ~0.2 s of import on every start, would need
every config rewritten as a pydantic dataclass or every annotation as `Annotated[...]`, and would
re-do the type coercion this module already does with messages that name the command-line key.

Overrides come from the command line as `--section.key=value`, `--section.key value`, or, when the leaf
name is unique in the config tree, just `--key value` (so `--lr 0.01` and `--optim.lr=0.01` are the same).
A bool given alone (`--model.bn_gap`) means true. An unknown or ambiguous key, or a value that does not
parse as the field's type, is a `UserError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal, TypeVar, get_args, get_origin

import annotated_types as at

from dllab.errors import UserError

C = TypeVar("C")

# The relations a field can have with a sibling field: (keyword, symbol, test).
_RELATIONS = {
    "lt_field": ("<", lambda a, b: a < b),
    "le_field": ("<=", lambda a, b: a <= b),
    "gt_field": (">", lambda a, b: a > b),
    "ge_field": (">=", lambda a, b: a >= b),
    "divides_field": ("a divisor of", lambda a, b: a != 0 and b % a == 0),
    "eq_field": ("equal to", lambda a, b: a == b),
}


def option(
    default: Any,
    help: str = "",
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    multiple_of: int | None = None,
    min_len: int | None = None,
    **relations: str,
) -> Any:
    """A dataclass field with a default, a one-line description (shown by `--help`) and its valid range.

    gt / ge / lt / le: bounds of a number (of each item of a tuple of numbers); multiple_of: an integer
    step; min_len: the fewest items of a tuple; lt_field / le_field / gt_field / ge_field / eq_field /
    divides_field: the name of a sibling field of the same config (or a dotted path below it:
    "model.max_tokens", or from the root config: "/features.n_mels") this one must stay below or above,
    equal, or divide. See the module docstring.
    """
    if isinstance(default, list | dict):
        raise TypeError("configs are frozen: use a tuple, not a list or dict")
    unknown = set(relations) - set(_RELATIONS)
    if unknown:
        raise TypeError(f"option(): unknown keyword(s) {', '.join(sorted(unknown))}")
    constraints: list[Any] = []
    if any(b is not None for b in (gt, ge, lt, le)):
        constraints.append(at.Interval(gt=gt, ge=ge, lt=lt, le=le))
    if multiple_of is not None:
        constraints.append(at.MultipleOf(multiple_of))
    metadata: dict[str, Any] = {"help": help, "constraints": tuple(constraints)}
    if min_len is not None:
        metadata["min_len"] = at.MinLen(min_len)
    if relations:
        metadata["relations"] = dict(relations)
    return dataclasses.field(default=default, metadata=metadata)


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
    """{dotted key: (type, help text with the declared range appended)} for every leaf of `cls`."""
    out: dict[str, tuple[Any, str]] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.update(_leaf_types(tp, key + "."))
        else:
            what = describe_range(f)
            help_text = f.metadata.get("help", "")
            out[key] = (tp, f"{help_text} [{what}]".strip() if what else help_text)
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


def constraints_of(field: dataclasses.Field) -> tuple[Any, ...]:
    """The annotated-types constraints `option(...)` stored for `field` (an empty tuple for none)."""
    return tuple(field.metadata.get("constraints", ()))


def describe_range(field: dataclasses.Field, length: bool = True) -> str:
    """The declared range in words: `> 0`, `in [0, 1)`, `>= 2, a multiple of 2`, or "" when none
    (`length=False`: without a tuple's fewest items)."""
    parts = []
    for c in constraints_of(field):
        if isinstance(c, at.Interval):
            low = f"({_num(c.gt)}" if c.gt is not None else f"[{_num(c.ge)}" if c.ge is not None else None
            high = f"{_num(c.lt)})" if c.lt is not None else f"{_num(c.le)}]" if c.le is not None else None
            if low and high:
                parts.append(f"in {low}, {high}")
            elif low:
                parts.append(f"{'>' if c.gt is not None else '>='} {low[1:]}")
            elif high:
                parts.append(f"{'<' if c.lt is not None else '<='} {high[:-1]}")
        elif isinstance(c, at.MultipleOf):
            parts.append(f"a multiple of {c.multiple_of}")
    for keyword, other in field.metadata.get("relations", {}).items():
        parts.append(f"{_RELATIONS[keyword][0]} {other}")
    if length and "min_len" in field.metadata:
        parts.append(f"at least {field.metadata['min_len'].min_length} item(s)")
    return ", ".join(parts)


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _satisfies(value: Any, c: Any) -> bool:
    if isinstance(c, at.Interval):
        return (
            (c.gt is None or value > c.gt)
            and (c.ge is None or value >= c.ge)
            and (c.lt is None or value < c.lt)
            and (c.le is None or value <= c.le)
        )
    if isinstance(c, at.MultipleOf):
        return value % c.multiple_of == 0
    raise TypeError(f"unsupported constraint {c!r}")


def range_errors(cfg: Any, prefix: str = "", root: Any = None) -> list[str]:
    """One message per leaf of `cfg` outside its declared range (see `validate`); [] when all are valid."""
    errors: list[str] = []
    root = cfg if root is None else root
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"--{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            errors.extend(range_errors(value, f"{prefix}{f.name}.", root))
            continue
        items = value if isinstance(value, tuple) else (value,)
        numbers = [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]
        what = describe_range(f, length=False)
        if isinstance(value, tuple) and "min_len" in f.metadata and len(value) < f.metadata["min_len"].min_length:
            errors.append(f"{key}: give at least {f.metadata['min_len'].min_length} value(s)")
            continue
        for v in numbers:
            if isinstance(v, float) and not math.isfinite(v):
                errors.append(f"{key}: must be a finite number{f' ({what})' if what else ''}, got {v}")
                break
            if not all(_satisfies(v, c) for c in constraints_of(f)):
                errors.append(f"{key}: must be {what}, got {_fmt(value)}")
                break
        else:
            for keyword, other in f.metadata.get("relations", {}).items():
                symbol, test = _RELATIONS[keyword]
                # "/features.n_mels" is a path from the root config; "n_fft" one from the config holding f.
                if other.startswith("/"):
                    bound, shown = _get_path(root, other[1:]), other[1:]
                else:
                    bound, shown = _get_path(cfg, other), prefix + other
                if value is not None and bound is not None and not test(value, bound):
                    errors.append(f"{key}: must be {symbol} --{shown} ({bound}), got {_fmt(value)}")
    return errors


def _get_path(cfg: Any, key: str) -> Any:
    """The value at dotted `key` below `cfg`; None when there is none (a config validated on its own)."""
    for part in key.split("."):
        cfg = getattr(cfg, part, None)
    return cfg


def validate(cfg: C) -> C:
    """`cfg` itself when every leaf lies in the range its `option(...)` declares; else a UserError naming
    every option out of range and its range. Runs before anything touches the disk (`apply_overrides`)."""
    errors = range_errors(cfg)
    if errors:
        raise UserError("; ".join(errors))
    return cfg


def numeric_options(cls: type, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Every int or float leaf (or tuple of them) of a config class, by dotted key: what `validate` checks."""
    out: dict[str, dataclasses.Field] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.update(numeric_options(tp, key + "."))
        elif _is_numeric(tp):
            out[key] = f
    return out


def _is_numeric(tp: Any) -> bool:
    if tp in (int, float):
        return True
    origin = get_origin(tp)
    if origin is tuple or origin in (typing.Union, types.UnionType):
        return any(_is_numeric(a) for a in get_args(tp) if a is not Ellipsis)
    return False


def replace_path(cfg: C, key: str, value: Any) -> C:
    """A copy of `cfg` with the dotted `key` set to `value`."""
    head, _, rest = key.partition(".")
    if rest:
        return dataclasses.replace(cfg, **{head: replace_path(getattr(cfg, head), rest, value)})
    return dataclasses.replace(cfg, **{head: value})


def apply_overrides(cfg: C, words: Iterable[str]) -> C:
    """`cfg` with the command-line overrides applied, then validated (see the module docstring)."""
    for key, value in parse_overrides(type(cfg), words).items():
        cfg = replace_path(cfg, key, value)
    return validate(cfg)


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
