"""The workflow itself: study dry-run job counts, a local end-to-end run, arm isolation,
chunk/worker-count determinism, and the same data stages under a real Slurm."""

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, snakemake, snakemake_env, trimmed_config

ARMS = ("vanilla", "stochastok", "patok")
FAMILIES = ("gemma", "llama")


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table."""
    counts, on = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            on = True
            continue
        if on:
            m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if m:
                counts[m.group(1)] = int(m.group(2))
            elif line.strip() and not line.startswith("-"):
                break
    return counts


def test_study_dry_run_job_counts(tmp_path):
    res = snakemake(tmp_path, "-n", "all", config="config/study.yaml")
    counts = job_counts(res.stdout + res.stderr)
    # families x arms (vanilla, stochastok, patok, patok_morph) x chunks
    assert counts["tokenize_chunk"] == 2 * 4 * 20
    assert counts["prepare_tokenizer"] == 2 and counts["split_corpus"] == 1
    assert counts["fetch_corpus"] == 1 and counts["summarize_arm"] == 8
    assert counts["summarize_tokenization"] == 1


def test_study_dry_run_plans_each_engine_and_sizes_gpu_jobs(tmp_path):
    """megatron: 2 imports + 2 import checks, 8 trainings (2 families x 4 arms), one export
    per saved iteration;
    automodel/hf: the same trainings with no import or export jobs. The slurm profile gives
    the GPU jobs the GPUs, memory and time it sets."""
    res = snakemake(tmp_path, "-n", "--profile", str(REPO / "profiles" / "slurm"),
                    config="config/study.yaml")
    out = res.stdout + res.stderr
    counts = job_counts(out)
    assert counts["import_checkpoint"] == 2 and counts["verify_import"] == 2
    assert counts["train_cpt_megatron"] == 8 and "train_cpt" not in counts
    assert counts["export_checkpoint"] == 8 * 5  # every 1000 of 5000
    # base + every checkpoint, one job on the 10 generated and one on the 48 published files
    assert counts["evaluate"] == counts["evaluate_published"] == 2 + 8 * 5
    # the 48 published files and the stress lexicon's 26 UPDF files are fetched on the login node
    assert counts["import_benchmark"] == 48 and counts["fetch_benchmark"] == 48 + 26
    train_jobs = [b for b in out.split("\nrule ")[1:] if b.startswith("train_cpt_megatron:")]
    assert len(train_jobs) == 8
    for job in train_jobs:
        assert "gpu=8" in job and "mem_mb=900000" in job and "runtime=2880" in job
    for engine in ("automodel", "hf"):
        res = snakemake(tmp_path, "-n", "--config", f'train={{"engine": "{engine}"}}',
                        config="config/study.yaml")
        counts = job_counts(res.stdout + res.stderr)
        assert counts["train_cpt"] == 8, engine
        assert not {"import_checkpoint", "verify_import", "export_checkpoint"} & set(counts), engine


def test_published_sets_dry_run_scores_only_the_published_files(tmp_path):
    """published_sets: one evaluate_published job per reference model loads it once for the 48
    published files (their scores and predictions its outputs); nothing generated, no corpus,
    no training."""
    ref = '{"reference_models": {"smollm2-135m": {"source": "gguf_package", "name": "smollm2-135m"}}}'
    res = snakemake(tmp_path, "-n", "published_sets", "--config", f"evaluate={ref}",
                    config="config/study.yaml")
    out = res.stdout + res.stderr
    counts, jobs = job_counts(out), _jobs_by_rule(out)
    assert counts["evaluate_published"] == 1 and counts["import_benchmark"] == 48
    assert not {"evaluate", "make_benchmarks", "split_corpus", "train_cpt"} & set(counts), counts
    (job,) = jobs["evaluate_published"]
    names = yaml.safe_load((REPO / "config/study.yaml").read_text())["benchmarks"]["external"]
    for name in names:
        assert f"resources/benchmarks/{name}.jsonl" in job
        for ext in ("json", "jsonl"):
            assert f"results/eval/smollm2-135m/base/base/{name}.{ext}" in job, name


def _study_with_engines(tmp_path: Path, train: str, **families: str) -> Path:
    """config/study.yaml with train.engine and families.<name>.engine set."""
    import yaml

    cfg = yaml.safe_load((REPO / "config/study.yaml").read_text())
    cfg["train"]["engine"] = train
    for family, engine in families.items():
        cfg["families"][family]["engine"] = engine
    path = tmp_path / "engines.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _jobs_by_rule(output: str) -> dict[str, list[str]]:
    """The dry run's job blocks, by rule name."""
    jobs: dict[str, list[str]] = {}
    for block in output.split("\nrule ")[1:]:
        jobs.setdefault(block.split(":", 1)[0], []).append(block)
    return jobs


def test_mixed_engine_dry_run_plans_megatron_jobs_only_for_megatron_families(tmp_path):
    """families.<name>.engine: gemma on automodel, llama on megatron (train.engine hf is the
    default neither takes). Import, import check and export are planned for llama only; both
    train (each on its engine's rule and engine), and both are evaluated, llama on its exported
    HF checkpoints; the training summary and the audit wait for both."""
    config = _study_with_engines(tmp_path, train="hf", gemma="automodel", llama="megatron")
    res = snakemake(tmp_path, "-n", config=str(config))
    out = res.stdout + res.stderr
    jobs = _jobs_by_rule(out)
    counts = job_counts(out)
    for rule in ("import_checkpoint", "verify_import", "export_checkpoint", "train_cpt_megatron"):
        assert jobs[rule] and all("results/checkpoints/llama/" in j for j in jobs[rule]), rule
        assert not any("results/checkpoints/gemma/" in j for j in jobs[rule]), rule
    assert counts["import_checkpoint"] == counts["verify_import"] == 1
    n_arms = len(yaml.safe_load((REPO / "config/study.yaml").read_text())["arms"])  # 4
    assert counts["train_cpt"] == counts["train_cpt_megatron"] == n_arms
    assert counts["export_checkpoint"] == n_arms * 5
    assert all("results/checkpoints/gemma/" in j for j in jobs["train_cpt"])
    evals = {re.search(r"results/eval/(\w+)/", j).group(1) for j in jobs["evaluate"]}
    assert {"gemma", "llama"} <= evals
    llama_eval = [j for j in jobs["evaluate"] if "results/eval/llama/vanilla/step_0005000/" in j]
    assert llama_eval and "results/checkpoints/llama/vanilla/hf/step_0005000" in llama_eval[0]
    summary = jobs["summarize_training"][0]
    assert all(f"results/checkpoints/{f}/{a}/train_summary.json" in summary
               for f in FAMILIES for a in ARMS)
    assert counts["audit"] == 1


def test_mixed_engine_config_families_engine_default_is_train_engine(tmp_path):
    """A family without an engine takes train.engine: llama set to megatron, gemma left to
    train.engine (megatron) plans the megatron rules for both."""
    config = _study_with_engines(tmp_path, train="megatron", llama="megatron")
    res = snakemake(tmp_path, "-n", config=str(config))
    counts = job_counts(res.stdout + res.stderr)
    n_arms = len(yaml.safe_load((REPO / "config/study.yaml").read_text())["arms"])  # 4
    assert counts["import_checkpoint"] == 2 and counts["train_cpt_megatron"] == 2 * n_arms
    assert "train_cpt" not in counts


def test_gpu_config_plans_the_whole_dag_with_one_engine_per_family(tmp_path):
    """config/gpu.yaml (the DAG on one GPU machine): from the synthetic corpus to the audit,
    gemma (real Gemma 3 270M) on automodel, llama (random Llama shape) on megatron; GPU jobs
    take the one GPU (--resources gpu=1), evaluation runs beside them."""
    res = snakemake(tmp_path, "-n", "all", "--profile", str(REPO / "profiles" / "local"),
                    "--resources", "gpu=1", config="config/gpu.yaml")
    out = res.stdout + res.stderr
    counts, jobs = job_counts(out), _jobs_by_rule(out)
    assert counts["synthesize_corpus"] == 1 and counts["tokenize_chunk"] == 2 * 3 * 2
    assert counts["import_checkpoint"] == counts["verify_import"] == 1
    assert counts["train_cpt"] == counts["train_cpt_megatron"] == 3
    assert counts["export_checkpoint"] == 3 * 2  # steps 150 and 300
    assert counts["evaluate"] == 2 + 6  # base + last checkpoint of 6 runs, 6 files per job
    assert counts["report_results"] == counts["summarize_training"] == counts["audit"] == 1
    for rule in ("import_checkpoint", "verify_import", "train_cpt_megatron", "export_checkpoint"):
        assert all("checkpoints/llama/" in j and "gpu=1" in j for j in jobs[rule]), rule
    assert all("checkpoints/gemma/" in j and "gpu=1" in j for j in jobs["train_cpt"])
    assert not any("gpu=" in j for j in jobs["evaluate"])


def test_gpu_config_lite_overlays_plan_automodel_only(tmp_path):
    """The device fallbacks (tools/device/*.yaml, `tools.gpu_dag dag --lite`): gemma as a
    random-init Gemma 3 270M shape with the carried tokenizer, llama on automodel too: no
    Megatron job is planned, everything else is config/gpu.yaml's DAG."""
    tok = tmp_path / "tok"
    overlay = (REPO / "tools/device/gpu_dag_random_gemma.yaml").read_text()
    assert "/root/gd/tok_gemma" in overlay  # where tools.gpu_dag install unpacks it
    (tmp_path / "gemma.yaml").write_text(overlay.replace("/root/gd/tok_gemma", str(tok)))
    overlays = [str(tmp_path / "gemma.yaml"), str(REPO / "tools/device/gpu_dag_automodel_only.yaml")]
    res = snakemake(tmp_path, *overlays, "-n", "all", "--resources", "gpu=2", config="config/gpu.yaml")
    counts = job_counts(res.stdout + res.stderr)
    assert counts["train_cpt"] == 6 and counts["evaluate"] == 2 + 6
    assert not {"import_checkpoint", "verify_import", "train_cpt_megatron", "export_checkpoint"} & set(counts)
    assert counts["audit"] == counts["report_results"] == 1


def test_arm_target_dry_run_touches_only_that_arm(tmp_path):
    res = snakemake(tmp_path, "-n", "arm_patok", "-p", config="config/study.yaml")
    out = res.stdout + res.stderr
    assert job_counts(out)["tokenize_chunk"] == 2 * 20
    assert "/patok/" in out and "/vanilla/" not in out and "/stochastok/" not in out
    assert "/patok_morph/" not in out


def test_local_run_outputs(local_run):
    from filmorph.corpus import read_chunk
    from filmorph.shards import read_shard

    counts = json.loads((local_run / "resources/corpus/counts.json").read_text())
    assert counts["records_in"] == counts["documents_out"] + counts["skipped_total"]
    chunks = sorted((local_run / "resources/corpus").glob("chunk_*.jsonl"))
    assert len(chunks) == 2
    for fam in FAMILIES:
        meta = json.loads((local_run / f"resources/tokenizers/{fam}/tokenizer_meta.json").read_text())
        for arm in ARMS:
            total_docs = 0
            for chunk in chunks:
                prefix = local_run / f"results/shards/{fam}/{arm}/{chunk.stem}"
                stats = json.loads(Path(f"{prefix}.stats.json").read_text())
                ds = read_shard(prefix)
                ids = Path(f"{prefix}.doc_ids.txt").read_text().split()
                assert ids == [d for d, _ in read_chunk(chunk)]
                assert len(ds) == len(ids) == stats["documents_out"] == stats["documents_in"]
                assert stats["tokens_written"] == sum(len(ds[i]) for i in range(len(ds)))
                assert all(int(ds[i][-1]) == meta["eos_id"] for i in range(len(ds)))
                assert stats["dtype"] == "int32"
                total_docs += len(ds)
            assert total_docs == counts["documents_out"]
    rows = (local_run / "results/tokenization/summary.tsv").read_text().splitlines()
    assert len(rows) == 1 + 6
    header = rows[0].split("\t")
    table = {(r.split("\t")[0], r.split("\t")[1]): dict(zip(header, r.split("\t"), strict=True))
             for r in rows[1:]}
    for fam in FAMILIES:
        assert float(table[(fam, "vanilla")]["token_ratio_vs_vanilla"]) == 1.0
        assert float(table[(fam, "stochastok")]["token_ratio_vs_vanilla"]) > 1.0
        # Patok's point: more affix boundaries land on token boundaries than with vanilla
        assert float(table[(fam, "patok")]["affix_boundary_alignment"]) > \
            float(table[(fam, "vanilla")]["affix_boundary_alignment"])
    assert (local_run / "results/tokenization/summary.png").stat().st_size > 1000
    assert list((local_run / "logs").rglob("*.log")) and list((local_run / "benchmarks").rglob("*.tsv"))


def test_local_run_trains_evaluates_and_reports(local_run):
    """The default DAG continues pretraining every family x arm, scores base and trained
    checkpoints on every benchmark file, and aggregates them with arm-vs-vanilla deltas."""
    steps = ("step_0000002", "step_0000004")
    benches = ("hierarchical_mcq", "hierarchical_gen", "addition_mcq", "addition_gen")
    for fam in FAMILIES:
        for arm in ARMS:
            run = local_run / f"results/checkpoints/{fam}/{arm}"
            summary = json.loads((run / "train_summary.json").read_text())
            assert summary["steps"] == 4 and summary["engine"] == "hf"
            metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            assert [m["step"] for m in metrics if m.get("loss") is not None] == [1, 2, 3, 4]
            for step in steps:
                assert (run / "hf" / step / "model.safetensors").exists()
            for bench in benches:
                ev = local_run / f"results/eval/{fam}/{arm}/step_0000004/{bench}.json"
                scores = json.loads(ev.read_text())
                assert scores["labels"] == {"model": fam, "arm": arm, "checkpoint": "step_0000004",
                                            "benchmark": bench}
        for bench in benches:
            assert (local_run / f"results/eval/{fam}/base/base/{bench}.jsonl").exists()
    tables = local_run / "results/tables"
    header, *rows = [r.split("\t") for r in (tables / "results.tsv").read_text().splitlines()]
    subjects = {(r[0], r[1], r[2]) for r in rows}
    assert subjects == {(f, "base", "base") for f in FAMILIES} | {
        (f, a, "step_0000004") for f in FAMILIES for a in ARMS}
    header, *deltas = [r.split("\t") for r in (tables / "deltas.tsv").read_text().splitlines()]
    assert {(r[0], r[1], r[2]) for r in deltas} == {
        (f, a, "vanilla") for f in FAMILIES for a in ("stochastok", "patok")}
    for name in ("benchmarks.png", "hierarchical_levels.png", "heatmap.png"):
        assert (local_run / "results/plots" / name).stat().st_size > 5000
    training = (local_run / "results/training/summary.tsv").read_text().splitlines()
    assert len(training) == 1 + 6


def _dry_run_jobs(output: str) -> list[tuple[str, dict[str, str], str]]:
    """(rule, wildcards, reason) of every job a `snakemake -n` printed."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output):
        m = re.match(r"(?:local)?rule (\w+):\n", block)
        if not m:
            continue
        wc = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        reason = re.search(r"^\s+reason: (.*)$", block, re.M)
        wildcards = dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {}
        jobs.append((m.group(1), wildcards, reason.group(1) if reason else ""))
    return jobs


def test_changing_one_arms_params_reruns_only_that_arm(local_run, tmp_path):
    """Snakemake's params trigger: with Patok's contract_prop changed in the config, a dry run
    plans exactly Patok's tokenization (params changed) and what depends on it (its summaries,
    training and evaluation, and the cross-arm tables); no job of another arm."""
    import yaml

    config = str(local_run / "ci_config.yaml")
    # the run up to date (a no-op unless a test before reran one arm without the tables)
    snakemake(local_run, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", "all",
              config=config)
    unchanged = snakemake(local_run, "-n", "all", config=config)
    assert _dry_run_jobs(unchanged.stdout + unchanged.stderr) == []  # nothing to do
    cfg = yaml.safe_load((local_run / "ci_config.yaml").read_text())
    cfg["arms"]["patok"]["contract_prop"] = 0.4
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = snakemake(local_run, "-n", "all", config=str(changed))
    jobs = _dry_run_jobs(res.stdout + res.stderr)
    assert jobs
    arms = {wc.get("arm") for _rule, wc, _reason in jobs if "arm" in wc}
    assert arms == {"patok"}, arms
    planned = {}
    for rule, wc, _reason in jobs:
        key = "per_arm" if "arm" in wc else "cross_arm"
        planned.setdefault(key, {}).setdefault(rule, 0)
        planned[key][rule] += 1
    evals = len(FAMILIES)  # the last checkpoint, one job for the trimmed config's 4 files
    assert planned["per_arm"] == {"tokenize_chunk": len(FAMILIES) * 2, "train_cpt": len(FAMILIES),
                                  "summarize_arm": len(FAMILIES), "evaluate": evals}, planned
    # once each: the tables across arms (and the manifest + audit of the whole run)
    cross = planned["cross_arm"]
    assert set(cross.values()) == {1}, cross
    assert {"summarize_tokenization", "summarize_training", "report_results", "all"} <= set(cross)
    assert set(cross) <= {"summarize_tokenization", "summarize_training", "report_results",
                          "manifest", "audit", "all"}, cross
    for rule, _wc, reason in jobs:
        if rule == "tokenize_chunk":
            assert "Params have changed" in reason, reason
    # the same plan with the params trigger alone
    res = snakemake(local_run, "-n", "all", "--rerun-triggers", "params", config=str(changed))
    assert {(r, tuple(sorted(w.items()))) for r, w, _ in _dry_run_jobs(res.stdout + res.stderr)} \
        == {(r, tuple(sorted(w.items()))) for r, w, _ in jobs}


def _files(run: Path) -> dict[str, tuple[int, str]]:
    """{path under resources/ or results/: (mtime in ns, sha256)} of every file of a run."""
    out = {}
    for part in ("resources", "results"):
        for p in sorted((run / part).rglob("*")):
            if p.is_file():
                h = hashlib.sha256()
                with open(p, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                out[p.relative_to(run).as_posix()] = (p.stat().st_mtime_ns, h.hexdigest())
    return out


def test_rerunning_one_arm_leaves_the_others_alone(local_run):
    """`arm_patok --forcerun tokenize_chunk` reruns Patok's shards, summaries, training and
    evaluation, and nothing else: every other file under resources/ and results/ keeps its
    mtime and its sha256; Patok's rebuilt shards are byte-identical (deterministic)."""
    before = _files(local_run)
    snakemake(local_run, "--profile", str(REPO / "profiles" / "local"), "--cores", "2",
              "arm_patok", "--forcerun", "tokenize_chunk", config=str(local_run / "ci_config.yaml"))
    after = _files(local_run)
    # "patok" names the arm in every path of its files (.../patok/..., arm=patok); no other
    # arm's name contains it
    assert all("patok" in p for p in set(after) - set(before)), sorted(set(after) - set(before))
    assert all("patok" in p for p in set(before) - set(after)), sorted(set(before) - set(after))
    rerun = {p for p in before if p in after and after[p][0] != before[p][0]}
    assert all("patok" in p for p in rerun), sorted(p for p in rerun if "patok" not in p)
    for p, (mtime, digest) in before.items():
        if "patok" not in p:
            assert after[p] == (mtime, digest), p  # same mtime and same bytes
        elif p.startswith("results/shards/") and not p.endswith(".stats.json"):
            assert after[p][1] == digest, p  # the rebuilt arm's shards: the same bytes
    for fam in FAMILIES:  # the arm's shards, training and evaluation did rerun
        for p in (f"results/shards/{fam}/patok/chunk_0001.bin",
                  f"results/tokenization/{fam}/patok.json",
                  f"results/checkpoints/{fam}/patok/train_summary.json",
                  f"results/eval/{fam}/patok/step_0000004/addition_gen.jsonl"):
            assert p in rerun, p


def _doc_tokens(shard_dir: Path) -> dict[str, list[int]]:
    from filmorph.shards import read_shard

    out = {}
    for ids_file in sorted(shard_dir.glob("*.doc_ids.txt")):
        prefix = str(ids_file)[: -len(".doc_ids.txt")]
        ds = read_shard(prefix)
        for i, d in enumerate(ids_file.read_text().split()):
            out[d] = ds[i].tolist()
    return out


def test_output_independent_of_chunks_and_workers(local_run, tmp_path):
    """Re-chunk the corpus (2 → 3 chunks) and change the worker count (2 → 1): every
    document's token ids are identical, for both families and every arm."""
    from filmorph.corpus import embedded_corpus_path, split_corpus
    from filmorph.tokenize import tokenize_chunk

    split_corpus(embedded_corpus_path(), tmp_path / "c3", 3, id_prefix="emb")
    params = {"vanilla": {}, "stochastok": {"expand_prop": 0.1},
              "patok": {"contract_prop": 0.3, "expand_prop": 0.3}}
    for fam in FAMILIES:
        for arm in ARMS:
            ref = _doc_tokens(local_run / f"results/shards/{fam}/{arm}")
            out = tmp_path / fam / arm
            for k, chunk in enumerate(sorted((tmp_path / "c3").glob("chunk_*.jsonl"))):
                tokenize_chunk(chunk, local_run / f"resources/tokenizers/{fam}", arm,
                               params[arm], 1234, out / chunk.stem, workers=1 + k % 2,
                               batch_size=7)
            assert _doc_tokens(out) == ref, (fam, arm)


def test_config_schema_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (REPO / "config/config.yaml").read_text().replace("seed: 1234", "seed: 1234\nsede: 1")
    bad.write_text(text)
    res = subprocess.run([*SNAKEMAKE, "-d", str(tmp_path), "--configfile", str(bad), "-n"],
                         capture_output=True, text=True, env=snakemake_env())
    assert res.returncode != 0 and "sede" in (res.stdout + res.stderr)


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return res.returncode == 0 and "idle" in res.stdout or "mix" in res.stdout


@pytest.mark.slurm
def test_data_stages_under_real_slurm(tmp_path):
    if not _slurm_up():
        if os.environ.get("FILMORPH_REQUIRE_SLURM") == "1":
            pytest.fail("FILMORPH_REQUIRE_SLURM=1 but no idle Slurm node (run .ci/slurm-up.sh)")
        pytest.skip("no Slurm cluster here (CI starts one with .ci/slurm-up.sh)")
    # the data stages of every arm, and one arm's training and evaluation, all through sbatch
    config = trimmed_config(tmp_path / "ci_config.yaml")
    res = snakemake(tmp_path, "--profile", str(REPO / "profiles" / "ci-slurm"),
                    "results/tokenization/summary.tsv",
                    "results/eval/llama/vanilla/step_0000004/addition_gen.json",
                    "--verbose", config=str(config))
    out = res.stdout + res.stderr
    assert "sbatch call:" in out  # jobs really went through sbatch
    for fam in FAMILIES:
        for arm in ARMS:
            assert (tmp_path / f"results/tokenization/{fam}/{arm}.json").exists()
    assert (tmp_path / "results/tokenization/summary.tsv").exists()
    slurm_logs = list((tmp_path / "logs/slurm").rglob("*.log"))
    assert any("rule_tokenize_chunk" in str(p) for p in slurm_logs)
    assert any("rule_train_cpt" in str(p) for p in slurm_logs)
    assert any("rule_evaluate" in str(p) for p in slurm_logs)
    scores = json.loads((tmp_path / "results/eval/llama/vanilla/step_0000004/addition_gen.json").read_text())
    assert scores["n_items"] == 4
    stats = json.loads((tmp_path / "results/shards/llama/patok/chunk_0001.stats.json").read_text())
    assert stats["documents_out"] > 0 and np.isfinite(stats["mb_per_s"])


def test_named_arm_plans_its_own_jobs_and_old_configs_plan_the_same(tmp_path):
    """A named arm (`patok_morph: {type: patok, variant: morph}`) gets the same jobs as the
    patok arm -- shards, summary, training, evaluation -- under its own name, and adding it
    (with `type` spelled out on the other arms) leaves every other job as an old config
    (no `type`) plans it."""
    from collections import Counter

    import yaml

    def plan(cfg_path, target="all"):
        res = snakemake(tmp_path, "-n", target, config=str(cfg_path))
        return Counter((rule, tuple(sorted(wc.items())))
                       for rule, wc, _ in _dry_run_jobs(res.stdout + res.stderr))

    old = plan(REPO / "config/config.yaml")
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for name, params in cfg["arms"].items():
        cfg["arms"][name] = dict(params or {}, type=name)
    cfg["arms"]["patok_morph"] = {"type": "patok", "variant": "morph"}
    named = tmp_path / "named.yaml"
    named.write_text(yaml.safe_dump(cfg, sort_keys=False))
    new = plan(named)
    mine = Counter({job: n for job, n in new.items() if ("arm", "patok_morph") in job[1]})
    assert Counter({job: n for job, n in new.items() if job not in mine}) == old
    as_patok = Counter({(rule, tuple((k, "patok" if v == "patok_morph" else v) for k, v in wc)): n
                        for (rule, wc), n in mine.items()})
    assert as_patok == Counter({job: n for job, n in old.items() if ("arm", "patok") in job[1]})
    assert {"tokenize_chunk", "summarize_arm", "train_cpt", "evaluate"} <= {r for r, _ in mine}
    # its own target plans all of its jobs and no other arm's
    target = plan(named, "arm_patok_morph")
    assert {wc for _, wc in target for k, v in wc if k == "arm"} == {wc for _, wc in mine}
