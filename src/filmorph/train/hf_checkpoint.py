"""The checkpoints of the ``hf`` engine (:mod:`filmorph.train.hf`, whose docstring shows their
layout): saving and loading the resumable ``state/step_NNNNNNN`` dirs, exporting a model as a
transformers checkpoint ``hf/step_NNNNNNN``, and re-creating missing exports on resume.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filmorph.io import atomic_path, read_json, write_json_atomic
from filmorph.tokenizers import HF_TOKENIZER_FILES
from filmorph.train.common import STATE_FILE, RunLayout, complete_states, step_name
from filmorph.train.config import TrainConfig

__all__ = [
    "ENGINE",
    "MODEL_FILE",
    "OPTIMIZER_FILE",
    "RNG_FILE",
    "TRAIN_META",
    "checkpoint_meta",
    "export_hf",
    "load_state",
    "load_weights",
    "restore_hf_checkpoints",
    "resume_step",
    "save_checkpoint",
    "save_state",
    "state_info",
]

ENGINE = "hf"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
TRAIN_META = "filmorph_train_meta.json"
TOKENIZER_FILES = (*HF_TOKENIZER_FILES, "tokenizer_meta.json")  # + the family meta


# ============================================================================ states
def resume_step(layout: RunLayout, max_steps: int) -> int:
    """The step to continue from: the newest state with weights, optimizer and RNG files (0
    when there is none)."""
    states = complete_states(layout.root, required=(MODEL_FILE, OPTIMIZER_FILE, RNG_FILE))
    start = states[-1] if states else 0
    if start > max_steps:
        raise ValueError(f"{layout.root} holds a state at step {start} > max_steps {max_steps}")
    return start


def state_info(
    cfg: TrainConfig,
    step: int,
    *,
    loss: float,
    val_loss: float | None,
    lr: float,
    precision: str,
    hf_dtype: str,
    world: int,
    train_seconds: float,
) -> dict[str, Any]:
    """The ``state.json`` of the state saved after ``step``."""
    return {
        "step": step,
        "consumed_samples": step * cfg.global_batch_size,
        "tokens_seen": step * cfg.tokens_per_step,
        "loss": loss,
        "val_loss": val_loss,
        "lr": lr,
        "hf_dtype": hf_dtype,
        "precision": precision,
        "world_size": world,
        "train_seconds": train_seconds,
    }


def checkpoint_meta(
    report: dict[str, Any], layout: RunLayout, step: int, info: dict[str, Any]
) -> dict[str, Any]:
    """The ``filmorph_train_meta.json`` of ``hf/step_NNNNNNN``: the step's ``state.json``
    figures and what the run trained (``report``: :func:`~filmorph.train.common.preflight`)."""
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


def save_checkpoint(
    layout: RunLayout,
    report: dict[str, Any],
    step: int,
    model: Any,
    optimizer: Any,
    info: dict[str, Any],
    *,
    checkpoints: Sequence[int],
) -> None:
    """Save the state of ``step`` (:func:`save_state`) and, on a checkpoint step, export
    ``hf/step_NNNNNNN`` in ``info["hf_dtype"]``. Rank 0 only."""
    save_state(layout, step, model, optimizer, info, checkpoints=checkpoints)
    if step in checkpoints:
        export_hf(
            model,
            layout.hf_dir(step),
            tokenizer_files_dir=report["tokenizer_files_dir"],
            dtype=info["hf_dtype"],
            meta=checkpoint_meta(report, layout, step, info),
        )


def restore_hf_checkpoints(
    layout: RunLayout, report: dict[str, Any], model: Any, steps: Sequence[int], hf_dtype: str
) -> None:
    """Re-create the ``hf/step_NNNNNNN`` dirs of ``steps`` that are missing (Snakemake deletes
    the outputs of a failed job) from their states' weights, in the dtype the state records
    (else ``hf_dtype``); warn for a step without weights. Loads those weights into ``model``:
    call before the resume state is loaded. Rank 0 only."""
    with_weights = complete_states(layout.root, required=(MODEL_FILE,))
    for c in steps:
        if layout.hf_dir(c).is_dir():
            continue
        if c not in with_weights:
            print(f"warning: no state for step {c}; cannot re-create {layout.hf_dir(c)}", file=sys.stderr)
            continue
        load_weights(model, layout.state_dir(c))
        info = read_json(layout.state_dir(c) / STATE_FILE)
        export_hf(
            model,
            layout.hf_dir(c),
            tokenizer_files_dir=report["tokenizer_files_dir"],
            dtype=info.get("hf_dtype", hf_dtype),
            meta=checkpoint_meta(report, layout, c, info),
        )


def save_state(
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


def load_weights(model: Any, state_dir: Path) -> None:
    """Load the weights of ``state_dir`` into ``model`` (strict)."""
    from safetensors.torch import load_model

    base = getattr(model, "module", model)
    missing, unexpected = load_model(base, str(state_dir / MODEL_FILE), strict=True)
    if missing or unexpected:  # pragma: no cover - strict raises first
        raise RuntimeError(f"{state_dir}: weights mismatch {missing} {unexpected}")


def load_state(layout: RunLayout, step: int, model: Any, optimizer: Any) -> dict[str, Any]:
    """Load the state of ``step``: weights, optimizer moments and every RNG state. Returns its
    ``state.json``."""
    import numpy as np
    import torch

    d = layout.state_dir(step)
    load_weights(model, d)
    opt = torch.load(d / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    rng = torch.load(d / RNG_FILE, map_location="cpu", weights_only=False)  # our own file
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return read_json(d / STATE_FILE)


# ============================================================================ transformers export
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


def _copy_tokenizer_files(src: Path, dst: Path) -> list[str]:
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    if "tokenizer.json" not in copied:
        raise FileNotFoundError(f"no tokenizer.json in {src}")
    return copied
