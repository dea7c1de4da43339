"""The report's plots, from the rows of :func:`filmorph.report.results_table` and
:func:`filmorph.report.deltas_table`. Every arm has its colour of :mod:`filmorph.palette` in
every plot. PNGs are written atomically; matplotlib's Agg backend, fixed sizes and no
timestamps in the metadata keep them the same on every run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .io import atomic_path
from .palette import arm_color, arm_order

PRIMARY = {"mcq": "acc", "gen": "exact_match"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subject(r: dict) -> str:
    return f"{r['model']}/{r['arm']}/{r['checkpoint']}"


def save(fig, path: str | Path) -> None:
    """Write ``fig`` as PNG atomically, without the (time-stamped) software metadata."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)


def _primary(rows: Sequence[dict], scope: str) -> list[dict]:
    return [r for r in rows if r["scope"] == scope and r["metric"] == PRIMARY[r["mode"]]]


def _last_checkpoints(rows: Sequence[dict]) -> list[dict]:
    """The rows of each (model, arm)'s last checkpoint (the largest step; ``base`` is step 0)."""
    last: dict[tuple[str, str], int] = {}
    for r in rows:
        k = (r["model"], r["arm"])
        last[k] = max(last.get(k, -1), r["step"])
    return [r for r in rows if r["step"] == last[r["model"], r["arm"]]]


def _err(rs: Sequence[dict], value: str = "value") -> list[list[float]]:
    return [[max(0.0, r[value] - r["ci_low"]) for r in rs], [max(0.0, r["ci_high"] - r[value]) for r in rs]]


def plot_headline(rows: Sequence[dict], model: str, path: str | Path) -> None:
    """The headline of one model: each arm's primary metric (MCQ acc, GEN exact match) on each
    benchmark file, at the arm's last checkpoint, with its 95 % interval."""
    plt = _plt()
    top = _last_checkpoints([r for r in _primary(rows, "all") if r["model"] == model])
    benches = sorted({r["benchmark"] for r in top})
    arms = arm_order(r["arm"] for r in top)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(benches) * max(1, len(arms)) / 3 + 2), 4))
    width = 0.8 / max(1, len(arms))
    for j, arm in enumerate(arms):
        rs = {r["benchmark"]: r for r in top if r["arm"] == arm}
        xs = [i + (j - (len(arms) - 1) / 2) * width for i, b in enumerate(benches) if b in rs]
        sel = [rs[b] for b in benches if b in rs]
        ckpt = sel[0]["checkpoint"] if sel else ""
        ax.bar(xs, [r["value"] for r in sel], width, yerr=_err(sel), capsize=2,
               color=arm_color(arm), ecolor="black", label=f"{arm} ({ckpt})")  # fmt: skip
    ax.set_xticks(range(len(benches)), benches, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("acc (MCQ) / exact match (GEN)")
    ax.set_title(f"{model}: main score per benchmark, last checkpoint (95% CI)", fontsize=10)
    if arms:
        ax.legend(fontsize=7, ncol=min(4, len(arms)))
    else:
        ax.text(0.5, 0.5, "no evaluation results", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    save(fig, path)


def plot_deltas(deltas: Sequence[dict], path: str | Path) -> None:
    """One panel per model: each arm's delta against the baseline (primary metric, last
    checkpoint) per benchmark file, group (e.g. PACUTE category) and hierarchical level, with
    its paired-bootstrap 95 % interval; the line at 0 is no difference."""
    plt = _plt()
    leveled = {r["benchmark"] for r in deltas if r["scope"] == "level"}
    rows = _last_checkpoints([r for r in deltas if r["scope"] in ("all", "group", "level")
                              and r["metric"] == PRIMARY[r["mode"]]
                              # hierarchical groups are its levels (level_N): drawn once
                              and not (r["scope"] == "group" and r["benchmark"] in leveled
                                       and re.fullmatch(r"level_\d+", r["group"]))])  # fmt: skip
    models = sorted({r["model"] for r in rows})
    cells = {}
    for r in rows:
        label = r["benchmark"] if r["scope"] == "all" else (
            f"  {r['group']}" if r["scope"] == "group" else f"  level {r['task']}")
        cells.setdefault(r["model"], {}).setdefault((r["benchmark"], r["scope"] != "all",
                                                     r["scope"], r["group"], r["task"]), label)
    height = max((len(c) for c in cells.values()), default=1)
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(5.5 * max(1, len(models)), 0.28 * height + 1.8),
                             squeeze=False)  # fmt: skip
    for ax, model in zip(axes.flat, models, strict=False):
        keys = sorted(cells[model], key=lambda k: (k[0], k[1], k[2], len(k[4]), k[4], k[3]))
        ypos = {k: i for i, k in enumerate(keys)}
        arms = arm_order(r["arm"] for r in rows if r["model"] == model)
        off = 0.6 / max(1, len(arms))
        for j, arm in enumerate(arms):
            sel = [r for r in rows if r["model"] == model and r["arm"] == arm]
            ys = [ypos[r["benchmark"], r["scope"] != "all", r["scope"], r["group"], r["task"]]
                  + (j - (len(arms) - 1) / 2) * off for r in sel]  # fmt: skip
            ax.errorbar([r["delta"] for r in sel], ys, xerr=_err(sel, "delta"), fmt="o", ms=3,
                        color=arm_color(arm), capsize=2, label=arm)  # fmt: skip
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(keys)), [cells[model][k] for k in keys], fontsize=7)
        for tick, k in zip(ax.get_yticklabels(), keys, strict=True):
            tick.set_fontweight("normal" if k[1] else "bold")  # a benchmark file in bold
        ax.invert_yaxis()
        base = next((r["baseline"] for r in rows if r["model"] == model), "")
        ax.set_title(f"{model}: arm minus {base} (paired 95% CI)", fontsize=9)
        ax.set_xlabel("delta (acc / exact match)")
        ax.legend(fontsize=7)
    if not models:
        axes.flat[0].text(0.5, 0.5, "no deltas (no baseline arm evaluated)", ha="center")
        axes.flat[0].axis("off")
    fig.tight_layout()
    save(fig, path)


def plot_benchmarks(rows: Sequence[dict], path: str | Path) -> None:
    """One panel per benchmark file: primary metric per subject with its 95 % interval."""
    plt = _plt()
    top = _primary(rows, "all")
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
        sel = [rs.get(s) for s in subjects]
        vals = [r["value"] if r else np.nan for r in sel]
        err = [[max(0.0, r["value"] - r["ci_low"]) if r else 0 for r in sel],
               [max(0.0, r["ci_high"] - r["value"]) if r else 0 for r in sel]]  # fmt: skip
        colors = [arm_color(s.split("/")[1]) for s in subjects]
        ax.barh(ys, vals, xerr=err, color=colors, ecolor="black", capsize=2)
        ax.set_yticks(ys, subjects, fontsize=7)
        ax.set_xlim(0, 1)
        metric = next(iter(rs.values()))["metric"] if rs else ""
        ax.set_title(f"{bench} ({metric}, 95% CI)", fontsize=9)
        ax.invert_yaxis()
    if not benches:
        axes.flat[0].text(0.5, 0.5, "no evaluation results", ha="center")
    fig.tight_layout()
    save(fig, path)


def plot_levels(rows: Sequence[dict], path: str | Path) -> None:
    """Hierarchical benchmark: primary metric by level (0-5), one line per subject, coloured by
    arm (one marker per model)."""
    plt = _plt()
    lv = _primary(rows, "level")
    benches = sorted({r["benchmark"] for r in lv})
    markers = "osD^vP*X"
    models = sorted({r["model"] for r in lv})
    fig, axes = plt.subplots(1, max(1, len(benches)), figsize=(6 * max(1, len(benches)), 4), squeeze=False)
    for ax, bench in zip(axes.flat, benches, strict=False):
        for subj in sorted({_subject(r) for r in lv if r["benchmark"] == bench}):
            pts = sorted((int(r["task"]), r) for r in lv if r["benchmark"] == bench and _subject(r) == subj)
            x = [p[0] for p in pts]
            model, arm = pts[0][1]["model"], pts[0][1]["arm"]
            color = arm_color(arm)
            ax.plot(x, [p[1]["value"] for p in pts], marker=markers[models.index(model) % len(markers)],
                    color=color, label=subj)  # fmt: skip
            ax.fill_between(x, [p[1]["ci_low"] for p in pts], [p[1]["ci_high"] for p in pts],
                            alpha=0.15, color=color)  # fmt: skip
        ax.set_xlabel("level")
        ax.set_ylim(0, 1)
        metric = next(r["metric"] for r in lv if r["benchmark"] == bench)
        ax.set_title(f"{bench}: {metric} by level", fontsize=9)
        ax.legend(fontsize=6)
    if not benches:
        axes.flat[0].text(0.5, 0.5, "no hierarchical results", ha="center")
    fig.tight_layout()
    save(fig, path)


def plot_heatmap(rows: Sequence[dict], path: str | Path) -> None:
    """Subjects × (benchmark, group) heatmap of the primary metric."""
    plt = _plt()
    grouped = {r["benchmark"] for r in rows if r["scope"] == "group"}
    cells = [r for r in _primary(rows, "group") + _primary(rows, "all")
             if r["scope"] == "group" or r["benchmark"] not in grouped]  # fmt: skip
    cols = sorted({(r["benchmark"], r["group"]) for r in cells})
    subjects = sorted({_subject(r) for r in cells})
    m = np.full((len(subjects), len(cols)), np.nan)
    for r in cells:
        m[subjects.index(_subject(r)), cols.index((r["benchmark"], r["group"]))] = r["value"]
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(cols) + 3), max(2.5, 0.35 * len(subjects) + 2)))
    if cols and subjects:
        im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(
            range(len(cols)), [f"{b}:{g}" if g != "*" else b for b, g in cols], rotation=70, fontsize=7
        )
        ax.set_yticks(range(len(subjects)), subjects, fontsize=7)
        fig.colorbar(im, ax=ax, label="acc (MCQ) / exact match (GEN)")
    else:
        ax.text(0.5, 0.5, "no evaluation results", ha="center")
    fig.tight_layout()
    save(fig, path)
