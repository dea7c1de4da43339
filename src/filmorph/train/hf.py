"""The ``hf`` engine: continued pretraining of a transformers causal LM in plain PyTorch.

For machines without a GPU and for small runs. Neither Megatron-Bridge (Transformer Engine)
nor NeMo Automodel trains on a CPU; this engine does, on the same shards and with the same
semantics, and it also runs on one or several GPUs (DDP, one process per GPU, started by
torchrun or srun).

Why a hand-written loop and not ``transformers.Trainer``: the loss must be the token-weighted
mean over the whole global batch with megatron-core's EOD loss mask, the data position must
be a pure function of the step (megatron-core's dataset is indexed by sample, so a resumed
run needs no data-loader state), the learning rate must follow :func:`filmorph.train.common.lr_at`,
checkpoints must appear atomically as ``state/step_NNNNNNN`` + ``hf/step_NNNNNNN``, and the
model must be called with ``use_cache=False`` (see below). Trainer would need overrides for
each of these; the loop is shorter than those overrides.

Semantics (see :mod:`filmorph.train.data`): samples from megatron-core's ``GPTDataset``;
document-boundary attention by passing the restarted ``position_ids`` with no attention mask
and ``use_cache=False``, which makes transformers build block-diagonal causal masks per
document (its packed-sequence path; sliding windows are honoured; ``use_cache=True``, the
config default, silently turns this off). A start-up check compares the model's logits on two
packed documents with the logits of each document alone and refuses to train when they
differ. Loss: cross-entropy summed over ``loss_mask`` and divided by the number of unmasked
tokens in the global batch. AdamW (decoupled weight decay on matrices and embeddings, none on
norms and biases), LR from ``lr_at`` set before every update, gradient clipping on the global
norm, fp32 weights with bf16 autocast on CUDA when ``precision`` is bf16, fp32 on CPU.

Checkpoints (steps from :func:`~filmorph.train.common.checkpoint_steps`; written and read by
:mod:`filmorph.train.hf_checkpoint`), each written atomically::

    state/step_NNNNNNN/model.safetensors   fp32 weights (kept for every checkpoint)
    state/step_NNNNNNN/optimizer.pt        AdamW state (only the newest state keeps it)
    state/step_NNNNNNN/rng.pt              RNG states
    state/step_NNNNNNN/state.json          step, samples, tokens, loss, hf dtype, ...
    hf/step_NNNNNNN/                       config, safetensors, generation config, the
                                           tokenizer files (copied byte for byte),
                                           filmorph_train_meta.json

Resume: rerunning the same command continues from the newest state that has an optimizer
file; ``hf/step_*`` dirs that are missing (Snakemake deletes the outputs of a failed job) are
re-created from their states first. Every random draw of step ``s`` comes from
``(seed, s, rank)``, so a resumed run ends with the same weights as an uninterrupted one.

Stop signals: SIGTERM (what Slurm sends at the time limit, or ``--signal=TERM@SECONDS``
before it) or SIGUSR1 makes the run finish the step it is in, write that step's metrics line
and a resumable ``state/step_NNNNNNN/`` (the format above, atomically; an ``hf/`` dir only on
a checkpoint step) and raise :class:`TrainingIncomplete` (``python -m filmorph.train`` exits
with 3); rerunning resumes from that state, bit for bit. With several ranks every rank stops
after the same step once any rank got the signal. Data-loader workers ignore both signals (a
Slurm signal reaches every process of the job step, and a worker dying of it would end the
run before it saves). A state saved between checkpoints goes once a newer one is saved.

Reading order: :func:`train` (device, process group, signal handlers) calls ``_train``, the
run top to bottom: set-up (config record, data, seeds, model, optimizer, resume), the loop
(batch, forward and backward, clip, step, eval, log, checkpoint), the summary. The small
functions it calls follow it, in the order it uses them.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filmorph.io import read_json, write_json_atomic
from filmorph.rng import derive_seed
from filmorph.train.common import (
    STATE_FILE,
    MetricsWriter,
    RunLayout,
    checkpoint_steps,
    eval_steps,
    lr_at,
    mfu,
    model_flops_per_token,
    peak_flops,
    preflight,
    read_metrics,
    start_wandb,
    train_config_record,
    write_or_check_train_config,
)
from filmorph.train.config import TrainConfig
from filmorph.train.hf_checkpoint import (
    ENGINE,
    load_state,
    restore_hf_checkpoints,
    resume_step,
    save_checkpoint,
    state_info,
)
from filmorph.train.launch import (
    STOP_SIGNALS,
    DistEnv,
    StopRequest,
    TrainingIncomplete,
    detect_dist_env,
    ignore_stop_signals,
)

__all__ = [
    "STOP_SIGNALS",
    "Throughput",
    "TrainingIncomplete",
    "TrainingInterrupted",
    "all_reduce_sum",
    "autocast",
    "barrier",
    "build_optimizer",
    "check_document_masking",
    "evaluate",
    "forward_backward",
    "forward_kwargs",
    "init_distributed",
    "load_model",
    "make_loader",
    "masked_ce_sum",
    "open_metrics",
    "param_groups",
    "precision_of",
    "run_summary",
    "seed_everything",
    "set_lr",
    "step_seed",
    "train",
    "wrap_ddp",
]

SUPPORTED_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


class TrainingInterrupted(TrainingIncomplete):
    """Raised by ``train(..., interrupt_after=k)`` after step ``k`` (to test resuming)."""


# ============================================================================ the entry point
def train(
    cfg: TrainConfig,
    model_dir: str | Path,
    shard_prefixes: Sequence[str | Path],
    run_dir: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    interrupt_after: int | None = None,
    on_config_change: str = "error",
) -> dict[str, Any]:
    """Continue pretraining the HF checkpoint ``model_dir`` on the blend of ``shard_prefixes``
    into ``run_dir`` (layout: :mod:`filmorph.train.common`); resume when ``run_dir`` holds
    a state. Returns the summary written to ``train_summary.json`` (rank 0; other ranks get
    ``{}``).

    ``max_steps`` overrides the config's. ``tokenizer_dir``: the family's tokenizer dir (needed
    when the model dir has no or other tokenizer files; its files then go into the HF
    checkpoints). ``interrupt_after``: raise :class:`TrainingInterrupted` after that step,
    as a kill would (for tests). ``on_config_change``: what to do when ``run_dir`` holds a run
    of another config/shards/model: ``"error"`` (default) or ``"restart"`` (clear it and start
    over; see :func:`~filmorph.train.common.write_or_check_train_config`). Under torchrun / srun (see
    :func:`~filmorph.train.common.detect_dist_env`) every rank runs this function (DDP).
    SIGTERM or SIGUSR1 (:data:`STOP_SIGNALS`; caught while the run is set up and trains, when
    this runs in the main thread) ends the run after the current step with a saved state and
    :class:`TrainingIncomplete`.
    """
    warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex are not installed.*")
    t_start = time.time()
    cfg = cfg.with_overrides(max_steps=max_steps)
    if cfg.reset_attention_mask and not cfg.reset_position_ids:
        raise ValueError(
            "the hf engine separates documents through restarted position ids: "
            "reset_attention_mask needs reset_position_ids"
        )
    env = detect_dist_env()
    device, created_pg = init_distributed(env)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" per checkpoint
    stop = StopRequest().install()
    try:
        return _train(
            cfg,
            Path(model_dir),
            shard_prefixes,
            RunLayout(run_dir),
            tokenizer_dir=tokenizer_dir,
            progress=progress,
            interrupt_after=interrupt_after,
            on_config_change=on_config_change,
            env=env,
            device=device,
            t_start=t_start,
            stop=stop,
        )
    finally:
        stop.restore()
        if bars:
            hf_logging.enable_progress_bar()
        if created_pg:
            import torch.distributed as dist

            dist.destroy_process_group()


# ============================================================================ the run
def _train(
    cfg: TrainConfig,
    model_dir: Path,
    shard_prefixes: Sequence[str | Path],
    layout: RunLayout,
    *,
    tokenizer_dir: str | Path | None,
    progress: bool,
    interrupt_after: int | None,
    on_config_change: str,
    env: DistEnv,
    device: Any,
    t_start: float,
    stop: StopRequest,
) -> dict[str, Any]:
    """The run, top to bottom: set up, train ``start..max_steps``, write the summary."""
    import torch

    from filmorph.train.data import build_datasets

    world, rank, distributed = env.world_size, env.rank, env.distributed
    main = rank == 0
    accum = cfg.grad_accum_steps(world)

    # ---- setup: the run's identity, data, model, optimizer, resume
    report = preflight(shard_prefixes, model_dir, tokenizer_dir=tokenizer_dir, scan_ids=main)
    precision, hf_dtype = precision_of(cfg, device)
    if main:
        record = train_config_record(cfg, ENGINE, report, world)
        record["effective_precision"] = precision
        layout.root.mkdir(parents=True, exist_ok=True)
        write_or_check_train_config(layout, record, on_mismatch=on_config_change)
    barrier(distributed)
    data = build_datasets(
        [s["prefix"] for s in report["shards"]],
        cfg,
        eod_id=report["eod_id"],
        vocab_size=int(report["tokenizer"]["vocab_size"]),
        cache_dir=layout.data_cache,
    )
    seed_everything(cfg.seed, rank)
    model = load_model(model_dir, device, check_masking=cfg.reset_attention_mask)
    optimizer = build_optimizer(model, cfg, fused=device.type == "cuda")
    ckpt_steps = checkpoint_steps(cfg)
    ev_steps = set(eval_steps(cfg)) if data.valid is not None else set()
    start = resume_step(layout, cfg.max_steps)
    if main:
        restore_hf_checkpoints(layout, report, model, [c for c in ckpt_steps if c <= start], hf_dtype)
    info: dict[str, Any] = {"train_seconds": 0.0, "loss": None, "val_loss": None}
    if start > 0:
        info = load_state(layout, start, model, optimizer)
    barrier(distributed)
    metrics = (  # without the bar (a job log), one line per logged step instead
        open_metrics(layout, cfg, start, name=f"{model_dir.name}-{layout.root.name}",
                     echo=None if progress else sys.stderr)
        if main
        else None
    )
    ddp_model = wrap_ddp(model, device) if distributed else model
    batches = iter(make_loader(data.train, cfg, start, rank, world, device))
    params = [p for p in model.parameters() if p.requires_grad]
    flops_tok = model_flops_per_token(model, cfg.seq_length)
    peak = peak_flops(torch.cuda.get_device_name(device) if device.type == "cuda" else None, precision)
    bar = _progress_bar(cfg, start, layout.root.name, enabled=progress and main)
    meter = Throughput(device)
    t_run = time.time()
    train_seconds0 = float(info.get("train_seconds") or 0.0)
    last_val = info.get("val_loss")

    # ---- the loop: batch, forward, backward, clip, step, log, eval, checkpoint
    for s in range(start, cfg.max_steps):
        step = s + 1
        torch.manual_seed(step_seed(cfg.seed, s, rank))
        lr = set_lr(optimizer, lr_at(cfg, s))
        micro = [next(batches) for _ in range(accum)]
        loss, loss_tokens, stop_asked = forward_backward(
            ddp_model, micro, cfg, device, precision=precision, world=world, distributed=distributed,
            stop_asked=stop.signum is not None,
        )  # fmt: skip
        stop_now = stop_asked and step < cfg.max_steps
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise FloatingPointError(f"step {step}: loss {loss}, grad norm {grad_norm}")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        meter.add(cfg.tokens_per_step)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

        val = None
        if step in ev_steps:
            val = last_val = evaluate(
                model, data.valid, cfg, device, precision=precision, rank=rank, world=world,
                distributed=distributed,
            )  # fmt: skip
        if metrics is not None and (
            step % cfg.log_interval == 0 or step == cfg.max_steps or val is not None or stop_now
        ):
            tps = meter.tokens_per_s()
            metrics.log(
                {
                    "step": step,
                    "loss": loss,
                    "val_loss": val,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens": step * cfg.tokens_per_step,
                    "loss_tokens": int(loss_tokens),
                    "tokens_per_s": tps,
                    "mfu": mfu(tps, flops_tok, peak, world) if tps else None,
                    "elapsed_s": time.time() - t_run,
                }
            )
            meter.restart()
        if step in ckpt_steps or stop_now:
            info = state_info(
                cfg, step, loss=loss, val_loss=last_val, lr=lr, precision=precision, hf_dtype=hf_dtype,
                world=world, train_seconds=train_seconds0 + time.time() - t_run,
            )  # fmt: skip
            if main:
                save_checkpoint(layout, report, step, model, optimizer, info, checkpoints=ckpt_steps)
            barrier(distributed)
        interrupted = interrupt_after is not None and interrupt_after <= step < cfg.max_steps
        if stop_now or interrupted:
            bar.close()
            if metrics is not None:
                metrics.close()
            del batches  # data-loader workers end now
            if stop_now:
                raise TrainingIncomplete(
                    f"{stop.name} received: stopped after step {step} of {cfg.max_steps}, state saved "
                    f"in {layout.state_dir(step)}"
                )
            raise TrainingInterrupted(f"interrupted after step {step}")
    bar.close()
    del batches

    # ---- the end: the summary (the last step's checkpoint was saved in the loop)
    if metrics is None:
        return {}
    metrics.close()
    summary = run_summary(
        cfg, layout, report, model, start=start, precision=precision, device=device, world=world,
        flops_per_token=flops_tok, t_start=t_start,
    )  # fmt: skip
    write_json_atomic(layout.summary, summary)
    return summary


# ============================================================================ setup
def init_distributed(env: DistEnv) -> tuple[Any, bool]:
    """This process's device (its local GPU, else the CPU) and, for a distributed launch, the
    process group (NCCL on GPUs, gloo on CPUs) unless one exists. Returns ``(device,
    created)``; whoever gets ``created`` true destroys the group at the end."""
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda", env.local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not env.distributed:
        return device, False
    import torch.distributed as dist

    if dist.is_initialized():
        return device, False
    kwargs: dict[str, Any] = {}
    if env.launcher == "slurm":
        kwargs["init_method"] = f"tcp://{env.master_addr}:{env.master_port}"
    dist.init_process_group("nccl" if cuda else "gloo", rank=env.rank, world_size=env.world_size, **kwargs)
    return device, True


def precision_of(cfg: TrainConfig, device: Any) -> tuple[str, str]:
    """``(precision, hf_dtype)`` of a run: ``("bf16", "bfloat16")`` when the config asks for bf16
    and the device is a GPU (bf16 autocast over fp32 weights; checkpoints exported in bf16),
    else ``("fp32", "float32")``."""
    if cfg.precision == "bf16" and device.type == "cuda":
        return "bf16", "bfloat16"
    return "fp32", "float32"


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of 0-based step ``step`` on ``rank`` (``step=-1``: model set-up)."""
    return derive_seed(seed, "hf-train", f"{step}:{rank}") % (2**63)


def seed_everything(seed: int, rank: int) -> None:
    """Seed torch (from :func:`step_seed` of step -1), Python's ``random`` and numpy before the
    model is built. Every training step reseeds torch with its own :func:`step_seed`."""
    import numpy as np
    import torch

    torch.manual_seed(step_seed(seed, -1, rank))
    random.seed(seed)
    np.random.seed(seed % (2**32))


def load_model(model_dir: str | Path, device: Any, *, check_masking: bool) -> Any:
    """The fp32 causal LM of ``model_dir`` on ``device`` in training mode, with
    ``use_cache=False``; refuses an attention implementation outside
    :data:`SUPPORTED_ATTENTION` and, with ``check_masking``, a model that lets packed documents
    attend to each other (:func:`check_document_masking`)."""
    import torch
    from transformers import AutoModelForCausalLM

    from filmorph.models import attention_kwargs

    # eager for a model that soft-caps its attention logits (Gemma 2): SDPA would drop the cap
    extra = attention_kwargs(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=torch.float32, local_files_only=True, **extra
    )
    model.config.use_cache = False
    attn = model.config._attn_implementation
    if attn not in SUPPORTED_ATTENTION:
        raise RuntimeError(f"attention implementation {attn!r} is not one the hf engine supports")
    model.to(device)
    if check_masking:
        check_document_masking(model, device)
    model.train()
    return model


def check_document_masking(model: Any, device: Any = None, *, atol: float = 1e-3) -> float:
    """Check that ``model`` keeps packed documents apart: the logits of two documents packed
    into one sequence (position ids restarting at 0, no mask, ``use_cache=False``) must equal
    the logits of each document run alone. Returns the max abs difference; raises
    ``RuntimeError`` when it exceeds ``atol``. Runs without autocast, in the model's dtype."""
    import torch

    device = device or next(model.parameters()).device
    vocab = int(model.get_input_embeddings().weight.shape[0])
    g = torch.Generator().manual_seed(0)
    a = torch.randint(3, min(vocab, 30000), (1, 9), generator=g)
    b = torch.randint(3, min(vocab, 30000), (1, 7), generator=g)
    packed = torch.cat([a, b], 1).to(device)
    pos = torch.cat([torch.arange(9), torch.arange(7)])[None].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            lp = model(input_ids=packed, position_ids=pos, use_cache=False).logits.float()
            la = model(input_ids=a.to(device), use_cache=False).logits.float()
            lb = model(input_ids=b.to(device), use_cache=False).logits.float()
    finally:
        model.train(was_training)
    diff = float((lp - torch.cat([la, lb], 1)).abs().max())
    if not diff <= atol:
        raise RuntimeError(
            f"{type(model).__name__} with attention '{model.config._attn_implementation}' lets packed "
            f"documents attend to each other (max logit difference {diff:.3g}); the hf engine cannot "
            "train it with reset_attention_mask"
        )
    return diff


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: ``weight_decay`` on matrices and embeddings (``ndim >= 2``),
    none on norms and biases; frozen parameters left out."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: Any, cfg: TrainConfig, *, fused: bool) -> Any:
    """AdamW over :func:`param_groups` with the config's betas and eps, at the LR of step 0
    (the loop sets each step's LR with :func:`set_lr`)."""
    import torch

    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=lr_at(cfg, 0),
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        fused=fused,
    )


def set_lr(optimizer: Any, lr: float) -> float:
    """Set ``lr`` on every parameter group of ``optimizer``; returns it."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def wrap_ddp(model: Any, device: Any) -> Any:
    """``model`` in DistributedDataParallel (the loop trains through it; checkpoints and
    evaluation use ``model`` itself)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def make_loader(dataset: Any, cfg: TrainConfig, start: int, rank: int, world: int, device: Any) -> Any:
    """The data loader of this rank's micro-batches from step ``start`` to ``max_steps``: the
    sample order is a pure function of the step (:class:`~filmorph.train.data.StepSampler`);
    its workers ignore the stop signals."""
    import torch

    from filmorph.train.data import StepSampler

    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.micro_batch_size,
        sampler=StepSampler(start, cfg.max_steps, cfg.global_batch_size, rank, world),
        num_workers=cfg.num_workers,
        worker_init_fn=ignore_stop_signals if cfg.num_workers > 0 else None,
        pin_memory=device.type == "cuda",
        drop_last=False,
        persistent_workers=False,
    )


# ============================================================================ forward, backward, eval
def autocast(precision: str) -> Any:
    """bf16 autocast on the GPU for a ``"bf16"`` run (see :func:`precision_of`), else a no-op."""
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def forward_kwargs(cfg: TrainConfig, batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """Model inputs realising the document semantics of ``cfg`` for one micro-batch."""
    import torch

    tokens = batch["tokens"].to(device, non_blocking=True)
    kw: dict[str, Any] = {"input_ids": tokens, "use_cache": False}
    if cfg.reset_position_ids:
        kw["position_ids"] = batch["position_ids"].to(device, non_blocking=True)
        if not cfg.reset_attention_mask:
            # a 2-D all-ones mask: plain causal attention across documents (transformers only
            # infers packed documents from position ids when no mask is given)
            kw["attention_mask"] = torch.ones_like(tokens)
    return kw


def masked_ce_sum(logits: Any, labels: Any, loss_mask: Any) -> Any:
    """Cross-entropy (in fp32) summed over the tokens where ``loss_mask`` is 1."""
    import torch.nn.functional as F

    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    return (ce * loss_mask.reshape(-1)).sum()


def forward_backward(
    model: Any,
    micro: Sequence[dict[str, Any]],
    cfg: TrainConfig,
    device: Any,
    *,
    precision: str,
    world: int,
    distributed: bool,
    stop_asked: bool,
) -> tuple[float, float, bool]:
    """Accumulate the gradients of one step's micro-batches (``model`` may be DDP-wrapped: it
    syncs on the last one only). Each rank's summed loss is scaled by ``world / global loss
    tokens`` so the averaged gradient is that of the token-weighted mean loss of the global
    batch. Returns ``(loss, global loss tokens, whether any rank asked to stop)``; the stop
    flag travels in the loss's all-reduce, so every rank stops after the same step."""
    import torch

    local_tokens = float(sum(float(b["loss_mask"].sum()) for b in micro))
    (global_tokens,) = all_reduce_sum([local_tokens], device, distributed)
    scale = world / max(global_tokens, 1.0)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for j, batch in enumerate(micro):
        sync = model.no_sync() if distributed and j < len(micro) - 1 else contextlib.nullcontext()
        with sync:
            with autocast(precision):
                logits = model(**forward_kwargs(cfg, batch, device)).logits
            part = masked_ce_sum(logits, batch["labels"].to(device), batch["loss_mask"].to(device))
            (part * scale).backward()
        loss_sum += part.detach()
        del logits, part
    loss_total, stops = all_reduce_sum([float(loss_sum), float(stop_asked)], device, distributed)
    return loss_total / max(global_tokens, 1.0), global_tokens, stops > 0


def evaluate(
    model: Any,
    valid: Any,
    cfg: TrainConfig,
    device: Any,
    *,
    precision: str,
    rank: int,
    world: int,
    distributed: bool,
) -> float:
    """Validation loss: the token-weighted mean cross-entropy over the first ``eval_iters``
    global batches of ``valid`` (the same samples at every evaluation), all ranks together."""
    import torch

    from filmorph.train.data import rank_sample_indices

    batch_size = cfg.global_batch_size
    idx = [i for s in range(cfg.eval_iters) for i in rank_sample_indices(s, batch_size, rank, world)]
    total = [0.0, 0.0]
    model.eval()
    with torch.no_grad():
        for j in range(0, len(idx), cfg.micro_batch_size):
            items = [valid[i] for i in idx[j : j + cfg.micro_batch_size]]
            batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
            with autocast(precision):
                logits = model(**forward_kwargs(cfg, batch, device)).logits
            lm = batch["loss_mask"].to(device)
            total[0] += float(masked_ce_sum(logits, batch["labels"].to(device), lm))
            total[1] += float(lm.sum())
    model.train()
    s, n = all_reduce_sum(total, device, distributed)
    return s / max(n, 1.0)


# ============================================================================ logging
class Throughput:
    """Training tokens per second since the last :meth:`restart` (GPU work is waited for)."""

    def __init__(self, device: Any):
        self.device = device
        self.restart()

    def restart(self) -> None:
        self.t0, self.tokens = time.time(), 0

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def tokens_per_s(self) -> float | None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
        dt = time.time() - self.t0
        return self.tokens / dt if dt > 0 else None


def open_metrics(layout: RunLayout, cfg: TrainConfig, start: int, *, name: str,
                 echo: Any = None) -> MetricsWriter:
    """Rank 0's metrics writer, with the lines of steps after ``start`` dropped (a resumed run
    logs them again) and a W&B run (:func:`~filmorph.train.common.start_wandb`) while steps
    remain; ``echo``: an open text file that gets one line per logged step."""
    wb = start_wandb(layout.root, name, cfg.to_dict()) if cfg.max_steps > start else None
    metrics = MetricsWriter(layout.metrics, wandb_run=wb, echo=echo, max_steps=cfg.max_steps)
    metrics.truncate_after(start)
    return metrics


def _progress_bar(cfg: TrainConfig, start: int, name: str, *, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=cfg.max_steps,
        initial=start,
        desc=f"train {name}",
        file=sys.stderr,
        disable=not enabled,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )


# ============================================================================ distributed
def all_reduce_sum(values: list[float], device: Any, distributed: bool) -> list[float]:
    """``values`` summed over all ranks (float64; unchanged in a single process)."""
    if not distributed:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(distributed: bool) -> None:
    """Wait for every rank (nothing in a single process)."""
    if distributed:
        import torch.distributed as dist

        dist.barrier()


# ============================================================================ summary
def run_summary(
    cfg: TrainConfig,
    layout: RunLayout,
    report: dict[str, Any],
    model: Any,
    *,
    start: int,
    precision: str,
    device: Any,
    world: int,
    flops_per_token: float,
    t_start: float,
) -> dict[str, Any]:
    """The content of ``train_summary.json`` of a finished run: figures of the last state and
    the metrics log, the inputs (``report``), the checkpoints and the library versions."""
    import megatron.core
    import torch
    import transformers

    final = read_json(layout.state_dir(cfg.max_steps) / STATE_FILE)
    logged = read_metrics(layout.metrics)
    return {
        "engine": ENGINE,
        "config": cfg.to_dict(),
        "steps": cfg.max_steps,
        "resumed_from_step": start or None,
        "consumed_samples": final["consumed_samples"],
        "tokens_seen": final["tokens_seen"],
        "final_loss": final["loss"],
        "final_val_loss": final.get("val_loss"),
        "first_logged_loss": logged[0]["loss"] if logged else None,
        "train_seconds": final.get("train_seconds"),
        "seconds": time.time() - t_start,
        "precision": precision,
        "device": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        ),
        "world_size": world,
        "grad_accum_steps": cfg.grad_accum_steps(world),
        "flops_per_token": flops_per_token,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "model": report["model"],
        "shards": report["shards"],
        "tokenizer": report["tokenizer"],
        "eod_id": report["eod_id"],
        "checkpoints": [
            {
                "step": c,
                "hf": str(layout.hf_dir(c).relative_to(layout.root)),
                "state": str(layout.state_dir(c).relative_to(layout.root)),
            }
            for c in checkpoint_steps(cfg)
        ],
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "megatron_core": getattr(megatron.core, "__version__", None),
            "python": platform.python_version(),
        },
        "pid": os.getpid(),
    }
