from dataclasses import dataclass
from typing import Literal

import pytest

from dllab.config import apply_overrides, describe, from_dict, option, parse_overrides, to_dict
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
