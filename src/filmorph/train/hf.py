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

Checkpoints (steps from :func:`~filmorph.train.common.checkpoint_steps`), each written
atomically::

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
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filmorph.io import atomic_path, read_json, write_json_atomic
from filmorph.rng import derive_seed
from filmorph.tokenizers import HF_TOKENIZER_FILES
from filmorph.train.common import (
    STATE_FILE,
    MetricsWriter,
    RunLayout,
    checkpoint_steps,
    complete_states,
    eval_steps,
    lr_at,
    mfu,
    model_flops_per_token,
    peak_flops,
    preflight,
    read_metrics,
    start_wandb,
    step_name,
    train_config_record,
    write_or_check_train_config,
)
from filmorph.train.config import TrainConfig
from filmorph.train.launch import (
    STOP_SIGNALS,
    StopRequest,
    TrainingIncomplete,
    detect_dist_env,
    ignore_stop_signals,
)

__all__ = [
    "STOP_SIGNALS",
    "TrainingIncomplete",
    "TrainingInterrupted",
    "check_document_masking",
    "export_hf",
    "train",
]

ENGINE = "hf"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
TRAIN_META = "filmorph_train_meta.json"
SUPPORTED_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")
TOKENIZER_FILES = (*HF_TOKENIZER_FILES, "tokenizer_meta.json")  # + the family meta
class TrainingInterrupted(TrainingIncomplete):
    """Raised by ``train(..., interrupt_after=k)`` after step ``k`` (to test resuming)."""


# ============================================================================ model helpers
def _step_seed(seed: int, step: int, rank: int) -> int:
    return derive_seed(seed, "hf-train", f"{step}:{rank}") % (2**63)


def _forward_kwargs(cfg: TrainConfig, batch: dict[str, Any], device: Any) -> dict[str, Any]:
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


def _masked_ce_sum(logits: Any, labels: Any, loss_mask: Any) -> Any:
    import torch.nn.functional as F

    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    return (ce * loss_mask.reshape(-1)).sum()


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


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _copy_tokenizer_files(src: Path, dst: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    if "tokenizer.json" not in copied:
        raise FileNotFoundError(f"no tokenizer.json in {src}")
    return copied


def export_hf(
    model: Any,
    out_dir: str | Path,
    *,
    tokenizer_files_dir: str | Path,
    dtype: str = "float32",
    meta: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` as a transformers checkpoint dir, atomically: ``config.json``,
    ``model.safetensors`` in ``dtype`` (``float32`` or ``bfloat16``), ``generation_config.json``,
    the tokenizer files of ``tokenizer_files_dir`` copied byte for byte, and ``meta`` as
    ``filmorph_train_meta.json``. ``model`` itself is left untouched."""
    import torch
    from transformers import AutoModelForCausalLM

    from filmorph.models import relax_permissions

    tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    base = getattr(model, "module", model)
    config = base.config.__class__.from_dict(base.config.to_dict())
    config.dtype = dtype
    config.use_cache = True  # the training run turned it off; inference wants it
    state = {k: v.detach().to("cpu", dtype=tdtype, copy=True) for k, v in base.state_dict().items()}
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=tdtype)
    result = fresh.load_state_dict(state, strict=False, assign=True)
    fresh.tie_weights()
    missing = [k for k in result.missing_keys if not _is_tied_key(fresh, k)]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"export: state dict mismatch: missing {missing}, unexpected {result.unexpected_keys}"
        )
    if base.generation_config is not None:
        fresh.generation_config = base.generation_config
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        fresh.save_pretrained(str(tmp), safe_serialization=True)
        _copy_tokenizer_files(Path(tokenizer_files_dir), tmp)
        write_json_atomic(tmp / TRAIN_META, dict(meta or {}))
        relax_permissions(tmp)


def _is_tied_key(model: Any, key: str) -> bool:
    out = model.get_output_embeddings()
    return (
        out is not None
        and key.endswith("lm_head.weight")
        and out.weight is model.get_input_embeddings().weight
    )


# ============================================================================ state
def _save_state(
    layout: RunLayout, step: int, model: Any, optimizer: Any, info: dict[str, Any], checkpoints: Sequence[int]
) -> None:
    """Write ``state/step_NNNNNNN`` atomically. Then older states of ``checkpoints`` lose their
    optimizer file (their weights can re-create ``hf/``) and older states of other steps (a
    stop between checkpoints) go."""
    import numpy as np
    import torch
    from safetensors.torch import save_model

    from filmorph.models import relax_permissions

    base = getattr(model, "module", model)
    with atomic_path(layout.state_dir(step)) as tmp:
        tmp.mkdir()
        save_model(base, str(tmp / MODEL_FILE))
        torch.save(
            {"optimizer": optimizer.state_dict(), "schedule": {"name": "lr_at", "next_step": step}},
            tmp / OPTIMIZER_FILE,
        )
        rng = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(rng, tmp / RNG_FILE)
        write_json_atomic(tmp / STATE_FILE, info)
        relax_permissions(tmp)
    # only the newest state needs optimizer moments; older ones keep their weights (for hf/)
    for s in complete_states(layout.root):
        if s >= step:
            continue
        if s in checkpoints:
            (layout.state_dir(s) / OPTIMIZER_FILE).unlink(missing_ok=True)
        else:  # out of the resume scan first (a name it ignores), then gone
            gone = layout.states / f".{step_name(s)}.dropped"
            shutil.rmtree(gone, ignore_errors=True)
            os.replace(layout.state_dir(s), gone)
            shutil.rmtree(gone, ignore_errors=True)


def _load_weights(model: Any, state_dir: Path) -> None:
    from safetensors.torch import load_model

    base = getattr(model, "module", model)
    missing, unexpected = load_model(base, str(state_dir / MODEL_FILE), strict=True)
    if missing or unexpected:  # pragma: no cover - strict raises first
        raise RuntimeError(f"{state_dir}: weights mismatch {missing} {unexpected}")


def _load_state(layout: RunLayout, step: int, model: Any, optimizer: Any) -> dict[str, Any]:
    import numpy as np
    import torch

    d = layout.state_dir(step)
    _load_weights(model, d)
    opt = torch.load(d / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    rng = torch.load(d / RNG_FILE, map_location="cpu", weights_only=False)  # our own file
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return read_json(d / STATE_FILE)


# ============================================================================ distributed
def _all_reduce_sum(values: list[float], device: Any, distributed: bool) -> list[float]:
    if not distributed:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _barrier(distributed: bool) -> None:
    if distributed:
        import torch.distributed as dist

        dist.barrier()


# ============================================================================ the loop
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
    import torch

    warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex are not installed.*")
    t_start = time.time()
    cfg = cfg.with_overrides(max_steps=max_steps)
    if cfg.reset_attention_mask and not cfg.reset_position_ids:
        raise ValueError(
            "the hf engine separates documents through restarted position ids: "
            "reset_attention_mask needs reset_position_ids"
        )
    env = detect_dist_env()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", env.local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    created_pg = False
    if env.distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            kwargs: dict[str, Any] = {}
            if env.launcher == "slurm":
                kwargs["init_method"] = f"tcp://{env.master_addr}:{env.master_port}"
            dist.init_process_group(
                "nccl" if cuda else "gloo", rank=env.rank, world_size=env.world_size, **kwargs
            )
            created_pg = True
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" per checkpoint
    stop = StopRequest().install()
    try:
        return _train(
            cfg,
            model_dir,
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


def _train(
    cfg: TrainConfig,
    model_dir: str | Path,
    shard_prefixes: Sequence[str | Path],
    layout: RunLayout,
    *,
    tokenizer_dir: str | Path | None,
    progress: bool,
    interrupt_after: int | None,
    on_config_change: str,
    env: Any,
    device: Any,
    t_start: float,
    stop: StopRequest,
) -> dict[str, Any]:
    import numpy as np
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM

    from filmorph.train.data import StepSampler, build_datasets, rank_sample_indices

    world, rank = env.world_size, env.rank
    main = rank == 0
    distributed = env.distributed
    accum = cfg.grad_accum_steps(world)
    model_dir = Path(model_dir)

    # ---- pre-flight and the run's identity
    report = preflight(shard_prefixes, model_dir, tokenizer_dir=tokenizer_dir, scan_ids=main)
    record = train_config_record(cfg, ENGINE, report, world)
    bf16 = cfg.precision == "bf16" and device.type == "cuda"
    precision = "bf16" if bf16 else "fp32"
    hf_dtype = "bfloat16" if bf16 else "float32"
    record["effective_precision"] = precision
    if main:
        layout.root.mkdir(parents=True, exist_ok=True)
        write_or_check_train_config(layout, record, on_mismatch=on_config_change)
    _barrier(distributed)

    # ---- data
    data = build_datasets(
        [s["prefix"] for s in report["shards"]],
        cfg,
        eod_id=report["eod_id"],
        vocab_size=int(report["tokenizer"]["vocab_size"]),
        cache_dir=layout.data_cache,
    )

    # ---- model and optimizer
    torch.manual_seed(_step_seed(cfg.seed, -1, rank))
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, local_files_only=True)
    model.config.use_cache = False
    attn = model.config._attn_implementation
    if attn not in SUPPORTED_ATTENTION:
        raise RuntimeError(f"attention implementation {attn!r} is not one the hf engine supports")
    model.to(device)
    if cfg.reset_attention_mask:
        check_document_masking(model, device)
    model.train()
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.weight_decay),
        lr=lr_at(cfg, 0),
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        fused=device.type == "cuda",
    )
    flops_tok = model_flops_per_token(model, cfg.seq_length)
    peak = peak_flops(torch.cuda.get_device_name(device) if device.type == "cuda" else None, precision)
    ckpt_steps = checkpoint_steps(cfg)
    ev_steps = set(eval_steps(cfg)) if data.valid is not None else set()

    # ---- resume
    states = complete_states(layout.root, required=(MODEL_FILE, OPTIMIZER_FILE, RNG_FILE))
    start = states[-1] if states else 0
    if start > cfg.max_steps:
        raise ValueError(f"{layout.root} holds a state at step {start} > max_steps {cfg.max_steps}")
    tok_files = report["tokenizer_files_dir"]

    def hf_meta(step: int, info: dict[str, Any]) -> dict[str, Any]:
        return {
            "engine": ENGINE,
            "step": step,
            "consumed_samples": info.get("consumed_samples"),
            "tokens_seen": info.get("tokens_seen"),
            "loss": info.get("loss"),
            "base_model": report["model"]["path"],
            "base_model_config_sha256": report["model"]["config_sha256"],
            "tokenizer": report["tokenizer"],
            "shard_prefixes": [s["prefix"] for s in report["shards"]],
            "run_dir": str(layout.root),
        }

    if main:
        with_weights = complete_states(layout.root, required=(MODEL_FILE,))
        for c in ckpt_steps:
            if c <= start and not layout.hf_dir(c).is_dir():
                if c not in with_weights:
                    print(
                        f"warning: no state for step {c}; cannot re-create {layout.hf_dir(c)}",
                        file=sys.stderr,
                    )
                    continue
                _load_weights(model, layout.state_dir(c))
                info = read_json(layout.state_dir(c) / STATE_FILE)
                export_hf(
                    model,
                    layout.hf_dir(c),
                    tokenizer_files_dir=tok_files,
                    dtype=info.get("hf_dtype", hf_dtype),
                    meta=hf_meta(c, info),
                )
    info: dict[str, Any] = {"train_seconds": 0.0, "loss": None, "val_loss": None}
    if start > 0:
        info = _load_state(layout, start, model, optimizer)
    _barrier(distributed)

    metrics = None
    if main:
        wb = (
            start_wandb(layout.root, f"{model_dir.name}-{layout.root.name}", record["config"])
            if cfg.max_steps > start
            else None
        )
        metrics = MetricsWriter(layout.metrics, wandb_run=wb)
        metrics.truncate_after(start)

    ddp_model = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    loader = torch.utils.data.DataLoader(
        data.train,
        batch_size=cfg.micro_batch_size,
        sampler=StepSampler(start, cfg.max_steps, cfg.global_batch_size, rank, world),
        num_workers=cfg.num_workers,
        worker_init_fn=ignore_stop_signals if cfg.num_workers > 0 else None,
        pin_memory=device.type == "cuda",
        drop_last=False,
        persistent_workers=False,
    )

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def evaluate() -> float:
        assert data.valid is not None
        idx = [
            i
            for s in range(cfg.eval_iters)
            for i in rank_sample_indices(s, cfg.global_batch_size, rank, world)
        ]
        total = [0.0, 0.0]
        model.eval()
        with torch.no_grad():
            for j in range(0, len(idx), cfg.micro_batch_size):
                items = [data.valid[i] for i in idx[j : j + cfg.micro_batch_size]]
                batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
                with autocast():
                    logits = model(**_forward_kwargs(cfg, batch, device)).logits
                lm = batch["loss_mask"].to(device)
                total[0] += float(_masked_ce_sum(logits, batch["labels"].to(device), lm))
                total[1] += float(lm.sum())
        model.train()
        s, n = _all_reduce_sum(total, device, distributed)
        return s / max(n, 1.0)

    bar = tqdm(
        total=cfg.max_steps,
        initial=start,
        desc=f"train {layout.root.name}",
        file=sys.stderr,
        disable=not (progress and main),
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )
    it = iter(loader)
    params = [p for p in model.parameters() if p.requires_grad]
    t_run = time.time()
    t_log, tokens_since_log = time.time(), 0
    train_seconds0 = float(info.get("train_seconds") or 0.0)
    last_val = info.get("val_loss")
    for s in range(start, cfg.max_steps):
        step = s + 1
        torch.manual_seed(_step_seed(cfg.seed, s, rank))
        lr = lr_at(cfg, s)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro = [next(it) for _ in range(accum)]
        local_tokens = float(sum(float(b["loss_mask"].sum()) for b in micro))
        (global_tokens,) = _all_reduce_sum([local_tokens], device, distributed)
        scale = world / max(global_tokens, 1.0)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for j, batch in enumerate(micro):
            sync = contextlib.nullcontext()
            if distributed and j < accum - 1:
                sync = ddp_model.no_sync()
            with sync:
                with autocast():
                    logits = ddp_model(**_forward_kwargs(cfg, batch, device)).logits
                part = _masked_ce_sum(logits, batch["labels"].to(device), batch["loss_mask"].to(device))
                (part * scale).backward()
            loss_sum += part.detach()
            del logits, part
        # with the loss, whether any rank got a stop signal: every rank stops after this step
        loss_total, stops = _all_reduce_sum(
            [float(loss_sum), float(stop.signum is not None)], device, distributed
        )
        stop_now = stops > 0 and step < cfg.max_steps
        loss = loss_total / max(global_tokens, 1.0)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise FloatingPointError(f"step {step}: loss {loss}, grad norm {grad_norm}")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        tokens_since_log += cfg.tokens_per_step
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

        val = None
        if step in ev_steps:
            val = evaluate()
            last_val = val
        log_now = step % cfg.log_interval == 0 or step == cfg.max_steps or val is not None or stop_now
        if main and log_now:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.time() - t_log
            tps = tokens_since_log / dt if dt > 0 else None
            metrics.log(
                {
                    "step": step,
                    "loss": loss,
                    "val_loss": val,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens": step * cfg.tokens_per_step,
                    "loss_tokens": int(global_tokens),
                    "tokens_per_s": tps,
                    "mfu": mfu(tps, flops_tok, peak, world) if tps else None,
                    "elapsed_s": time.time() - t_run,
                }
            )
            t_log, tokens_since_log = time.time(), 0
        if step in ckpt_steps or stop_now:
            info = {
                "step": step,
                "consumed_samples": step * cfg.global_batch_size,
                "tokens_seen": step * cfg.tokens_per_step,
                "loss": loss,
                "val_loss": last_val,
                "lr": lr,
                "hf_dtype": hf_dtype,
                "precision": precision,
                "world_size": world,
                "train_seconds": train_seconds0 + time.time() - t_run,
            }
            if main:
                _save_state(layout, step, model, optimizer, info, checkpoints=ckpt_steps)
                if step in ckpt_steps:
                    export_hf(
                        model,
                        layout.hf_dir(step),
                        tokenizer_files_dir=tok_files,
                        dtype=hf_dtype,
                        meta=hf_meta(step, info),
                    )
            _barrier(distributed)
        interrupted = interrupt_after is not None and step >= interrupt_after and step < cfg.max_steps
        if stop_now or interrupted:
            bar.close()
            if metrics is not None:
                metrics.close()
            del it  # data-loader workers end now
            if stop_now:
                raise TrainingIncomplete(
                    f"{stop.name} received: stopped after step {step} of {cfg.max_steps}, state saved "
                    f"in {layout.state_dir(step)}"
                )
            raise TrainingInterrupted(f"interrupted after step {step}")
    bar.close()
    del it, loader

    if not main:
        return {}
    final = read_json(layout.state_dir(cfg.max_steps) / STATE_FILE)
    metrics.close()
    import megatron.core
    import transformers

    logged = read_metrics(layout.metrics)
    summary = {
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
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "world_size": world,
        "grad_accum_steps": accum,
        "flops_per_token": flops_tok,
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
            for c in ckpt_steps
        ],
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "megatron_core": getattr(megatron.core, "__version__", None),
            "python": platform.python_version(),
        },
        "pid": os.getpid(),
    }
    write_json_atomic(layout.summary, summary)
    return summary
