"""The ``megatron`` engine's settings: what the engine needs installed, the attention backends
and workarounds per model, the run dir's Megatron names, :func:`megatron_settings` (a pure
translation of a :class:`~filmorph.train.config.TrainConfig` into Megatron-Bridge's config
values) and the thd document packing of the forward step (:class:`DocumentForwardStep`).

Nothing here imports megatron.bridge, megatron.core or transformer_engine at module level.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filmorph.io import read_json
from filmorph.paths import ITER_RE, iter_name
from filmorph.train.config import TrainConfig

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
    be imported without Transformer Engine; NVIDIA's NeMo container has all three. Then the
    installed versions are checked against the tested ones
    (:func:`filmorph.train.versions.ensure_megatron_versions`)."""
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
    # the engine's API calls were tested with one Megatron-Bridge series: refuse another
    from filmorph.train.versions import ensure_megatron_versions

    ensure_megatron_versions()


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
