"""Config defaults have one home, config/schema.yaml: the package's own defaults for the same
settings (TrainConfig's fields, the megatron conversion tolerances) must equal the schema's. And
the committed test config differs from the default config in the keys it says, and no other."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from filmorph.train.config import TrainConfig
from filmorph.train.megatron import convert as C

CONFIG = Path(__file__).resolve().parents[1] / "config"
SCHEMA = yaml.safe_load((CONFIG / "schema.yaml").read_text())
TRAIN = SCHEMA["properties"]["train"]["properties"]


def test_train_config_defaults_are_the_schema_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert set(fields) == set(TRAIN) - {"megatron"}  # the same keys, megatron: the engine's own
    # train.seed: null in the config means "the root seed"; the rules always pass one
    assert TRAIN["seed"]["default"] is None
    differ = {
        k: (v, TRAIN[k]["default"]) for k, v in fields.items() if k != "seed" and TRAIN[k]["default"] != v
    }
    assert not differ, differ  # name: (TrainConfig default, schema default)


def test_conversion_tolerances_are_the_schema_defaults():
    megatron = TRAIN["megatron"]["properties"]
    assert megatron["verify_tolerance"]["default"] == C.DEFAULT_IMPORT_TOLERANCE
    assert megatron["export_tolerance"]["default"] == C.DEFAULT_EXPORT_TOLERANCE


def test_test_config_is_the_default_config_trimmed():
    default = yaml.safe_load((CONFIG / "config.yaml").read_text())
    test = yaml.safe_load((CONFIG / "test.yaml").read_text())
    assert test["benchmarks"]["items_per_task"] == {"hierarchical": 1, "addition": 4}
    assert test["evaluate"]["reference_models"] == {} != default["evaluate"]["reference_models"]
    default["benchmarks"]["items_per_task"] = test["benchmarks"]["items_per_task"]
    default["evaluate"]["reference_models"] = {}
    assert test == default
