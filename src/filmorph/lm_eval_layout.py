"""The report's evaluations in lm-evaluation-harness's output layout, so tools that read
lm-eval runs read ours.

For each evaluated model x arm x checkpoint, a folder (:data:`filmorph.paths.LM_EVAL_RESULTS`)
with

* ``results_<stamp>.json``: ``results`` {task: {``alias``, ``acc,none``, ``acc_stderr,none``,
  ``acc_norm,none``, ``acc_norm_stderr,none``} (MCQ) or {``exact_match,none``,
  ``exact_match_stderr,none``, ``edit_sim,none``, ...} (GEN)}, plus ``configs``, ``versions``,
  ``n-shot``, ``higher_is_better``, ``n-samples`` and ``config`` as lm-eval writes them, and our
  evaluation labels under ``filmorph_labels``. One task per benchmark file (its name).
* ``samples_<task>_<stamp>.jsonl``: one line per scored item, in the predictions' order:
  ``doc_id`` (the item's 0-based line in the benchmark file), ``doc`` (the item), ``target``
  (gold option index for MCQ, the answer for GEN), ``arguments`` ((context, continuation) per
  option for MCQ; (prompt, generation settings) for GEN), ``resps`` / ``filtered_resps``
  (MCQ: ``[log-probability, is_greedy]`` per option, ``is_greedy`` ``null``: not computed;
  GEN: the generated text, and the answer extracted from it), ``filter`` (``none``),
  ``metrics`` (their names) and each metric's value, ``doc_hash`` (sha256 of the item as
  indented JSON), ``prompt_hash`` (sha256 of the first argument's context), ``target_hash``
  (sha256 of ``str(target)``), as lm-eval computes them.

The stamp is fixed (:data:`filmorph.paths.LM_EVAL_STAMP`), not the time, so a rerun writes
the same files byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filmorph.io import atomic_path, write_json_atomic
from filmorph.paths import lm_eval_files

__all__ = ["mean_stderr", "results_entry", "sample_line", "write_lm_eval"]

#: Our per-item fields -> lm-eval metric names, per format.
MCQ_METRICS = {"acc": "correct", "acc_norm": "correct_norm"}
GEN_METRICS = {"exact_match": "exact_match", "edit_sim": "edit_sim",
               "contains_match": "contains_match", "prefix_match": "prefix_match"}  # fmt: skip


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def mean_stderr(xs: Sequence[float]) -> float | str:
    """Standard error of the mean (sample standard deviation / sqrt(n)), lm-eval's
    ``mean_stderr``; ``"N/A"`` (lm-eval's word) below two items."""
    n = len(xs)
    if n < 2:
        return "N/A"
    mu = sum(xs) / n
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (n - 1) / n)


def _metrics(fmt: str, record: Mapping[str, Any]) -> dict[str, float]:
    fields = MCQ_METRICS if fmt == "mcq" else GEN_METRICS
    return {m: float(record[f]) for m, f in fields.items() if record.get(f) is not None}


def sample_line(doc_id: int, item: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """One ``samples_*.jsonl`` line: the benchmark item ``item`` (its JSON) at line ``doc_id``
    and its prediction record ``record`` (:func:`filmorph.evaluate.score`)."""
    fmt = record["format"]
    if fmt == "mcq":
        delim = item.get("delimiter", " ")
        target: Any = item["gold"]
        arguments = [[item["prompt"], delim + opt] for opt in item["options"]]
        resps = [[[lp, None]] for lp in record["logprobs"]]
        filtered = [[lp, None] for lp in record["logprobs"]]
    else:
        target = item["answer"]
        arguments = [[item["prompt"], {"until": list(item.get("stop") or [])}]]
        resps = [[record["generated"]]]
        extracted = record.get("extracted")
        filtered = [record["generated"] if extracted is None else extracted]
    metrics = _metrics(fmt, record)
    return {
        "doc_id": doc_id,
        "doc": dict(item),
        "target": target,
        "arguments": arguments,
        "resps": resps,
        "filtered_resps": filtered,
        "filter": "none",
        "metrics": list(metrics),
        "doc_hash": _sha256(json.dumps(item, indent=2, ensure_ascii=False)),
        "prompt_hash": _sha256(arguments[0][0]),
        "target_hash": _sha256(str(target)),
        **metrics,
    }


def results_entry(task: str, fmt: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``results[task]``: each metric's mean (``<metric>,none``) and, for the main ones, its
    standard error (``<metric>_stderr,none``)."""
    out: dict[str, Any] = {"alias": task}
    fields = MCQ_METRICS if fmt == "mcq" else GEN_METRICS
    for metric, field in fields.items():
        xs = [float(r[field]) for r in records if r.get(field) is not None]
        if not xs:
            continue
        out[f"{metric},none"] = sum(xs) / len(xs)
        out[f"{metric}_stderr,none"] = mean_stderr(xs)
    return out


def write_lm_eval(root: str | Path, subject_runs: Sequence[Any]) -> list[Path]:
    """Write the lm-eval layout under ``root`` (the run dir) for the runs of one model x arm x
    checkpoint (:class:`filmorph.report.Run`, each with its items); return the files written."""
    if not subject_runs:
        return []
    root = Path(root)
    labels = subject_runs[0].labels
    runs = sorted(subject_runs, key=lambda r: r.benchmark)
    rel = lm_eval_files(labels["model"], labels["arm"], labels["checkpoint"], [r.benchmark for r in runs])
    paths = [root / p for p in rel]
    results: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    for run, path in zip(runs, paths[1:], strict=True):
        items = run.items()
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for rec in run.records:
                doc_id, item = items[rec["id"]]
                fh.write(json.dumps(sample_line(doc_id, item, rec), ensure_ascii=False) + "\n")
        results[run.benchmark] = results_entry(run.benchmark, run.mode, run.records)
        configs[run.benchmark] = {
            "task": run.benchmark,
            "dataset_path": run.scores.get("benchmark_file"),
            "output_type": "multiple_choice" if run.mode == "mcq" else "generate_until",
            "num_fewshot": 0,
            "metadata": {"benchmark_sha256": run.scores.get("benchmark_sha256")},
        }
    tasks = sorted(results)
    first = runs[0].scores
    write_json_atomic(paths[0], {
        "results": results,
        "group_subtasks": {t: [] for t in tasks},
        "configs": configs,
        "versions": {t: 1.0 for t in tasks},
        "n-shot": {t: 0 for t in tasks},
        "higher_is_better": {t: {m.split(",")[0]: True for m in results[t] if m.endswith(",none")
                                 and "_stderr" not in m} for t in tasks},
        "n-samples": {r.benchmark: {"original": len(r.items()), "effective": len(r.records)}
                      for r in runs},
        "config": {"model": "filmorph", "model_args": f"pretrained={first.get('model')}",
                   "dtype": first.get("dtype"), "device": first.get("device")},
        "model_name": first.get("model"),
        "filmorph_labels": {k: labels[k] for k in sorted(labels) if k != "benchmark"},
    })  # fmt: skip
    return paths
