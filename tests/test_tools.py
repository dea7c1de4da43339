"""The proofs and benchmarks under tools/ (not installed): their CPU parts (packing, tables,
variants, the engines' matched settings), and that the installed package never imports them.
tools/ is importable because pytest puts the repository root on sys.path (pyproject.toml)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from filmorph.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def test_src_never_imports_tools():
    """The installed package stands alone: no module under src/ imports tools/."""
    bad = []
    for path in sorted((REPO / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            bad += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "tools"]
    assert not bad, bad
    assert not list((REPO / "src" / "filmorph").rglob("*gpu_proof*")) and not (
        REPO / "src" / "filmorph" / "bench.py"
    ).exists()


def test_proofs_import_no_heavy_library():
    code = (
        "import sys, tools.gpu_proof_megatron, tools.gpu_proof_automodel, tools.gpu_proof_finetune\n"
        "import tools.gpu_dag, tools.gpu_gemma2_engines\n"
        "heavy = ('megatron.bridge', 'megatron.core', 'transformer_engine', 'torch', 'nemo_automodel')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_proof_packing_and_table():
    from tools import gpu_proof_megatron as G

    bins = G.plan_bins([("a", 50), ("b", 30), ("c", 25), ("d", 5)], [60, 60])
    assert bins == [["a", "d"], ["b", "c"]]
    with pytest.raises(ValueError, match="fits in no call"):
        G.plan_bins([("big", 70)], [60, 60])
    assert 5 * G.PART_BYTES >= G.TE_CORE_BYTES > 4 * G.PART_BYTES  # five parts, as the plan says
    assert G.PART_BYTES + 4 * 2**20 <= 64 * 2**20  # a part and the working tree fit one call
    TrainConfig.from_dict(G.PROOF_TRAIN)  # the proof's training config is valid
    assert G.PROOF_TRAIN["max_steps"] >= 100
    record = {
        "family": "llama",
        "architecture": "llama",
        "train_config": G.PROOF_TRAIN,
        "train_summary": {
            "steps": 100,
            "first_logged_loss": 11.9,
            "final_loss": 7.1,
            "final_val_loss": 7.3,
            "tokens_per_s": 40000.0,
            "mfu": 0.35,
            "peak_memory_gib": 30.2,
            "document_masking": "thd",
        },
        "stages": [
            {
                "stage": "verify_import",
                "ok": True,
                "seconds": 30.0,
                "result": {"max_abs_diff": 0.002, "argmax_agreement": 1.0, "passed": True},
            },
            {
                "stage": "verify_doc_mask",
                "ok": True,
                "seconds": 60.0,
                "result": {
                    "check": "document_masking",
                    "mode": "mask",
                    "packed_mean_abs_diff": 0.017,
                    "unmasked_mean_abs_diff": 1.06,
                    "grad_rel_diff": 0.023,
                    "argmax_agreement": 0.999,
                    "passed": True,
                },
            },
            {
                "stage": "train_doc_mask",
                "ok": False,
                "seconds": 9.0,
                "result": None,
                "tail": "x\nValueError: a|b",
            },
            {
                "stage": "evaluate_hierarchical_mcq",
                "ok": True,
                "seconds": 12.0,
                "result": {"n_items": 190, "overall": {"mcq": {"acc": 0.25, "acc_norm": 0.3}}},
            },
            {"stage": "negative_control", "ok": None, "seconds": 0.0, "result": None, "skipped": "20 s left"},
        ],
        "metrics": [
            {"step": 10, "tokens_per_s": 9000.0, "mfu": 0.07},  # warm-up interval: not steady
            {"step": 20, "tokens_per_s": 41000.0, "mfu": 0.36},
            {"step": 30, "tokens_per_s": 43000.0, "mfu": 0.38},
            {"step": 40, "tokens_per_s": 42000.0, "mfu": None},
        ],
    }
    assert G.steady_state(record["metrics"]) == {"tokens_per_s": 42000.0, "mfu": 0.37}
    assert G.steady_state(record["metrics"][:1]) == {"tokens_per_s": None, "mfu": None}
    table = G.proof_table(record)
    assert "| evaluate_hierarchical_mcq | yes | 12.0 | 190 items, acc 0.25, acc_norm 0.3 |" in table
    assert (
        "| verify_import | yes | 30.0 | max abs diff 0.002, argmax agreement 100.00%, passed True |" in table
    )
    assert (
        "| verify_doc_mask | yes | 60.0 | mode mask: later docs vs one by one 0.017 (control 1.06), "
        "gradient rel. diff 2.3%, argmax agreement 99.90%, passed True |" in table
    )
    assert "ValueError: a/b" in table and "skipped: 20 s left" in table
    assert "| 100 | 16/4 | 1024 | 11.9 -> 7.1 | 7.3 | 40000 | 35.0% | 42000 | 37.0% | 30.2 | thd |" in table


def test_proof_parse_variant():
    from tools import gpu_proof_megatron as G

    assert G.parse_variant(
        'mb16={"train": {"micro_batch_size": 16}, "overrides": {"cross_entropy_fusion_impl": "te"}}'
    ) == (
        "mb16",
        {"micro_batch_size": 16},
        {"cross_entropy_fusion_impl": "te"},
    )
    assert G.parse_variant("x=") == ("x", {}, {})
    assert G.parse_variant("x=  ") == ("x", {}, {})
    assert G.parse_variant('y={"train": {"reset_attention_mask": false}}') == (
        "y",
        {"reset_attention_mask": False},
        {},
    )
    assert G.parse_variant('z={"overrides": {"a": 1}, "train": null}') == ("z", {}, {"a": 1})
    for bad in ("mb16", '={"train": {}}', 'x={"trian": {}}', 'x={"train": {}, "extra": 1}', "x=[1]"):
        with pytest.raises(ValueError):
            G.parse_variant(bad)
    with pytest.raises(ValueError):  # not JSON (json.JSONDecodeError is a ValueError)
        G.parse_variant("x={train}")


def test_proof_refuses_unknown_skips_before_any_work(tmp_path):
    from tools import gpu_proof_megatron as G

    assert {"verify_doc_mask", "export_untrained", "train", "evaluate", "negative_control"} == G.SKIPPABLE
    with pytest.raises(ValueError, match=r"cannot skip \['bogus'\]"):
        G.run_proof("llama", tmp_path, tmp_path / "out", work=tmp_path / "w", skip=["bogus", "train"])
    assert not (tmp_path / "w").exists() and not (tmp_path / "out").exists()


def test_proof_families_and_default_sweeps():
    from tools import gpu_proof_megatron as G

    assert {"llama", "gemma", "gemma2"} <= set(G.FAMILIES)
    assert G.FAMILIES["gemma2"]["data"] == "gemma" and G.FAMILIES["gemma2"]["architecture"] == "gemma2"
    for name, spec in G.FAMILIES.items():
        assert {"architecture", "shape", "tokenizer", "data", "doc_mask_mode", "train"} <= set(spec), name
        assert spec["data"] in G.FAMILIES, name
        assert spec["tokenizer"]["source"], name
        # a family's shards come from its own tokenizer
        assert G.FAMILIES[spec["data"]]["tokenizer"] == spec["tokenizer"], name
        assert spec["doc_mask_mode"] in (None, "thd", "mask"), name
        cfg = TrainConfig.from_dict({**G.PROOF_TRAIN, **spec["train"]})  # a valid training config
        assert cfg.global_batch_size % cfg.micro_batch_size == 0, name
    assert set(G.DEFAULT_SWEEPS) <= set(G.FAMILIES)
    for family, variants in G.DEFAULT_SWEEPS.items():
        names = [v[0] for v in variants]
        assert names and len(set(names)) == len(names), family
        for _, train_over, overrides in variants:
            assert isinstance(overrides, dict)
            cfg = TrainConfig.from_dict(
                {
                    **G.PROOF_TRAIN,
                    **G.FAMILIES[family]["train"],
                    "max_steps": G.SWEEP_STEPS,
                    "checkpoint_interval": G.SWEEP_STEPS,
                    "eval_iters": 0,
                    "warmup_steps": min(G.PROOF_TRAIN["warmup_steps"], G.SWEEP_STEPS - 1),
                    **train_over,
                }
            )
            assert cfg.global_batch_size % cfg.micro_batch_size == 0, (family, train_over)


def test_sweep_table():
    from tools import gpu_proof_megatron as G

    def variant(name, mbs, overrides, masking, tps, mfu, ok=True):
        return {
            "variant": name,
            "ok": ok,
            "micro_batch_size": mbs,
            "global_batch_size": 16,
            "seq_length": 1024,
            "overrides": overrides,
            "document_masking": masking,
            "steady_tokens_per_s": tps,
            "steady_mfu": mfu,
            "peak_memory_gib": 59.04,
            "first_loss": 10.37,
            "last_loss": 6.307,
            "max_grad_norm": 4.938,
            "seconds": 101.2,
            "metrics": [],
        }

    record = {
        "family": "llama",
        "architecture": "llama",
        "steps": 30,
        "stages": [
            {"stage": "model", "rc": 0, "ok": True, "seconds": 20.0, "result": None},
            {
                "stage": "verify_doc_mask",
                "rc": 0,
                "ok": True,
                "seconds": 40.0,
                "result": {
                    "mode": "thd",
                    "passed": True,
                    "packed_mean_abs_diff": 0.0123,
                    "unmasked_mean_abs_diff": 1.5,
                    "argmax_agreement": 0.995,
                    "grad_rel_diff": 0.0042,
                },
            },
            {
                "stage": "train_mb8",
                "rc": 1,
                "ok": False,
                "seconds": 5.0,
                "result": None,
                "tail": "x\nOOM here\n",
            },
        ],
        "variants": [
            variant("mb16_te_ce", 16, {"cross_entropy_fusion_impl": "te"}, "thd", 52608.0, 0.416),
            variant("mb8", 8, {}, None, None, None, ok=False),
        ],
    }
    table = G.sweep_table(record)
    assert table.startswith("### megatron engine speed sweep: llama (llama, 30 steps per variant, 1 GPU(s))")
    assert (
        "verify_doc_mask (thd): passed True, packed vs separate mean abs diff 0.0123 (unmasked row 1.5), "
        "argmax agreement 99.50%, gradient rel. diff 0.0042; rc 0 (as expected)" in table
    )
    assert (
        "| mb16_te_ce | yes | 16/16 | 1024 | cross_entropy_fusion_impl=te | thd | 52608 | 52608 | 41.6% | "
        "59.0 | 10.37 -> 6.307 | 4.938 | 101.2 |" in table
    )
    assert "| mb8 | **NO** | 16/8 | 1024 | - | - | - | - | - | 59.0 |" in table
    assert "train_mb8 failed (rc 1): OOM here" in table
    # a doc-mask check that did not behave as expected says so; no stages: no doc-mask line
    record["stages"][1].update(ok=False, rc=1, result=None)
    assert "verify_doc_mask (None): passed None" in G.sweep_table(record)
    assert "NOT as expected" in G.sweep_table(record)
    bare = G.sweep_table({**record, "stages": [], "variants": []})
    assert "verify_doc_mask" not in bare and bare.splitlines()[-1].startswith("|---|")


def test_sweep_table_per_gpu_throughput():
    from tools import gpu_proof_megatron as G

    row = {
        "variant": "study",
        "ok": True,
        "micro_batch_size": 1,
        "global_batch_size": 64,
        "gpus": 8,
        "seq_length": 512,
        "overrides": {},
        "document_masking": "thd",
        "steady_tokens_per_s": 80000.0,
        "steady_mfu": 0.4,
        "seconds": 1.0,
    }
    table = G.sweep_table(
        {"family": "llama31_8b", "architecture": "llama", "steps": 30, "gpus": 8, "variants": [row]}
    )
    assert "30 steps per variant, 8 GPU(s))" in table
    assert "| thd | 80000 | 10000 | 40.0% |" in table


def test_study_batch_under_each_variant():
    from filmorph.train.config import TrainConfig
    from tools import gpu_proof_megatron as G

    variants = [("a", {}, {}), ("b", {"micro_batch_size": 2}, {"x": 1})]
    assert G._with_study_batch(variants, False) == variants
    got = G._with_study_batch(variants, True)
    assert got[0] == ("a", G.STUDY_BATCH, {})
    assert got[1] == ("b", {**G.STUDY_BATCH, "micro_batch_size": 2}, {"x": 1})
    # the study's settings from config/study.yaml, so the 8-GPU sweep times what the study runs
    study = TrainConfig.from_dict({**G.PROOF_TRAIN, **G.STUDY_BATCH})
    assert (study.global_batch_size, study.micro_batch_size, study.seq_length) == (64, 1, 512)
    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "study.yaml").read_text())
    assert {k: cfg["train"][k] for k in G.STUDY_BATCH} == G.STUDY_BATCH


def test_matched_settings_are_the_same_for_both_engines(monkeypatch):
    """The engine comparison trains the same (seq, global, micro) settings on Megatron-Bridge
    (sweep --matched) and on Automodel (prove --phases matched), and the CLI picks them."""
    from tools import gpu_proof_automodel as A
    from tools import gpu_proof_megatron as G

    mega = G.matched_variants()
    auto = A.matched_variants()
    triples = [(t["seq_length"], t["global_batch_size"], t["micro_batch_size"]) for _, t, _ in mega]
    assert triples == [(seq, G.MATCHED_GLOBAL_BATCH, mb) for seq, mb in G.MATCHED]
    assert [(c.seq_length, c.global_batch_size, c.micro_batch_size) for _, c, _ in auto] == triples
    assert all(c.max_steps == G.SWEEP_STEPS and c.engine == "automodel" for _, c, _ in auto)
    assert all(c.reset_attention_mask for _, c, _ in auto)  # document masking on, as in the sweep
    for _, train_over, _ in mega:  # valid training configs on the Megatron side too
        cfg = TrainConfig.from_dict({**G.PROOF_TRAIN, **G.FAMILIES["llama"]["train"], **train_over})
        assert cfg.global_batch_size % cfg.micro_batch_size == 0
    # the Automodel proof's table row names carry the same setting names as the sweep's rows
    assert [n.removeprefix("matched: ") for n, _, _ in auto] == [n for n, _, _ in mega]

    seen = {}

    def fake_sweep(family, data, out, **kw):
        seen.update(family=family, **kw)
        return {"variants": [{"ok": True}]}

    monkeypatch.setattr(G, "sweep", fake_sweep)
    argv = ["sweep", "--family", "llama", "--data", "d", "--out", "o"]
    assert G.main([*argv, "--matched"]) == 0
    assert seen["variants"] == mega
    assert G.main(argv) == 0
    assert seen["variants"] == list(G.DEFAULT_SWEEPS["llama"])
    assert G.main([*argv, "--matched", "--variant", "x={}"]) == 0  # an explicit --variant wins
    assert seen["variants"] == [("x", {}, {})]


def test_proof_unpack_takes_both_payload_layouts(tmp_path):
    """``prove --payload`` reads its own payload (gzipped .bin) and the Megatron proof's carry
    (plain .bin), so both engines can be timed on the same shards."""
    import gzip

    from tools import gpu_proof_automodel as P

    for layout in ("gz", "plain"):
        payload = tmp_path / layout
        for fam in P.FAMILIES:
            tok = payload / f"tok_{fam}"
            tok.mkdir(parents=True)
            with gzip.open(tok / "tokenizer.json.gz", "wb") as g:
                g.write(b'{"fam": "%s"}' % fam.encode())
            (tok / "tokenizer_meta.json").write_text("{}")
            sh = payload / "shards" / fam
            sh.mkdir(parents=True)
            for k in (2, 1):
                body = bytes([k]) * 8
                if layout == "gz":
                    with gzip.open(sh / f"chunk_{k:04d}.bin.gz", "wb") as g:
                        g.write(body)
                else:
                    (sh / f"chunk_{k:04d}.bin").write_bytes(body)
                (sh / f"chunk_{k:04d}.idx").write_bytes(b"idx")
        work = tmp_path / f"work_{layout}"
        got = P.unpack(payload, work)
        for fam in P.FAMILIES:
            prefixes = got[fam]["prefixes"]
            assert prefixes == [str(work / "shards" / fam / f"chunk_{k:04d}") for k in (1, 2)], layout
            for k, prefix in zip((1, 2), prefixes, strict=True):
                assert Path(prefix + ".bin").read_bytes() == bytes([k]) * 8
                assert Path(prefix + ".idx").is_file()
            assert json.loads((got[fam]["tok"] / "tokenizer.json").read_text()) == {"fam": fam}


def test_proof_rejects_an_unknown_phase(capsys):
    from tools import gpu_proof_automodel as P

    with pytest.raises(SystemExit) as e:
        P.main(["prove", "--payload", "x", "--phases", "matched,bogus"])
    assert e.value.code == 2
    assert "bogus" in capsys.readouterr().err


# ------------------------------------------------------------------ tools/bench.py tokenize


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory, family_dirs):
    """A bench cache holding the prepared Llama 3 tokenizer and a small bench corpus."""
    cache = tmp_path_factory.mktemp("bench") / "cache"
    (cache / "tokenizers").mkdir(parents=True)
    (cache / "tokenizers" / "llama").symlink_to(family_dirs["llama"])
    text = ("Nagsasalita siya nang mahusay at pinakamaganda ang kanyang boses. Kumain kami ng "
            "masarap na pagkain sa tindahan bago umalis. ")
    # the bench corpus of "--mb 0.01", written here (synthesizing it loads wordfreq: slow)
    (cache / "synthetic_0.01mb.jsonl").write_text(
        "".join(json.dumps({"text": text * (1 + i % 4)}) + "\n" for i in range(12)))
    return cache


def test_bench_tokenize_times_every_named_arm(tmp_path, bench_cache, capsys):
    """The last line keeps the old keys and adds, per family, the native encoder's MB/s and
    one `<arm>_mb_s` per named arm of a config's `arms:`; the table prints each arm against
    vanilla and vanilla against the native encoder."""
    from tools import bench

    cfg = tmp_path / "arms.yaml"
    cfg.write_text("arms:\n  vanilla: {}\n  stochastok: {expand_prop: 0.1}\n  patok: {}\n"
                   "  patok_pub: {type: patok, variant: published}\n")
    cache = bench_cache
    assert bench.main(["tokenize", "--mb", "0.01", "--families", "llama", "--cache", str(cache),
                       "--config", str(cfg), "--reps", "1", "--cold"]) == 0
    out, err = capsys.readouterr()
    row = json.loads(out.strip().splitlines()[-1])["llama"]
    arms = ("vanilla", "stochastok", "patok", "patok_pub")
    assert {"native_mb_s", "vanilla_vs_native", "expansion_build_s", "stochastok_vs_vanilla",
            "patok_vs_vanilla", "patok_pub_vs_vanilla"} <= set(row)
    assert all(row[f"{a}_mb_s"] > 0 for a in arms) and row["native_mb_s"] > 0
    assert row["patok_pub_vs_vanilla"] == pytest.approx(
        row["patok_pub_mb_s"] / row["vanilla_mb_s"], abs=2e-3)
    # more tokens than vanilla for the splitting arms; vanilla's count is the encoder's
    assert row["patok_pub_tokens"] > row["vanilla_tokens"] and row["stochastok_tokens"] > row[
        "vanilla_tokens"]
    docs = bench.bench_corpus(0.01, cache)
    fam = bench.bench_family("llama", cache)
    assert row["vanilla_tokens"] == sum(map(len, fam.encode_batch([t for _, t in docs])))
    assert "x native" in err and "(tiktoken)" in err and err.count("x vanilla") == 3


def test_bench_digest_tells_arms_apart_and_repeats(bench_cache):
    from tools import bench

    cache = bench_cache
    arms = {"vanilla": {}, "stochastok": {"expand_prop": 0.5}, "other": {"type": "stochastok",
                                                                       "expand_prop": 0.4}}
    a = bench.bench_digest(0.01, ["llama"], cache, arms=arms)["llama"]
    assert a == bench.bench_digest(0.01, ["llama"], cache, arms=arms)["llama"]
    assert len(set(a.values())) == 3


def test_gpu_dag_pack_and_assemble_round_trip(tmp_path, monkeypatch):
    """The carried files cut into call-sized parts come back byte for byte from the parts a
    stage needs, with their sha256 checked; a part not stashed (the machine went back) and a
    corrupted part are refused by name."""
    from tools import gpu_dag as G

    files = []
    for i, size in enumerate((2500, 10, 4096, 1)):
        p = tmp_path / "in" / f"f{i}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes((i * 7 + k) % 251 for k in range(size)))
        files.append(p)
    manifest = G.pack(files, tmp_path / "calls", part_bytes=1000)
    assert manifest["parts"] == 7 and manifest["total"] == 6607
    calls = sorted(d.name for d in (tmp_path / "calls").iterdir() if d.is_dir())
    assert calls == [f"c{k}" for k in range(1, 8)]
    assert all((tmp_path / "calls" / f"c{k}" / f"part{k}").stat().st_size == 1000 for k in range(1, 7))
    stash = tmp_path / "stash"
    for k in (1, 2, 3):  # f0 (bytes 0-2499) and f1 (2500-2509) lie in parts 1-3
        G.stash(tmp_path / "calls" / f"c{k}", stash)
    built = G.assemble(["f0.bin", "f1.bin"], stash)
    assert built["f0.bin"].read_bytes() == files[0].read_bytes()
    assert built["f1.bin"].read_bytes() == files[1].read_bytes()
    with pytest.raises(SystemExit, match="part4 is missing for f2.bin"):
        G.assemble(["f2.bin"], stash)
    for k in (4, 5, 6, 7):
        G.stash(tmp_path / "calls" / f"c{k}", stash)
    (stash / "part6").write_bytes(b"\0" * 1000)  # f2 is bytes 2510-6605: parts 3-7
    with pytest.raises(SystemExit, match="f2.bin: sha256 differs"):
        G.assemble(["f2.bin"], stash)
    G.stash(tmp_path / "calls" / "c6", stash)
    (stash / "files" / "f2.bin").unlink()
    built = G.assemble(["f2.bin", "f3.bin"], stash)
    assert [built[f"f{i}.bin"].read_bytes() for i in (2, 3)] == [files[i].read_bytes() for i in (2, 3)]


def test_gpu_dag_exports_give_each_engine_its_transformers():
    from filmorph.train.launch import ENGINE_PATH_ENV, engine_pythonpath
    from tools import gpu_dag as G

    env = G._exports()
    base = env["PYTHONPATH"].split(":")
    assert base[:2] == [str(G.SITE_T), str(G.SITE)] and base[2].endswith("src")
    for engine, site in (("automodel", G.SITE_AM), ("megatron", G.SITE_MG)):
        assert env[ENGINE_PATH_ENV.format(engine=engine.upper())] == str(site)
        assert engine_pythonpath(engine, env).split(":")[0] == str(site)
    assert engine_pythonpath("hf", env) == env["PYTHONPATH"]
    assert env["HF_HUB_OFFLINE"] == "1"


def test_gemma2_engines_table_reads_both_engines_rows():
    from tools.gpu_gemma2_engines import SETTINGS, table

    record = {
        "steps": 20,
        "gpu": "NVIDIA H200",
        "automodel": [
            {"variant": SETTINGS[0][0], **SETTINGS[0][1], "tokens_per_s": 12345.6, "mfu": 0.2012,
             "peak_memory_gib": 40.5, "first_logged_loss": 12.5, "final_loss": 9.25},
            {"variant": SETTINGS[1][0], "skipped": "time budget"},
        ],
        "megatron": [
            {"variant": SETTINGS[0][0], **SETTINGS[0][1], "steady_tokens_per_s": 9000.0, "steady_mfu": 0.147,
             "peak_memory_gib": 60.0, "first_loss": 12.6, "last_loss": 9.5},
        ],
        "softcap": {"eager": {"max_abs_diff_vs_eager": 0.0, "packed_vs_separate": 1e-6},
                    "sdpa": {"max_abs_diff_vs_eager": 0.3},
                    "flex_attention": {"max_abs_diff_vs_eager": 2e-6, "packed_vs_separate": 3e-6}},
    }
    text = table(record)
    rows = [line for line in text.splitlines() if line.startswith(("| automodel", "| megatron"))]
    assert len(rows) == 3
    assert "12,346" in rows[0] and "20.1 %" in rows[0] and "40.5" in rows[0] and "12.50 → 9.25" in rows[0]
    assert "time budget" in rows[1]
    assert "9,000" in rows[2] and "14.7 %" in rows[2] and "(512, 64/8)" in rows[2]
    assert "sdpa: max |logits − eager| = 0.3" in text


def test_gpu_dag_starts_a_failed_run_again_and_waits_on_a_live_one(tmp_path, monkeypatch):
    """`dag` on a warm machine: a run that ended with an error is started again (its log kept as
    snakemake_run.1.log), one that finished cleanly or still runs is only waited on."""
    from tools import gpu_dag as G

    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("tree\n")
    dag_dir = tmp_path / "dag"
    monkeypatch.setattr(G, "REPO", repo)
    monkeypatch.setattr(G, "DAG_DIR", dag_dir)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    dag_dir.mkdir()
    (dag_dir / "snakemake.pid").write_text(dead)
    failed = "5 of 50 steps (10%) done\nExiting because a job execution failed\n"
    (dag_dir / "snakemake_run.log").write_text(failed)
    # the "DAG" (run as `python -m fake_dag` from the copied src) prints a finished run's line
    (repo / "src" / "fake_dag.py").write_text("print('50 of 50 steps (100%) done')\n")
    res = G.dag(tmp_path / "out1", wait_s=60, command="fake_dag")
    assert (dag_dir / "snakemake_run.1.log").read_text().startswith("5 of 50")
    assert res["done"] and res["rc"] == 0 and not res["error"]
    assert (tmp_path / "out1" / "snakemake_run.log").read_text() == "50 of 50 steps (100%) done\n"
    assert (dag_dir / "README.md").is_file() and int((dag_dir / "snakemake.pid").read_text()) != int(dead)
    # finished cleanly: not started again
    res = G.dag(tmp_path / "out2", wait_s=60, command="fake_dag")
    assert res["done"] and not (dag_dir / "snakemake_run.2.log").exists()
    assert (dag_dir / "snakemake_run.log").read_text() == "50 of 50 steps (100%) done\n"
