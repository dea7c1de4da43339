"""The ``megatron`` engine's run: Megatron-Bridge's ``ConfigContainer`` from the settings,
the distributed environment, the document-masking check per model, :func:`train` (pre-flight,
``pretrain``, summary) and the command line (``python -m filmorph.train.megatron``).

Nothing here imports megatron.bridge, megatron.core or transformer_engine at module level.
Entry points must sit under ``if __name__ == "__main__":`` (checkpoint saving starts worker
processes by spawn).
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filmorph.io import read_json, write_json_atomic
from filmorph.paths import ITER_RE
from filmorph.provenance import package_versions
from filmorph.train.common import (
    MetricsWriter,
    RunLayout,
    checkpoint_steps,
    peak_flops,
    preflight,
    read_metrics,
    train_config_record,
    write_or_check_train_config,
)
from filmorph.train.config import TrainConfig
from filmorph.train.launch import TrainingIncomplete, detect_dist_env
from filmorph.train.megatron.metrics import MetricsRecorder, hf_flops_per_token
from filmorph.train.megatron.settings import (
    CHECKPOINT_SUBDIR,
    ENGINE,
    MASK_MODEL_TYPES,
    MEGATRON_PACKAGES,
    THD_REFUSED_MODEL_TYPES,
    TRACKER_FILE,
    DocumentForwardStep,
    avoid_gemma2_flex_attention,
    checkpoint_iterations,
    latest_iteration,
    masked_softmax_fusion_available,
    megatron_iter_dir,
    megatron_settings,
    require_engine,
    usable_attention_backend,
)


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
    the Llama 3.2 1B shape trained with thd normally. ``python -m filmorph.train.megatron.convert
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
    (:func:`filmorph.train.megatron.convert.import_checkpoint`; the weights), ``shard_prefixes`` one arm's
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
            "(the output of `python -m filmorph.train.megatron.convert import`)"
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
        help="its Megatron import (python -m filmorph.train.megatron.convert import ... --out DIR)",
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
