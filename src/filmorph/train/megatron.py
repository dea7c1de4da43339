"""The ``megatron`` engine: continued pretraining with Megatron-Bridge (Megatron-core layers,
Transformer Engine kernels) on GPUs.

Three steps, each its own process (a process builds one model family: megatron-core sets
``NVTE_*`` attention variables for the first model and asserts when a second wants others):

1. :func:`filmorph.convert.import_checkpoint` writes the family's HF base model as a Megatron
   ``torch_dist`` checkpoint, and :func:`filmorph.convert.verify` proves the weights arrived
   (logits on a fixed batch equal the HF model's within a tolerance);
2. :func:`train` (this module) continues pretraining it on one arm's shards;
3. :func:`filmorph.convert.export_checkpoint` turns each saved iteration into an HF checkpoint.

What :func:`train` does, in order: the shared pre-flight check
(:func:`filmorph.train.common.preflight`: shards, model and tokenizer belong together),
``train_config.json``, :func:`megatron_settings` (a pure translation of the
:class:`~filmorph.train.config.TrainConfig` into every value Megatron-Bridge's
``ConfigContainer`` needs), :func:`build_config_container` (the provider comes from
``AutoBridge.from_hf_pretrained(model_dir).to_megatron_provider(load_weights=False)``; the
weights come from the imported checkpoint through ``checkpoint.pretrained_checkpoint``), then
``megatron.bridge.training.pretrain.pretrain`` with this module's forward step, and a
metrics callback that appends to ``metrics.jsonl``.

Run dir (the layout of :mod:`filmorph.train.common`)::

    train_config.json        resolved config, shard/model/tokenizer identities, megatron settings
    metrics.jsonl            step, loss, lr, grad_norm, tokens, tokens_per_s, mfu, val_loss, ...
    megatron/iter_NNNNNNN/   Megatron checkpoints (torch_dist, with optimizer state), every
                             checkpoint_interval steps and the last; all kept
    megatron/latest_checkpointed_iteration.txt
    data_cache/              megatron-core dataset index cache
    hf/step_NNNNNNN/         written by the export rule (:func:`filmorph.convert.export_checkpoint`)
    train_summary.json       at the end

Semantics shared with the other engines: blend of every shard prefix weighted by its token
count; position ids restart after each EOD (``reset_position_ids``); the loss is masked where
the input token is EOD (``eod_mask_loss``); and with ``reset_attention_mask`` attention stays
inside each document. Megatron-Bridge's stock forward step does not do the last one (its
dataset config skips the dataset's attention mask and Transformer Engine's causal kernels
ignore one), so :class:`DocumentForwardStep` packs each micro-batch into Transformer Engine's
``thd`` layout with one sequence per document (:func:`document_cu_seqlens`).

Resume: the save dir doubles as the load dir, so rerunning the same command continues from
the newest checkpoint (weights, optimizer, scheduler, data position, RNG); the first run
starts from ``pretrained_checkpoint`` (weights only). SIGTERM (e.g. Slurm's warning signal)
saves a checkpoint and stops; :func:`train` then raises :class:`TrainingIncomplete` so the
job fails and its rerun resumes.

Nothing here imports megatron.bridge, megatron.core or transformer_engine at module level:
the package imports on a CPU machine without them. Entry points must sit under
``if __name__ == "__main__":`` (checkpoint saving starts worker processes by spawn).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from filmorph.io import read_json, write_json_atomic
from filmorph.paths import ITER_RE, iter_name
from filmorph.provenance import package_versions
from filmorph.train.common import (
    MetricsWriter,
    RunLayout,
    checkpoint_steps,
    eval_steps,
    mfu,
    model_flops_per_token,
    peak_flops,
    preflight,
    read_metrics,
    train_config_record,
    write_or_check_train_config,
)
from filmorph.train.config import TrainConfig
from filmorph.train.launch import TrainingIncomplete, detect_dist_env

__all__ = [
    "CHECKPOINT_SUBDIR",
    "DocumentForwardStep",
    "MetricsRecorder",
    "MissingEngineError",
    "TrainingIncomplete",
    "build_config_container",
    "checkpoint_iterations",
    "document_cu_seqlens",
    "hf_flops_per_token",
    "latest_iteration",
    "megatron_iter_dir",
    "megatron_settings",
    "require_engine",
    "train",
]

ENGINE = "megatron"
CHECKPOINT_SUBDIR = "megatron"
TRACKER_FILE = "latest_checkpointed_iteration.txt"
# distributions whose versions the engine's and the conversions' records carry
MEGATRON_PACKAGES = ("torch", "transformers", "megatron-core", "megatron-bridge", "transformer-engine")
LOSS_KEY = "lm loss"

# Process environment the Megatron-Bridge recipes set (existing values win): the expandable
# allocator, no NCCL graph registration / NVLink multicast (see the device notes), and one
# CUDA connection (megatron-core's requirement for overlapping TP communication).
RUNTIME_ENV = {
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    "NCCL_GRAPH_REGISTER": "0",
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",
}

# Model types whose packed-thd document masking was seen to train wrongly under Megatron-Bridge
# + TE on the H100: NaN gradients (see check_document_masking)
THD_REFUSED_MODEL_TYPES = ("gemma3", "gemma3_text")
# Model types whose Megatron-Bridge attention refuses packed (thd) sequences: Gemma 2's
# softcapping attention (Bridge 0.6.2, gemma2_provider: "Packed sequence is not supported by
# DotProductAttention"). Their documents are kept apart by the dataset's block-diagonal
# attention mask instead (megatron-core's reset_attention_mask mask, the route of
# Megatron-LM and of the published run): document_masking "mask".
MASK_MODEL_TYPES = ("gemma2",)
DOCUMENT_MASKING_MODES = ("none", "thd", "mask")

# (import name, pip distribution): what the engine needs, in the order they are checked
ENGINE_PACKAGES = (
    ("megatron.core", "megatron-core"),
    ("transformer_engine", "transformer-engine (with its torch extension, transformer-engine-torch)"),
    ("megatron.bridge", "megatron-bridge"),
)


class MissingEngineError(ImportError):
    """A package the megatron engine needs is not importable."""


def require_engine(what: str = "the megatron engine") -> None:
    """Import-check megatron-core, Transformer Engine and Megatron-Bridge; raise
    :class:`MissingEngineError` naming the first one that is missing.

    Megatron-Bridge 0.6 imports ``transformer_engine.pytorch`` at module load, so it cannot
    be imported without Transformer Engine; NVIDIA's NeMo container has all three."""
    import importlib

    for module, dist in ENGINE_PACKAGES:
        try:
            importlib.import_module(module)
        except (ImportError, OSError) as exc:  # OSError: a TE build that cannot load its CUDA libraries
            raise MissingEngineError(
                f"{what} needs the package {dist!r} (import {module!r} failed: {exc}). "
                "Megatron-Bridge needs megatron-core, transformer-engine and megatron-bridge; they run "
                "on NVIDIA GPUs (e.g. inside NVIDIA's NeMo container). On a CPU machine use the 'hf' engine."
            ) from exc


def flash_attn_available() -> bool:
    """Whether the ``flash-attn`` package (FlashAttention 2 or 3) that Transformer Engine's
    ``flash`` backend calls is importable (the pip route has none; NeMo containers do)."""
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in ("flash_attn", "flash_attn_interface"))


def avoid_gemma2_flex_attention() -> bool:
    """Make Megatron-Bridge's Gemma 2 attention take its unfused path (the one it takes when
    given an attention mask) instead of ``torch.compile``'d FlexAttention.

    Seen on the H100 (torch 2.11, Bridge 0.6.2, Gemma 2 2B shape, head dim 256): compiling the
    FlexAttention forward+backward failed (inductor ``NoValidChoicesError`` for
    ``flex_attention``), and the fp32 forward of ``verify`` did not finish in 240 s, while the
    unfused path ran. Sets the module's ``_HAVE_FLEX_ATTN`` flag, read at every forward; returns
    whether the module was there to patch. Other architectures are not affected.
    """
    try:
        import megatron.bridge.models.gemma.gemma2_provider as gemma2
    except ImportError:
        return False
    gemma2._HAVE_FLEX_ATTN = False
    return True


def masked_softmax_fusion_available() -> bool:
    """Whether megatron-core's fused masked-softmax CUDA extension (``scaled_masked_softmax_cuda``,
    built in NVIDIA's containers, absent from the pip route) is importable. Without it a model
    that runs megatron-core's own (non-TE) attention, like Megatron-Bridge's Gemma 2, must run
    with ``masked_softmax_fusion`` off (seen on the H100: ``ModuleNotFoundError`` otherwise)."""
    try:
        import scaled_masked_softmax_cuda  # noqa: F401
    except ImportError:
        return False
    return True


def usable_attention_backend(requested: Any, *, flash_available: bool | None = None) -> Any:
    """``requested`` (a megatron-core ``AttnBackend``), or ``AttnBackend.auto`` when it is
    ``flash`` and flash-attn is not installed.

    Megatron-Bridge's Gemma 3 provider asks for ``flash`` (its comment: cuDNN attention of an
    old TE could not do head dim 256); without flash-attn, Transformer Engine then finds no
    backend at all ("No dot product attention backend is available", seen on the H100 with TE
    2.20). ``auto`` lets TE choose among cuDNN fused and unfused attention.
    """
    from megatron.core.transformer.enums import AttnBackend

    available = flash_attn_available() if flash_available is None else flash_available
    if requested == AttnBackend.flash and not available:
        print(
            "filmorph: attention_backend 'flash' needs flash-attn, which is not installed: using 'auto'",
            file=sys.stderr,
        )
        return AttnBackend.auto
    return requested


# ============================================================================ pure helpers
def megatron_iter_dir(run_dir: str | Path, step: int) -> Path:
    """``RUN_DIR/megatron/iter_NNNNNNN``: where :func:`train` saves the checkpoint of ``step``."""
    return Path(run_dir) / CHECKPOINT_SUBDIR / iter_name(step)


def latest_iteration(save_dir: str | Path) -> int:
    """The iteration named in ``SAVE_DIR/latest_checkpointed_iteration.txt`` (written by
    Megatron after a checkpoint is complete); 0 when there is none, -1 for ``release``."""
    tracker = Path(save_dir) / TRACKER_FILE
    if not tracker.is_file():
        return 0
    text = tracker.read_text(encoding="utf-8").strip()
    if text == "release":
        return -1
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{tracker}: not an iteration number: {text!r}") from None


def checkpoint_iterations(save_dir: str | Path) -> list[int]:
    """Iterations of the ``iter_NNNNNNN`` dirs in ``save_dir`` up to the tracker's iteration
    (a dir beyond it is a save that did not finish), ascending."""
    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        return []
    last = latest_iteration(save_dir)
    out = []
    for d in save_dir.iterdir():
        m = ITER_RE.match(d.name)
        if m and d.is_dir() and int(m.group(1)) <= last:
            out.append(int(m.group(1)))
    return sorted(out)


def _shard_facts(prefixes: Sequence[str]) -> tuple[int, int]:
    """(EOD id, tokenizer vocab size) from the shards' ``stats.json`` files (all must agree)."""
    facts = set()
    for p in prefixes:
        path = Path(f"{p}.stats.json")
        if not path.is_file():
            raise ValueError(f"{path} is missing: shards must come from filmorph.tokenize")
        stats = read_json(path)
        tok = stats.get("tokenizer") or {}
        if stats.get("eod_id") is None or tok.get("vocab_size") is None:
            raise ValueError(f"{path} records no eod_id / tokenizer vocab_size")
        facts.add((int(stats["eod_id"]), int(tok["vocab_size"])))
    if len(facts) != 1:
        raise ValueError(f"the shards disagree on (eod_id, vocab_size): {sorted(facts)}")
    return facts.pop()


def megatron_settings(
    cfg: TrainConfig,
    *,
    shard_prefixes: Sequence[str | Path],
    shard_token_counts: Sequence[int],
    run_dir: str | Path,
    world_size: int,
    tensor_parallel: int = 1,
    pretrained_checkpoint: str | Path | None = None,
    eod_id: int | None = None,
    vocab_size: int | None = None,
    exit_interval: int | None = None,
    environ: Mapping[str, str] | None = None,
    document_masking: str | None = None,
) -> dict[str, Any]:
    """Every value that goes into Megatron-Bridge's ``ConfigContainer``, as a JSON-able dict.

    A pure function of its arguments (no Megatron import; ``stats.json`` files are read only
    when ``eod_id`` / ``vocab_size`` are not given). Sections: ``model`` (set on the provider),
    ``parallel``, ``train``, ``validation``, ``optimizer``, ``scheduler``, ``dataset``
    (megatron-core ``GPTDatasetConfig`` fields), ``dataloader``, ``tokenizer`` (a
    ``NullTokenizer`` with the shards' EOD id and vocab size: the shards are already token
    ids), ``checkpoint``, ``logger``, ``rng``, ``ddp``, ``dist``, ``mixed_precision``, ``env``,
    ``document_masking`` (with ``reset_attention_mask``: ``"thd"``, or the ``document_masking``
    argument, ``"mask"`` for models whose attention refuses packed sequences, see
    :func:`check_document_masking`; else ``"none"``).

    Raises ``ValueError`` when the world size is not a multiple of ``tensor_parallel``, the
    global batch is not a multiple of micro batch × data-parallel ranks, ``seq_length`` is not
    a multiple of ``tensor_parallel`` (sequence parallelism), warmup does not end before
    ``max_steps`` (Megatron's scheduler needs warmup < decay), or the shard lists are bad.
    W&B settings appear only when ``WANDB_API_KEY`` is in ``environ``; the key itself never
    does (Megatron's W&B client reads it from the environment).
    """
    env = os.environ if environ is None else environ
    prefixes = [str(p) for p in shard_prefixes]
    counts = [int(c) for c in shard_token_counts]
    if not prefixes:
        raise ValueError("no shard prefixes given")
    if len(prefixes) != len(counts):
        raise ValueError(f"{len(prefixes)} shard prefixes but {len(counts)} token counts")
    if len(set(prefixes)) != len(prefixes):
        raise ValueError(f"shard prefixes repeat: {prefixes}")
    if any(c <= 0 for c in counts):
        raise ValueError(
            f"every shard needs tokens; token counts: {dict(zip(prefixes, counts, strict=True))}"
        )
    if world_size < 1 or tensor_parallel < 1:
        raise ValueError(f"world_size ({world_size}) and tensor_parallel ({tensor_parallel}) must be >= 1")
    if world_size % tensor_parallel:
        raise ValueError(
            f"world size {world_size} is not divisible by tensor_parallel {tensor_parallel} "
            "(data-parallel ranks = world size / tensor_parallel)"
        )
    dp = world_size // tensor_parallel
    per_step = cfg.micro_batch_size * dp
    if cfg.global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size {cfg.global_batch_size} is not a multiple of micro_batch_size "
            f"{cfg.micro_batch_size} x {dp} data-parallel ranks (world {world_size} / tensor_parallel "
            f"{tensor_parallel})"
        )
    if cfg.seq_length % tensor_parallel:
        raise ValueError(
            f"seq_length {cfg.seq_length} is not a multiple of tensor_parallel {tensor_parallel} "
            "(sequence parallelism splits each sequence across the tensor-parallel ranks)"
        )
    if cfg.warmup_steps >= cfg.max_steps:
        raise ValueError(
            f"warmup_steps ({cfg.warmup_steps}) must be < max_steps ({cfg.max_steps}): Megatron's "
            "scheduler needs the warmup to end before the decay does"
        )
    if exit_interval is not None and exit_interval < 1:
        raise ValueError(f"exit_interval must be >= 1, not {exit_interval}")
    masking = document_masking or ("thd" if cfg.reset_attention_mask else "none")
    if masking not in DOCUMENT_MASKING_MODES:
        raise ValueError(f"document_masking must be one of {DOCUMENT_MASKING_MODES}, not {masking!r}")
    if (masking != "none") != bool(cfg.reset_attention_mask):
        raise ValueError(
            f"document_masking {masking!r} does not match reset_attention_mask {cfg.reset_attention_mask}"
        )
    if eod_id is None or vocab_size is None:
        eod_s, vocab_s = _shard_facts(prefixes)
        eod_id = eod_s if eod_id is None else eod_id
        vocab_size = vocab_s if vocab_size is None else vocab_size
    eod_id, vocab_size = int(eod_id), int(vocab_size)
    if not 0 <= eod_id < vocab_size:
        raise ValueError(f"EOD id {eod_id} is not in [0, vocab_size {vocab_size})")

    run_dir = Path(run_dir)
    save_dir = str(run_dir / CHECKPOINT_SUBDIR)
    total = float(sum(counts))
    bf16 = cfg.precision == "bf16"
    evaluating = cfg.eval_enabled
    decay_style = {"cosine": "cosine", "linear": "linear", "constant": "constant"}[cfg.lr_schedule]
    logger: dict[str, Any] = {
        "log_interval": cfg.log_interval,
        "log_throughput": True,
        "tensorboard_dir": None,
    }
    if env.get("WANDB_API_KEY"):
        logger.update(
            wandb_project=env.get("WANDB_PROJECT") or "filmorph",
            wandb_exp_name=run_dir.name,
            wandb_save_dir=str(run_dir / "wandb"),
        )
        if env.get("WANDB_ENTITY"):
            logger["wandb_entity"] = env["WANDB_ENTITY"]
    train: dict[str, Any] = {
        "train_iters": cfg.max_steps,
        "global_batch_size": cfg.global_batch_size,
        "micro_batch_size": cfg.micro_batch_size,
        "exit_signal_handler": True,
        "manual_gc": True,
        "manual_gc_interval": 100,
    }
    if exit_interval is not None:
        train["exit_interval"] = int(exit_interval)
    return {
        "engine": ENGINE,
        "precision": cfg.precision,
        "document_masking": masking,
        "eod_id": eod_id,
        "vocab_size": vocab_size,
        "parallel": {
            "world_size": world_size,
            "tensor_parallel": tensor_parallel,
            "pipeline_parallel": 1,
            "context_parallel": 1,
            "data_parallel": dp,
            "grad_accum_steps": cfg.global_batch_size // per_step,
        },
        "model": {
            "tensor_model_parallel_size": tensor_parallel,
            "pipeline_model_parallel_size": 1,
            "virtual_pipeline_model_parallel_size": None,
            "context_parallel_size": 1,
            "sequence_parallel": tensor_parallel > 1,
            "seq_length": cfg.seq_length,
            # True needs APEX's fused weight-gradient kernels, which the pip route lacks
            "gradient_accumulation_fusion": False,
        },
        "train": train,
        "validation": {
            "eval_interval": cfg.eval_interval if evaluating else None,
            "eval_iters": cfg.eval_iters if evaluating else 0,
        },
        "optimizer": {
            "optimizer": "adam",  # Megatron's adam: decoupled weight decay (AdamW)
            "lr": cfg.lr,
            "min_lr": cfg.min_lr,
            "weight_decay": cfg.weight_decay,
            "adam_beta1": cfg.adam_beta1,
            "adam_beta2": cfg.adam_beta2,
            "adam_eps": cfg.adam_eps,
            "clip_grad": cfg.grad_clip,  # 0 = no clipping
            "bf16": bf16,
            "fp16": False,
            "use_distributed_optimizer": True,
        },
        "scheduler": {
            "lr_decay_style": decay_style,
            "lr_warmup_iters": cfg.warmup_steps,
            "lr_warmup_init": 0.0,
            "lr_decay_iters": cfg.max_steps,
            # the scheduler owns weight decay in Megatron: constant at the configured value
            "start_weight_decay": cfg.weight_decay,
            "end_weight_decay": cfg.weight_decay,
            "weight_decay_incr_style": "constant",
            "override_opt_param_scheduler": True,
        },
        "dataset": {
            "random_seed": cfg.seed,
            "sequence_length": cfg.seq_length,
            "blend": [prefixes, [c / total for c in counts]],
            "split": cfg.split,
            "reset_position_ids": cfg.reset_position_ids,
            "reset_attention_mask": cfg.reset_attention_mask,
            "eod_mask_loss": cfg.eod_mask_loss,
            # thd: documents are separated by the forward step; mask: by the dataset's
            # block-diagonal T x T mask, which the stock forward step hands to the model
            "create_attention_mask": masking == "mask",
            "path_to_cache": str(run_dir / "data_cache"),
            "mmap_bin_files": True,
            "num_dataset_builder_threads": 1,
        },
        "dataloader": {
            "dataloader_type": "single",
            "num_workers": cfg.num_workers,
            "data_sharding": True,
            "pin_memory": True,
            "persistent_workers": cfg.num_workers > 0,
        },
        "tokenizer": {
            "tokenizer_type": "NullTokenizer",
            "vocab_size": vocab_size,
            "null_tokenizer_eod_id": eod_id,
            "null_tokenizer_pad_id": -1,  # no shard holds -1: no real token is masked as padding
            "use_tokenizer_vocab_size": False,  # the model keeps its own (possibly padded) vocab
        },
        "checkpoint": {
            "save": save_dir,
            "load": save_dir,
            "pretrained_checkpoint": None if pretrained_checkpoint is None else str(pretrained_checkpoint),
            "save_interval": cfg.checkpoint_interval,
            "ckpt_format": "torch_dist",
            "most_recent_k": -1,  # keep all
            "save_optim": True,
            "save_rng": True,
            "load_optim": True,
            "load_rng": True,
            "async_save": False,
            "fully_parallel_save": True,
        },
        "logger": logger,
        "rng": {"seed": cfg.seed},
        "ddp": {
            "check_for_nan_in_grad": True,
            "grad_reduce_in_fp32": True,
            "overlap_grad_reduce": True,
            "overlap_param_gather": True,
            "average_in_collective": True,
            "use_distributed_optimizer": True,
        },
        "dist": {"distributed_backend": "nccl"},
        "mixed_precision": "bf16_mixed" if bf16 else None,
        "env": dict(RUNTIME_ENV),
    }


def document_cu_seqlens(tokens: Any, eod_id: int) -> tuple[Any, int]:
    """Cumulative sequence lengths of a micro-batch packed into one ``thd`` row.

    ``tokens`` is ``[B, T]``; the packed row is the B samples one after another. A sequence
    starts at every sample start and after every EOD (the EOD belongs to the document it ends,
    as in megatron-core's ``reset_attention_mask``). Returns ``(cu_seqlens, max_seqlen)``:
    an int32 tensor ``[0, ..., B*T]`` on ``tokens``' device and the longest sequence (an int).
    """
    import torch

    b, t = tokens.shape
    flat = tokens.reshape(-1)
    starts = torch.zeros(b * t + 1, dtype=torch.bool, device=tokens.device)
    starts[1:] |= flat == eod_id
    starts[torch.arange(0, b * t + 1, t, device=tokens.device)] = True
    cu = torch.nonzero(starts).flatten().to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())


class DocumentForwardStep:
    """Megatron-Bridge forward step that keeps attention inside each document.

    Each micro-batch ``[B, T]`` is flattened to one ``[1, B*T]`` row with
    ``PackedSeqParams(qkv_format="thd")`` whose sequences are the documents
    (:func:`document_cu_seqlens`, computed on the CPU before the copy to the GPU, so there is no
    device sync). Loss: Megatron-Bridge's ``masked_next_token_loss`` with the dataset's loss
    mask. Pipeline parallelism 1 only (every rank holds the first and last stage).
    """

    def __init__(self, eod_id: int):
        self.eod_id = int(eod_id)

    def __call__(self, state: Any, data_iterator: Any, model: Any, return_schedule_plan: bool = False):
        from functools import partial

        from megatron.bridge.training.losses import masked_next_token_loss
        from megatron.core.packed_seq_params import PackedSeqParams

        if return_schedule_plan:
            raise NotImplementedError("DocumentForwardStep does not build MoE schedule plans")
        batch = next(data_iterator)
        tokens = batch["tokens"]
        b, t = tokens.shape
        cu, max_len = document_cu_seqlens(tokens.cpu(), self.eod_id)

        def flat(x):
            return x.reshape(1, b * t).cuda(non_blocking=True)

        with contextlib.suppress(Exception):  # Megatron-Bridge's own FLOPs bookkeeping, if present
            from megatron.bridge.training.utils.flop_utils import accumulate_flops_metadata

            accumulate_flops_metadata(state, tokens, config_seq_len=t)
        cu = cu.cuda(non_blocking=True)
        params = PackedSeqParams(
            qkv_format="thd",
            cu_seqlens_q=cu,
            cu_seqlens_kv=cu,
            max_seqlen_q=max_len,
            max_seqlen_kv=max_len,
        )
        loss_mask = flat(batch["loss_mask"])
        output = model(
            input_ids=flat(tokens),
            position_ids=flat(batch["position_ids"]),
            attention_mask=None,
            labels=flat(batch["labels"]),
            packed_seq_params=params,
        )
        rsm = state.cfg.rerun_state_machine
        loss = partial(
            masked_next_token_loss,
            loss_mask,
            check_for_nan_in_loss=rsm.check_for_nan_in_loss,
            check_for_spiky_loss=rsm.check_for_spiky_loss,
        )
        return output, loss


# ============================================================================ metrics
class MetricsRecorder:
    """Megatron-Bridge callbacks that append one record per logged step to ``metrics.jsonl``.

    Register :meth:`on_train_start`, :meth:`on_train_step_start`, :meth:`on_train_step_end`,
    :meth:`on_eval_end` and :meth:`on_train_end` with a ``CallbackManager`` (they only read
    ``context.state.train_state.step``, ``context.loss_dict``, ``context.grad_norm``,
    ``context.optimizer.param_groups``, ``context.total_loss_dict``). A record is written every
    ``log_interval`` steps, at every evaluation step and at the last step: ``step``, ``loss``
    (token-weighted over the global batch), ``val_loss``, ``lr`` (after the step's scheduler
    update: Megatron's convention), ``grad_norm``, ``tokens``,
    ``tokens_per_s`` and ``mfu`` (over the steps since the last record, counting only the
    time inside steps: checkpoint saving and evaluation are excluded), ``step_time_s``,
    ``peak_memory_gib``, ``skipped``, ``elapsed_s``. On (re)start the lines after the
    resume step are dropped. ``writer`` is ``None`` on ranks other than 0.
    """

    def __init__(
        self,
        writer: MetricsWriter | None,
        cfg: TrainConfig,
        *,
        world_size: int,
        flops_per_token: float | None,
        peak_flops_per_device: float | None,
        clock: Callable[[], float] = time.perf_counter,
        memory_gib: Callable[[], float | None] | None = None,
    ):
        self.writer = writer
        self.cfg = cfg
        self.world_size = world_size
        self.flops_per_token = flops_per_token
        self.peak = peak_flops_per_device
        self.clock = clock
        self.memory_gib = memory_gib or (lambda: None)
        self.eval_steps = set(eval_steps(cfg))
        self.tokens_per_step = cfg.tokens_per_step
        self._pending: dict[str, Any] | None = None
        self._t_step = 0.0
        self._window_s = 0.0
        self._window_tokens = 0
        self._t0 = clock()
        self.train_seconds = 0.0
        self.records = 0
        self.start_step = 0

    # -- events
    def on_train_start(self, context: Any) -> None:
        self.start_step = int(context.state.train_state.step)
        if self.writer is not None:
            self.writer.truncate_after(self.start_step)
        self._t0 = self.clock()

    def on_train_step_start(self, context: Any) -> None:
        self._flush()
        self._t_step = self.clock()

    def on_train_step_end(self, context: Any) -> None:
        loss = _scalar((context.loss_dict or {}).get(LOSS_KEY))  # a device sync: the step is done
        dt = self.clock() - self._t_step
        step = int(context.state.train_state.step) + 1
        self.train_seconds += dt
        self._window_s += dt
        self._window_tokens += self.tokens_per_step
        if not (step % self.cfg.log_interval == 0 or step == self.cfg.max_steps or step in self.eval_steps):
            return
        tps = self._window_tokens / self._window_s if self._window_s > 0 else None
        self._pending = {
            "step": step,
            "loss": loss,
            "val_loss": None,
            "lr": _lr(context.optimizer),
            "grad_norm": _scalar(context.grad_norm),
            "tokens": step * self.tokens_per_step,
            "tokens_per_s": tps,
            "mfu": mfu(tps, self.flops_per_token, self.peak, self.world_size)
            if tps and self.flops_per_token
            else None,
            "step_time_s": self._window_s / max(1, self._window_tokens // self.tokens_per_step),
            "peak_memory_gib": self.memory_gib(),
            "skipped": bool(context.skipped_iter),
            "elapsed_s": self.clock() - self._t0,
        }
        self._window_s, self._window_tokens = 0.0, 0

    def on_eval_end(self, context: Any) -> None:
        step = int(context.state.train_state.step)
        val = _scalar((context.total_loss_dict or {}).get(LOSS_KEY))
        if self._pending is not None and self._pending["step"] == step and self._pending["val_loss"] is None:
            self._pending["val_loss"] = val
            self._flush()
        else:
            self._flush()
            self._write({"step": step, "val_loss": val, "elapsed_s": self.clock() - self._t0})

    def on_train_end(self, context: Any) -> None:
        self._flush()

    # -- helpers
    def register(self, manager: Any) -> Any:
        """Register the five callbacks with a Megatron-Bridge ``CallbackManager``."""
        for event in (
            "on_train_start",
            "on_train_step_start",
            "on_train_step_end",
            "on_eval_end",
            "on_train_end",
        ):
            manager.register(event, getattr(self, event))
        return manager

    def _flush(self) -> None:
        if self._pending is not None:
            self._write(self._pending)
            self._pending = None

    def _write(self, record: dict[str, Any]) -> None:
        self.records += 1
        if self.writer is not None:
            self.writer.log(record)


def _scalar(x: Any) -> float | None:
    if x is None:
        return None
    if hasattr(x, "item"):
        x = x.item()
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v


def _lr(optimizer: Any) -> float | None:
    for group in getattr(optimizer, "param_groups", None) or []:
        if group and not group.get("is_decoupled_lr", False):
            return float(group["lr"])
    return None


def hf_flops_per_token(hf_model_dir: str | Path, seq_length: int) -> float:
    """Training FLOPs per token of the HF model in ``hf_model_dir`` (the same count the other
    engines use, :func:`filmorph.train.common.model_flops_per_token`), from its config alone:
    the model is built on the ``meta`` device, no weights are read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(hf_model_dir), local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model_flops_per_token(model, seq_length)


# ============================================================================ Megatron-Bridge
def build_config_container(
    settings: Mapping[str, Any], hf_model_dir: str | Path, *, model_overrides: Mapping[str, Any] | None = None
) -> Any:
    """The Megatron-Bridge ``ConfigContainer`` of :func:`megatron_settings`' dict.

    The model provider is ``AutoBridge.from_hf_pretrained(hf_model_dir)
    .to_megatron_provider(load_weights=False)`` (architecture only; the weights come from
    ``checkpoint.pretrained_checkpoint``), with ``settings["model"]`` and then
    ``model_overrides`` (tuning knobs, e.g. ``{"cross_entropy_fusion_impl": "te"}``) set on it;
    an unknown field is a ``ValueError``. Raises :class:`MissingEngineError` without
    Megatron-Bridge / Transformer Engine.
    """
    require_engine("build_config_container")
    import torch
    from megatron.bridge import AutoBridge
    from megatron.bridge.training.config import (
        CheckpointConfig,
        ConfigContainer,
        DistributedDataParallelConfig,
        DistributedInitConfig,
        GPTDatasetConfig,
        LoggerConfig,
        OptimizerConfig,
        RNGConfig,
        SchedulerConfig,
        TokenizerConfig,
        TrainingConfig,
        ValidationConfig,
    )

    provider = AutoBridge.from_hf_pretrained(str(hf_model_dir)).to_megatron_provider(load_weights=False)
    overrides = {**settings["model"], **dict(model_overrides or {})}
    for key, value in overrides.items():
        if not hasattr(provider, key):
            raise ValueError(f"model setting {key!r} is not a field of {type(provider).__name__}")
        setattr(provider, key, value)
    if (
        "masked_softmax_fusion" not in overrides
        and getattr(provider, "masked_softmax_fusion", False)
        and not masked_softmax_fusion_available()
    ):
        provider.masked_softmax_fusion = False
    if "attention_backend" not in overrides and hasattr(provider, "attention_backend"):
        provider.attention_backend = usable_attention_backend(provider.attention_backend)
    if settings["precision"] != "bf16":
        provider.bf16 = False
        provider.params_dtype = torch.float32
        provider.pipeline_dtype = torch.float32

    ds = dict(settings["dataset"])
    seq_length = ds.pop("sequence_length")
    paths, weights = ds.pop("blend")
    dataset = GPTDatasetConfig(
        seq_length=seq_length,
        blend=(list(paths), list(weights)),
        # Bridge's own switch (an __init__ argument): hand the dataset's mask to the model
        skip_getting_attention_mask_from_dataset=settings["document_masking"] != "mask",
        **ds,
        **settings["dataloader"],
    )
    return ConfigContainer(
        model=provider,
        train=TrainingConfig(**settings["train"]),
        validation=ValidationConfig(**settings["validation"]),
        optimizer=OptimizerConfig(**settings["optimizer"]),
        scheduler=SchedulerConfig(**settings["scheduler"]),
        dataset=dataset,
        logger=LoggerConfig(**settings["logger"]),
        tokenizer=TokenizerConfig(**settings["tokenizer"]),
        checkpoint=CheckpointConfig(**settings["checkpoint"]),
        rng=RNGConfig(**settings["rng"]),
        ddp=DistributedDataParallelConfig(**settings["ddp"]),
        dist=DistributedInitConfig(**settings["dist"]),
        mixed_precision=settings["mixed_precision"],
        env_vars=dict(settings["env"]),
    )


def _patch_compile_helpers() -> None:
    """Megatron-Bridge's initialisation runs ``make`` in megatron-core's datasets folder, which
    the megatron-core wheel ships compiled but without a Makefile: compile only when the
    compiled helpers cannot be imported."""
    import megatron.bridge.training.initialize as init_mod

    original = init_mod.compile_helpers
    if getattr(original, "_filmorph_patched", False):
        return

    def compile_helpers_if_missing() -> None:
        try:
            from megatron.core.datasets import helpers_cpp  # noqa: F401
        except ImportError:
            original()

    compile_helpers_if_missing._filmorph_patched = True  # type: ignore[attr-defined]
    init_mod.compile_helpers = compile_helpers_if_missing


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _export_dist_env(env: Any) -> None:
    """Give torch.distributed (initialised inside Megatron-Bridge) the rank and world size of
    :func:`filmorph.train.launch.detect_dist_env`: explicit values stop Megatron-Bridge from
    guessing from Slurm variables of a batch script that starts one process."""
    os.environ.setdefault("RANK", str(env.rank))
    os.environ.setdefault("WORLD_SIZE", str(env.world_size))
    os.environ.setdefault("LOCAL_RANK", str(env.local_rank))
    os.environ.setdefault("MASTER_ADDR", env.master_addr or "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(env.master_port or _free_port())


def _launch_id(environ: Mapping[str, str] | None = None) -> str | None:
    """What every rank of one launch shares: torchrun's run id, the Slurm job step, or the
    master address (``None`` for a single process)."""
    env = os.environ if environ is None else environ
    if env.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun-{env['TORCHELASTIC_RUN_ID']}-{env.get('MASTER_PORT', '')}"
    if env.get("SLURM_JOB_ID"):
        step, restarts = env.get("SLURM_STEP_ID", ""), env.get("SLURM_RESTART_COUNT", "0")
        return f"slurm-{env['SLURM_JOB_ID']}-{step}-{restarts}"
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        return f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    return None


def _wait_for_rank0(env: Any, layout: RunLayout, launch: str | None, timeout_s: float = 900.0) -> None:
    """Other ranks wait until rank 0 has written this launch's ``train_config.json`` (it may
    first clear an old run; no process group exists yet: Megatron-Bridge creates it)."""
    if env.rank == 0 or env.world_size == 1 or launch is None:
        return
    t0 = time.time()
    while True:
        with contextlib.suppress(OSError, ValueError):
            if read_json(layout.train_config).get("launch") == launch:
                return
        if time.time() - t0 > timeout_s:
            raise TimeoutError(
                f"rank 0 wrote no {layout.train_config} for launch {launch} in {timeout_s:.0f} s"
            )
        time.sleep(1.0)


def check_document_masking(cfg: TrainConfig, model_dir: str | Path) -> str:
    """:func:`document_masking_mode` of ``cfg``'s ``reset_attention_mask`` for the model."""
    return document_masking_mode(model_dir, cfg.reset_attention_mask)


def document_masking_mode(model_dir: str | Path, reset_attention_mask: bool = True) -> str:
    """The document-masking mode of a run: ``"none"`` without ``reset_attention_mask``,
    ``"mask"`` for the model types of :data:`MASK_MODEL_TYPES` (their Megatron-Bridge attention
    refuses packed sequences: the dataset's block-diagonal mask keeps documents apart),
    ``"thd"`` (packed sequences, :class:`DocumentForwardStep`) otherwise.

    Refuses (``ValueError``) thd for the sliding-window model types of
    :data:`THD_REFUSED_MODEL_TYPES`. Seen on the H100 (Megatron-Bridge 0.6.2, megatron-core
    0.19.2, TE 2.20.2, cuDNN fused attention;
    ``docs/measurements/megatron_gemma3_thd_2026-11-24.txt``): the Gemma 3 1B shape (head
    dim 256, window 512) trained with packed ``thd`` documents had gradient norms of 1e9-1e13
    and a flat loss (12.70 -> 12.70 over 50 steps, 3.8 s/step), while the same run without
    document masking learned normally (12.2 -> 8.7 in 20 steps, gradient norm 3.6 -> 1.6) and
    the Llama 3.2 1B shape trained with thd normally. ``python -m filmorph.convert
    verify-doc-mask --mode thd`` on the Gemma 3 import then found the cause: the packed
    forward pass equals the documents run alone, but the backward pass gives NaN gradients
    (``docs/measurements/megatron_tuning_and_docmask_2026-11-24.md``). Until that
    combination is shown to train, it is an error rather than a silently wasted GPU run.
    """
    if not reset_attention_mask:
        return "none"
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        return "thd"
    hf = read_json(config_path)
    hf = hf.get("text_config", hf)
    model_type = hf.get("model_type")
    if model_type in MASK_MODEL_TYPES:
        return "mask"
    window = hf.get("sliding_window")
    if window and model_type in THD_REFUSED_MODEL_TYPES:
        raise ValueError(
            f"the megatron engine's document masking (packed thd sequences) gave wrong gradients for a "
            f"model with sliding-window attention ({model_type}, sliding_window {window}; "
            "Gemma 3 1B shape on an H100: NaN gradients in the attention backward, gradient norm "
            "~1e11, flat loss). Use train.engine "
            "'automodel' (flex-attention document masking, seen to train this model) or 'hf', or set "
            "train.reset_attention_mask: false (and reset_position_ids: false) to train without "
            "document masking"
        )
    return "thd"


def _check_pretrained(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"pretrained checkpoint {p} does not exist (run the import first)")
    if not (
        ITER_RE.match(p.name)
        or (p / TRACKER_FILE).is_file()
        or any(ITER_RE.match(d.name) for d in p.iterdir())
    ):
        raise FileNotFoundError(f"{p} is not a Megatron checkpoint (no iter_NNNNNNN dir, no {TRACKER_FILE})")
    return p


def train(
    cfg: TrainConfig,
    model_dir: str | Path,
    shard_prefixes: Sequence[str | Path],
    run_dir: str | Path,
    *,
    pretrained_checkpoint: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
    max_steps: int | None = None,
    tensor_parallel: int | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    exit_interval: int | None = None,
    progress: bool = True,
    on_config_change: str = "error",
) -> dict[str, Any]:
    """Continue pretraining with Megatron-Bridge: ``model_dir`` is the family's HF base model
    (architecture, tokenizer check), ``pretrained_checkpoint`` its imported Megatron checkpoint
    (:func:`filmorph.convert.import_checkpoint`; the weights), ``shard_prefixes`` one arm's
    shards, ``run_dir`` the output (layout in the module docstring; resumed when it holds a
    checkpoint). Returns the summary written to ``train_summary.json`` (rank 0; ``{}`` on
    other ranks).

    ``tensor_parallel`` defaults to the config's ``tensor_parallel`` (1 when it has none);
    data-parallel ranks = launched processes / ``tensor_parallel``. ``max_steps`` overrides
    the config's; ``model_overrides`` are set on the Megatron provider (tuning);
    ``exit_interval`` stops after a multiple of that many steps (to test resuming);
    ``progress`` is accepted for interface parity (Megatron prints its own log lines).
    ``on_config_change``: when ``run_dir`` holds a run of another config, shards or model,
    ``"error"`` (default) refuses, ``"restart"`` deletes it (Megatron checkpoints included)
    and starts over. Raises
    :class:`TrainingIncomplete` when training stopped before ``max_steps`` (a rerun resumes).
    Launch one process per GPU (``torchrun`` / ``srun``), from a ``__main__``-guarded entry.
    """
    t_start = time.time()
    cfg = cfg.with_overrides(max_steps=max_steps)
    if pretrained_checkpoint is None:
        raise ValueError(
            "the megatron engine starts from an imported checkpoint: pass pretrained_checkpoint "
            "(the output of `python -m filmorph.convert import`)"
        )
    tp = int(tensor_parallel or getattr(cfg, "tensor_parallel", 1) or 1)
    pretrained = _check_pretrained(pretrained_checkpoint)
    env = detect_dist_env()
    main = env.rank == 0
    layout = RunLayout(run_dir)
    save_dir = layout.root / CHECKPOINT_SUBDIR

    masking = check_document_masking(cfg, model_dir)
    report = preflight(shard_prefixes, model_dir, tokenizer_dir=tokenizer_dir, scan_ids=main)
    settings = megatron_settings(
        cfg,
        shard_prefixes=[s["prefix"] for s in report["shards"]],
        shard_token_counts=[s["tokens"] for s in report["shards"]],
        run_dir=layout.root,
        world_size=env.world_size,
        tensor_parallel=tp,
        pretrained_checkpoint=pretrained,
        eod_id=report["eod_id"],
        vocab_size=int(report["tokenizer"]["vocab_size"]),
        exit_interval=exit_interval,
        document_masking=masking,
    )
    record = train_config_record(cfg, ENGINE, report, env.world_size)
    launch = _launch_id()
    record.update(
        launch=launch,
        tensor_parallel=tp,
        pretrained_checkpoint=str(pretrained),
        megatron_settings=settings,
        model_overrides={k: repr(v) for k, v in dict(model_overrides or {}).items()},
    )
    if on_config_change not in ("error", "restart"):
        raise ValueError(f"on_config_change must be 'error' or 'restart', not {on_config_change!r}")
    if main:
        layout.root.mkdir(parents=True, exist_ok=True)
        try:
            write_or_check_train_config(layout, record)
        except ValueError:
            if on_config_change != "restart":
                raise
            shutil.rmtree(save_dir, ignore_errors=True)  # the old run's Megatron checkpoints
            write_or_check_train_config(layout, record, on_mismatch="restart")
    _wait_for_rank0(env, layout, launch)

    flops_tok = hf_flops_per_token(model_dir, cfg.seq_length)
    if latest_iteration(save_dir) < cfg.max_steps:
        _run_pretrain(cfg, settings, model_dir, layout, env, flops_tok, model_overrides)
    done = latest_iteration(save_dir)
    if done < cfg.max_steps:
        raise TrainingIncomplete(
            f"training stopped at iteration {done} of {cfg.max_steps}; the checkpoint is in {save_dir}: "
            "rerun the same command to resume"
        )
    if not main:
        return {}
    summary = _summary(cfg, layout, report, settings, flops_tok, env.world_size, t_start)
    write_json_atomic(layout.summary, summary)
    return summary


def _run_pretrain(cfg, settings, model_dir, layout, env, flops_tok, model_overrides) -> None:
    import torch

    _export_dist_env(env)
    for key, value in settings["env"].items():
        os.environ.setdefault(key, str(value))
    avoid_gemma2_flex_attention()
    container = build_config_container(settings, model_dir, model_overrides=model_overrides)
    _patch_compile_helpers()
    from megatron.bridge.training.callbacks import CallbackManager
    from megatron.bridge.training.gpt_step import forward_step as stock_forward_step
    from megatron.bridge.training.pretrain import pretrain

    main = env.rank == 0
    device = torch.cuda.get_device_name(env.local_rank) if torch.cuda.is_available() else None
    recorder = MetricsRecorder(
        MetricsWriter(layout.metrics) if main else None,
        cfg,
        world_size=env.world_size,
        flops_per_token=flops_tok,
        peak_flops_per_device=peak_flops(device, cfg.precision),
        memory_gib=lambda: torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    )
    manager = recorder.register(CallbackManager())
    if settings["document_masking"] == "thd":
        forward: Any = DocumentForwardStep(settings["eod_id"])
    else:
        forward = stock_forward_step
    try:
        pretrain(container, forward, callbacks=manager)
    except SystemExit as exc:
        # Megatron-Bridge ends the process (sys.exit(0)) after the checkpoint it saves on a
        # signal or at exit_interval: train() then reports the run as incomplete
        if exc.code not in (None, 0):
            raise
    finally:
        recorder.on_train_end(None)  # a record still pending when training stopped


def _summary(cfg, layout, report, settings, flops_tok, world, t_start) -> dict[str, Any]:
    records = read_metrics(layout.metrics)
    losses = [r for r in records if r.get("loss") is not None]
    vals = [r for r in records if r.get("val_loss") is not None]
    tps = [r["tokens_per_s"] for r in losses if r.get("tokens_per_s")]
    mfus = [r["mfu"] for r in losses if r.get("mfu")]
    mems = [r["peak_memory_gib"] for r in losses if r.get("peak_memory_gib") is not None]
    # the first logged window holds the warm-up steps: leave it out of the steady-state figures
    steady = tps[1:] or tps
    steady_mfu = mfus[1:] or mfus
    iters = checkpoint_iterations(layout.root / CHECKPOINT_SUBDIR)
    return {
        "engine": ENGINE,
        "config": cfg.to_dict(),
        "steps": cfg.max_steps,
        "consumed_samples": cfg.max_steps * cfg.global_batch_size,
        "tokens_seen": cfg.max_steps * cfg.tokens_per_step,
        "final_loss": losses[-1]["loss"] if losses else None,
        "first_logged_loss": losses[0]["loss"] if losses else None,
        "final_val_loss": vals[-1]["val_loss"] if vals else None,
        "tokens_per_s": sum(steady) / len(steady) if steady else None,
        "mfu": sum(steady_mfu) / len(steady_mfu) if steady_mfu else None,
        "peak_memory_gib": max(mems) if mems else None,
        "flops_per_token": flops_tok,
        "seconds": time.time() - t_start,
        "precision": cfg.precision,
        "world_size": world,
        "parallel": settings["parallel"],
        "document_masking": settings["document_masking"],
        "pretrained_checkpoint": settings["checkpoint"]["pretrained_checkpoint"],
        "model": report["model"],
        "shards": report["shards"],
        "tokenizer": report["tokenizer"],
        "eod_id": report["eod_id"],
        "checkpoints": [
            {
                "step": it,
                "megatron": str(megatron_iter_dir(layout.root, it).relative_to(layout.root)),
                "hf": str(layout.hf_dir(it).relative_to(layout.root)),
                "scheduled": it in set(checkpoint_steps(cfg)),
            }
            for it in iters
        ],
        "versions": package_versions(MEGATRON_PACKAGES),
        "pid": os.getpid(),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m filmorph.train.megatron",
        description=(__doc__ or "").split("\n\n")[0]
        + " Runs train() once per process: start it with torchrun/srun for several GPUs.",
    )
    p.add_argument("--config", required=True, type=Path, help="JSON file with the train: section")
    p.add_argument("--model", required=True, type=Path, help="the family's HF base model dir")
    p.add_argument(
        "--pretrained-checkpoint",
        required=True,
        type=Path,
        help="its Megatron import (python -m filmorph.convert import ... --out DIR)",
    )
    p.add_argument("--shards", required=True, nargs="+", metavar="PREFIX", help="shard prefixes of one arm")
    p.add_argument(
        "--run-dir", required=True, type=Path, help="output dir (resumed when it holds a checkpoint)"
    )
    p.add_argument("--tokenizer-dir", type=Path, default=None, help="the family's tokenizer dir")
    p.add_argument("--max-steps", type=int, default=None, help="override the config's max_steps")
    p.add_argument("--tensor-parallel", type=int, default=None, help="tensor-parallel size (default 1)")
    p.add_argument("--exit-interval", type=int, default=None, help="stop after a multiple of N steps")
    p.add_argument(
        "--on-config-change",
        choices=("error", "restart"),
        default="error",
        help="when --run-dir holds a run of another config, shards or model: fail (default) or clear it",
    )
    p.add_argument(
        "--model-override",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="set a Megatron provider field, e.g. cross_entropy_fusion_impl='\"te\"' (repeatable)",
    )
    return p


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-override wants KEY=JSON, not {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    d = read_json(args.config)
    cfg = TrainConfig.from_dict({**d, "engine": ENGINE} if isinstance(d, dict) else d)
    try:
        summary = train(
            cfg,
            args.model,
            args.shards,
            args.run_dir,
            pretrained_checkpoint=args.pretrained_checkpoint,
            tokenizer_dir=args.tokenizer_dir,
            max_steps=args.max_steps,
            tensor_parallel=args.tensor_parallel,
            model_overrides=_parse_overrides(args.model_override),
            exit_interval=args.exit_interval,
            on_config_change=args.on_config_change,
        )
    except TrainingIncomplete as exc:
        print(f"filmorph.train.megatron: {exc}", file=sys.stderr)
        return 3
    if summary:
        keys = (
            "engine",
            "steps",
            "tokens_seen",
            "final_loss",
            "final_val_loss",
            "tokens_per_s",
            "mfu",
            "seconds",
        )
        print(json.dumps({k: summary.get(k) for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
