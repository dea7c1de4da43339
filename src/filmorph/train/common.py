"""What every training engine shares: the run-dir layout, the pre-flight check, the LR schedule,
checkpoint/resume bookkeeping, per-step metrics (``metrics.jsonl``, optional W&B), FLOP/MFU
arithmetic (launching, the distributed environment and signals: :mod:`filmorph.train.launch`).

Run dir (``RUN_DIR``) layout, the same for every engine::

    train_config.json          resolved config + shard/model/tokenizer identities (written at start)
    metrics.jsonl              one JSON object per logged step
    state/step_NNNNNNN/        resumable state (engine-specific files + state.json), atomic
    hf/step_NNNNNNN/           HF checkpoint (safetensors, config, tokenizer files), atomic
    data_cache/                megatron-core dataset index cache
    train_summary.json         written at the end

Nothing here imports torch, transformers or megatron at module import time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filmorph.io import atomic_path, read_json, write_json_atomic
from filmorph.paths import STEP_RE, step_name
from filmorph.provenance import sha256_file
from filmorph.train.config import TrainConfig

__all__ = [
    "PEAK_FLOPS_BF16",
    "MetricsWriter",
    "PreflightError",
    "RunLayout",
    "checkpoint_steps",
    "clear_run",
    "complete_states",
    "eval_steps",
    "find_resume_step",
    "flops_per_token",
    "lr_at",
    "mfu",
    "model_flops_per_token",
    "peak_flops",
    "preflight",
    "shard_identity",
    "step_name",
    "write_or_check_train_config",
]

STATE_FILE = "state.json"


# ============================================================================ run dir layout
@dataclass(frozen=True)
class RunLayout:
    """Paths inside a run dir (see the module docstring)."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def train_config(self) -> Path:
        return self.root / "train_config.json"

    @property
    def summary(self) -> Path:
        return self.root / "train_summary.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def states(self) -> Path:
        return self.root / "state"

    @property
    def hf_root(self) -> Path:
        return self.root / "hf"

    @property
    def data_cache(self) -> Path:
        return self.root / "data_cache"

    def state_dir(self, step: int) -> Path:
        return self.states / step_name(step)

    def hf_dir(self, step: int) -> Path:
        return self.hf_root / step_name(step)


# ============================================================================ schedule
def checkpoint_steps(cfg: TrainConfig) -> list[int]:
    """Steps after which a checkpoint is written: every ``checkpoint_interval`` and the last."""
    steps = list(range(cfg.checkpoint_interval, cfg.max_steps + 1, cfg.checkpoint_interval))
    if not steps or steps[-1] != cfg.max_steps:
        steps.append(cfg.max_steps)
    return steps


def eval_steps(cfg: TrainConfig) -> list[int]:
    """Steps after which the validation loss is computed (empty when evaluation is off)."""
    if not cfg.eval_enabled:
        return []
    steps = list(range(cfg.eval_interval, cfg.max_steps + 1, cfg.eval_interval))
    if not steps or steps[-1] != cfg.max_steps:
        steps.append(cfg.max_steps)
    return steps


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of update ``step`` (0-based: the first optimizer step is 0).

    With ``i = step + 1``: linear warmup ``lr * i / warmup_steps`` while ``i <= warmup_steps``,
    then ``lr_schedule`` from ``lr`` down to ``min_lr`` at the last update (``i = max_steps``):
    cosine ``min + (lr - min) * (1 + cos(pi * p)) / 2``, linear ``lr - (lr - min) * p``,
    constant ``lr``, with ``p = (i - warmup_steps) / (max_steps - warmup_steps)``. This is
    megatron-core's ``OptimizerParamScheduler`` shape (continuous at the end of the warmup), so
    the GPU engines can reproduce it exactly. A run shorter than its warmup never leaves it.
    """
    i = step + 1
    if i <= cfg.warmup_steps:
        return cfg.lr * i / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    span = cfg.max_steps - cfg.warmup_steps
    p = min(1.0, max(0.0, (i - cfg.warmup_steps) / span)) if span > 0 else 1.0
    if cfg.lr_schedule == "cosine":
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
    if cfg.lr_schedule == "linear":
        return cfg.lr - (cfg.lr - cfg.min_lr) * p
    raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}")  # pragma: no cover


# ============================================================================ resume
def complete_states(run_dir: str | Path, required: Iterable[str] = (STATE_FILE,)) -> list[int]:
    """Steps of ``state/step_NNNNNNN`` dirs holding ``state.json`` (and the files named in
    ``required``), ascending. Temporary dirs of an interrupted write are never listed."""
    root = RunLayout(run_dir).states
    if not root.is_dir():
        return []
    req = set(required) | {STATE_FILE}
    steps = []
    for d in root.iterdir():
        m = STEP_RE.match(d.name)
        if m and d.is_dir() and all((d / f).exists() for f in req):
            steps.append(int(m.group(1)))
    return sorted(steps)


def find_resume_step(run_dir: str | Path, required: Iterable[str] = (STATE_FILE,)) -> int:
    """The step of the newest complete state in ``run_dir`` (0 when there is none)."""
    steps = complete_states(run_dir, required)
    return steps[-1] if steps else 0


# ============================================================================ identities
def shard_stats(prefix: str | Path) -> dict[str, Any]:
    """``PREFIX.stats.json`` written by the tokenize stage (``PreflightError`` when missing)."""
    path = Path(f"{prefix}.stats.json")
    if not path.is_file():
        raise PreflightError(
            f"{path} is missing: shards must come from filmorph.tokenize (it records the tokenizer)"
        )
    return read_json(path)


def shard_identity(prefix: str | Path) -> dict[str, Any]:
    """What identifies a shard cheaply: its prefix, document/token counts from the ``.idx``,
    the ``.idx`` sha256, the ``.bin`` size, and arm/seed/tokenizer from ``stats.json``."""
    import numpy as np

    from filmorph.shards import read_shard

    prefix = str(prefix)
    ds = read_shard(prefix)
    stats = shard_stats(prefix)
    return {
        "prefix": prefix,
        "documents": int(len(ds)),
        "tokens": int(ds.sequence_lengths.sum(dtype="int64")),
        "idx_sha256": sha256_file(f"{prefix}.idx"),
        "bin_bytes": os.path.getsize(f"{prefix}.bin"),
        "dtype": np.dtype(ds.index.dtype).name,
        "arm": stats.get("arm"),
        "seed": stats.get("seed"),
        "chunk": stats.get("chunk"),
        "tokenizer": stats.get("tokenizer"),
        "eod_id": stats.get("eod_id"),
    }


def _model_config(model_dir: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model_dir), local_files_only=True)


def _as_id_list(v: Any) -> list[int]:
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return [int(x) for x in v]
    return [int(v)]


def model_identity(model_dir: str | Path) -> dict[str, Any]:
    """Model dir facts: path, config sha256, model type, architectures, embedding rows
    (``vocab_size``), eos ids (config and generation config), weight files and sizes, and
    ``filmorph_model_meta.json`` when present."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise PreflightError(f"{model_dir} is not an HF checkpoint dir (no config.json)")
    config = _model_config(model_dir)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    eos = _as_id_list(getattr(text, "eos_token_id", None)) or _as_id_list(
        getattr(config, "eos_token_id", None)
    )
    gen = model_dir / "generation_config.json"
    if gen.is_file():
        for e in _as_id_list(read_json(gen).get("eos_token_id")):
            if e not in eos:
                eos.append(e)
    weights = {
        p.name: p.stat().st_size
        for p in sorted(model_dir.iterdir())
        if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json")
    }
    out: dict[str, Any] = {
        "path": str(model_dir),
        "config_sha256": sha256_file(model_dir / "config.json"),
        "model_type": getattr(config, "model_type", None),
        "architectures": list(getattr(config, "architectures", None) or []),
        "vocab_size": int(text.vocab_size),
        "eos_ids": eos,
        "weights": weights,
    }
    meta = model_dir / "filmorph_model_meta.json"
    if meta.is_file():
        out["filmorph_model_meta"] = read_json(meta)
    tj = model_dir / "tokenizer.json"
    out["tokenizer_json_sha256"] = sha256_file(tj) if tj.is_file() else None
    return out


# ============================================================================ pre-flight
class PreflightError(ValueError):
    """The shards, the model and the tokenizer do not belong together."""


def _vocab_of(tokenizer_json: Path) -> dict[str, int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_json)).get_vocab(with_added_tokens=True)


def shard_id_range(prefix: str | Path, block: int = 1 << 24) -> tuple[int, int]:
    """(min, max) token id in ``PREFIX.bin``, read block by block through a memory map."""
    import numpy as np

    from filmorph.shards import read_shard

    dtype = read_shard(prefix).index.dtype
    data = np.memmap(f"{prefix}.bin", dtype=dtype, mode="r")
    if data.size == 0:
        raise PreflightError(f"{prefix}.bin holds no tokens")
    lo, hi = None, None
    for start in range(0, data.size, block):
        part = data[start : start + block]
        a, b = int(part.min()), int(part.max())
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
    return int(lo), int(hi)


def preflight(
    shard_prefixes: Sequence[str | Path],
    model_dir: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    scan_ids: bool = True,
) -> dict[str, Any]:
    """Check that the shards, the model and the tokenizer belong together; return the facts.

    Fails (``PreflightError``, a ``ValueError``, with a message naming the files) unless:
    every shard has ``stats.json`` and all name the same tokenizer (family, vocab size, eos
    id, ``tokenizer.json`` sha256) and EOD id; the model's embedding has at least the
    tokenizer's vocab size rows; the EOD id is one of the model's eos ids; the tokenizer the
    shards were made with is the model's (same ``tokenizer.json`` sha256, or, when only the
    bytes differ, the same vocabulary as ``tokenizer_dir``); and (``scan_ids``) every token
    id in the ``.bin`` files is in ``[0, model vocab)``. ``tokenizer_dir`` (the family's
    prepared tokenizer dir) is needed when the model dir has no tokenizer files or other
    bytes. The returned dict holds ``shards`` (:func:`shard_identity` each), ``model``
    (:func:`model_identity`), ``tokenizer`` (what the shards record), ``eod_id``,
    ``tokenizer_files_dir`` (where checkpoints copy tokenizer files from), ``max_token_id``
    and ``notes``.
    """
    if not shard_prefixes:
        raise PreflightError("no shard prefixes given")
    prefixes = [str(p) for p in shard_prefixes]
    if len(set(prefixes)) != len(prefixes):
        raise PreflightError(f"shard prefixes repeat: {prefixes}")
    for p in prefixes:
        for ext in (".bin", ".idx"):
            if not Path(p + ext).is_file():
                raise PreflightError(f"shard file {p}{ext} is missing")
    notes: list[str] = []
    shards = [shard_identity(p) for p in prefixes]
    tok = shards[0]["tokenizer"]
    eod = shards[0]["eod_id"]
    if not tok or tok.get("vocab_size") is None or eod is None:
        raise PreflightError(f"{prefixes[0]}.stats.json records no tokenizer / eod_id")
    for s in shards[1:]:
        if s["tokenizer"] != tok or s["eod_id"] != eod:
            raise PreflightError(
                "the shards of one blend come from different tokenizers: "
                f"{prefixes[0]} has {tok} (eod {eod}), {s['prefix']} has {s['tokenizer']} (eod {s['eod_id']})"
            )
    model = model_identity(model_dir)
    tok_vocab = int(tok["vocab_size"])
    if model["vocab_size"] < tok_vocab:
        raise PreflightError(
            f"vocab mismatch: the model {model_dir} has {model['vocab_size']} embedding rows, "
            f"the shards' tokenizer ({tok.get('family')}) has {tok_vocab} ids"
        )
    if model["vocab_size"] > tok_vocab:
        notes.append(f"model embedding has {model['vocab_size']} rows, tokenizer {tok_vocab} ids (padded)")
    if int(eod) not in model["eos_ids"]:
        raise PreflightError(
            f"EOD mismatch: the shards end documents with id {eod} but the model {model_dir} has "
            f"eos id(s) {model['eos_ids']}"
        )

    # the tokenizer itself
    sha = tok.get("tokenizer_json_sha256")
    model_dir = Path(model_dir)
    files_dir: Path | None = None
    tdir_ok = False
    if tokenizer_dir is not None:
        tdir = Path(tokenizer_dir)
        if not (tdir / "tokenizer.json").is_file():
            raise PreflightError(f"tokenizer_dir {tdir} has no tokenizer.json")
        tsha = sha256_file(tdir / "tokenizer.json")
        if tsha != sha:
            raise PreflightError(
                f"tokenizer mismatch: {tdir}/tokenizer.json (sha256 {tsha[:12]}…) is not the tokenizer "
                f"the shards were made with (sha256 {str(sha)[:12]}…)"
            )
        tdir_ok = True
        files_dir = tdir
    msha = model["tokenizer_json_sha256"]
    if msha is not None and msha != sha:
        if not tdir_ok:
            raise PreflightError(
                f"tokenizer mismatch: {model_dir}/tokenizer.json (sha256 {msha[:12]}…) differs from the "
                f"shards' tokenizer (sha256 {str(sha)[:12]}…); pass the family's tokenizer dir "
                "(tokenizer_dir / --tokenizer-dir) to compare the vocabularies"
            )
        if _vocab_of(model_dir / "tokenizer.json") != _vocab_of(Path(tokenizer_dir) / "tokenizer.json"):
            raise PreflightError(
                f"tokenizer mismatch: {model_dir}/tokenizer.json and {tokenizer_dir}/tokenizer.json map "
                "tokens to different ids"
            )
        notes.append("model tokenizer.json bytes differ from the shards' but the vocabularies are identical")
    if msha is None and not tdir_ok:
        raise PreflightError(
            f"{model_dir} has no tokenizer.json; pass the family's tokenizer dir "
            "(tokenizer_dir / --tokenizer-dir)"
        )
    if files_dir is None:
        files_dir = model_dir

    max_id = None
    if scan_ids:
        for s in shards:
            lo, hi = shard_id_range(s["prefix"])
            if lo < 0 or hi >= model["vocab_size"]:
                raise PreflightError(
                    f"token ids out of range: {s['prefix']}.bin holds ids in [{lo}, {hi}] but the model "
                    f"has {model['vocab_size']} embedding rows"
                )
            if hi >= tok_vocab:
                raise PreflightError(
                    f"token ids out of range: {s['prefix']}.bin holds id {hi} >= tokenizer vocab {tok_vocab}"
                )
            s["max_token_id"] = hi
            max_id = hi if max_id is None else max(max_id, hi)
    return {
        "shards": shards,
        "model": model,
        "tokenizer": dict(tok),
        "eod_id": int(eod),
        "tokenizer_files_dir": str(files_dir),
        "max_token_id": max_id,
        "notes": notes,
    }


def train_config_record(
    cfg: TrainConfig, engine: str, report: Mapping[str, Any], world_size: int
) -> dict[str, Any]:
    """The content of ``train_config.json``: what a later audit compares with the shards."""
    return {
        "engine": engine,
        "config": cfg.to_dict(),
        "world_size": world_size,
        "shards": report["shards"],
        "shard_prefixes": [s["prefix"] for s in report["shards"]],
        "model": report["model"],
        "tokenizer": report["tokenizer"],
        "eod_id": report["eod_id"],
        "tokenizer_files_dir": report["tokenizer_files_dir"],
        "preflight_notes": report["notes"],
    }


def _resume_key(record: Mapping[str, Any]) -> dict[str, Any]:
    cfg = TrainConfig.from_dict(record["config"]).semantic_dict()
    return {
        "engine": record["engine"],
        "config": cfg,
        "shards": [
            {k: s[k] for k in ("prefix", "documents", "tokens", "idx_sha256")} for s in record["shards"]
        ],
        "model": {k: record["model"].get(k) for k in ("path", "config_sha256", "weights")},
        "tokenizer": record["tokenizer"],
    }


def clear_run(layout: RunLayout) -> None:
    """Remove a previous run's results from the run dir (states, HF checkpoints, metrics,
    summary, config record); the dataset index cache stays (its files are keyed by config)."""
    for d in (layout.states, layout.hf_root):
        if d.is_dir():
            shutil.rmtree(d)
    for f in (layout.metrics, layout.summary, layout.train_config):
        f.unlink(missing_ok=True)


def write_or_check_train_config(
    layout: RunLayout, record: Mapping[str, Any], *, on_mismatch: str = "error"
) -> None:
    """Write ``train_config.json``. If the run dir already has one (a resumed run), it must
    describe the same training (same semantic config, shards, model, tokenizer; logging and
    loader settings and the world size may differ); otherwise ``on_mismatch="error"`` raises
    ``ValueError`` and ``"restart"`` clears the old run (:func:`clear_run`) first."""
    if on_mismatch not in ("error", "restart"):
        raise ValueError(f"on_mismatch must be 'error' or 'restart', not {on_mismatch!r}")
    path = layout.train_config
    if path.is_file():
        old = read_json(path)
        a, b = _resume_key(old), _resume_key(record)
        if a != b:
            diff = sorted(k for k in a if a[k] != b[k])
            if on_mismatch == "restart":
                print(
                    f"{layout.root}: previous run had a different {', '.join(diff)}; starting over",
                    file=sys.stderr,
                )
                clear_run(layout)
            else:
                raise ValueError(
                    f"{layout.root} holds a run with a different {', '.join(diff)}; "
                    "use another run dir, remove this one, or restart it (--on-config-change restart)"
                )
    write_json_atomic(path, dict(record))


# ============================================================================ FLOPs / MFU
# Dense bf16 peak FLOP/s per device (tensor cores, no sparsity), by device-name substring.
PEAK_FLOPS_BF16: dict[str, float] = {
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
}


def peak_flops(device_name: str | None, precision: str) -> float | None:
    """Peak FLOP/s of one device for ``precision`` (``None`` when unknown, e.g. a CPU or fp32).

    ``FILMORPH_PEAK_FLOPS`` in the environment overrides the table."""
    env = os.environ.get("FILMORPH_PEAK_FLOPS")
    if env:
        return float(env)
    if not device_name or precision != "bf16":
        return None
    for key, value in PEAK_FLOPS_BF16.items():  # most specific first
        if key in device_name:
            return value
    return None


def flops_per_token(
    n_matmul_params: int, n_layers: int, n_heads: int, head_dim: int, seq_length: int
) -> float:
    """Training FLOPs per token: ``6 N + 12 L H Q T`` (PaLM, appendix B).

    ``N`` counts the weights that take part in matrix multiplies (the output projection
    included, the input embedding lookup not), ``L`` layers, ``H`` query heads of size ``Q``,
    ``T`` the sequence length; the attention term counts the full ``T × T`` score matrix
    (forward + backward), as Megatron and PaLM do."""
    return 6.0 * n_matmul_params + 12.0 * n_layers * n_heads * head_dim * seq_length


def model_flops_per_token(model: Any, seq_length: int) -> float:
    """:func:`flops_per_token` for a transformers causal LM."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    total = sum(p.numel() for p in model.parameters())  # tied weights once
    emb = model.get_input_embeddings().weight.numel()
    out = model.get_output_embeddings()
    out_n = out.weight.numel() if out is not None else 0
    tied = out is not None and out.weight is model.get_input_embeddings().weight
    n_matmul = total - emb + (out_n if tied else 0)
    heads = int(cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    return flops_per_token(n_matmul, int(cfg.num_hidden_layers), heads, head_dim, seq_length)


def mfu(
    tokens_per_s: float, flops_per_tok: float, peak_per_device: float | None, n_devices: int
) -> float | None:
    """Model FLOPs utilisation: achieved / peak (``None`` when the peak is unknown)."""
    if not peak_per_device or n_devices < 1:
        return None
    return tokens_per_s * flops_per_tok / (peak_per_device * n_devices)


# ============================================================================ metrics
def step_line(record: Mapping[str, Any], max_steps: int | None = None) -> str:
    """One logged step for a job log: ``step 60/300 | loss 4.2066 | val 4.2379 | lr 4.34e-05 |
    grad_norm 0.81 | 51,951 tok/s | mfu 0.084 | 117.6 s`` (fields that are None are left out)."""
    step = f"step {record.get('step')}" + (f"/{max_steps}" if max_steps else "")
    parts = [step]
    for key, label, fmt in (
        ("loss", "loss", "{:.4f}"),
        ("val_loss", "val", "{:.4f}"),
        ("lr", "lr", "{:.2e}"),
        ("grad_norm", "grad_norm", "{:.2f}"),
        ("tokens_per_s", "", "{:,.0f} tok/s"),
        ("mfu", "mfu", "{:.3f}"),
        ("elapsed_s", "", "{:.1f} s"),
    ):
        v = record.get(key)
        if isinstance(v, (int, float)):
            parts.append(f"{label} {fmt.format(v)}".strip())
    return " | ".join(parts)


class MetricsWriter:
    """Append one JSON object per logged step to ``metrics.jsonl`` (and to W&B when a run is
    given; and, with ``echo``, a :func:`step_line` to that open text file, e.g. the job log).
    Only rank 0 should create one."""

    def __init__(self, path: str | Path, *, wandb_run: Any = None, echo: Any = None,
                 max_steps: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.wandb_run = wandb_run
        self.echo = echo
        self.max_steps = max_steps

    def log(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(dict(record), sort_keys=True, allow_nan=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
        if self.echo is not None:
            print(step_line(record, self.max_steps), file=self.echo, flush=True)
        if self.wandb_run is not None:
            step = record.get("step")
            self.wandb_run.log({k: v for k, v in record.items() if v is not None and k != "step"}, step=step)

    def truncate_after(self, step: int) -> None:
        """Drop the lines of steps after ``step`` (a resumed run recomputes them)."""
        if not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(x + "\n" for x in keep), encoding="utf-8")

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``."""
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]


def wandb_run_id(run_dir: str | Path) -> str:
    """The W&B run id of a run dir (from its absolute path): a rerun resumes the same W&B run."""
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def start_wandb(run_dir: str | Path, name: str, config: Mapping[str, Any]) -> Any:
    """A W&B run when ``WANDB_API_KEY`` is set (else ``None``). wandb reads the key from the
    environment itself; it is never passed, logged or stored here. Project:
    ``WANDB_PROJECT`` (default ``filmorph``); the run id is derived from the run dir, so a
    resumed job continues the same W&B run."""
    if not os.environ.get("WANDB_API_KEY"):
        return None
    try:
        import wandb
    except ImportError:
        print("WANDB_API_KEY is set but wandb is not installed; W&B logging off", file=sys.stderr)
        return None
    run_id = wandb_run_id(run_dir)
    return wandb.init(
        project=os.environ.get("WANDB_PROJECT", "filmorph"),
        name=name,
        id=run_id,
        resume="allow",
        dir=str(run_dir),
        config=dict(config),
    )
