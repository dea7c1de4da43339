"""Command line of the training stage: ``python -m filmorph.train --help``."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filmorph.io import read_json
from filmorph.train.config import ENGINES, TrainConfig
from filmorph.train.launch import TrainingIncomplete

DESCRIPTION = """\
Continue pretraining an HF checkpoint (--model) on a blend of Megatron shards (--shards: the
prefixes of one family x arm, weighted by token count) into --run-dir. Rerunning the same
command after a kill or time limit resumes from the newest complete state; missing hf/step_*
dirs are re-created from their states.

Run dir:
  train_config.json     resolved config + shard/model/tokenizer identities (at start)
  metrics.jsonl         one JSON line per logged step (loss, lr, grad_norm, tokens,
                        tokens_per_s, mfu, val_loss)
  state/step_NNNNNNN/   resumable state (weights, optimizer, RNG, state.json)
  hf/step_NNNNNNN/      transformers checkpoint (every checkpoint_interval and the last step)
  data_cache/           megatron-core dataset index cache
  train_summary.json    at the end

Distributed: start one process per GPU with torchrun or srun (rank/world size from
RANK/WORLD_SIZE/LOCAL_RANK, or inside an srun step SLURM_PROCID/SLURM_STEP_NUM_TASKS or
SLURM_NTASKS/SLURM_LOCALID). W&B logging only when
WANDB_API_KEY is set (project: WANDB_PROJECT, default filmorph).

Prints the train summary's main fields as one JSON line on stdout.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m filmorph.train",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        required=True,
        type=Path,
        help="JSON file with the train: section of the workflow config (defaults fill missing keys)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="training engine (default: the config's engine): hf, megatron (Megatron-Bridge + "
        "Transformer Engine, GPU), automodel (NeMo Automodel, GPU)",
    )
    p.add_argument("--model", required=True, type=Path, help="HF checkpoint dir to start from")
    p.add_argument(
        "--shards",
        required=True,
        nargs="+",
        metavar="PREFIX",
        help="shard prefixes (PREFIX.bin/.idx/.stats.json), all from one tokenizer",
    )
    p.add_argument(
        "--run-dir", required=True, type=Path, help="output dir (created; resumed if it holds a state)"
    )
    p.add_argument(
        "--tokenizer-dir",
        type=Path,
        default=None,
        help="the family's tokenizer dir; needed when the model dir has no tokenizer files or other bytes",
    )
    p.add_argument("--max-steps", type=int, default=None, help="override the config's max_steps")
    p.add_argument(
        "--pretrained-checkpoint",
        type=Path,
        default=None,
        help="megatron: the imported (and verified) Megatron checkpoint of --model to start from",
    )
    p.add_argument("--tensor-parallel", type=int, default=None, help="megatron: tensor-parallel size")
    p.add_argument(
        "--on-config-change",
        choices=("error", "restart"),
        default="error",
        help="when --run-dir holds a run of another config, shards or model: fail (default) or "
        "clear it and start over",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def load_config(path: str | Path, engine: str | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of a JSON file holding the ``train:`` section."""
    d = read_json(path)
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object (the train: section)")
    cfg = TrainConfig.from_dict(d)
    return cfg.with_overrides(engine=engine)


def run(cfg: TrainConfig, **kwargs: Any) -> dict[str, Any]:
    """Dispatch to the engine module ``filmorph.train.<engine>`` (its ``train`` function).

    Keyword arguments an engine's ``train`` does not take are dropped while they hold their
    default (``None``, or ``"error"`` for ``on_config_change``), else refused."""
    try:
        module = importlib.import_module(f"filmorph.train.{cfg.engine}")
    except ModuleNotFoundError as exc:
        if exc.name == f"filmorph.train.{cfg.engine}":
            raise NotImplementedError(
                f"training engine {cfg.engine!r} is not implemented; available: {', '.join(ENGINES)}"
            ) from None
        raise
    params = inspect.signature(module.train).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    passed = {}
    for key, value in kwargs.items():
        if takes_all or key in params:
            passed[key] = value
        elif value is not None and not (key == "on_config_change" and value == "error"):
            raise ValueError(f"the {cfg.engine} engine does not support {key}={value!r}")
    return module.train(cfg, **passed)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = load_config(args.config, args.engine)
    try:
        summary = run(
            cfg,
            model_dir=args.model,
            shard_prefixes=args.shards,
            run_dir=args.run_dir,
            tokenizer_dir=args.tokenizer_dir,
            max_steps=args.max_steps,
            pretrained_checkpoint=args.pretrained_checkpoint,
            tensor_parallel=args.tensor_parallel,
            progress=not args.no_progress,
            on_config_change=args.on_config_change,
        )
    except TrainingIncomplete as exc:  # stopped early (signal, exit interval)
        print(f"training incomplete, rerun to resume: {exc}", file=sys.stderr)
        return 3
    if summary:
        keys = ("engine", "steps", "tokens_seen", "final_loss", "final_val_loss", "seconds")
        print(json.dumps({k: summary.get(k) for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
