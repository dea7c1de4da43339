"""Benchmark files in, scores and predictions out: one model load scores every file it is given;
and the lm-evaluation-harness task export."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filmorph.evaluate.metrics import summarize
from filmorph.evaluate.scorer import score
from filmorph.io import atomic_path, write_json_atomic
from filmorph.items import Item, read_items
from filmorph.provenance import package_versions, sha256_file

VERSIONED_PACKAGES = ("filmorph", "torch", "transformers", "tokenizers", "numpy")


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """``"auto"`` -> ``"bfloat16"`` on CUDA, ``"float32"`` elsewhere; anything else as given."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


class BenchmarkFileError(ValueError):
    """A benchmark file that cannot be scored (missing, unreadable, or an output clash); the
    message names it."""


@dataclass(frozen=True)
class EvalFile:
    """One benchmark file of an evaluation and the two files its results go to: the scores JSON
    and the per-item predictions JSONL; ``labels`` are this file's own (added to the common
    ones)."""

    benchmark: Path
    scores: Path
    predictions: Path
    labels: Mapping[str, str] = field(default_factory=dict)


def read_benchmarks(files: Sequence[EvalFile], max_items: int | None = None) -> list[list[Item]]:
    """The items of every file (the first ``max_items`` of each), all read before any model is
    loaded: a missing or bad file fails at once, named (``file:line`` for a bad item). Two files
    writing the same output are refused."""
    outs: dict[Path, Path] = {}
    for f in files:
        for out in (f.scores, f.predictions):
            key = Path(out).resolve()
            if key in outs:
                raise BenchmarkFileError(f"{out} is the output of both {outs[key]} and {f.benchmark}")
            outs[key] = Path(f.benchmark)
    loaded = []
    for f in files:
        try:
            items = read_items(f.benchmark)
        except OSError as exc:
            raise BenchmarkFileError(f"benchmark file {f.benchmark}: {exc.strerror or exc}") from None
        loaded.append(items[:max_items] if max_items is not None else items)
    return loaded


def evaluate_files(
    model_path: str | Path,
    files: Sequence[EvalFile],
    *,
    labels: Mapping[str, str] | None = None,
    batch_size: int | str = "auto",
    max_new_tokens: int = 32,
    dtype: str = "auto",
    device: str = "auto",
    max_items: int | None = None,
    progress: bool = True,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Load the model once and score every benchmark file of ``files`` with it, in order. Per
    file, write the predictions (JSONL, one record of :func:`score` per line, item order) and the
    scores (JSON: :func:`summarize` plus labels (``labels`` and the file's own), model, model
    dir sha256 (:func:`filmorph.provenance.sha256_tree`), benchmark sha256, items, dtype,
    device, batch sizes, the model's load seconds (one load for all the files), seconds, items/s,
    versions), both atomically and as soon as that file is scored; a one-line summary of each
    goes to ``log`` (stderr by default). Every file is read first (:func:`read_benchmarks`).
    A run that stops part-way leaves the files scored before complete and the others absent
    (or as they were). Returns the scores, in order."""
    from filmorph.models import load_causal_lm
    from filmorph.provenance import sha256_tree

    log = sys.stderr if log is None else log
    all_items = read_benchmarks(files, max_items)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    t0 = time.perf_counter()
    model, tok = load_causal_lm(model_path, dtype=dtype, device=device)
    load_s = time.perf_counter() - t0
    meta_file = Path(model_path) / "filmorph_model_meta.json"
    common: dict[str, Any] = {
        "model": str(model_path),
        # what the audit checks the model dir against (filmorph.provenance.sha256_tree)
        "model_sha256": sha256_tree(model_path) if Path(model_path).is_dir() else None,
        "model_meta": json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else None,
        "model_params": sum(p.numel() for p in model.parameters()),
    }
    versions = package_versions(VERSIONED_PACKAGES)
    results = []
    for f, items in zip(files, all_items, strict=True):
        benchmark = Path(f.benchmark)
        stats: dict[str, Any] = {}
        t0 = time.perf_counter()
        preds = score(
            model,
            tok,
            items,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            device=device,
            progress=progress,
            stats=stats,
            progress_label=benchmark.stem,
        )
        secs = time.perf_counter() - t0
        scores: dict[str, Any] = {
            "labels": {**(labels or {}), **f.labels},
            **common,
            "benchmark_file": str(benchmark),
            "benchmark_sha256": sha256_file(benchmark),
            "n_items": len(items),
            "max_items": max_items,
            "dtype": dtype,
            "device": device,
            "batch_size": batch_size,
            "batch_size_used": {k: stats.get(f"{k}_batch_size") for k in ("mcq", "gen")},
            "max_new_tokens": max_new_tokens,
            "load_seconds": round(load_s, 3),
            "seconds": round(secs, 3),
            "items_per_s": round(len(items) / secs, 3) if secs > 0 else None,
            "stats": stats,
            "versions": versions,
            **summarize(preds),
        }
        with atomic_path(f.predictions) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for p in preds:
                fh.write(json.dumps(p, ensure_ascii=False) + "\n")
        write_json_atomic(f.scores, scores)
        print(f"{benchmark}: {summary_line(scores)}", file=log)
        results.append(scores)
    return results


def evaluate_file(
    model_path: str | Path,
    benchmark: str | Path,
    scores_path: str | Path,
    predictions_path: str | Path,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`evaluate_files` for one benchmark file (same keyword arguments); its scores."""
    one = EvalFile(Path(benchmark), Path(scores_path), Path(predictions_path))
    return evaluate_files(model_path, [one], **kwargs)[0]


def summary_line(scores: Mapping[str, Any]) -> str:
    """``"10 items, acc 0.500 acc_norm 0.600, 12.3 items/s"``: the headline of a scores dict."""
    o = scores["overall"]
    parts = [f"{scores['n_items']} items"]
    if "mcq" in o:
        parts.append(f"acc {o['mcq']['acc']:.3f} acc_norm {o['mcq']['acc_norm']:.3f}")
    if "gen" in o:
        parts.append(f"exact_match {o['gen']['exact_match']:.3f} edit_sim {o['gen']['edit_sim']:.3f}")
    parts.append(f"{scores['items_per_s']} items/s")
    return ", ".join(parts)


def export_lm_eval_task(items_path: str | Path, out_dir: str | Path, *, task: str | None = None) -> Path:
    """Write the MCQ items of a benchmark file as an lm-evaluation-harness task: ``out_dir``
    gets ``TASK.jsonl`` (``prompt``, ``choices`` = ``delimiter + option``, ``gold``, ids) and
    ``TASK.yaml`` (``output_type: multiple_choice``, ``target_delimiter: ""``, metrics ``acc``,
    ``acc_norm`` (per character) and ``acc_bytes`` (per byte, our ``acc_norm``)).  Run it with
    ``lm_eval --include_path OUT_DIR --tasks TASK``.  ``task`` defaults to
    ``filmorph_<file stem>``.  The YAML names the data file by absolute path.  Returns the YAML
    path.  GEN items are not exported (lm-eval's stop strings are per task, ours per item)."""
    items_path = Path(items_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = task or "filmorph_" + "".join(c if c.isalnum() else "_" for c in items_path.stem)
    data = out_dir / f"{task}.jsonl"
    n = 0
    with atomic_path(data) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for it in read_items(items_path):
            if it.format != "mcq":
                continue
            row = {
                "id": it.id,
                "benchmark": it.benchmark,
                "group": it.group,
                "task": it.task,
                "level": it.level,
                "prompt": it.prompt,
                "choices": [it.delimiter + o for o in it.options or []],
                "gold": it.gold,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    if n == 0:
        data.unlink()
        raise ValueError(f"{items_path} has no MCQ items")
    yaml_text = "\n".join(
        [
            f"task: {task}",
            "dataset_path: json",
            "dataset_kwargs:",
            "  data_files:",
            f"    test: {json.dumps(str(data.resolve()))}",
            "test_split: test",
            "output_type: multiple_choice",
            "doc_to_text: prompt",
            "doc_to_choice: choices",
            "doc_to_target: gold",
            'target_delimiter: ""',
            "metric_list:",
            "  - metric: acc",
            "  - metric: acc_norm",
            "  - metric: acc_bytes",
            "metadata:",
            "  version: 1.0",
            "",
        ]
    )
    yaml_path = out_dir / f"{task}.yaml"
    with atomic_path(yaml_path) as tmp:
        tmp.write_text(yaml_text, encoding="utf-8")
    return yaml_path
