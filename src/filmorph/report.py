"""Aggregate per-item evaluation predictions into tables, plots and lm-eval-layout files.

Input: the evaluations of the evaluate stage, each a scores JSON
(:data:`filmorph.paths.EVAL_SCORES`) and the per-item predictions JSONL beside it (same name,
``.jsonl``). The labels (``model``: a tokenizer family or a reference model; ``arm``: ``base``
for a model before training; ``checkpoint``: ``base`` or ``step_NNNNNNN``; ``benchmark``: the
benchmark file's name) are read from the scores JSON's ``labels``, never from the path; the
numbers come from the items, so every figure can be traced to the items behind it.

Outputs (README, "What the report shows"):

* ``results.tsv`` / ``results.md`` -- one tidy table, one row per
  model × arm × checkpoint × benchmark × scope × (group, task) × metric, with the item count,
  the mean and a percentile-bootstrap 95 % interval over items. ``scope`` is ``all`` (the
  whole file), ``group`` (e.g. a PACUTE category), ``level`` (a hierarchical level, in
  ``task``) or ``task`` (a task *within its group*: rows are keyed by (group, task), never by
  the task name alone).
* ``deltas.tsv`` / ``deltas.md`` -- every arm other than the baseline minus the baseline, same
  model, checkpoint, benchmark and cell, paired over item ids, with a paired-bootstrap 95 %
  interval and the share of resampled deltas at or below 0.
* plots (:mod:`filmorph.report_plots`): one headline figure per model, the deltas with their
  intervals, per-benchmark bars, hierarchical level curves, a heatmap; arms in the colours of
  :mod:`filmorph.palette`.
* the lm-evaluation-harness layout (:mod:`filmorph.lm_eval_layout`).

Metrics: MCQ items carry ``acc`` and ``acc_norm``; GEN items ``exact_match`` and ``edit_sim``.
Bootstrap resamples: ``--bootstrap-samples`` (config ``report.bootstrap_samples``), seeded by
``--seed`` and the cell, so the tables are the same on every run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import atomic_path
from .lm_eval_layout import write_lm_eval
from .paths import EVAL_LABELS, LM_EVAL_DIR, step_of
from .rng import derive_seed

METRICS = {"mcq": ("acc", "acc_norm"), "gen": ("exact_match", "edit_sim")}
PRIMARY = {"mcq": "acc", "gen": "exact_match"}
ITEM_FIELDS = {
    "acc": "correct",
    "acc_norm": "correct_norm",
    "exact_match": "exact_match",
    "edit_sim": "edit_sim",
}
RESULT_COLUMNS = [
    "model", "arm", "checkpoint", "step", "benchmark", "mode", "scope", "group", "task", "metric",
    "n", "value", "ci_low", "ci_high",
]  # fmt: skip
DELTA_COLUMNS = [
    "model", "arm", "baseline", "checkpoint", "step", "benchmark", "mode", "scope", "group", "task",
    "metric", "n", "value", "baseline_value", "delta", "ci_low", "ci_high", "p_le_0",
]  # fmt: skip


@dataclass
class Run:
    """The per-item metric values of one model × arm × checkpoint × benchmark file."""

    model: str
    arm: str
    checkpoint: str
    benchmark: str
    mode: str
    ids: list[str]
    groups: list[str]
    tasks: list[str]
    levels: list[int | None]
    values: dict[str, np.ndarray]  # metric -> per-item values (0/1 or [0, 1])
    records: list[dict] = field(default_factory=list, repr=False)  # the prediction records
    scores: dict = field(default_factory=dict, repr=False)  # the scores JSON
    source: str = ""  # the scores JSON's path, for messages
    _items: dict | None = field(default=None, repr=False)

    @property
    def step(self) -> int:
        return step_of(self.checkpoint)

    @property
    def labels(self) -> dict[str, str]:
        return {"model": self.model, "arm": self.arm, "checkpoint": self.checkpoint,
                "benchmark": self.benchmark}  # fmt: skip

    def items(self) -> dict[str, tuple[int, dict]]:
        """The scored benchmark file's items by id: (0-based line, item JSON). The file is the
        one the scores JSON names, checked against its recorded sha256."""
        if self._items is None:
            from .provenance import sha256_file

            bench = self.scores.get("benchmark_file")
            if not bench or not Path(bench).is_file():
                raise ValueError(f"{self.source}: benchmark file {bench!r} is missing")
            if self.scores.get("benchmark_sha256") not in (None, sha256_file(bench)):
                raise ValueError(f"{self.source}: {bench} changed since it was scored (sha256)")
            lines = [ln for ln in Path(bench).read_text(encoding="utf-8").splitlines() if ln.strip()]
            self._items = {}
            for k, line in enumerate(lines):
                item = json.loads(line)
                self._items[item["id"]] = (k, item)
        return self._items


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: {e}") from None
    return rows


def load_run(path: str | Path) -> Run:
    """Read one evaluation: the scores JSON (``path`` itself, or beside a ``.jsonl`` path) for
    its labels, the predictions JSONL beside it (see :mod:`filmorph.evaluate`) for the items."""
    path = Path(path)
    scores_path, pred_path = path.with_suffix(".json"), path.with_suffix(".jsonl")
    for p in (scores_path, pred_path):
        if not p.is_file():
            raise ValueError(f"{p}: missing (an evaluation is a scores .json and a predictions .jsonl)")
    try:
        scores = json.loads(scores_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{scores_path}: {e}") from None
    labels = scores.get("labels") or {}
    missing = [k for k in EVAL_LABELS if not labels.get(k)]
    if missing:
        raise ValueError(f"{scores_path}: labels lack {', '.join(missing)} (written by the evaluate stage)")
    rows = _read_jsonl(pred_path)
    modes = {r["format"] for r in rows}
    if len(modes) > 1:
        raise ValueError(f"{pred_path}: mixes formats {sorted(modes)}")
    mode = modes.pop() if modes else ("gen" if "gen" in scores.get("overall", {}) else "mcq")
    values = {}
    for metric in METRICS[mode]:
        fld = ITEM_FIELDS[metric]
        values[metric] = np.array([float(r[fld]) for r in rows], dtype=np.float64)
    return Run(
        model=labels["model"],
        arm=labels["arm"],
        checkpoint=labels["checkpoint"],
        benchmark=labels["benchmark"],
        mode=mode,
        ids=[r["id"] for r in rows],
        groups=[r.get("group") or "" for r in rows],
        tasks=[r["task"] for r in rows],
        levels=[r.get("level") for r in rows],
        values=values,
        records=rows,
        scores=scores,
        source=str(scores_path),
    )


def _cells(run: Run) -> Iterable[tuple[str, str, str, np.ndarray]]:
    """(scope, group, task, item index array) for the whole file, each group, each level and
    each (group, task): a task is always taken within its group."""
    n = len(run.ids)
    yield "all", "*", "*", np.arange(n)
    if len(set(run.groups)) > 1:
        for g in sorted(set(run.groups)):
            yield "group", g, "*", np.array([i for i, x in enumerate(run.groups) if x == g])
    if any(v is not None for v in run.levels):
        by: dict[int, list[int]] = {}
        for i, v in enumerate(run.levels):
            if v is not None:
                by.setdefault(int(v), []).append(i)
        for v in sorted(by):
            yield "level", "*", str(v), np.array(by[v])
    pairs: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(run.groups, run.tasks, strict=True)):
        pairs.setdefault(key, []).append(i)
    for g, t in sorted(pairs):
        yield "task", g, t, np.array(pairs[g, t])


def _bootstrap_idx(n: int, samples: int, seed: int, key: str) -> np.ndarray:
    rng = np.random.default_rng(derive_seed(seed, "bootstrap", key) % (2**63))
    return rng.integers(0, n, size=(samples, n))


def bootstrap_ci(
    x: np.ndarray, *, samples: int, seed: int, key: str, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``x`` (deterministic in seed and key)."""
    if len(x) == 0:
        return math.nan, math.nan
    means = x[_bootstrap_idx(len(x), samples, seed, key)].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, samples: int, seed: int, key: str, level: float = 0.95
) -> tuple[float, float, float, float]:
    """(delta, ci_low, ci_high, p_le_0) for mean(a) - mean(b) over paired items: items are
    resampled together, so the interval reflects item difficulty shared by both."""
    d = a - b
    if len(d) == 0:
        return math.nan, math.nan, math.nan, math.nan
    means = d[_bootstrap_idx(len(d), samples, seed, key)].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(d.mean()), float(lo), float(hi), float((means <= 0).mean())


def results_table(runs: Sequence[Run], *, samples: int = 1000, seed: int = 0) -> list[dict]:
    """The tidy table (rows with :data:`RESULT_COLUMNS`)."""
    rows = []
    for run in sorted(runs, key=lambda r: (r.model, r.arm, r.step, r.benchmark)):
        for scope, group, task, idx in _cells(run):
            for metric in METRICS[run.mode]:
                x = run.values[metric][idx]
                key = "/".join([*run.labels.values(), scope, group, task, metric])
                lo, hi = bootstrap_ci(x, samples=samples, seed=seed, key=key)
                rows.append(
                    dict(
                        model=run.model,
                        arm=run.arm,
                        checkpoint=run.checkpoint,
                        step=run.step,
                        benchmark=run.benchmark,
                        mode=run.mode,
                        scope=scope,
                        group=group,
                        task=task,
                        metric=metric,
                        n=len(x),
                        value=float(x.mean()) if len(x) else math.nan,
                        ci_low=lo,
                        ci_high=hi,
                    )  # fmt: skip
                )
    return rows


def deltas_table(
    runs: Sequence[Run], *, baseline: str = "vanilla", samples: int = 1000, seed: int = 0
) -> list[dict]:
    """Each arm minus ``baseline`` (same model, checkpoint and benchmark), paired over item ids."""
    index = {(r.model, r.arm, r.checkpoint, r.benchmark): r for r in runs}
    rows = []
    for (model, arm, ckpt, bench), run in sorted(index.items()):
        base = index.get((model, baseline, ckpt, bench))
        if arm in (baseline, "base") or base is None:
            continue
        pos = {i: k for k, i in enumerate(base.ids)}
        missing = [i for i in run.ids if i not in pos]
        if missing or len(base.ids) != len(run.ids):
            raise ValueError(
                f"{model}/{arm}/{ckpt}/{bench}: items differ from {baseline} "
                f"({len(missing)} ids not in {baseline}); evaluate both on the same benchmark file"
            )
        order = np.array([pos[i] for i in run.ids])
        for scope, group, task, idx in _cells(run):
            for metric in METRICS[run.mode]:
                a = run.values[metric][idx]
                b = base.values[metric][order[idx]]
                key = f"{model}/{arm}-{baseline}/{ckpt}/{bench}/{scope}/{group}/{task}/{metric}"
                delta, lo, hi, p = paired_bootstrap(a, b, samples=samples, seed=seed, key=key)
                rows.append(
                    dict(
                        model=model,
                        arm=arm,
                        baseline=baseline,
                        checkpoint=ckpt,
                        step=run.step,
                        benchmark=bench,
                        mode=run.mode,
                        scope=scope,
                        group=group,
                        task=task,
                        metric=metric,
                        n=len(a),
                        value=float(a.mean()),
                        baseline_value=float(b.mean()),
                        delta=delta,
                        ci_low=lo,
                        ci_high=hi,
                        p_le_0=p,
                    )  # fmt: skip
                )
    return rows


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def write_tsv(path: str | Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        fh.write("\t".join(columns) + "\n")
        for r in rows:
            fh.write("\t".join(_fmt(r[c]) for c in columns) + "\n")


def write_markdown(path: str | Path, rows: Sequence[dict], columns: Sequence[str], title: str, *,
                   scopes: Sequence[str] = ("all", "group")) -> None:
    """A Markdown table of the rows of ``scopes`` (the TSV has every row)."""
    keep = [r for r in rows if r["scope"] in scopes]
    lines = [f"# {title}", ""]
    if not keep:
        lines.append("_no rows_")
    else:
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in keep]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _by_subject(runs: Sequence[Run]) -> dict[tuple[str, str, str], list[Run]]:
    out: dict[tuple[str, str, str], list[Run]] = {}
    for r in runs:
        out.setdefault((r.model, r.arm, r.checkpoint), []).append(r)
    return out


def report(
    evaluation_files: Sequence[str | Path],
    out_dir: str | Path,
    plot_dir: str | Path,
    *,
    samples: int = 1000,
    seed: int = 0,
    baseline: str = "vanilla",
    lm_eval_root: str | Path | None = None,
) -> dict:
    """Write results/deltas TSV + Markdown into ``out_dir``, the plots (``headline/{model}.png``
    one per model) into ``plot_dir`` and, with ``lm_eval_root`` (the run dir), the
    lm-evaluation-harness layout under its ``results/lm_eval/``."""
    from . import report_plots as plots

    runs = [load_run(p) for p in evaluation_files]
    seen: dict[tuple[str, ...], str] = {}
    for r in runs:
        key = tuple(r.labels[k] for k in EVAL_LABELS)
        if key in seen:
            raise ValueError(f"{r.source} and {seen[key]} carry the same labels {r.labels}")
        seen[key] = r.source
    rows = results_table(runs, samples=samples, seed=seed)
    deltas = deltas_table(runs, baseline=baseline, samples=samples, seed=seed)
    out_dir, plot_dir = Path(out_dir), Path(plot_dir)
    write_tsv(out_dir / "results.tsv", rows, RESULT_COLUMNS)
    write_markdown(out_dir / "results.md", rows, RESULT_COLUMNS, "Evaluation results (95% bootstrap CI)")
    write_tsv(out_dir / "deltas.tsv", deltas, DELTA_COLUMNS)
    write_markdown(out_dir / "deltas.md", deltas, DELTA_COLUMNS,
                   f"Arm minus {baseline} (paired bootstrap 95% CI)", scopes=("all", "group", "level"))
    lm_files = []
    if lm_eval_root is not None:
        for subject_runs in _by_subject(runs).values():
            lm_files += write_lm_eval(lm_eval_root, subject_runs)
    models = sorted({r.model for r in runs})
    for model in models:
        plots.plot_headline(rows, model, plot_dir / "headline" / f"{model}.png")
    plots.plot_deltas(deltas, plot_dir / "deltas.png")
    plots.plot_benchmarks(rows, plot_dir / "benchmarks.png")
    plots.plot_levels(rows, plot_dir / "hierarchical_levels.png")
    plots.plot_heatmap(rows, plot_dir / "heatmap.png")
    return {"runs": len(runs), "rows": len(rows), "delta_rows": len(deltas), "models": models,
            "lm_eval_files": len(lm_files)}  # fmt: skip


def _read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


TRAINING_COLUMNS = [
    "family", "arm", "engine", "steps", "tokens", "first_loss", "final_loss", "final_val_loss",
    "tokens_per_s", "seconds",
]  # fmt: skip


def training_report(summary_files: Sequence[str | Path], tsv: str | Path, png: str | Path) -> list[dict]:
    """One row per training run (``.../{family}/{arm}/train_summary.json``) and loss curves read
    from the ``metrics.jsonl`` beside each summary; each arm in its colour
    (:mod:`filmorph.palette`), one line style per family."""
    from .palette import arm_color
    from .report_plots import _plt, save

    plt = _plt()
    rows, curves = [], {}
    for f in summary_files:
        f = Path(f)
        s = json.loads(f.read_text(encoding="utf-8"))
        family, arm = f.parent.parent.name, f.parent.name
        metrics = _read_metrics(f.parent / "metrics.jsonl")
        train = [m for m in metrics if m.get("loss") is not None]
        val = [m for m in metrics if m.get("val_loss") is not None]
        tps = [m["tokens_per_s"] for m in train if m.get("tokens_per_s")]
        rows.append(
            dict(
                family=family,
                arm=arm,
                engine=s.get("engine", ""),
                steps=s.get("steps", train[-1]["step"] if train else 0),
                tokens=s.get("tokens_seen", s.get("tokens", "")),
                first_loss=float(train[0]["loss"]) if train else math.nan,
                final_loss=float(train[-1]["loss"]) if train else math.nan,
                final_val_loss=float(val[-1]["val_loss"]) if val else math.nan,
                tokens_per_s=float(np.median(tps)) if tps else math.nan,
                seconds=float(s.get("seconds", math.nan)),
            )
        )
        curves[family, arm] = (train, val)
    write_tsv(tsv, rows, TRAINING_COLUMNS)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    families = sorted({f for f, _ in curves})
    styles = ("-", "--", ":", "-.")
    for (family, arm), (train, val) in sorted(curves.items()):
        style = dict(color=arm_color(arm), linestyle=styles[families.index(family) % len(styles)],
                     label=f"{family}/{arm}")  # fmt: skip
        axes[0].plot([m["step"] for m in train], [m["loss"] for m in train], **style)
        if val:
            axes[1].plot([m["step"] for m in val], [m["val_loss"] for m in val], marker="o", **style)
    axes[0].set_title("training loss")
    axes[1].set_title("validation loss")
    for ax in axes:
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, png)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["training"]:
        tp = argparse.ArgumentParser(
            prog="python -m filmorph.report training",
            description="Loss curves (PNG) and one summary row per run (TSV) from train_summary.json "
            "files and the metrics.jsonl beside each.",
        )
        tp.add_argument("summaries", nargs="+", type=Path, help=".../{family}/{arm}/train_summary.json")
        tp.add_argument("--tsv", type=Path, required=True)
        tp.add_argument("--png", type=Path, required=True)
        ta = tp.parse_args(argv[1:])
        print(json.dumps({"runs": len(training_report(ta.summaries, ta.tsv, ta.png))}))
        return 0
    ap = argparse.ArgumentParser(
        prog="python -m filmorph.report",
        description=(
            "Aggregate evaluations (results/eval/{model}/{arm}/{checkpoint}/{benchmark}.json, "
            "labels read from each file, and the per-item .jsonl beside it) into results.tsv/.md, "
            "deltas.tsv/.md (arm minus baseline, paired bootstrap), plots (headline/{model}.png, "
            "deltas.png, benchmarks.png, hierarchical_levels.png, heatmap.png) and, with "
            f"--lm-eval-root, lm-evaluation-harness files under {LM_EVAL_DIR}/. "
            "`python -m filmorph.report training --help`: training curves."
        ),
    )
    ap.add_argument("evaluations", nargs="+", type=Path,
                    help="scores JSON files (or the predictions .jsonl beside each)")
    ap.add_argument("--out-dir", type=Path, required=True, help="where the tables go")
    ap.add_argument("--plot-dir", type=Path, required=True, help="where the PNG plots go")
    ap.add_argument("--lm-eval-root", type=Path, default=None,
                    help=f"run dir under whose {LM_EVAL_DIR}/ the lm-evaluation-harness files go "
                         "(default: not written)")
    ap.add_argument("--bootstrap-samples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument(
        "--baseline", default="vanilla", help="arm the deltas are taken against (default vanilla)"
    )
    a = ap.parse_args(argv)
    if a.bootstrap_samples < 1:
        ap.error("--bootstrap-samples must be at least 1")
    info = report(a.evaluations, a.out_dir, a.plot_dir, samples=a.bootstrap_samples, seed=a.seed,
                  baseline=a.baseline, lm_eval_root=a.lm_eval_root)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
