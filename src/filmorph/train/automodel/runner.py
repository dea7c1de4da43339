"""The ``automodel`` engine's run: Automodel's checkpoints made into ``hf/step_NNNNNNN`` as they
complete, its logs made into ``metrics.jsonl``, and :func:`run` (launch, watch, resume,
summary) with :func:`train`, the entry of ``python -m filmorph.train``.

Nothing here imports torch, transformers or nemo_automodel at module import time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filmorph.io import atomic_path, link_or_copy, log_tail, read_json, write_json_atomic
from filmorph.models import attention_for
from filmorph.provenance import package_versions
from filmorph.train.automodel.recipe import (
    AUTOMODEL_DIR,
    CHILD_ENV,
    CONFIG_YAML,
    ENGINE,
    TOKENIZER_FILES,
    TRAIN_META,
    automodel_config,
    check_launch,
    clear_automodel_run,
    document_attention,
    launch_command,
    plain_data,
    wandb_section,
    write_config_yaml,
)
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
from filmorph.train.config import TrainConfig
from filmorph.train.launch import (
    TrainingIncomplete,
    kill_group,
    node_rank,
    run_streamed,
    with_package_path,
)

CKPT_RE = re.compile(r"^epoch_(\d+)_step_(\d+)$")
INCOMPLETE_MARKER = ".incomplete"  # Automodel's marker of a checkpoint being written
# Automodel's per-step log lines (rank 0), a fallback for lines its JSONL buffer lost on a kill
TRAIN_LINE_RE = re.compile(
    r"step (\d+) \| epoch (\d+) \| loss (\S+) \| grad_norm (\S+) \| lr (\S+) \| mem (\S+) GiB \| "
    r"tps (\S+)\((\S+)/gpu\) \| num_label_tokens (\d+)"
)
VAL_LINE_RE = re.compile(r'\[val\] name "([^"]*)" \| step (\d+) \| epoch (\d+) \| loss (\S+) \| lr (\S+)')
LOG_TAIL_LINES = 40  # of Automodel's output, copied into the job log when training fails


def is_step_log_line(line: str) -> bool:
    """Automodel's line for a logged training or validation step (what a job log shows of it)."""
    return bool(TRAIN_LINE_RE.search(line) or VAL_LINE_RE.search(line))


def headed_log_tail(path: str | Path, lines: int = LOG_TAIL_LINES) -> str:
    """:func:`filmorph.io.log_tail` of ``path``, headed by where its lines come from."""
    tail = log_tail(path, lines=lines)
    count = tail.count("\n") + 1 if tail else 0
    return f"--- last {count} lines of {path} ---\n{tail}\n"


# seconds between looks for new checkpoints while training runs
WATCH_POLL_S = 2.0
AUTOMODEL_PACKAGES = ("nemo_automodel", "torch", "transformers")  # versions in the summary


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


def _attention(cfg: TrainConfig, model_config: Mapping[str, Any]) -> str | None:
    """The attention to train ``model_config`` with: :func:`document_attention` with document
    masks; without them Automodel's default, or FlexAttention for a model whose attention
    softcap the default (SDPA) would drop."""
    if cfg.reset_attention_mask:
        return document_attention(model_config)
    return attention_for(model_config, None, fallback="flex_attention")


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
    record["automodel_overrides"] = plain_data(overrides or {})
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
        wandb=wandb_section(layout.root, f"{model_dir.name}-{layout.root.name}"),
        attn_implementation=_attention(cfg, read_json(model_dir / "config.json")),
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
        env = with_package_path({**os.environ, **CHILD_ENV})
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(
                f"# filmorph {time.strftime('%Y-%m-%dT%H:%M:%S')} resume_from_step={start}: {' '.join(cmd)}\n"
            )
            log.flush()
            watchers: list[_Watcher] = []

            def start_watcher(proc: subprocess.Popen) -> Callable[[], None]:
                watcher = _Watcher(export, ready, proc, interrupt_after, WATCH_POLL_S)
                watchers.append(watcher)
                watcher.start()

                def stop() -> None:
                    watcher.stop_event.set()
                    watcher.join()

                return stop

            if rank0:
                print(f"filmorph: Automodel's output: {log_path}", file=sys.stderr, flush=True)
            rc = run_streamed(
                cmd, log, env, progress=progress, started=start_watcher, echo=is_step_log_line
            )
        watcher = watchers[0]
        if watcher.error is not None:
            raise watcher.error
        interrupted_at = watcher.interrupted_at
        if interrupted_at is None and rc != 0:
            if not progress:  # its error into the job log too, not only into the run dir
                sys.stderr.write(headed_log_tail(log_path))
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
