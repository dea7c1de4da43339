"""The workflow itself: study dry-run job counts, a local end-to-end run, arm isolation,
chunk/worker-count determinism, and the same data stages under a real Slurm."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
ARMS = ("vanilla", "stochastok", "patok")
FAMILIES = ("gemma", "llama")


def _env():
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def snakemake(workdir, *args, config="config/config.yaml", check=True, timeout=1500):
    cmd = [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(REPO / config), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n"
                             f"{res.stderr[-6000:]}")
    return res


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
    assert counts["tokenize_chunk"] == 2 * 3 * 20  # families x arms x chunks
    assert counts["prepare_tokenizer"] == 2 and counts["split_corpus"] == 1
    assert counts["fetch_corpus"] == 1 and counts["summarize_arm"] == 6
    assert counts["summarize_tokenization"] == 1


def test_arm_target_dry_run_touches_only_that_arm(tmp_path):
    res = snakemake(tmp_path, "-n", "arm_patok", "-p", config="config/study.yaml")
    out = res.stdout + res.stderr
    assert job_counts(out)["tokenize_chunk"] == 2 * 20
    assert "/patok/" in out and "/vanilla/" not in out and "/stochastok/" not in out


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    snakemake(work, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", "all")
    return work


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


def test_rerunning_one_arm_leaves_the_others_alone(local_run):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in
              (local_run / "results/shards").rglob("*.bin")}
    snakemake(local_run, "--profile", str(REPO / "profiles" / "local"), "--cores", "2",
              "arm_patok", "--forcerun", "tokenize_chunk")
    for p, (mtime, data) in before.items():
        assert p.read_bytes() == data  # deterministic: even the rebuilt arm is identical
        if "/patok/" in str(p):
            assert p.stat().st_mtime_ns != mtime
        else:
            assert p.stat().st_mtime_ns == mtime


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
                         capture_output=True, text=True, env=_env())
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
    res = snakemake(tmp_path, "--profile", str(REPO / "profiles" / "ci-slurm"), "all",
                    "--verbose")
    out = res.stdout + res.stderr
    assert "sbatch call:" in out  # jobs really went through sbatch
    for fam in FAMILIES:
        for arm in ARMS:
            assert (tmp_path / f"results/tokenization/{fam}/{arm}.json").exists()
    assert (tmp_path / "results/tokenization/summary.tsv").exists()
    slurm_logs = list((tmp_path / "logs/slurm").rglob("*.log"))
    assert any("rule_tokenize_chunk" in str(p) for p in slurm_logs)
    stats = json.loads((tmp_path / "results/shards/llama/patok/chunk_0001.stats.json").read_text())
    assert stats["documents_out"] > 0 and np.isfinite(stats["mb_per_s"])
