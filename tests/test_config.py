from dataclasses import dataclass
from typing import Literal

import pytest

from dllab.config import (
    apply_overrides,
    describe,
    describe_range,
    flatten,
    from_dict,
    numeric_options,
    option,
    parse_overrides,
    to_dict,
    validate,
)
from dllab.errors import UserError


@dataclass(frozen=True)
class Optim:
    lr: float = option(0.01, "learning rate")
    name: Literal["sgd", "adam"] = option("sgd", "optimizer")


@dataclass(frozen=True)
class Model:
    dropout: float = option(0.5, "dropout")
    maxpool: bool = option(True, "pooling")
    sizes: tuple[int, ...] = option((1, 2), "sizes")
    path: str | None = option(None, "path")


@dataclass(frozen=True)
class Cfg:
    optim: Optim = option(Optim())
    model: Model = option(Model())
    epochs: int = option(15, "epochs")


def test_dotted_and_leaf_keys_are_the_same_override():
    a = apply_overrides(Cfg(), ["--optim.lr=0.1", "--epochs", "3"])
    b = apply_overrides(Cfg(), ["--lr", "0.1", "--epochs=3"])
    assert a == b and a.optim.lr == 0.1 and a.epochs == 3


def test_types_are_parsed_from_the_field_type():
    cfg = apply_overrides(Cfg(), ["--model.maxpool=false", "--sizes", "4,5,6", "--path", "x.npz", "--name=adam"])
    assert cfg.model.maxpool is False and cfg.model.sizes == (4, 5, 6)
    assert cfg.model.path == "x.npz" and cfg.optim.name == "adam"
    assert apply_overrides(Cfg(), ["--maxpool"]).model.maxpool is True
    assert apply_overrides(Cfg(), ["--path=none"]).model.path is None


@pytest.mark.parametrize(
    "words, message",
    [
        (["--optim.lrr=0.1"], "unknown config key --optim.lrr"),
        (["--lrr", "1"], "did you mean --lr"),
        (["--epochs", "three"], "--epochs: expected an integer"),
        (["--name=rmsprop"], "not one of sgd, adam"),
        (["--maxpool=maybe"], "expected true or false"),
        (["--epochs"], "needs a value"),
        (["epochs=3"], "unexpected argument"),
    ],
)
def test_bad_overrides_name_the_key(words, message):
    with pytest.raises(UserError, match=message):
        parse_overrides(Cfg, words)


def test_round_trip_through_json_dict_and_unknown_keys_rejected():
    cfg = apply_overrides(Cfg(), ["--sizes=7,8", "--lr=0.5"])
    assert from_dict(Cfg, to_dict(cfg)) == cfg
    data = to_dict(cfg)
    data["optim"]["momentum"] = 0.9
    with pytest.raises(UserError, match="optim: unknown key.*momentum"):
        from_dict(Cfg, data)


@dataclass(frozen=True)
class Nested:
    optim: Optim = option(Optim(lr=0.3, name="adam"))  # the enclosing config's own defaults


def test_keys_missing_from_old_records_keep_the_enclosing_configs_default():
    # a record written before optim.name existed: name comes from Nested's Optim(lr=0.3, name="adam")
    assert from_dict(Nested, {"optim": {"lr": 0.1}}) == Nested(Optim(lr=0.1, name="adam"))
    assert from_dict(Nested, {}) == Nested()


def test_describe_lists_every_key_with_its_default():
    text = describe(Cfg())
    for key in ("--optim.lr=0.01", "--model.maxpool=true", "--model.sizes=1,2", "--epochs=15"):
        assert key in text


# -- declared ranges -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranged:
    lr: float = option(0.1, "learning rate", gt=0)
    dropout: float = option(0.5, "dropout", ge=0, lt=1)
    hidden: int = option(4, "hidden", ge=2, multiple_of=2)
    betas: tuple[float, ...] = option((1.0,), "betas", gt=0, min_len=1)
    low: int = option(1, "low", ge=0, le_field="high")
    high: int = option(5, "high", ge=0)


@pytest.mark.parametrize(
    "words, message",
    [
        (["--lr=0"], "--lr: must be > 0, got 0.0"),
        (["--lr=nan"], "--lr: must be a finite number (> 0), got nan"),
        (["--dropout=1"], "--dropout: must be in [0, 1), got 1.0"),
        (["--hidden=5"], "--hidden: must be >= 2, a multiple of 2, got 5"),
        (["--betas=1,-2"], "--betas: must be > 0, got 1.0,-2.0"),
        (["--betas="], "--betas: give at least 1 value(s)"),
        (["--low=6"], "--low: must be <= --high (5), got 6"),
    ],
)
def test_values_outside_the_declared_range_name_the_option_and_the_range(words, message):
    with pytest.raises(UserError) as err:
        apply_overrides(Ranged(), words)
    assert message in str(err.value)


def test_every_violation_is_listed_and_boundaries_pass():
    with pytest.raises(UserError, match=r"--lr: .*; --dropout: "):
        apply_overrides(Ranged(), ["--lr=-1", "--dropout=2"])
    ok = apply_overrides(Ranged(), ["--dropout=0", "--hidden=2", "--low=5"])
    assert (ok.dropout, ok.hidden, ok.low) == (0.0, 2, 5)
    assert validate(Ranged()) == Ranged()


def test_help_shows_each_range():
    text = describe(Ranged())
    assert "learning rate [> 0]" in text and "dropout [in [0, 1)]" in text and "low [>= 0, <= high]" in text


def test_option_refuses_unknown_keywords():
    with pytest.raises(TypeError, match="unknown keyword"):
        option(1, "x", between=3)


# Every command that takes config overrides, with the config it starts from. A new such command must be added
# here (test_every_override_command_is_covered fails otherwise); a new option of these configs is covered
# without any change.
def _commands():
    from dllab.asr.config import ASRConfig
    from dllab.hopfield.config import CapacityConfig, RetrievalConfig
    from dllab.p2g.config import P2GConfig
    from dllab.vision.config import PRESETS

    return {
        ("vision", "train"): PRESETS["hw2023"],
        ("vision", "sweep"): PRESETS["hw2023"],
        ("p2g", "train"): P2GConfig(),
        ("p2g", "sweep"): P2GConfig(),
        ("asr", "train"): ASRConfig(),
        ("asr", "build-corpus"): ASRConfig(),
        ("hopfield", "retrieval"): RetrievalConfig(),
        ("hopfield", "capacity"): CapacityConfig(),
    }


def _override_commands():
    from dllab.cli import build_parser

    def leaves(parser, path=()):
        actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not actions:
            yield path, parser
            return
        for name, sub in actions[0].choices.items():
            yield from leaves(sub, (*path, name))

    return {path: parser for path, parser in leaves(build_parser()) if parser._defaults.get("overrides")}


def test_every_override_command_is_covered():
    assert set(_override_commands()) == set(_commands())


def test_every_numeric_option_declares_a_range():
    from dllab.data.espeak_corpus import CorpusConfig
    from dllab.engine.options import OptimConfig, TrainConfig

    missing = []
    for cfg in [*_commands().values(), CorpusConfig(), OptimConfig(), TrainConfig()]:
        for key, field in numeric_options(type(cfg)).items():
            if not describe_range(field):
                missing.append(f"{type(cfg).__name__}.{key}")
    assert not missing, f"numeric options without a declared range: {missing}"


def _out_of_range(field, value):
    """Values just outside the declared range of `field` (a field whose current value is `value`)."""
    import annotated_types as at

    is_float = isinstance(value[0] if isinstance(value, tuple) else value, float)
    step = 1e-6 if is_float else 1
    bad = ["nan", "inf"] if is_float else []
    for c in field.metadata.get("constraints", ()):
        if isinstance(c, at.Interval):
            bad += [c.gt] if c.gt is not None else []
            bad += [c.ge - step] if c.ge is not None else []
            bad += [c.lt] if c.lt is not None else []
            bad += [c.le + step] if c.le is not None else []
        elif isinstance(c, at.MultipleOf):
            bad.append(c.multiple_of * 3 + 1)
    if "min_len" in field.metadata:
        bad.append("")
    return bad


def _boundaries(field, value):
    import annotated_types as at

    is_float = isinstance(value[0] if isinstance(value, tuple) else value, float)
    out = []
    for c in field.metadata.get("constraints", ()):
        if isinstance(c, at.Interval):
            out += [c.ge] if c.ge is not None else []
            out += [c.le] if c.le is not None else []
            out += [c.gt + (1e-6 if is_float else 1)] if c.gt is not None else []
    return out


def _related_key(key, other):
    """The dotted key of the field a relation of `key` names ("/x.y" from the root, "y" beside `key`)."""
    if other.startswith("/"):
        return other[1:]
    return (key.rsplit(".", 1)[0] + "." if "." in key else "") + other


def _cases():
    cases = []
    for path, cfg in _commands().items():
        values = flatten(cfg)
        for key, field in numeric_options(type(cfg)).items():
            for bad in _out_of_range(field, values[key]):
                cases.append(pytest.param(path, key, bad, id=f"{'-'.join(path)}--{key}={bad}"))
            for rel, other in field.metadata.get("relations", {}).items():
                bound = values[_related_key(key, other)]
                bad = {"le_field": bound + 1, "lt_field": bound, "divides_field": bound + 1, "eq_field": bound + 1,
                       "ge_field": bound - 1, "gt_field": bound}[rel]  # fmt: skip
                cases.append(pytest.param(path, key, bad, id=f"{'-'.join(path)}--{key}={bad}-vs-{other}"))
    return cases


@pytest.mark.parametrize("command, key, value", _cases())
def test_every_numeric_option_out_of_range_is_refused_by_the_cli(command, key, value, tmp_path, capsys, monkeypatch):
    from dllab.cli import main

    monkeypatch.setenv("DLLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    where = ["--out", str(tmp_path / "out")] if command[0] == "hopfield" else ["--runs", str(tmp_path / "runs")]
    if command == ("asr", "build-corpus"):
        where = []
    if command == ("p2g", "sweep"):
        where += ["ady"]
    assert main([*command, *where, f"--{key}={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dllab: error: ") and f"--{key}" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused start left something on disk"


@pytest.mark.parametrize("command", list(_commands()), ids="-".join)
def test_every_boundary_value_is_accepted(command):
    cfg = _commands()[command]
    values, options = flatten(cfg), numeric_options(type(cfg))
    related = set()  # both sides of a relation: their bounds depend on the other field (see _cases)
    for key, field in options.items():
        for other in field.metadata.get("relations", {}).values():
            related |= {key, _related_key(key, other)}
    checked = 0
    for key, field in options.items():
        if key in related:
            continue
        for good in _boundaries(field, values[key]):
            apply_overrides(cfg, [f"--{key}={good}"])
            checked += 1
    assert checked >= 5
