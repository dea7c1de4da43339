"""filmorph.report: tidy table, paired-bootstrap deltas and plots from per-item predictions."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from filmorph import report as R


def _write(root, model, arm, ckpt, bench, rows):
    p = root / model / arm / ckpt / f"{bench}.jsonl"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _mcq(n, correct, *, levels=False, tasks=("a", "b")):
    return [
        {
            "id": f"i{k:04d}",
            "format": "mcq",
            "group": "g1" if k % 2 else "g2",
            "task": tasks[k % len(tasks)],
            "level": (k % 6) if levels else None,
            "correct": bool(correct[k]),
            "correct_norm": bool(correct[k]),
        }
        for k in range(n)
    ]


def _gen(n, em):
    return [
        {"id": f"g{k:04d}", "format": "gen", "group": "g", "task": "t", "level": None,
         "exact_match": bool(em[k]), "edit_sim": 0.5 + 0.5 * em[k]}
        for k in range(n)
    ]  # fmt: skip


def test_path_labels_and_bad_path():
    got = R.parse_prediction_path("results/eval/gemma/patok/step_0000100/pacute_mcq.jsonl")
    assert got == {"model": "gemma", "arm": "patok", "checkpoint": "step_0000100", "benchmark": "pacute_mcq"}
    with pytest.raises(ValueError, match="not a"):
        R.parse_prediction_path("x.jsonl")


def test_results_table_means_counts_and_cis(tmp_path):
    rng = np.random.default_rng(0)
    correct = rng.random(300) < 0.6
    p = _write(tmp_path, "gemma", "base", "base", "hier_mcq", _mcq(300, correct, levels=True))
    run = R.load_run(p)
    rows = R.results_table([run], samples=500, seed=1)
    top = {r["metric"]: r for r in rows if r["scope"] == "all"}
    assert top["acc"]["n"] == 300
    assert top["acc"]["value"] == pytest.approx(correct.mean())
    assert top["acc"]["ci_low"] < correct.mean() < top["acc"]["ci_high"]
    # about +-2 standard errors
    se = np.sqrt(correct.mean() * (1 - correct.mean()) / 300)
    assert top["acc"]["ci_high"] - top["acc"]["ci_low"] == pytest.approx(4 * se, rel=0.25)
    levels = [r for r in rows if r["scope"] == "level" and r["metric"] == "acc"]
    assert sorted(int(r["task"]) for r in levels) == list(range(6))
    assert sum(r["n"] for r in levels) == 300
    tasks = {r["task"]: r for r in rows if r["scope"] == "task" and r["metric"] == "acc"}
    assert tasks["a"]["value"] == pytest.approx(correct[0::2].mean())
    assert R.results_table([run], samples=500, seed=1) == rows  # deterministic
    assert R.results_table([run], samples=500, seed=2) != rows


def test_deltas_paired_by_id_and_order_free(tmp_path):
    rng = np.random.default_rng(3)
    n = 500
    van = rng.random(n) < 0.5
    better = van.copy()
    fix = np.flatnonzero(~van)[:50]  # fixes 50 items, breaks none
    better[fix] = True
    _write(tmp_path, "gemma", "vanilla", "step_0000010", "p_mcq", _mcq(n, van))
    rows = _mcq(n, better)
    random.Random(0).shuffle(rows)  # the pairing is by id, not by line
    _write(tmp_path, "gemma", "patok", "step_0000010", "p_mcq", rows)
    _write(tmp_path, "gemma", "stochastok", "step_0000010", "p_mcq", _mcq(n, van))
    _write(tmp_path, "gemma", "patok", "step_0000020", "p_mcq", _mcq(n, van))  # no vanilla at 20
    runs = [R.load_run(p) for p in sorted(tmp_path.rglob("*.jsonl"))]
    d = R.deltas_table(runs, samples=1000, seed=0)
    assert {(r["arm"], r["checkpoint"]) for r in d} == {
        ("patok", "step_0000010"),
        ("stochastok", "step_0000010"),
    }
    top = {(r["arm"], r["metric"]): r for r in d if r["scope"] == "all"}
    p = top["patok", "acc"]
    assert p["delta"] == pytest.approx(50 / n)
    assert p["value"] - p["baseline_value"] == pytest.approx(p["delta"])
    # a paired interval: only the 50 fixed items vary, so it excludes 0 and is narrow
    assert 0 < p["ci_low"] < p["delta"] < p["ci_high"]
    assert p["p_le_0"] == 0.0
    s = top["stochastok", "acc"]
    assert (s["delta"], s["ci_low"], s["ci_high"]) == (0.0, 0.0, 0.0)


def test_deltas_refuse_different_items(tmp_path):
    _write(tmp_path, "llama", "vanilla", "base", "x_mcq", _mcq(10, [1] * 10))
    _write(tmp_path, "llama", "patok", "base", "x_mcq", _mcq(12, [1] * 12))
    runs = [R.load_run(p) for p in sorted(tmp_path.rglob("*.jsonl"))]
    with pytest.raises(ValueError, match="items differ"):
        R.deltas_table(runs, samples=10)


def test_cli_writes_tables_and_plots(tmp_path):
    ev = tmp_path / "eval"
    hier = _mcq(60, [k % 3 == 0 for k in range(60)], levels=True)
    files = [
        _write(ev, "gemma", "base", "base", "hierarchical_mcq", hier),
        _write(ev, "gemma", "base", "base", "addition_gen", _gen(20, [k % 2 for k in range(20)])),
        _write(ev, "smollm2-135m", "base", "base", "addition_gen", _gen(20, [1] * 20)),
    ]
    rc = R.main([*map(str, files), "--out-dir", str(tmp_path / "t"), "--plot-dir", str(tmp_path / "p"),
                 "--bootstrap-samples", "200"])  # fmt: skip
    assert rc == 0
    tsv = (tmp_path / "t" / "results.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == R.RESULT_COLUMNS
    em = [line.split("\t") for line in tsv[1:] if "\taddition_gen\tgen\tall\t*\texact_match\t" in line]
    assert {(r[0], float(r[10])) for r in em} == {("gemma", 0.5), ("smollm2-135m", 1.0)}
    md = (tmp_path / "t" / "results.md").read_text()
    assert md.startswith("# Evaluation results") and "| gemma | base |" in md
    assert (tmp_path / "t" / "deltas.tsv").read_text().splitlines() == ["\t".join(R.DELTA_COLUMNS)]
    for name in ("benchmarks.png", "hierarchical_levels.png", "heatmap.png"):
        data = (tmp_path / "p" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
