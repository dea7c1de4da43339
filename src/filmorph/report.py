"""Aggregate per-item evaluation predictions into tables and plots.

Input: the per-item prediction files of the evaluate stage,
``results/eval/{model}/{arm}/{checkpoint}/{benchmark}.jsonl`` (``model`` is a tokenizer family
or a reference model; ``arm`` is ``base`` for a model before training; ``checkpoint`` is
``base`` or ``step_NNNNNNN``; ``benchmark`` is a benchmark file name such as ``pacute_mcq``).
The labels come from the path, the numbers from the items, so every figure can be traced to
the items behind it.

Outputs:

* ``results.tsv`` / ``results.md`` -- one tidy table, one row per
  model × arm × checkpoint × benchmark × mode × scope × task × metric, with the item count,
  the mean and a percentile-bootstrap 95 % interval over items. ``scope`` is ``all`` (the
  whole file), ``group``, ``level`` or ``task``.
* ``deltas.tsv`` / ``deltas.md`` -- every non-vanilla arm minus vanilla, same model family,
  same checkpoint, same cell, paired over item ids, with a paired-bootstrap interval.
* plots: per-benchmark bars with intervals, hierarchical level curves, a heatmap.

Metrics: MCQ items carry ``acc`` and ``acc_norm``; GEN items ``exact_match`` and ``edit_sim``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_path
from .paths import step_of
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
    "model", "arm", "checkpoint", "step", "benchmark", "mode", "scope", "task", "metric",
    "n", "value", "ci_low", "ci_high",
]  # fmt: skip
DELTA_COLUMNS = [
    "model", "arm", "baseline", "checkpoint", "step", "benchmark", "mode", "scope", "task", "metric",
    "n", "value", "baseline_value", "delta", "ci_low", "ci_high", "p_le_0",
]  # fmt: skip

_PATH_RE = re.compile(r"(?P<model>[^/]+)/(?P<arm>[^/]+)/(?P<checkpoint>[^/]+)/(?P<benchmark>[^/]+)\.jsonl$")


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

    @property
    def step(self) -> int:
        return step_of(self.checkpoint)


def parse_prediction_path(path: str | Path) -> dict[str, str]:
    """``{model, arm, checkpoint, benchmark}`` from ``.../{model}/{arm}/{checkpoint}/{benchmark}.jsonl``."""
    m = _PATH_RE.search(Path(path).as_posix())
    if not m:
        raise ValueError(f"{path}: not a .../{{model}}/{{arm}}/{{checkpoint}}/{{benchmark}}.jsonl path")
    return m.groupdict()


def load_run(path: str | Path) -> Run:
    """Read one predictions JSONL file (see :mod:`filmorph.evaluate`)."""
    labels = parse_prediction_path(path)
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: {e}") from None
    modes = {r["format"] for r in rows}
    if len(modes) > 1:
        raise ValueError(f"{path}: mixes formats {sorted(modes)}")
    mode = modes.pop() if modes else ("gen" if labels["benchmark"].endswith("_gen") else "mcq")
    values = {}
    for metric in METRICS[mode]:
        field = ITEM_FIELDS[metric]
        values[metric] = np.array([float(r[field]) for r in rows], dtype=np.float64)
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
    )


def _cells(run: Run) -> Iterable[tuple[str, str, np.ndarray]]:
    """(scope, name, item index array) for the whole file, each group, level and task."""
    n = len(run.ids)
    yield "all", "*", np.arange(n)
    for scope, keys in (("group", run.groups), ("level", run.levels), ("task", run.tasks)):
        if scope == "level" and all(k is None for k in keys):
            continue
        if scope == "group" and len(set(keys)) <= 1:
            continue
        by: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            by.setdefault(str(k), []).append(i)
        for k in sorted(by, key=lambda s: (len(s), s)):
            yield scope, k, np.array(by[k])


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
        for scope, name, idx in _cells(run):
            for metric in METRICS[run.mode]:
                x = run.values[metric][idx]
                key = f"{run.model}/{run.arm}/{run.checkpoint}/{run.benchmark}/{scope}/{name}/{metric}"
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
                        task=name,
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
        for scope, name, idx in _cells(run):
            for metric in METRICS[run.mode]:
                a = run.values[metric][idx]
                b = base.values[metric][order[idx]]
                key = f"{model}/{arm}-{baseline}/{ckpt}/{bench}/{scope}/{name}/{metric}"
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
                        task=name,
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


def write_markdown(path: str | Path, rows: Sequence[dict], columns: Sequence[str], title: str) -> None:
    """A Markdown table of the ``all``- and ``group``-scope rows (the TSV has every row)."""
    keep = [r for r in rows if r["scope"] in ("all", "group")]
    lines = [f"# {title}", ""]
    if not keep:
        lines.append("_no rows_")
    else:
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in keep]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _subject(r: dict) -> str:
    return f"{r['model']}/{r['arm']}/{r['checkpoint']}"


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_benchmarks(rows: Sequence[dict], path: str | Path) -> None:
    """One panel per benchmark file: primary metric per subject with its 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = [r for r in rows if r["scope"] == "all" and r["metric"] == PRIMARY[r["mode"]]]
    benches = sorted({r["benchmark"] for r in top})
    subjects = sorted({_subject(r) for r in top})
    ncol = min(3, max(1, len(benches)))
    nrow = max(1, math.ceil(len(benches) / ncol))
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(5 * ncol, 0.35 * len(subjects) * nrow + 2.2 * nrow), squeeze=False
    )
    for ax in axes.flat[len(benches) :]:
        ax.axis("off")
    for ax, bench in zip(axes.flat, benches, strict=False):
        rs = {_subject(r): r for r in top if r["benchmark"] == bench}
        ys = np.arange(len(subjects))
        vals = [rs[s]["value"] if s in rs else np.nan for s in subjects]
        err = [
            [max(0.0, rs[s]["value"] - rs[s]["ci_low"]) if s in rs else 0 for s in subjects],
            [max(0.0, rs[s]["ci_high"] - rs[s]["value"]) if s in rs else 0 for s in subjects],
        ]
        ax.barh(ys, vals, xerr=err, color="#4c72b0", ecolor="black", capsize=2)
        ax.set_yticks(ys, subjects, fontsize=7)
        ax.set_xlim(0, 1)
        metric = next(iter(rs.values()))["metric"] if rs else ""
        ax.set_title(f"{bench} ({metric}, 95% CI)", fontsize=9)
        ax.invert_yaxis()
    if not benches:
        axes.flat[0].text(0.5, 0.5, "no evaluation results", ha="center")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_levels(rows: Sequence[dict], path: str | Path) -> None:
    """Hierarchical benchmark: primary metric by level (0-5), one line per subject."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lv = [r for r in rows if r["scope"] == "level" and r["metric"] == PRIMARY[r["mode"]]]
    benches = sorted({r["benchmark"] for r in lv})
    fig, axes = plt.subplots(1, max(1, len(benches)), figsize=(6 * max(1, len(benches)), 4), squeeze=False)
    for ax, bench in zip(axes.flat, benches, strict=False):
        for subj in sorted({_subject(r) for r in lv if r["benchmark"] == bench}):
            pts = sorted((int(r["task"]), r) for r in lv if r["benchmark"] == bench and _subject(r) == subj)
            x = [p[0] for p in pts]
            y = [p[1]["value"] for p in pts]
            lo = [p[1]["ci_low"] for p in pts]
            hi = [p[1]["ci_high"] for p in pts]
            (line,) = ax.plot(x, y, marker="o", label=subj)
            ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
        ax.set_xlabel("level")
        ax.set_ylim(0, 1)
        ax.set_title(f"{bench}: {PRIMARY['gen' if bench.endswith('_gen') else 'mcq']} by level", fontsize=9)
        ax.legend(fontsize=6)
    if not benches:
        axes.flat[0].text(0.5, 0.5, "no hierarchical results", ha="center")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_heatmap(rows: Sequence[dict], path: str | Path) -> None:
    """Subjects × (benchmark, group) heatmap of the primary metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [
        r
        for r in rows
        if r["metric"] == PRIMARY[r["mode"]]
        and (r["scope"] == "group" or (r["scope"] == "all" and not _has_groups(rows, r["benchmark"])))
    ]
    cols = sorted({(r["benchmark"], r["task"]) for r in cells})
    subjects = sorted({_subject(r) for r in cells})
    m = np.full((len(subjects), len(cols)), np.nan)
    for r in cells:
        m[subjects.index(_subject(r)), cols.index((r["benchmark"], r["task"]))] = r["value"]
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(cols) + 3), max(2.5, 0.35 * len(subjects) + 2)))
    if cols and subjects:
        im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(
            range(len(cols)), [f"{b}:{t}" if t != "*" else b for b, t in cols], rotation=70, fontsize=7
        )
        ax.set_yticks(range(len(subjects)), subjects, fontsize=7)
        fig.colorbar(im, ax=ax, label="acc (MCQ) / exact match (GEN)")
    else:
        ax.text(0.5, 0.5, "no evaluation results", ha="center")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _has_groups(rows: Sequence[dict], bench: str) -> bool:
    return any(r["benchmark"] == bench and r["scope"] == "group" for r in rows)


def report(
    prediction_files: Sequence[str | Path],
    out_dir: str | Path,
    plot_dir: str | Path,
    *,
    samples: int = 1000,
    seed: int = 0,
    baseline: str = "vanilla",
) -> dict:
    """Write results/deltas TSV + Markdown into ``out_dir`` and the plots into ``plot_dir``."""
    runs = [load_run(p) for p in prediction_files]
    rows = results_table(runs, samples=samples, seed=seed)
    deltas = deltas_table(runs, baseline=baseline, samples=samples, seed=seed)
    out_dir, plot_dir = Path(out_dir), Path(plot_dir)
    write_tsv(out_dir / "results.tsv", rows, RESULT_COLUMNS)
    write_markdown(out_dir / "results.md", rows, RESULT_COLUMNS, "Evaluation results (95% bootstrap CI)")
    write_tsv(out_dir / "deltas.tsv", deltas, DELTA_COLUMNS)
    write_markdown(
        out_dir / "deltas.md", deltas, DELTA_COLUMNS, f"Arm minus {baseline} (paired bootstrap 95% CI)"
    )
    plot_benchmarks(rows, plot_dir / "benchmarks.png")
    plot_levels(rows, plot_dir / "hierarchical_levels.png")
    plot_heatmap(rows, plot_dir / "heatmap.png")
    return {"runs": len(runs), "rows": len(rows), "delta_rows": len(deltas)}


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


TRAINING_COLUMNS = [
    "family", "arm", "engine", "steps", "tokens", "first_loss", "final_loss", "final_val_loss",
    "tokens_per_s", "seconds",
]  # fmt: skip


def training_report(summary_files: Sequence[str | Path], tsv: str | Path, png: str | Path) -> list[dict]:
    """One row per training run (``.../{family}/{arm}/train_summary.json``) and loss curves read
    from the ``metrics.jsonl`` beside each summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, curves = [], {}
    for f in summary_files:
        f = Path(f)
        s = json.loads(f.read_text(encoding="utf-8"))
        family, arm = f.parent.parent.name, f.parent.name
        metrics = _read_jsonl(f.parent / "metrics.jsonl")
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
        curves[f"{family}/{arm}"] = (train, val)
    write_tsv(tsv, rows, TRAINING_COLUMNS)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, (train, val) in sorted(curves.items()):
        (line,) = axes[0].plot([m["step"] for m in train], [m["loss"] for m in train], label=name)
        if val:
            axes[1].plot([m["step"] for m in val], [m["val_loss"] for m in val], marker="o",
                         color=line.get_color(), label=name)  # fmt: skip
    axes[0].set_title("training loss")
    axes[1].set_title("validation loss")
    for ax in axes:
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, png)
    plt.close(fig)
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
            "Aggregate evaluation predictions (results/eval/{model}/{arm}/{checkpoint}/{benchmark}"
            ".jsonl) into results.tsv/.md, deltas.tsv/.md (arm minus baseline, paired bootstrap) "
            "and plots. `python -m filmorph.report training --help`: training curves."
        ),
    )
    ap.add_argument("predictions", nargs="+", type=Path, help="per-item prediction JSONL files")
    ap.add_argument("--out-dir", type=Path, required=True, help="where the tables go")
    ap.add_argument("--plot-dir", type=Path, required=True, help="where the PNG plots go")
    ap.add_argument("--bootstrap-samples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument(
        "--baseline", default="vanilla", help="arm the deltas are taken against (default vanilla)"
    )
    a = ap.parse_args(argv)
    info = report(
        a.predictions, a.out_dir, a.plot_dir, samples=a.bootstrap_samples, seed=a.seed, baseline=a.baseline
    )
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
