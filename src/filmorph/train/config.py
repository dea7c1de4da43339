"""The ``train:`` section of the workflow config as a validated, immutable :class:`TrainConfig`.

:meth:`TrainConfig.from_dict` is a pure function: it fills defaults (the published study's
settings where it had one), rejects unknown keys, wrong types and inconsistent values with a
message that names the key, and never touches files, devices or the environment. Engines
translate a ``TrainConfig`` into their own configuration; this module knows no engine library.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ENGINES", "LR_SCHEDULES", "PRECISIONS", "TrainConfig", "deep_merge", "parse_split"]

ENGINES = ("hf", "megatron", "automodel")
LR_SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("bf16", "fp32")

# keys that do not change what is trained (a run may be resumed with other values)
NON_SEMANTIC_KEYS = frozenset({"log_interval", "num_workers"})


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in: mappings recursively, anything else (``None`` too) replaced."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = dict(v) if isinstance(v, Mapping) else v
    return out


def parse_split(split: str) -> tuple[float, float, float]:
    """Megatron's split string ``"99,1,0"`` (train, valid, test weights) as normalised fractions.

    One to three comma-separated non-negative numbers; missing trailing parts are 0 (as in
    megatron-core). Raises ``ValueError`` when the string is malformed or the weights sum to 0.
    """
    if not isinstance(split, str):
        raise ValueError(f"split must be a string like '99,1,0', not {split!r}")
    parts = [p.strip() for p in split.split(",")]
    if not 1 <= len(parts) <= 3 or any(p == "" for p in parts):
        raise ValueError(f"split must be 1-3 comma-separated numbers like '99,1,0', not {split!r}")
    try:
        weights = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"split must be 1-3 comma-separated numbers like '99,1,0', not {split!r}") from None
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"split weights must be finite and >= 0: {split!r}")
    weights += [0.0] * (3 - len(weights))
    total = sum(weights)
    if total <= 0:
        raise ValueError(f"split weights sum to 0: {split!r}")
    train, valid, test = (w / total for w in weights)
    return train, valid, test


@dataclass(frozen=True)
class TrainConfig:
    """Continued-pretraining settings shared by every engine (``train:`` in the config).

    Batch sizes count sequences of ``seq_length`` tokens; ``global_batch_size`` is split into
    ``micro_batch_size`` × data-parallel ranks × gradient-accumulation steps. ``lr`` warms up
    linearly over ``warmup_steps`` and then follows ``lr_schedule`` down to ``min_lr`` at
    ``max_steps`` (a run shorter than its warmup never leaves it). ``split`` divides each
    shard's documents into train/valid/test (megatron-core's rule); ``eval_iters`` global
    batches of the valid part are scored every ``eval_interval`` steps and at the end
    (``eval_iters: 0`` turns evaluation off). Checkpoints are written every
    ``checkpoint_interval`` steps and at ``max_steps``. ``precision`` is what the GPU engines
    compute in; the ``hf`` engine computes in fp32 on a CPU whatever it says.
    ``gpus_per_node`` × ``nodes`` is the data-parallel world size the launcher starts.
    """

    engine: str = "hf"
    max_steps: int = 5000
    global_batch_size: int = 64
    micro_batch_size: int = 1
    seq_length: int = 512
    lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-5
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    precision: str = "bf16"
    checkpoint_interval: int = 1000
    log_interval: int = 10
    reset_position_ids: bool = True
    reset_attention_mask: bool = True
    eod_mask_loss: bool = True
    split: str = "99,1,0"
    eval_interval: int = 1000
    eval_iters: int = 10
    seed: int = 1234
    num_workers: int = 2
    gpus_per_node: int = 1
    nodes: int = 1

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None = None) -> TrainConfig:
        """Validate ``d`` (the ``train:`` mapping; ``None`` = all defaults) and fill defaults.

        Raises ``ValueError`` naming the offending key for unknown keys, wrong types (a bool
        is not an integer; numbers written as strings are refused, e.g. PyYAML reads ``1e-4``
        as a string: write ``1.0e-4``) and inconsistent values.
        """
        d = dict(d or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"train: unknown key(s) {unknown}; known: {names}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            v = d.get(f.name, f.default)
            values[f.name] = _coerce(f.name, v, f.type)
        cfg = cls(**values)
        cfg._validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain JSON-able dict (``from_dict(to_dict())`` round-trips)."""
        return dataclasses.asdict(self)

    def with_overrides(self, **changes: Any) -> TrainConfig:
        """A validated copy with some fields replaced (``None`` values are ignored)."""
        d = self.to_dict()
        d.update({k: v for k, v in changes.items() if v is not None})
        return TrainConfig.from_dict(d)

    def semantic_dict(self) -> dict[str, Any]:
        """The fields that change what is trained (all but logging/loader settings): a run dir
        may only be resumed with the same semantic config."""
        return {k: v for k, v in self.to_dict().items() if k not in NON_SEMANTIC_KEYS}

    # ------------------------------------------------------------------ derived values
    @property
    def world_size(self) -> int:
        """Data-parallel ranks the launcher starts (``gpus_per_node`` × ``nodes``)."""
        return self.gpus_per_node * self.nodes

    @property
    def split_fractions(self) -> tuple[float, float, float]:
        return parse_split(self.split)

    @property
    def eval_enabled(self) -> bool:
        return self.eval_iters > 0 and self.split_fractions[1] > 0

    def grad_accum_steps(self, world_size: int | None = None) -> int:
        """Micro-batches per rank per step: global / (micro × world)."""
        world = self.world_size if world_size is None else world_size
        per = self.micro_batch_size * world
        if world < 1 or self.global_batch_size % per:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of "
                f"micro_batch_size {self.micro_batch_size} x {world} data-parallel ranks"
            )
        return self.global_batch_size // per

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch_size * self.seq_length

    # ------------------------------------------------------------------ checks
    def _validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"train: {msg}")

        need(self.engine in ENGINES, f"engine must be one of {ENGINES}, not {self.engine!r}")
        need(
            self.lr_schedule in LR_SCHEDULES,
            f"lr_schedule must be one of {LR_SCHEDULES}, not {self.lr_schedule!r}",
        )
        need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        for key in ("max_steps", "global_batch_size", "micro_batch_size", "checkpoint_interval"):
            need(getattr(self, key) >= 1, f"{key} must be >= 1, not {getattr(self, key)}")
        for key in ("log_interval", "eval_interval", "gpus_per_node", "nodes"):
            need(getattr(self, key) >= 1, f"{key} must be >= 1, not {getattr(self, key)}")
        need(self.seq_length >= 2, f"seq_length must be >= 2, not {self.seq_length}")
        for key in ("warmup_steps", "eval_iters", "seed", "num_workers"):
            need(getattr(self, key) >= 0, f"{key} must be >= 0, not {getattr(self, key)}")
        need(self.lr > 0, f"lr must be > 0, not {self.lr}")
        need(0 <= self.min_lr <= self.lr, f"min_lr must be in [0, lr={self.lr}], not {self.min_lr}")
        for key in ("adam_beta1", "adam_beta2"):
            need(0 <= getattr(self, key) < 1, f"{key} must be in [0, 1), not {getattr(self, key)}")
        need(self.adam_eps > 0, f"adam_eps must be > 0, not {self.adam_eps}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, not {self.weight_decay}")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = no clipping), not {self.grad_clip}")
        try:
            train, valid, _ = parse_split(self.split)
        except ValueError as exc:
            raise ValueError(f"train: {exc}") from None
        need(train > 0, f"split {self.split!r} leaves no training data")
        need(
            self.eval_iters == 0 or valid > 0,
            f"eval_iters is {self.eval_iters} but split {self.split!r} has no valid part "
            "(set eval_iters: 0 or give the valid part a weight)",
        )
        try:
            self.grad_accum_steps()
        except ValueError as exc:
            raise ValueError(f"train: {exc} (gpus_per_node x nodes)") from None


def _coerce(key: str, value: Any, typ: Any) -> Any:
    typ = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    if typ == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"train: {key} must be true or false, not {value!r}")
        return value
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"train: {key} must be an integer, not {value!r}")
        return value
    if typ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = (
                " (in YAML write e.g. 1.0e-4: PyYAML reads 1e-4 as a string)"
                if isinstance(value, str)
                else ""
            )
            raise ValueError(f"train: {key} must be a number, not {value!r}{hint}")
        if not math.isfinite(value):
            raise ValueError(f"train: {key} must be finite, not {value!r}")
        return float(value)
    if typ == "str":
        if not isinstance(value, str):
            raise ValueError(f"train: {key} must be a string, not {value!r}")
        return value
    raise TypeError(f"unhandled field type {typ!r} for {key}")  # pragma: no cover
