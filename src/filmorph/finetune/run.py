"""Run one fine-tuning job with NeMo Automodel and turn its checkpoint into plain HF outputs.

Run dir layout (``RUN``)::

    finetune_config.json    the resolved run (config, model, data hashes): a rerun of the same
                            run resumes, another run is refused (or restarts the dir)
    automodel.yaml          the recipe config (filmorph.finetune.config.automodel_finetune_config)
    automodel/              Automodel's checkpoints epoch_E_step_S/ (resumable: model, optimizer,
                            scheduler, data loader, RNG), training.jsonl, validation.jsonl
    automodel_node{N}.log   the recipe's output
    kernels/                mamba-ssm / causal-conv1d installed from the wheelhouse (if asked)
    final/                  LoRA: an HF PEFT adapter (adapter_config.json +
                            adapter_model.safetensors + tokenizer files), loadable with
                            ``PeftModel.from_pretrained(base, RUN/final)``; full SFT: an HF
                            checkpoint (consolidated safetensors, config, tokenizer)
    merged/                 LoRA with merge: base + adapter merged, an HF checkpoint
    finetune_summary.json   steps, losses, validation losses, outputs

Training is started ONCE per node (this module starts ``torchrun`` with one rank per GPU, as
:mod:`filmorph.train.automodel` does, and reuses its launch helpers). Rerunning after a kill,
time limit or preemption resumes from Automodel's newest complete checkpoint
(``checkpoint.restore_from: LATEST``; SIGTERM makes Automodel save one first, and this process
forwards SIGTERM/SIGINT to the ranks). :class:`~filmorph.train.launch.TrainingIncomplete`
(exit status 3 on the command line) says the run stopped before ``max_steps``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filmorph.finetune.config import AUTOMODEL_DIR, FinetuneConfig, automodel_finetune_config
from filmorph.io import atomic_path, link_or_copy, read_json, write_json_atomic
from filmorph.provenance import package_versions, sha256_file
from filmorph.train.launch import node_rank, per_node_argv, run_streamed, with_package_path

CONFIG_RECORD = "finetune_config.json"
CONFIG_YAML = "automodel.yaml"
SUMMARY = "finetune_summary.json"
FINAL_DIR = "final"
MERGED_DIR = "merged"
KERNELS_DIR = "kernels"
META = "filmorph_finetune.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# distributions whose versions the run summary records
FINETUNE_PACKAGES = ("nemo_automodel", "torch", "transformers", "peft", "mamba-ssm", "causal-conv1d")


def run_record(
    cfg: FinetuneConfig,
    *,
    model: str,
    train_file: str | Path,
    validation_file: str | Path | None,
    trust_remote_code_families: Sequence[str],
) -> dict[str, Any]:
    """What makes a run the same run (compared on resume): config, model, data contents."""
    return {
        "config": cfg.to_dict(),
        "model": model,
        "trust_remote_code": cfg.family in set(trust_remote_code_families),
        "train_sha256": sha256_file(train_file),
        "validation_sha256": sha256_file(validation_file) if validation_file else None,
    }


def launcher_argv(cfg: FinetuneConfig, module_args: Sequence[str], python: str | None = None) -> list[str]:
    """How a job starts ``python -m filmorph.finetune MODULE_ARGS``: once per node (it starts
    torchrun itself), under ``srun --ntasks-per-node=1`` on several nodes."""
    return per_node_argv("filmorph.finetune", module_args, nodes=cfg.nodes, python=python)


def clear_run(run_dir: Path) -> None:
    """Remove a run's Automodel state and outputs (a different run takes the dir)."""
    for name in (AUTOMODEL_DIR, FINAL_DIR, MERGED_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in (CONFIG_YAML, SUMMARY, CONFIG_RECORD):
        (run_dir / name).unlink(missing_ok=True)
    for log in run_dir.glob("automodel_node*.log"):
        log.unlink()


def _check_record(run_dir: Path, record: Mapping[str, Any], on_config_change: str) -> bool:
    """Write the run record, or compare it with the one there. Returns True when resuming."""
    path = run_dir / CONFIG_RECORD
    if path.is_file():
        old = read_json(path)
        if old == json.loads(json.dumps(record)):
            return True
        if on_config_change != "restart":
            changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise ValueError(
                f"{run_dir} holds another fine-tuning run (differs in {', '.join(changed)}); use "
                "another run dir or on_config_change='restart'"
            )
        clear_run(run_dir)
    write_json_atomic(path, record)
    return False


def final_checkpoint(run_dir: str | Path, max_steps: int) -> Any | None:
    """Automodel's complete checkpoint of step ``max_steps`` in the run dir, if there is one."""
    from filmorph.train.automodel import automodel_checkpoints

    done = [c for c in automodel_checkpoints(Path(run_dir) / AUTOMODEL_DIR) if c.step == max_steps]
    return done[-1] if done else None


def export_final(
    ckpt_model_dir: str | Path, out_dir: str | Path, *, peft: bool, meta: Mapping[str, Any]
) -> Path:
    """Make ``out_dir`` the run's final output from an Automodel checkpoint's ``model/`` dir.

    LoRA: the PEFT adapter Automodel wrote (``adapter_model.safetensors`` with
    ``base_model.model.``-prefixed ``lora_A``/``lora_B`` keys, ``adapter_config.json``) plus the
    tokenizer files saved beside it; ``base_model_name_or_path`` is set to the model the run
    started from. Full SFT: the consolidated HF checkpoint (``model/consolidated/``) with
    ``use_cache`` on. Files are hard-linked where possible; written atomically."""
    from filmorph.train.automodel import enable_cache

    src = Path(ckpt_model_dir)
    if not peft:
        src = src / "consolidated"
        if not (src / "config.json").is_file() or not any(src.glob("*.safetensors")):
            raise FileNotFoundError(f"{src}: no consolidated HF checkpoint (config.json + *.safetensors)")
    else:
        missing = [f for f in ADAPTER_FILES if not (src / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{src}: the PEFT adapter lacks {', '.join(missing)}")
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name not in ("config.json", "adapter_config.json"):
                link_or_copy(f, tmp / f.name)
        if peft:
            acfg = read_json(src / "adapter_config.json")
            acfg["base_model_name_or_path"] = str(meta.get("model", acfg.get("base_model_name_or_path")))
            write_json_atomic(tmp / "adapter_config.json", acfg)
            if (src / "config.json").is_file():
                link_or_copy(src / "config.json", tmp / "config.json")
        else:
            config = read_json(src / "config.json")
            enable_cache(config)
            write_json_atomic(tmp / "config.json", config)
        write_json_atomic(tmp / META, dict(meta))
    return Path(out_dir)


def merge_adapter(
    model: str | Path,
    adapter_dir: str | Path,
    out_dir: str | Path,
    *,
    dtype: str = "bfloat16",
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Merge a PEFT LoRA adapter into its base model and save the result as an HF checkpoint
    (weights in ``dtype``, tokenizer from the adapter dir when it has one), atomically."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = str(model)
    local = Path(model).is_dir()
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if local:
        kwargs["local_files_only"] = True
    base = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype), **kwargs)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tok_src = adapter_dir if (Path(adapter_dir) / "tokenizer_config.json").is_file() else model
    tok = AutoTokenizer.from_pretrained(str(tok_src), **kwargs)
    with atomic_path(out_dir) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        meta = {"model": model, "adapter": str(adapter_dir), "dtype": dtype, "merged": True}
        write_json_atomic(tmp / META, meta)
    return meta


def _child_env(extra_paths: Sequence[str | Path] = ()) -> dict[str, str]:
    from filmorph.train.automodel import CHILD_ENV

    return with_package_path({**os.environ, **CHILD_ENV}, first=extra_paths)


def _launch(
    cfg: FinetuneConfig,
    yaml_path: Path,
    log_path: Path,
    env: Mapping[str, str],
    *,
    progress: bool,
    python: str | None,
) -> int:
    """torchrun with Automodel's recipe; output appended to ``log_path`` (and stderr)."""
    from filmorph.train.automodel import launch_command

    cmd = launch_command(cfg, yaml_path, python=python)  # type: ignore[arg-type]  # gpus_per_node, nodes
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"# filmorph {time.strftime('%Y-%m-%dT%H:%M:%S')}: {' '.join(cmd)}\n")
        log.flush()
        return run_streamed(cmd, log, env, progress=progress)


def train(
    cfg: FinetuneConfig,
    *,
    train_file: str | Path,
    validation_file: str | Path | None,
    run_dir: str | Path,
    model: str | Path | None = None,
    trust_remote_code_families: Sequence[str] = (),
    wheelhouse: str | Path | None = None,
    merge: bool = False,
    progress: bool = True,
    on_config_change: str = "error",
    python: str | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` (default: the preset's) on ``train_file`` into ``run_dir``; resume
    when ``run_dir`` holds a checkpoint of the same run. With ``wheelhouse`` the Mamba kernels
    are installed from it first (:func:`filmorph.finetune.kernels.install_wheels`). Writes
    ``final/`` (and ``merged/`` with ``merge`` for LoRA) and ``finetune_summary.json`` on node 0
    and returns the summary (``{}`` on other nodes)."""
    from filmorph.train.automodel import check_launch, wandb_section, write_config_yaml
    from filmorph.train.launch import TrainingIncomplete

    if on_config_change not in ("error", "restart"):
        raise ValueError(f"on_config_change must be 'error' or 'restart', not {on_config_change!r}")
    check_launch(cfg)  # type: ignore[arg-type]  # refuses to run as one of several ranks
    t0 = time.time()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = str(model if model is not None else cfg.model)
    rank0 = node_rank() == 0
    record = run_record(
        cfg,
        model=model,
        train_file=train_file,
        validation_file=validation_file,
        trust_remote_code_families=trust_remote_code_families,
    )
    if rank0:
        _check_record(run_dir, record, on_config_change)
    extra_paths: list[Path] = []
    if wheelhouse is not None:
        from filmorph.finetune.kernels import install_wheels

        extra_paths.append(install_wheels(wheelhouse, run_dir / KERNELS_DIR))
    amcfg = automodel_finetune_config(
        cfg,
        train_file=Path(train_file).resolve(),
        validation_file=Path(validation_file).resolve() if validation_file else None,
        run_dir=run_dir.resolve(),
        # a local dir as an absolute path (never mistaken for a hub id); the record keeps it as given
        model=str(Path(model).resolve()) if Path(model).is_dir() else model,
        trust_remote_code_families=trust_remote_code_families,
        wandb=wandb_section(run_dir, f"finetune-{run_dir.name}"),
    )
    yaml_path = write_config_yaml(amcfg, run_dir / CONFIG_YAML)
    log_path = run_dir / f"automodel_node{node_rank()}.log"
    resumed_from = _last_step(run_dir)
    if final_checkpoint(run_dir, cfg.max_steps) is None:
        rc = _launch(cfg, yaml_path, log_path, _child_env(extra_paths), progress=progress, python=python)
        if final_checkpoint(run_dir, cfg.max_steps) is None:
            if rc != 0 and _last_step(run_dir) == resumed_from:
                raise RuntimeError(f"Automodel fine-tuning failed (exit status {rc}); see {log_path}")
            raise TrainingIncomplete(
                f"stopped at the checkpoint of step {_last_step(run_dir)} of {cfg.max_steps}; rerun to resume"
            )
    if not rank0:
        return {}
    ckpt = final_checkpoint(run_dir, cfg.max_steps)
    meta = {
        "model": model,
        "preset": cfg.preset,
        "method": cfg.method,
        "step": cfg.max_steps,
        "automodel_checkpoint": str(ckpt.path.relative_to(run_dir)),
    }
    final = run_dir / FINAL_DIR
    if not final.is_dir():
        export_final(ckpt.path / "model", final, peft=cfg.peft, meta=meta)
    if merge and cfg.peft and not (run_dir / MERGED_DIR).is_dir():
        merge_adapter(
            model,
            final,
            run_dir / MERGED_DIR,
            dtype=cfg.torch_dtype,
            trust_remote_code=record["trust_remote_code"],
        )
    return write_summary(cfg, run_dir, record=record, resumed_from=resumed_from, seconds=time.time() - t0)


def _last_step(run_dir: Path) -> int:
    from filmorph.train.automodel import automodel_checkpoints

    done = automodel_checkpoints(run_dir / AUTOMODEL_DIR)
    return done[-1].step if done else 0


def write_summary(
    cfg: FinetuneConfig, run_dir: Path, *, record: Mapping[str, Any], resumed_from: int, seconds: float
) -> dict[str, Any]:
    """``finetune_summary.json`` from Automodel's metric logs (by our 1-based step)."""
    from filmorph.train.automodel import parse_automodel_metrics

    parsed = parse_automodel_metrics(run_dir / AUTOMODEL_DIR, sorted(run_dir.glob("automodel_node*.log")))
    train, valid = parsed["train"], parsed["valid"]
    summary = {
        "preset": cfg.preset,
        "method": cfg.method,
        "model": record["model"],
        "config": cfg.to_dict(),
        "steps": cfg.max_steps,
        "resumed_from_step": resumed_from or None,
        "first_loss": train[min(train)].get("loss") if train else None,
        "final_loss": train.get(cfg.max_steps, {}).get("loss"),
        "val_loss": {str(s): v.get("val_loss") for s, v in sorted(valid.items())},
        "train_sha256": record["train_sha256"],
        "validation_sha256": record["validation_sha256"],
        "final": FINAL_DIR,
        "merged": MERGED_DIR if (run_dir / MERGED_DIR).is_dir() else None,
        "seconds": seconds,
        # the Mamba kernels are installed for the run's processes only (kernels/)
        "versions": package_versions(FINETUNE_PACKAGES, paths=[run_dir / KERNELS_DIR]),
    }
    write_json_atomic(run_dir / SUMMARY, summary)
    return summary
