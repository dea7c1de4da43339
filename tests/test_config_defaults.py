"""Config defaults have one home, config/schema.yaml: the package's own defaults for the same
settings (TrainConfig's fields, the megatron conversion tolerances) must equal the schema's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from filmorph.train.config import TrainConfig
from filmorph.train.megatron import convert as C

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "schema.yaml").read_text())
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
