"""filmorph.report: tidy table, paired-bootstrap deltas, plots and the lm-eval layout from
evaluations (a scores JSON with labels and the per-item predictions beside it)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from filmorph import report as R
from filmorph.provenance import sha256_file


def _bench(root: Path, name: str, rows: list[dict]) -> Path:
    """A benchmark file holding one item per prediction row (same id, group, task, level)."""
    path = root / "bench" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path
    items = []
    for r in sorted(rows, key=lambda r: r["id"]):
        base = {"id": r["id"], "benchmark": name, "group": r["group"], "task": r["task"],
                "level": r["level"], "format": r["format"], "prompt": f"Q {r['id']}:",
                "delimiter": " ", "answer": "yes", "source": [], "meta": {}}  # fmt: skip
        if r["format"] == "mcq":
            base.update(options=["yes", "no"], gold=0)
        else:
            base.update(stop=["\n"])
        items.append(base)
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def _write(root, model, arm, ckpt, bench, rows, *, at=None, labels=None):
    """An evaluation: predictions JSONL + scores JSON (labels) at ``at`` (default the usual
    path under ``root``); returns the scores JSON path."""
    p = Path(at) if at else root / model / arm / ckpt / f"{bench}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    bfile = _bench(root, bench, rows)
    p.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lab = labels or {"model": model, "arm": arm, "checkpoint": ckpt, "benchmark": bench}
    p.write_text(json.dumps({"labels": lab, "model": f"models/{model}", "benchmark_file": str(bfile),
                             "benchmark_sha256": sha256_file(bfile), "n_items": len(rows)}))  # fmt: skip
    return p


def _mcq(n, correct, *, levels=False, tasks=("a", "b"), groups=("g1", "g2")):
    return [
        {
            "id": f"i{k:04d}",
            "format": "mcq",
            "group": groups[k % len(groups)],
            "task": tasks[k % len(tasks)],
            "level": (k % 6) if levels else None,
            "correct": bool(correct[k]),
            "correct_norm": bool(correct[k]),
            "logprobs": [-1.0, -2.0] if correct[k] else [-2.0, -1.0],
            "pred": 0 if correct[k] else 1,
        }
        for k in range(n)
    ]


def _gen(n, em):
    return [
        {"id": f"g{k:04d}", "format": "gen", "group": "g", "task": "t", "level": None,
         "exact_match": bool(em[k]), "edit_sim": 0.5 + 0.5 * em[k],
         "generated": "yes" if em[k] else "no", "extracted": "yes" if em[k] else "no"}
        for k in range(n)
    ]  # fmt: skip


def test_labels_come_from_the_json_even_when_the_path_says_otherwise(tmp_path):
    p = _write(tmp_path, "x", "y", "z", "w", _mcq(4, [1, 0, 1, 0]),
               at=tmp_path / "results/eval/gemma/vanilla/base/pacute_mcq.json",
               labels={"model": "llama", "arm": "patok", "checkpoint": "step_0000100",
                       "benchmark": "hierarchical_mcq"})  # fmt: skip
    run = R.load_run(p)
    assert run.labels == {"model": "llama", "arm": "patok", "checkpoint": "step_0000100",
                          "benchmark": "hierarchical_mcq"}  # fmt: skip
    assert run.step == 100
    assert R.load_run(p.with_suffix(".jsonl")).labels == run.labels  # either file names it


def test_missing_labels_are_named(tmp_path):
    p = _write(tmp_path, "m", "a", "base", "b", _mcq(2, [1, 1]), labels={"model": "m", "arm": "a"})
    with pytest.raises(ValueError, match=r"b\.json: labels lack checkpoint, benchmark"):
        R.load_run(p)


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
    tasks = {(r["group"], r["task"]): r for r in rows if r["scope"] == "task" and r["metric"] == "acc"}
    assert tasks["g1", "a"]["value"] == pytest.approx(correct[0::2].mean())
    assert R.results_table([run], samples=500, seed=1) == rows  # deterministic
    assert R.results_table([run], samples=500, seed=2) != rows


def test_task_rows_are_keyed_by_group_and_task(tmp_path):
    """PACUTE's prefix inflection and prefix identification: one task name in two groups gives
    two rows, in results and deltas, never one merged row."""
    n = 40
    groups = ("inflection", "identification")
    van = [k % 4 == 0 for k in range(n)]
    pat = [k % 2 == 0 for k in range(n)]  # inflection items (even k) all right, others wrong
    _write(tmp_path, "gemma", "vanilla", "base", "pacute_mcq", _mcq(n, van, tasks=("prefix",), groups=groups))
    _write(tmp_path, "gemma", "patok", "base", "pacute_mcq", _mcq(n, pat, tasks=("prefix",), groups=groups))
    runs = [R.load_run(p) for p in sorted(tmp_path.rglob("*.json")) if "bench" not in p.parts]
    rows = [r for r in R.results_table(runs, samples=100) if r["metric"] == "acc"]
    task_rows = {(r["arm"], r["group"], r["task"]): r for r in rows if r["scope"] == "task"}
    assert len(task_rows) == 4
    assert task_rows["patok", "inflection", "prefix"]["value"] == 1.0
    assert task_rows["patok", "identification", "prefix"]["value"] == 0.0
    assert task_rows["vanilla", "inflection", "prefix"]["value"] == 0.5
    d = {(r["group"], r["task"]): r for r in R.deltas_table(runs, samples=100)
         if r["scope"] == "task" and r["metric"] == "acc"}  # fmt: skip
    assert d["inflection", "prefix"]["delta"] == pytest.approx(0.5)
    assert d["identification", "prefix"]["delta"] == pytest.approx(0.0)


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
    runs = [R.load_run(p) for p in sorted(tmp_path.rglob("*.json")) if "bench" not in p.parts]
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


def test_paired_bootstrap_covers_the_true_delta():
    """Planted: items answered right with probability 0.5 (baseline) and 0.6 (arm), correlated
    per item. Over 40 seeded replicates the 95 % interval holds the true delta 0.1 nearly
    always, and it is seeded (same seed, same interval)."""
    hits = 0
    for rep in range(40):
        rng = np.random.default_rng(100 + rep)
        u = rng.random(400)
        a, b = (u < 0.6).astype(float), (u < 0.5).astype(float)
        flip = rng.random(400) < 0.2  # some independent noise
        a[flip] = (rng.random(flip.sum()) < 0.6).astype(float)
        delta, lo, hi, _ = R.paired_bootstrap(a, b, samples=400, seed=rep, key="k")
        hits += lo <= 0.1 <= hi
        assert R.paired_bootstrap(a, b, samples=400, seed=rep, key="k") == (delta, lo, hi, _)
    assert hits >= 34  # 95 % nominal; at least 85 % of 40 replicates


def test_deltas_refuse_different_items(tmp_path):
    _write(tmp_path, "llama", "vanilla", "base", "x_mcq", _mcq(10, [1] * 10))
    _write(tmp_path / "o", "llama", "patok", "base", "x_mcq", _mcq(12, [1] * 12))
    runs = [R.load_run(p) for p in sorted(tmp_path.rglob("*.json")) if "bench" not in p.parts]
    with pytest.raises(ValueError, match="items differ"):
        R.deltas_table(runs, samples=10)


def test_two_files_with_the_same_labels_are_refused(tmp_path):
    a = _write(tmp_path, "m", "base", "base", "b_mcq", _mcq(4, [1] * 4))
    b = _write(tmp_path, "m", "base", "base", "b_mcq", _mcq(4, [1] * 4), at=tmp_path / "copy/b.json")
    with pytest.raises(ValueError, match="carry the same labels"):
        R.report([a, b], tmp_path / "t", tmp_path / "p", samples=10)


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def test_cli_writes_tables_plots_and_lm_eval_layout(tmp_path):
    ev = tmp_path / "eval"
    hier = _mcq(60, [k % 3 == 0 for k in range(60)], levels=True)
    files = [
        _write(ev, "gemma", "base", "base", "hierarchical_mcq", hier),
        _write(ev, "gemma", "vanilla", "step_0000004", "hierarchical_mcq", hier),
        _write(ev, "gemma", "patok", "step_0000004", "hierarchical_mcq", _mcq(60, [1] * 60, levels=True)),
        _write(ev, "gemma", "base", "base", "addition_gen", _gen(20, [k % 2 for k in range(20)])),
        _write(ev, "smollm2-135m", "base", "base", "addition_gen", _gen(20, [1] * 20)),
    ]
    root = tmp_path / "run"
    argv = [*map(str, files), "--out-dir", str(tmp_path / "t"), "--plot-dir", str(tmp_path / "p"),
            "--bootstrap-samples", "200", "--lm-eval-root", str(root)]  # fmt: skip
    assert R.main(argv) == 0
    tsv = (tmp_path / "t" / "results.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == R.RESULT_COLUMNS
    em = [line.split("\t") for line in tsv[1:] if "\taddition_gen\tgen\tall\t*\t*\texact_match\t" in line]
    assert {(r[0], float(r[11])) for r in em} == {("gemma", 0.5), ("smollm2-135m", 1.0)}
    md = (tmp_path / "t" / "results.md").read_text()
    assert md.startswith("# Evaluation results") and "| gemma | base |" in md
    deltas = (tmp_path / "t" / "deltas.tsv").read_text().splitlines()
    assert deltas[0].split("\t") == R.DELTA_COLUMNS
    level0 = "gemma\tpatok\tvanilla\tstep_0000004\t4\thierarchical_mcq\tmcq\tlevel\t*\t0\tacc\t"
    assert any(line.startswith(level0) for line in deltas)
    assert "| level |" in (tmp_path / "t" / "deltas.md").read_text()  # deltas per level in the md
    pngs = ["benchmarks.png", "hierarchical_levels.png", "heatmap.png", "deltas.png",
            "headline/gemma.png", "headline/smollm2-135m.png"]  # fmt: skip
    for name in pngs:
        data = (tmp_path / "p" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    # lm-evaluation-harness layout: results_<stamp>.json + samples_<task>_<stamp>.jsonl
    sub = root / "results/lm_eval/gemma/base/base"
    res = json.loads((sub / "results_filmorph.json").read_text())
    assert sorted(res["results"]) == ["addition_gen", "hierarchical_mcq"]
    mcq = res["results"]["hierarchical_mcq"]
    assert mcq["acc,none"] == pytest.approx(20 / 60)
    hits = [k % 3 == 0 for k in range(60)]
    assert mcq["acc_stderr,none"] == pytest.approx(np.std(hits, ddof=1) / np.sqrt(60))
    assert set(mcq) >= {"alias", "acc,none", "acc_stderr,none", "acc_norm,none", "acc_norm_stderr,none"}
    assert res["results"]["addition_gen"]["exact_match,none"] == 0.5
    assert res["n-samples"]["hierarchical_mcq"] == {"original": 60, "effective": 60}
    samples = (sub / "samples_hierarchical_mcq_filmorph.jsonl").read_text().splitlines()
    lines = [json.loads(x) for x in samples]
    assert len(lines) == 60
    first = lines[0]
    assert {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "doc_hash",
            "prompt_hash", "target_hash", "metrics", "acc", "acc_norm"} <= set(first)  # fmt: skip
    assert first["doc"]["id"] == "i0000" and first["doc_id"] == 0 and first["target"] == 0
    assert first["arguments"] == [["Q i0000:", " yes"], ["Q i0000:", " no"]]
    assert first["prompt_hash"] == _sha("Q i0000:") and first["target_hash"] == _sha("0")
    assert first["doc_hash"] == _sha(json.dumps(first["doc"], indent=2, ensure_ascii=False))
    assert first["acc"] == 1.0 and first["filtered_resps"] == [[-1.0, None], [-2.0, None]]
    gen = [json.loads(x) for x in (sub / "samples_addition_gen_filmorph.jsonl").read_text().splitlines()]
    assert gen[1]["resps"] == [["yes"]] and gen[1]["exact_match"] == 1.0 and gen[1]["target"] == "yes"
    # deterministic: the lm-eval files again from the same evaluations are the same bytes
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    runs = [R.load_run(f) for f in files]
    R.write_lm_eval(root, [r for r in runs if (r.model, r.arm) == ("gemma", "base")])
    assert all(p.read_bytes() == b for p, b in before.items())


def test_lm_eval_refuses_an_edited_benchmark_file(tmp_path):
    p = _write(tmp_path, "m", "base", "base", "b_mcq", _mcq(4, [1] * 4))
    bench = Path(json.loads(p.read_text())["benchmark_file"])
    bench.write_text(bench.read_text().replace("Q i0000", "Q changed"))
    with pytest.raises(ValueError, match="changed since it was scored"):
        R.write_lm_eval(tmp_path / "run", [R.load_run(p)])


def test_arm_colours_are_fixed_and_stable():
    from filmorph.palette import ARM_COLORS, EXTRA, arm_color, arm_order

    assert [arm_color(a) for a in ("base", "vanilla", "stochastok", "patok")] == list(ARM_COLORS.values())
    assert len(set(ARM_COLORS.values())) == 4
    # a named arm: a colour of EXTRA, the same on every call and whatever other arms exist
    c = arm_color("patok_morph")
    assert c in EXTRA and c not in ARM_COLORS.values() and arm_color("patok_morph") == c
    assert c == EXTRA[int.from_bytes(hashlib.sha256(b"patok_morph").digest()[:4], "big") % len(EXTRA)]
    assert len({arm_color(f"arm{k}") for k in range(40)}) > 4  # named arms spread over EXTRA
    order = ["base", "vanilla", "patok", "alpha", "zeta"]
    assert arm_order(["zeta", "patok", "base", "alpha", "vanilla"]) == order


def test_plots_draw_each_arm_in_its_colour(tmp_path, monkeypatch):
    """The headline and deltas plots colour every arm by the palette."""
    from matplotlib.colors import to_hex
    from matplotlib.patches import Rectangle

    from filmorph import report_plots as RP
    from filmorph.palette import arm_color

    ev = tmp_path / "eval"
    arms = ("vanilla", "patok", "my_arm")

    def _hits(i):
        return [k % (i + 2) == 0 for k in range(30)]

    files = [_write(ev, "gemma", arm, "step_0000004", "h_mcq", _mcq(30, _hits(i)))
             for i, arm in enumerate(arms)]
    runs = [R.load_run(f) for f in files]
    rows = R.results_table(runs, samples=50)
    deltas = R.deltas_table(runs, samples=50)
    seen = {}

    def keep(fig, path):
        leg = fig.axes[0].get_legend()
        colours = [h.get_facecolor() if isinstance(h, Rectangle) else h.get_color()
                   for h in leg.legend_handles]
        names = [t.get_text() for t in leg.get_texts()]
        seen[Path(path).name] = {n: to_hex(c) for n, c in zip(names, colours, strict=True)}

    monkeypatch.setattr(RP, "save", keep)
    RP.plot_headline(rows, "gemma", tmp_path / "h.png")
    RP.plot_deltas(deltas, tmp_path / "d.png")
    assert {k.split()[0]: v for k, v in seen["h.png"].items()} == {
        a: arm_color(a) for a in ("vanilla", "patok", "my_arm")}
    assert seen["d.png"] == {a: arm_color(a) for a in ("patok", "my_arm")}
