"""The ``automodel`` engine: continued pretraining with NVIDIA NeMo Automodel (FSDP2, HF-native).

Automodel trains the HF checkpoint itself (no import/export step) through its recipe
``TrainFinetuneRecipeForNextTokenPrediction`` (``nemo_automodel.recipes.llm.train_ft``),
started by ``torchrun`` with one process per GPU. This module

* translates a :class:`~filmorph.train.config.TrainConfig` into that recipe's YAML
  (:func:`automodel_config`, a pure function),
* builds the launch command (:func:`launch_command`: ``torchrun`` on one node, one
  ``torchrun`` per node under ``srun`` with node rank and rendezvous from Slurm); the job
  itself starts ``python -m filmorph.train`` ONCE per node (:func:`launcher_argv`),
* runs it (:func:`run`, also reachable as :func:`train` through ``python -m filmorph.train``)
  and maps Automodel's outputs to the run-dir layout of :mod:`filmorph.train.common`:
  ``hf/step_NNNNNNN/`` (consolidated safetensors + config + the family's tokenizer files,
  byte for byte), ``metrics.jsonl``, ``train_config.json``, ``train_summary.json``.

What of our semantics Automodel 0.7.0 supports, and how (checked against its source):

* Data: Automodel ships a copy of megatron-core's ``GPTDataset``/``BlendedDataset``
  (``MegatronPretraining``), used here over ALL shard prefixes, weighted by token count, with
  our ``seq_length``/``split``/``seed``. Its ``MegatronPretraining`` hard-codes
  ``reset_position_ids``/``reset_attention_mask``/``eod_mask_loss`` to False (and builds its
  masks with an EOD id of -10000), so document boundaries are NOT handled by Automodel
  itself. This engine therefore wraps Automodel's dataset (:class:`DocumentPretrainingConfig`,
  a dataset ``_target_`` Automodel accepts): each sample's ``position_ids`` restart after every
  EOD (``reset_position_ids``) and labels whose *input* token is EOD become -100, which
  Automodel's ``MaskedCrossEntropy`` ignores (``eod_mask_loss``; the EOD itself is still
  predicted, megatron-core's semantics).
* Attention: document-boundary attention (``reset_attention_mask``) comes from the restarted
  position ids with no attention mask and ``use_cache=False`` (added to every batch by
  :func:`collate_documents`): transformers' ``create_causal_mask`` (used by Automodel's own
  Llama and by the HF Gemma classes) then builds block-diagonal causal masks (sliding windows
  honoured). With the cache on, transformers silently skips this, hence ``use_cache=False``.
  Position resets without mask resets (or the reverse) cannot be expressed this way and are
  refused. The attention implementation is then ``flex_attention`` (block-sparse masks), or
  ``sdpa`` for heads wider than 128 (:func:`document_attention`): with SDPA the mask is a dense
  ``B×1×T×T`` boolean and SDPA loses its flash kernel (one H100, seq 2048: Llama 3.2 1B shape
  40.2 % MFU with flex, 36.0 % with SDPA; Gemma 3 1B shape, head_dim 256: 14.0 % / 16.4 %).
* Loss: token-weighted mean over the global batch (Automodel divides the summed CE by the
  global count of non-ignored labels), as in the other engines.
* Optimizer: ``torch.optim.AdamW`` with our betas/eps/weight decay; norms and biases get no
  weight decay (a ``param_group_overrides`` entry with ``wd_mult: 0``), as in the hf engine.
* LR: Automodel's Megatron-style ``OptimizerParamScheduler``; its parameters are chosen so
  that update ``k`` (0-based) uses exactly :func:`filmorph.train.common.lr_at` ``(cfg, k)``
  (linear warmup, then cosine/linear/constant to ``min_lr``) whenever ``warmup_steps >= 1``
  (:func:`lr_scheduler_config`; with no warmup the decay is one update late).
* Precision: with >= 2 ranks, fp32 master weights (the model is loaded in float32) and FSDP2
  mixed precision computing in bf16 with fp32 gradient reduction (``precision: bf16``) or fp32
  throughout. Automodel applies FSDP2 (and its mixed-precision policy) only with >= 2 ranks and
  its LLM recipe has no autocast, so a bf16 run on ONE GPU loads the weights in bf16 (weights
  and Adam moments in bf16; fp32 weights there would compute in fp32, ~10x slower).
* Checkpoints: every ``checkpoint_interval`` and the last step Automodel writes a resumable
  DCP checkpoint ``automodel/epoch_E_step_S/`` (model, optimizer, LR scheduler, data loader,
  RNG; ``S`` is the 0-based index of the last update, i.e. our step - 1) and, with
  ``save_consolidated: every``, consolidated HF safetensors under ``model/consolidated/``.
  Those are hard-linked into ``hf/step_NNNNNNN/`` as soon as they are complete, so Automodel
  may prune old resumable states (``KEEP_RECENT_STATES``). The weights are saved as stored
  (float32 with >= 2 ranks, bf16 on one GPU).
* Resume: rerunning the same command resumes from the newest complete checkpoint
  (``checkpoint.restore_from: LATEST``; an interrupted save carries a ``.incomplete`` marker
  and is skipped); model, optimizer, LR schedule, data position and RNG are restored (on the
  H100 the resumed update reproduced the killed run's loss and gradient norm bit for bit).
  SIGTERM (forwarded by :func:`run` to the ranks) makes Automodel write a checkpoint and stop;
  :class:`TrainingIncomplete` then tells the caller to rerun.
* Validation: ``eval_iters`` global batches of the valid split every ``eval_interval`` steps;
  at the last step too only when ``checkpoint_interval`` is a multiple of ``eval_interval``
  (Automodel validates on checkpoint steps or on none of them).
* Metrics: Automodel's ``training.jsonl``/``validation.jsonl`` (buffered, 100 lines) merged
  with its per-step log lines, re-expressed per our step with our MFU
  (:func:`filmorph.train.common.flops_per_token`).

Nothing here imports torch, transformers or nemo_automodel at module import time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from filmorph.io import atomic_path, link_or_copy, read_json, write_json_atomic
from filmorph.provenance import package_versions
from filmorph.tokenizers import HF_TOKENIZER_FILES
from filmorph.train.common import (
    RunLayout,
    checkpoint_steps,
    eval_steps,
    lr_at,
    mfu,
    peak_flops,
    preflight,
    train_config_record,
    write_or_check_train_config,
)
from filmorph.train.config import TrainConfig, deep_merge
from filmorph.train.launch import (
    TrainingIncomplete,
    detect_dist_env,
    first_host,
    forward_signals,
    kill_group,
    restore_signals,
)

__all__ = [
    "AUTOMODEL_RECIPE",
    "DocumentPretrainingConfig",
    "TrainingIncomplete",
    "automodel_checkpoints",
    "automodel_config",
    "check_launch",
    "clear_automodel_run",
    "collate_documents",
    "document_attention",
    "document_inputs",
    "enable_cache",
    "export_checkpoints",
    "launch_command",
    "launcher_argv",
    "lr_scheduler_config",
    "parse_automodel_metrics",
    "run",
    "train",
    "write_config_yaml",
]

ENGINE = "automodel"
AUTOMODEL_RECIPE = "nemo_automodel.recipes.llm.train_ft"
MODEL_TARGET = "nemo_automodel.NeMoAutoModelForCausalLM.from_pretrained"
LOSS_TARGET = "nemo_automodel.components.loss.masked_ce.MaskedCrossEntropy"
DATASET_TARGET = f"{__name__}.DocumentPretrainingConfig"
COLLATE_TARGET = f"{__name__}.collate_documents"
AUTOMODEL_DIR = "automodel"  # Automodel's checkpoint_dir inside the run dir
CONFIG_YAML = "automodel.yaml"
TRAIN_META = "filmorph_train_meta.json"
IGNORE_INDEX = -100
# parameters without weight decay (norm weights and biases: every 1-D parameter of the
# Llama and Gemma families), matched by re.search on the parameter name
NO_DECAY_PATTERN = r"(norm\.weight|\.bias)$"
# resumable Automodel states kept on disk (HF checkpoints are all kept, in hf/)
KEEP_RECENT_STATES = 2
TOKENIZER_FILES = (*HF_TOKENIZER_FILES, "tokenizer_meta.json")  # + the family meta
CKPT_RE = re.compile(r"^epoch_(\d+)_step_(\d+)$")
INCOMPLETE_MARKER = ".incomplete"  # Automodel's marker of a checkpoint being written
# Automodel's per-step log lines (rank 0), a fallback for lines its JSONL buffer lost on a kill
TRAIN_LINE_RE = re.compile(
    r"step (\d+) \| epoch (\d+) \| loss (\S+) \| grad_norm (\S+) \| lr (\S+) \| mem (\S+) GiB \| "
    r"tps (\S+)\((\S+)/gpu\) \| num_label_tokens (\d+)"
)
VAL_LINE_RE = re.compile(r'\[val\] name "([^"]*)" \| step (\d+) \| epoch (\d+) \| loss (\S+) \| lr (\S+)')
# attention implementation with document masks, measured on one H100 at seq 2048 through run():
# Llama 3.2 1B shape (head_dim 64) flex_attention 48.4k tokens/s = 40.2 % MFU, sdpa with the dense mask
# 43.3k = 36.0 %; Gemma 3 1B shape (head_dim 256) flex 20.8k = 14.0 %, sdpa 24.4k = 16.4 %
DOCUMENT_ATTENTION = "flex_attention"
FLEX_MAX_HEAD_DIM = 128
# seconds between looks for new checkpoints while training runs
WATCH_POLL_S = 2.0
# torchrun/Automodel environment: quiet tokenizers, unbuffered logs
AUTOMODEL_PACKAGES = ("nemo_automodel", "torch", "transformers")  # versions in the summary
CHILD_ENV = {"TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


# ============================================================================ data semantics
def document_inputs(
    tokens: Any, labels: Any, *, eod_id: int, reset_position_ids: bool, eod_mask_loss: bool
) -> dict[str, Any]:
    """Model inputs of one sample (1-D ``tokens``/``labels``, ``labels[i] = tokens[i + 1]``).

    ``position_ids`` (only with ``reset_position_ids``) restart at 0 after every EOD; with
    ``eod_mask_loss`` the label of every position whose *input* token is EOD becomes
    :data:`IGNORE_INDEX` (the next document's first token is not predicted from the previous
    document; the EOD itself still is). ``labels`` already -100 stay so."""
    import torch

    tokens = torch.as_tensor(tokens, dtype=torch.long)
    labels = torch.as_tensor(labels, dtype=torch.long).clone()
    out: dict[str, Any] = {"input_ids": tokens, "labels": labels}
    is_eod = tokens == int(eod_id)
    if eod_mask_loss:
        labels[is_eod] = IGNORE_INDEX
    if reset_position_ids:
        n = tokens.shape[0]
        idx = torch.arange(n, dtype=torch.long)
        starts = torch.zeros(n, dtype=torch.bool)
        starts[1:] = is_eod[:-1]
        start_of = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), dim=0).values
        out["position_ids"] = idx - start_of
    return out


def collate_documents(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack samples of :func:`document_inputs` into a batch and add ``use_cache=False`` (the
    model must not build a KV cache: transformers only derives per-document attention from
    restarted position ids when there is none)."""
    import torch

    keys = items[0].keys()
    batch: dict[str, Any] = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in keys}
    batch["use_cache"] = False
    return batch


class _EodTokenizer:
    """What Automodel's GPTDataset reads from a tokenizer: pad and eos ids and a name.

    ``pad_token_id`` is -1, an id no shard holds (real pad ids, e.g. Llama 3's 128004, are
    ordinary corpus tokens that Automodel would otherwise blank out); ``eos_token_id`` is the
    shards' EOD id."""

    def __init__(self, eod_id: int):
        self.pad_token_id = -1
        self.eos_token_id = int(eod_id)
        self.name_or_path = f"filmorph-eod-{int(eod_id)}"


class DocumentSamples:
    """Map-style dataset over an Automodel Megatron dataset that yields
    :func:`document_inputs` samples; at most ``limit`` samples."""

    def __init__(
        self, dataset: Any, limit: int | None, *, eod_id: int, reset_position_ids: bool, eod_mask_loss: bool
    ):
        self.dataset = dataset
        self.limit = len(dataset) if limit is None else min(int(limit), len(dataset))
        self.eod_id = int(eod_id)
        self.reset_position_ids = bool(reset_position_ids)
        self.eod_mask_loss = bool(eod_mask_loss)

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if not 0 <= idx < self.limit:
            raise IndexError(idx)
        item = self.dataset[idx]
        labels = item["labels"].clone()
        labels[item["loss_mask"] == 0] = IGNORE_INDEX  # padding at the end of the data
        return document_inputs(
            item["input_ids"],
            labels,
            eod_id=self.eod_id,
            reset_position_ids=self.reset_position_ids,
            eod_mask_loss=self.eod_mask_loss,
        )


@dataclass
class DocumentPretrainingConfig:
    """Dataset ``_target_`` for Automodel's recipe: its ``MegatronPretraining`` over the blend
    ``paths`` (weights: ``weights``), one split (``split_name``: ``train`` or ``validation``)
    of ``num_samples`` samples (default ``max_steps × global batch``), wrapped in
    :class:`DocumentSamples`. The class attributes are the capabilities Automodel's loader
    checks (build on every rank, give the training schedule)."""

    builds_on_all_ranks: ClassVar[bool] = True
    accepts_tokenizer: ClassVar[bool] = True
    requires_training_schedule: ClassVar[bool] = True

    paths: list[str]
    eod_id: int
    weights: list[float] | None = None
    seq_length: int = 2048
    seed: int = 1234
    split: str = "99,1,0"
    split_name: str = "train"
    num_samples: int | None = None
    reset_position_ids: bool = True
    eod_mask_loss: bool = True
    index_mapping_dir: str | None = None
    num_dataset_builder_threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.split, (list, tuple)):  # Automodel's YAML loader reads "99,1,0" as a tuple
            self.split = ",".join(str(x) for x in self.split)
        if self.split_name not in ("train", "validation"):
            raise ValueError(f"split_name must be train or validation, not {self.split_name!r}")
        if self.weights is not None and len(self.weights) != len(self.paths):
            raise ValueError(f"{len(self.weights)} weights for {len(self.paths)} paths")

    def blend(self) -> list[str]:
        """``paths`` as Megatron's zipped ``[weight, prefix, ...]`` list (plain list without weights)."""
        if self.weights is None or len(self.paths) == 1:
            return [str(p) for p in self.paths]
        return [x for w, p in zip(self.weights, self.paths, strict=True) for x in (repr(float(w)), str(p))]

    def build(self, *, tokenizer: Any = None, training_schedule: Any = None) -> DocumentSamples:
        """Build the split (Automodel's builder; every rank takes part) and wrap it."""
        from nemo_automodel.components.datasets.llm.megatron_dataset import MegatronPretraining

        local = getattr(training_schedule, "local_batch_size", 1)
        gbs = getattr(training_schedule, "global_batch_size", 1)
        max_steps = getattr(training_schedule, "max_steps", None)
        n = self.num_samples
        if n is None:
            if max_steps is None:
                raise ValueError("num_samples or the schedule's max_steps is needed")
            n = int(max_steps) * int(gbs)
        train = self.split_name == "train"
        mp = MegatronPretraining(
            paths=self.blend(),
            seq_length=self.seq_length,
            tokenizer=_EodTokenizer(self.eod_id),
            micro_batch_size=local,
            global_batch_size=gbs,
            create_attention_mask=False,
            seed=self.seed,
            split=self.split,
            index_mapping_dir=self.index_mapping_dir,
            num_dataset_builder_threads=self.num_dataset_builder_threads,
            num_train_samples=n if train else None,
            num_val_samples=None if train else n,
            trainer_max_steps=max_steps,
            trainer_val_check_interval=getattr(training_schedule, "val_check_interval", None) or 1000,
            splits_to_build=self.split_name,
            **self.extra,
        )
        mp.build()
        ds = mp.get_dataset(self.split_name)
        if len(ds) < n:
            raise RuntimeError(f"Automodel built {len(ds)} {self.split_name} samples, {n} needed")
        return DocumentSamples(
            ds,
            n,
            eod_id=self.eod_id,
            reset_position_ids=self.reset_position_ids,
            eod_mask_loss=self.eod_mask_loss,
        )


# ============================================================================ config translation
def lr_scheduler_config(cfg: TrainConfig) -> dict[str, Any]:
    """The ``lr_scheduler:`` section (Automodel's Megatron-style ``OptimizerParamScheduler``).

    That scheduler gives update ``n`` (0-based; it steps after each update) the rate
    ``init + (max - init) · n / W'`` while ``n <= W'`` and then decays over
    ``(n - W') / (D - W')``. With ``init = lr / W``, ``W' = W - 1`` and ``D = max_steps - 1``
    this is exactly :func:`~filmorph.train.common.lr_at` for ``W = warmup_steps >= 1``."""
    w, m = cfg.warmup_steps, cfg.max_steps
    if w >= 1:
        init_lr, warm = cfg.lr / w, w - 1
        decay = max(m - 1, warm + 1)
    else:  # no warmup: the decay starts one update earlier than lr_at's
        init_lr, warm, decay = cfg.lr, 0, max(m, 1)
    return {
        "lr_decay_style": cfg.lr_schedule,
        "lr_warmup_steps": warm,
        "lr_decay_steps": decay,
        "init_lr": init_lr,
        "max_lr": cfg.lr,
        "min_lr": cfg.min_lr if cfg.lr_schedule != "constant" else cfg.lr,
        "start_wd": cfg.weight_decay,
        "end_wd": cfg.weight_decay,
        "wd_incr_style": "constant",
        "use_checkpoint_opt_param_scheduler": True,
    }


def automodel_config(
    cfg: TrainConfig,
    *,
    model_dir: str | Path,
    shard_prefixes: Sequence[str | Path],
    run_dir: str | Path,
    world_size: int,
    eod_id: int,
    shard_weights: Sequence[float] | None = None,
    wandb: Mapping[str, Any] | None = None,
    attn_implementation: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Automodel recipe YAML (as a dict) that trains ``cfg`` on all ``shard_prefixes``.

    ``world_size`` data-parallel ranks (FSDP2); ``eod_id`` the shards' EOD id;
    ``shard_weights`` the blend weights (token counts; ``None``: equal). ``wandb``: the
    ``wandb:`` section (project/name/...; never a key) or ``None``. ``attn_implementation``:
    the attention used with document masks (default ``flex_attention``; see
    :func:`document_attention`; without document masks Automodel's default). ``overrides`` are merged
    into the result last (tuning: attention backend, loss, compile, ...); they may not switch
    off what the document semantics need. Raises ``ValueError`` for batch sizes that do not
    divide, document semantics Automodel cannot realise, or paths it would mangle."""
    cfg.grad_accum_steps(world_size)  # raises ValueError; Automodel derives it from global / (local × world)
    prefixes = [str(p) for p in shard_prefixes]
    if not prefixes:
        raise ValueError("no shard prefixes given")
    if len(set(prefixes)) != len(prefixes):
        raise ValueError(f"shard prefixes repeat: {prefixes}")
    if cfg.reset_position_ids != cfg.reset_attention_mask:
        raise ValueError(
            "the automodel engine separates documents through restarted position ids (transformers "
            "derives the per-document attention mask from them): reset_position_ids and "
            f"reset_attention_mask must be equal, not {cfg.reset_position_ids} / {cfg.reset_attention_mask}"
        )
    for p in [*prefixes, str(model_dir), str(run_dir)]:
        if "$" in p:
            raise ValueError(f"Automodel expands $VARIABLES in YAML strings; rename the path {p!r}")
    weights = None
    if shard_weights is not None:
        weights = [float(w) for w in shard_weights]
        if len(weights) != len(prefixes) or any(not math.isfinite(w) or w <= 0 for w in weights):
            raise ValueError(f"shard_weights must be {len(prefixes)} positive numbers, not {weights}")
        if len(weights) == 1:
            weights = None
    layout = RunLayout(run_dir)
    bf16 = cfg.precision == "bf16"
    evaluate = cfg.eval_enabled
    dataset = {
        "_target_": DATASET_TARGET,
        "paths": prefixes,
        "weights": weights,
        "eod_id": int(eod_id),
        "seq_length": cfg.seq_length,
        "seed": cfg.seed,
        "split": cfg.split,
        "split_name": "train",
        "num_samples": cfg.max_steps * cfg.global_batch_size,
        "reset_position_ids": cfg.reset_position_ids,
        "eod_mask_loss": cfg.eod_mask_loss,
        "index_mapping_dir": str(layout.data_cache),
    }
    loader = {"collate_fn": COLLATE_TARGET, "num_workers": cfg.num_workers, "pin_memory": True}
    out: dict[str, Any] = {
        "seed": cfg.seed,
        "step_scheduler": {
            "global_batch_size": cfg.global_batch_size,
            "local_batch_size": cfg.micro_batch_size,
            "max_steps": cfg.max_steps,
            "num_epochs": 1,
            "ckpt_every_steps": cfg.checkpoint_interval,
            "save_checkpoint_every_epoch": False,
            "val_every_steps": cfg.eval_interval if evaluate else None,
            "validate_on_checkpoint": bool(evaluate and cfg.checkpoint_interval % cfg.eval_interval == 0),
            "log_remote_every_steps": cfg.log_interval,
            "preemption_signal": "SIGTERM",
        },
        "dist_env": {"backend": "nccl", "timeout_minutes": 30},
        "model": {
            "_target_": MODEL_TARGET,
            "pretrained_model_name_or_path": str(model_dir),
            # fp32 master weights, FSDP2 computing in mp_policy.param_dtype; Automodel applies FSDP2
            # (and so its mixed precision) only with >= 2 ranks and its LLM recipe has no autocast:
            # on one GPU a bf16 run stores weights and Adam moments in bf16
            "torch_dtype": "bfloat16" if bf16 and world_size == 1 else "float32",
        },
        "distributed": {
            "strategy": "fsdp2",
            "dp_size": world_size,
            "dp_replicate_size": 1,
            "tp_size": 1,
            "cp_size": 1,
            "pp_size": 1,
            "sequence_parallel": False,
            "activation_checkpointing": False,
            "mp_policy": {
                "param_dtype": "bfloat16" if bf16 else "float32",
                "reduce_dtype": "float32",
                "output_dtype": None,
            },
        },
        "loss_fn": {"_target_": LOSS_TARGET},
        "clip_grad_norm": {"max_norm": cfg.grad_clip if cfg.grad_clip > 0 else math.inf},
        "optimizer": {
            "_target_": "torch.optim.AdamW",
            "lr": cfg.lr,
            "betas": [cfg.adam_beta1, cfg.adam_beta2],
            "eps": cfg.adam_eps,
            "weight_decay": cfg.weight_decay,
            "param_group_overrides": [{"pattern": NO_DECAY_PATTERN, "wd_mult": 0.0}],
        },
        "lr_scheduler": lr_scheduler_config(cfg),
        "dataset": dataset,
        "dataloader": dict(loader),
        "checkpoint": {
            "enabled": True,
            "checkpoint_dir": str(layout.root / AUTOMODEL_DIR),
            "model_save_format": "safetensors",
            "save_consolidated": "every",
            "restore_from": "LATEST",
            "max_recent_checkpoints": KEEP_RECENT_STATES,
        },
    }
    if cfg.reset_attention_mask:
        # transformers builds the per-document masks from the restarted position ids: block-sparse
        # for FlexAttention, a dense B x 1 x T x T mask for SDPA (which then loses its flash kernel)
        out["model"]["attn_implementation"] = attn_implementation or DOCUMENT_ATTENTION
    if evaluate:
        out["validation_dataset"] = {
            **dataset,
            "split_name": "validation",
            "num_samples": cfg.eval_iters * cfg.global_batch_size,
        }
        out["validation_dataloader"] = {**loader, "num_workers": 0}
    if wandb:
        out["wandb"] = dict(wandb)
    if overrides:
        out = deep_merge(out, overrides)
        if cfg.reset_attention_mask and out.get("distributed", {}).get("patch_is_packed_sequence"):
            raise ValueError("overrides: patch_is_packed_sequence switches off per-document attention")
        if out["dataset"].get("_target_") != DATASET_TARGET:
            raise ValueError("overrides may not replace the dataset target (document semantics)")
    return out


def document_attention(model_config: Mapping[str, Any]) -> str:
    """The attention implementation for per-document masks given the model's ``config.json``:
    ``flex_attention`` (block-sparse masks) unless the heads are wider than 128 (Gemma 3: 256),
    where FlexAttention's kernel was slower than SDPA with the dense mask."""
    text = model_config.get("text_config") or model_config
    heads = int(text.get("num_attention_heads") or 1)
    head_dim = text.get("head_dim") or int(text.get("hidden_size") or 0) // max(heads, 1)
    return "sdpa" if head_dim and int(head_dim) > FLEX_MAX_HEAD_DIM else DOCUMENT_ATTENTION


def write_config_yaml(config: Mapping[str, Any], path: str | Path) -> Path:
    """Write the recipe dict as YAML, atomically."""
    import yaml

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(_plain(config), sort_keys=False), encoding="utf-8")
    return path


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


# ============================================================================ launch
def launch_command(
    cfg: TrainConfig,
    config_path: str | Path,
    *,
    python: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """``torchrun`` starting Automodel's recipe with ``gpus_per_node`` processes on this node.

    One node: ``--standalone``. Several nodes: one such command per node, started by
    ``srun --ntasks-per-node=1`` (not one per GPU); node rank from ``SLURM_NODEID``,
    rendezvous at ``MASTER_ADDR``/``MASTER_PORT`` or the first host of the job's node list and
    a port derived from the job id. Raises ``ValueError`` when several nodes are asked for
    outside Slurm or Slurm's node count differs."""
    env = os.environ if environ is None else environ
    py = python or sys.executable
    cmd = [py, "-m", "torch.distributed.run", f"--nproc-per-node={cfg.gpus_per_node}"]
    if cfg.nodes == 1:
        cmd += ["--standalone", "--nnodes=1"]
    else:
        if "SLURM_NODEID" not in env:
            raise ValueError(
                f"train.nodes is {cfg.nodes}: start one launcher per node under Slurm "
                "(srun --ntasks-per-node=1 ...), which sets SLURM_NODEID"
            )
        nnodes = env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
        if nnodes and int(nnodes) != cfg.nodes:
            raise ValueError(f"train.nodes is {cfg.nodes} but Slurm gives {nnodes} nodes")
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "localhost"
        job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or "0"
        addr = env.get("MASTER_ADDR") or first_host(nodelist)
        port = env.get("MASTER_PORT") or str(20000 + int(re.sub(r"\D", "", job) or 0) % 20000)
        cmd += [
            f"--nnodes={cfg.nodes}",
            f"--node-rank={int(env['SLURM_NODEID'])}",
            f"--master-addr={addr}",
            f"--master-port={port}",
        ]
    return [*cmd, "-m", AUTOMODEL_RECIPE, "--config", str(config_path)]


def node_rank(environ: Mapping[str, str] | None = None) -> int:
    """This node's rank (``SLURM_NODEID`` inside a Slurm step, else 0)."""
    env = os.environ if environ is None else environ
    return int(env.get("SLURM_NODEID", "0") or 0)


def launcher_argv(cfg: TrainConfig, module_args: Sequence[str], python: str | None = None) -> list[str]:
    """How a job starts ``python -m filmorph.train MODULE_ARGS`` for this engine: ONE process per
    node (it starts torchrun with ``gpus_per_node`` ranks itself): plain on one node,
    ``srun --ntasks-per-node=1`` on several (not :func:`filmorph.train.launch.launch_argv`,
    which starts one process per GPU)."""
    py = python or sys.executable
    cmd = [py, "-m", "filmorph.train", *module_args]
    if cfg.nodes == 1:
        return cmd
    return ["srun", f"--nodes={cfg.nodes}", "--ntasks-per-node=1", *cmd]


def check_launch(cfg: TrainConfig, environ: Mapping[str, str] | None = None) -> None:
    """Refuse to run as one of several ranks (torchrun, or srun with a task per GPU): the engine
    is started once per node and launches its ranks itself."""
    env = detect_dist_env(environ)
    if env.launcher == "torchrun" or (env.launcher == "slurm" and env.world_size != cfg.nodes):
        raise ValueError(
            f"the automodel engine starts torchrun itself: start python -m filmorph.train once per node "
            f"(filmorph.train.automodel.launcher_argv), not as one of {env.world_size} {env.launcher} ranks"
        )


def clear_automodel_run(layout: RunLayout) -> None:
    """Remove Automodel's checkpoints, its YAML and logs from a run dir (a restarted run)."""
    shutil.rmtree(layout.root / AUTOMODEL_DIR, ignore_errors=True)
    (layout.root / CONFIG_YAML).unlink(missing_ok=True)
    for log in layout.root.glob("automodel_node*.log"):
        log.unlink()


# ============================================================================ outputs
@dataclass(frozen=True)
class AutomodelCheckpoint:
    """One complete Automodel checkpoint dir (``step`` = our 1-based step)."""

    path: Path
    epoch: int
    step: int

    @property
    def consolidated(self) -> Path:
        return self.path / "model" / "consolidated"


def automodel_checkpoints(ckpt_root: str | Path) -> list[AutomodelCheckpoint]:
    """Complete checkpoints under Automodel's ``checkpoint_dir``, ascending by step.

    ``epoch_E_step_S`` holds the state after update ``S`` (0-based), i.e. after our step
    ``S + 1``; dirs with Automodel's ``.incomplete`` marker are skipped."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = CKPT_RE.match(d.name)
        if m and d.is_dir() and not d.is_symlink() and not (d / INCOMPLETE_MARKER).exists():
            found.append(AutomodelCheckpoint(d, int(m.group(1)), int(m.group(2)) + 1))
    return sorted(found, key=lambda c: c.step)


def export_checkpoint(
    ckpt: AutomodelCheckpoint,
    out_dir: str | Path,
    *,
    tokenizer_files_dir: str | Path,
    meta: Mapping[str, Any],
) -> bool:
    """Make ``out_dir`` a transformers checkpoint from ``ckpt``'s consolidated safetensors
    (hard links where possible), the tokenizer files of ``tokenizer_files_dir`` (byte for
    byte, replacing Automodel's re-saved ones), ``use_cache: true`` in ``config.json`` and
    ``meta`` as ``filmorph_train_meta.json``; atomically. Returns False (nothing written)
    when the checkpoint has no consolidated export."""
    from filmorph.models import relax_permissions

    src = ckpt.consolidated
    if not (src / "config.json").is_file() or not any(src.glob("*.safetensors")):
        return False
    tok_dir = Path(tokenizer_files_dir)
    if not (tok_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {tok_dir}")
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name not in TOKENIZER_FILES and f.name != "config.json":
                link_or_copy(f, tmp / f.name)
        config = read_json(src / "config.json")
        enable_cache(config)
        write_json_atomic(tmp / "config.json", config)
        for name in TOKENIZER_FILES:
            if (tok_dir / name).is_file():
                shutil.copyfile(tok_dir / name, tmp / name)
        write_json_atomic(tmp / TRAIN_META, dict(meta))
        relax_permissions(tmp)
    return True


def enable_cache(config: dict[str, Any]) -> None:
    """Inference wants the KV cache: set ``use_cache`` true where the config names it."""
    if "use_cache" in config:
        config["use_cache"] = True
    text = config.get("text_config")
    if isinstance(text, dict) and "use_cache" in text:
        text["use_cache"] = True


def export_checkpoints(
    cfg: TrainConfig,
    layout: RunLayout,
    *,
    tokenizer_files_dir: str | Path,
    meta: Mapping[str, Any],
    steps: Iterable[int] | None = None,
) -> list[int]:
    """Export every complete Automodel checkpoint whose step is a checkpoint step of ``cfg``
    (or in ``steps``) and has no ``hf/step_NNNNNNN`` yet. Returns the steps exported now."""
    wanted = set(checkpoint_steps(cfg) if steps is None else steps)
    done = []
    for ckpt in automodel_checkpoints(layout.root / AUTOMODEL_DIR):
        if ckpt.step not in wanted or layout.hf_dir(ckpt.step).is_dir():
            continue
        info = dict(meta, step=ckpt.step, automodel_checkpoint=str(ckpt.path.relative_to(layout.root)))
        info.update(_checkpoint_losses(ckpt.path))
        if export_checkpoint(
            ckpt, layout.hf_dir(ckpt.step), tokenizer_files_dir=tokenizer_files_dir, meta=info
        ):
            done.append(ckpt.step)
    return done


def _checkpoint_losses(path: Path) -> dict[str, Any]:
    for name in ("losses.json", "loss.json"):
        if (path / name).is_file():
            with contextlib.suppress(ValueError, OSError):
                d = read_json(path / name)
                return {"loss": d.get("train_loss"), "val_loss": d.get("val_loss")}
    return {}


def _float(x: str) -> float | None:
    try:
        return float(x)
    except ValueError:
        return None


def parse_automodel_metrics(
    ckpt_root: str | Path, logs: Iterable[str | Path] = ()
) -> dict[str, dict[int, dict]]:
    """Automodel's per-update records by OUR step (1-based): ``{"train": {step: rec},
    "valid": {step: rec}}``. Sources, later ones winning for the same step: the log lines
    in ``logs`` (rounded figures; they survive a kill) and then ``training.jsonl`` /
    ``validation.jsonl`` under ``ckpt_root`` (full precision; buffered by Automodel, so a kill
    loses their tail). Train records hold ``loss``, ``grad_norm``, ``lr`` (Automodel logs the
    rate of the NEXT update), ``mem`` (GiB), ``tps``, ``num_label_tokens``."""
    train: dict[int, dict] = {}
    valid: dict[int, dict] = {}
    for log in logs:
        p = Path(log)
        if not p.is_file():
            continue
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            m = TRAIN_LINE_RE.search(line)
            if m:
                s = int(m.group(1)) + 1
                train[s] = {
                    "loss": _float(m.group(3)),
                    "grad_norm": _float(m.group(4)),
                    "lr": _float(m.group(5)),
                    "mem": _float(m.group(6)),
                    "tps": _float(m.group(7)),
                    "num_label_tokens": int(m.group(9)),
                    "source": "log",
                }
                continue
            m = VAL_LINE_RE.search(line)
            if m and m.group(1) in ("default", ""):
                valid[int(m.group(2)) + 1] = {"val_loss": _float(m.group(4)), "source": "log"}
    root = Path(ckpt_root)
    for name, table, key_from in (("training.jsonl", train, None), ("validation.jsonl", valid, "val_loss")):
        f = root / name
        if not f.is_file():
            continue
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if not isinstance(rec, dict) or "step" not in rec:
                continue
            if key_from is not None and key_from not in rec:
                continue
            table[int(rec["step"]) + 1] = {**rec, "source": "jsonl"}
    return {"train": train, "valid": valid}


def build_metrics(
    cfg: TrainConfig,
    parsed: Mapping[str, Mapping[int, Mapping[str, Any]]],
    *,
    flops_per_token: float | None,
    peak: float | None,
    world_size: int,
) -> list[dict[str, Any]]:
    """Our ``metrics.jsonl`` records from :func:`parse_automodel_metrics`: one per
    ``log_interval`` steps, the last step and every validated step, with ``lr`` the rate of
    that update (:func:`lr_at`), tokens/s over the steps since the previous record (from
    Automodel's per-update times) and MFU."""
    train, valid = parsed["train"], parsed["valid"]
    out: list[dict[str, Any]] = []
    seconds_since, tokens_since, elapsed = 0.0, 0, 0.0
    for step in sorted(train):
        rec = train[step]
        tps = rec.get("tps")
        n_tok = rec.get("num_tokens_per_step") or cfg.tokens_per_step
        if tps:
            dt = n_tok / tps
            seconds_since += dt
            elapsed += dt
            tokens_since += cfg.tokens_per_step
        val = valid.get(step, {}).get("val_loss")
        if not (step % cfg.log_interval == 0 or step == cfg.max_steps or val is not None):
            continue
        our_tps = tokens_since / seconds_since if seconds_since > 0 else None
        out.append(
            {
                "step": step,
                "loss": rec.get("loss"),
                "val_loss": val,
                "lr": lr_at(cfg, step - 1),
                "grad_norm": rec.get("grad_norm"),
                "tokens": step * cfg.tokens_per_step,
                "loss_tokens": rec.get("num_label_tokens"),
                "tokens_per_s": our_tps,
                "mfu": mfu(our_tps, flops_per_token, peak, world_size)
                if our_tps and flops_per_token
                else None,
                "peak_memory_gib": rec.get("mem"),
                "elapsed_s": elapsed,
                "automodel_next_lr": rec.get("lr"),
            }
        )
        seconds_since, tokens_since = 0.0, 0
    return out


def lr_schedule_error(cfg: TrainConfig, train: Mapping[int, Mapping[str, Any]]) -> float | None:
    """Largest relative difference between the rate Automodel logged after update ``s`` (the
    rate of update ``s + 1``) and ``lr_at(cfg, s + 1)``; ``None`` without full-precision
    records."""
    errs = []
    for step, rec in train.items():
        if rec.get("source") != "jsonl" or rec.get("lr") is None or step >= cfg.max_steps:
            continue
        want = lr_at(cfg, step)  # update index `step` (0-based) follows our step `step`
        errs.append(abs(rec["lr"] - want) / max(abs(want), 1e-30))
    return max(errs) if errs else None


# ============================================================================ running
def _model_facts(model_dir: Path, seq_length: int) -> dict[str, Any]:
    """FLOPs per token and parameter count of the model (built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from filmorph.train.common import model_flops_per_token

    config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {
        "flops_per_token": model_flops_per_token(model, seq_length),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


def _device_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover - a broken CUDA setup
        return None


def _wandb_section(run_dir: Path, name: str) -> dict[str, Any] | None:
    """The ``wandb:`` section when ``WANDB_API_KEY`` is set (the key stays in the environment)."""
    if not os.environ.get("WANDB_API_KEY"):
        return None
    import hashlib

    run_id = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
    return {
        "project": os.environ.get("WANDB_PROJECT", "filmorph"),
        "name": name,
        "id": run_id,
        "resume": "allow",
        "dir": str(run_dir),
    }


class _Watcher(threading.Thread):
    """Exports complete checkpoints while training runs; kills the job once ``ready_steps()``
    (the steps with an ``hf/`` dir) reaches ``interrupt_after``."""

    def __init__(self, export, ready_steps, proc: subprocess.Popen, interrupt_after: int | None,
                 poll_s: float) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.export, self.ready_steps, self.proc = export, ready_steps, proc
        self.interrupt_after, self.poll_s = interrupt_after, poll_s
        self.stop_event = threading.Event()
        self.interrupted_at: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.export()
                if self.interrupt_after is not None:
                    reached = [s for s in self.ready_steps() if s >= self.interrupt_after]
                    if reached and self.proc.poll() is None:
                        self.interrupted_at = min(reached)
                        kill_group(self.proc, signal.SIGKILL)
                        return
            except BaseException as exc:  # reported by run()
                self.error = exc
                return
            self.stop_event.wait(self.poll_s)


def run(
    cfg: TrainConfig,
    model_dir: str | Path,
    shard_prefixes: Sequence[str | Path],
    run_dir: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
    interrupt_after: int | None = None,
    python: str | None = None,
    on_config_change: str = "error",
) -> dict[str, Any]:
    """Continue pretraining ``model_dir`` on the blend of ``shard_prefixes`` into ``run_dir``
    with NeMo Automodel; resume when ``run_dir`` holds an Automodel checkpoint.

    Pre-flight check (:func:`~filmorph.train.common.preflight`), ``train_config.json`` (a
    resumed run must describe the same training), ``automodel.yaml`` (:func:`automodel_config`),
    then ``torchrun`` (:func:`launch_command`; output streamed and appended to
    ``automodel_node{N}.log``). On node 0, complete checkpoints are exported to
    ``hf/step_NNNNNNN/`` while training runs and afterwards, then ``metrics.jsonl`` and
    ``train_summary.json`` are written; the summary is returned (other nodes get ``{}``).
    SIGTERM/SIGINT received here are forwarded to the training processes (Automodel then saves
    a checkpoint and stops; :class:`TrainingIncomplete` follows). ``interrupt_after``: kill the
    training once the checkpoint of that step is complete and raise :class:`TrainingIncomplete`
    (to test resuming). ``overrides``: see :func:`automodel_config`. ``on_config_change``: when
    ``run_dir`` holds a run of another config, shards or model, ``"error"`` refuses and
    ``"restart"`` clears it (Automodel's checkpoints too) and starts afresh. Start ONE process per
    node (:func:`launcher_argv`): this function starts torchrun itself. Raises ``RuntimeError``
    when the training fails."""
    t_start = time.time()
    cfg = cfg.with_overrides(max_steps=max_steps)
    if on_config_change not in ("error", "restart"):
        raise ValueError(f"on_config_change must be 'error' or 'restart', not {on_config_change!r}")
    check_launch(cfg)
    layout = RunLayout(run_dir)
    model_dir = Path(model_dir)
    world = cfg.world_size
    rank0 = node_rank() == 0
    report = preflight(shard_prefixes, model_dir, tokenizer_dir=tokenizer_dir, scan_ids=rank0)
    record = train_config_record(cfg, ENGINE, report, world)
    record["automodel_overrides"] = _plain(overrides or {})
    layout.root.mkdir(parents=True, exist_ok=True)
    if rank0:
        try:
            write_or_check_train_config(layout, record)
        except ValueError:
            if on_config_change != "restart":
                raise
            clear_automodel_run(layout)  # Automodel's own state, which common.clear_run does not know
            write_or_check_train_config(layout, record, on_mismatch="restart")
    prefixes = [s["prefix"] for s in report["shards"]]
    amcfg = automodel_config(
        cfg,
        model_dir=model_dir,
        shard_prefixes=prefixes,
        run_dir=layout.root,
        world_size=world,
        eod_id=report["eod_id"],
        shard_weights=[s["tokens"] for s in report["shards"]],
        wandb=_wandb_section(layout.root, f"{model_dir.name}-{layout.root.name}"),
        attn_implementation=document_attention(read_json(model_dir / "config.json")),
        overrides=overrides,
    )
    yaml_path = write_config_yaml(amcfg, layout.root / CONFIG_YAML)
    ckpt_root = layout.root / AUTOMODEL_DIR
    log_path = layout.root / f"automodel_node{node_rank()}.log"
    tok_files = report["tokenizer_files_dir"]
    meta = {
        "engine": ENGINE,
        "base_model": report["model"]["path"],
        "base_model_config_sha256": report["model"]["config_sha256"],
        "tokenizer": report["tokenizer"],
        "shard_prefixes": prefixes,
        "run_dir": str(layout.root),
    }

    def export() -> list[int]:
        if not rank0:
            return []
        t = time.time()
        done = export_checkpoints(cfg, layout, tokenizer_files_dir=tok_files, meta=meta)
        if done and progress:
            print(
                f"filmorph: exported hf/ step(s) {done} in {time.time() - t:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        return done

    def ready() -> list[int]:
        return [s for s in checkpoint_steps(cfg) if layout.hf_dir(s).is_dir()]

    done_before = automodel_checkpoints(ckpt_root)
    start = done_before[-1].step if done_before else 0
    if start > cfg.max_steps:
        raise ValueError(
            f"{layout.root} holds an Automodel checkpoint of step {start} > max_steps {cfg.max_steps}"
        )
    export()
    interrupted_at = None
    if start < cfg.max_steps:
        cmd = launch_command(cfg, yaml_path, python=python)
        env = {**os.environ, **CHILD_ENV}
        src = str(Path(__file__).resolve().parents[2])  # the package's import root, for the ranks
        env["PYTHONPATH"] = os.pathsep.join(x for x in (src, env.get("PYTHONPATH")) if x)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(
                f"# filmorph {time.strftime('%Y-%m-%dT%H:%M:%S')} resume_from_step={start}: {' '.join(cmd)}\n"
            )
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                text=True,
                errors="replace",
                bufsize=1,
            )
            watcher = _Watcher(export, ready, proc, interrupt_after, WATCH_POLL_S)
            watcher.start()
            previous = forward_signals(proc)
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    if progress:
                        sys.stderr.write(line)
                rc = proc.wait()
            finally:
                restore_signals(previous)
                if proc.poll() is None:
                    kill_group(proc, signal.SIGKILL)
                    proc.wait()
                watcher.stop_event.set()
                watcher.join()
        if watcher.error is not None:
            raise watcher.error
        interrupted_at = watcher.interrupted_at
        if interrupted_at is None and rc != 0:
            raise RuntimeError(f"Automodel training failed (exit status {rc}); see {log_path}")
    export()
    if interrupted_at is not None:
        raise TrainingIncomplete(f"interrupted after the checkpoint of step {interrupted_at}")
    reached = automodel_checkpoints(ckpt_root)
    if not reached or reached[-1].step < cfg.max_steps:
        last = reached[-1].step if reached else 0
        raise TrainingIncomplete(
            f"Automodel stopped at the checkpoint of step {last} of {cfg.max_steps} (a SIGTERM?); "
            "rerun to resume"
        )
    if not rank0:
        return {}
    return _finish(cfg, layout, report, start=start, t_start=t_start, world=world, model_dir=model_dir)


def _finish(
    cfg: TrainConfig,
    layout: RunLayout,
    report: Mapping[str, Any],
    *,
    start: int,
    t_start: float,
    world: int,
    model_dir: Path,
) -> dict[str, Any]:
    ckpt_root = layout.root / AUTOMODEL_DIR
    missing = [s for s in checkpoint_steps(cfg) if not layout.hf_dir(s).is_dir()]
    if missing:
        have = [c.step for c in automodel_checkpoints(ckpt_root)]
        raise RuntimeError(
            f"Automodel finished but hf/ lacks checkpoint step(s) {missing} (pruned before export, or "
            f"no consolidated export); Automodel checkpoints: {have}"
        )
    logs = sorted(layout.root.glob("automodel_node*.log"))
    parsed = parse_automodel_metrics(ckpt_root, logs)
    facts = _model_facts(model_dir, cfg.seq_length)
    device = _device_name()
    precision = cfg.precision
    peak = peak_flops(device, precision)
    records = build_metrics(
        cfg, parsed, flops_per_token=facts["flops_per_token"], peak=peak, world_size=world
    )
    with atomic_path(layout.metrics) as tmp:
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
    train = parsed["train"]
    skip = min(5, cfg.max_steps // 4)  # start-up steps
    rates = [
        cfg.tokens_per_step * train[s]["tps"] / (train[s].get("num_tokens_per_step") or cfg.tokens_per_step)
        for s in sorted(train)
        if s > skip and train[s].get("tps")
    ]
    tps_steady = statistics.median(rates) if rates else None
    mems = [r["mem"] for r in train.values() if r.get("mem") is not None]
    last = train.get(cfg.max_steps, {})
    valid = parsed["valid"]
    ev = [s for s in eval_steps(cfg) if s in valid]
    seconds = [
        (r.get("num_tokens_per_step") or cfg.tokens_per_step) / r["tps"]
        for r in train.values()
        if r.get("tps")
    ]
    summary = {
        "engine": ENGINE,
        "config": cfg.to_dict(),
        "steps": cfg.max_steps,
        "resumed_from_step": start or None,
        "consumed_samples": cfg.max_steps * cfg.global_batch_size,
        "tokens_seen": cfg.max_steps * cfg.tokens_per_step,
        "final_loss": last.get("loss"),
        "final_val_loss": valid[ev[-1]].get("val_loss") if ev else None,
        "first_logged_loss": train[min(train)].get("loss") if train else None,
        "train_seconds": sum(seconds) if seconds else None,
        "seconds": time.time() - t_start,
        "precision": precision,
        "device": device,
        "world_size": world,
        "grad_accum_steps": cfg.grad_accum_steps(world),
        "flops_per_token": facts["flops_per_token"],
        "num_parameters": facts["num_parameters"],
        "tokens_per_s": tps_steady,
        "mfu": mfu(tps_steady, facts["flops_per_token"], peak, world) if tps_steady else None,
        "peak_memory_gib": max(mems) if mems else None,
        "lr_schedule_max_rel_error": lr_schedule_error(cfg, train),
        "model": report["model"],
        "shards": report["shards"],
        "tokenizer": report["tokenizer"],
        "eod_id": report["eod_id"],
        "checkpoints": [
            {"step": c, "hf": str(layout.hf_dir(c).relative_to(layout.root))} for c in checkpoint_steps(cfg)
        ],
        "automodel_checkpoints": [
            str(c.path.relative_to(layout.root)) for c in automodel_checkpoints(ckpt_root)
        ],
        "automodel_config": CONFIG_YAML,
        "document_semantics": {
            "reset_position_ids": cfg.reset_position_ids,
            "reset_attention_mask": cfg.reset_attention_mask,
            "eod_mask_loss": cfg.eod_mask_loss,
            "how": "position ids restart after EOD, no attention mask, use_cache=False "
            "(transformers' packed-sequence masks); EOD-input labels set to -100",
        },
        "versions": package_versions(AUTOMODEL_PACKAGES),
        "pid": os.getpid(),
    }
    write_json_atomic(layout.summary, summary)
    return summary


def train(
    cfg: TrainConfig,
    model_dir: str | Path,
    shard_prefixes: Sequence[str | Path],
    run_dir: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    on_config_change: str = "error",
) -> dict[str, Any]:
    """The engine entry point ``python -m filmorph.train`` calls: :func:`run`."""
    return run(
        cfg,
        model_dir,
        shard_prefixes,
        run_dir,
        tokenizer_dir=tokenizer_dir,
        max_steps=max_steps,
        progress=progress,
        on_config_change=on_config_change,
    )
