"""Injected faults, through the workflow: a tokenization job killed mid-way, malformed corpus
lines under `on_bad_record: skip`, and a training job stopped at its time limit whose retry
resumes from the last checkpoint.

One small workdir (module-scoped) serves all three: a synthetic Filipino corpus with bad lines
in it, the Llama 3 family only (its tokenizer dir copied from the session's prepared one),
one worker per tokenization job (slow enough to be killed half-way).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SNAKEMAKE, snakemake, snakemake_env, trimmed_config

LOCAL = str(REPO / "profiles" / "local")

# Bad records injected into the corpus: (0-based position among the source's records, line).
BAD = [
    (0, b"{not json\n"),
    (5, b"\xff\xfe not utf-8\n"),
    (40, b'{"text": ""}\n'),
    (41, b'{"body": "walang text"}\n'),
    (300, b"[1, 2, 3]\n"),
    (301, b'{"text": 7}\n'),
]
REASONS = {0: "invalid_json", 5: "invalid_utf8", 40: "empty_text", 41: "missing_text",
           300: "not_an_object", 301: "non_string_text"}


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children first found through /proc's parent ids)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _start(workdir: Path, *args: str) -> subprocess.Popen:
    """Start Snakemake in the background, its output going to `workdir/snakemake.out`."""
    cmd = [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(workdir / "faults.yaml"),
           "--profile", LOCAL, "--cores", "2", *args]
    with open(workdir / "snakemake.out", "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=snakemake_env())


def _output(workdir: Path) -> str:
    return (workdir / "snakemake.out").read_text()


def _wait_for(pred, proc: subprocess.Popen, workdir: Path, what: str, timeout: float = 600):
    """Poll `pred()` until it returns something truthy; fail if Snakemake ends first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = pred()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended (rc {proc.returncode}) before {what}:\n"
                        f"{_output(workdir)[-4000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def faults(tmp_path_factory, family_dirs):
    """Workdir + config: ~0.6 MB synthetic corpus with the BAD lines, 2 chunks, skip policy."""
    import yaml

    from filmorph.corpus import synthesize

    work = tmp_path_factory.mktemp("faults")
    synthesize(work / "synthetic.jsonl", 600_000, seed=7)
    good = (work / "synthetic.jsonl").read_bytes().splitlines(keepends=True)
    lines, bad = [], dict(BAD)
    for pos in range(len(good) + len(BAD)):
        lines.append(bad[pos] if pos in bad else good.pop(0))
    (work / "corpus.jsonl").write_bytes(b"".join(lines))
    cfg = yaml.safe_load(trimmed_config(work / "faults.yaml").read_text())
    cfg["corpus"].update(source="local", path=str(work / "corpus.jsonl"), id_prefix="f",
                         on_bad_record="skip", num_chunks=2)
    cfg["families"] = {"llama": cfg["families"]["llama"]}
    cfg["tokenize"] = {"workers": 1, "batch_size": 16}
    cfg["train"].update(max_steps=6, checkpoint_interval=2)
    (work / "faults.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # the tokenizer the session already prepared (the prepare_tokenizer job writes the same)
    shutil.copytree(family_dirs["llama"], work / "resources/tokenizers/llama")
    return {"work": work, "config": cfg}


def test_killed_tokenization_leaves_no_output_and_rerun_is_identical(faults):
    """SIGKILL of the whole run (Snakemake and the job: nobody left to clean up) while the job
    writes its shard: no .bin/.idx/.doc_ids.txt/.stats.json at the final names; the rerun
    (after --unlock) gives the bytes of an uninterrupted `python -m filmorph.tokenize chunk`."""
    work, cfg = faults["work"], faults["config"]
    shard_dir = work / "results/shards/llama/patok"
    final = [shard_dir / f"chunk_0001.{ext}" for ext in ("bin", "idx", "doc_ids.txt", "stats.json")]
    target = "results/shards/llama/patok/chunk_0001.bin"
    proc = _start(work, target)

    def writing():
        tmp = list(shard_dir.glob(".chunk_0001.tmp-*.bin")) if shard_dir.is_dir() else []
        return [p for p in tmp if p.stat().st_size > 0]

    _wait_for(writing, proc, work, "the tokenization job wrote part of its shard")
    victims = _descendants(proc.pid)
    assert any("tokenize_chunk" in _cmdline(p) for p in victims), [_cmdline(p) for p in victims]
    for pid in [proc.pid, *victims]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)
    time.sleep(0.5)  # let the killed workers go
    assert not [p for p in final if p.exists()], "complete-looking output after a kill"
    # what is left is only hidden temporaries, named as such
    assert all(p.name.startswith(".chunk_0001.tmp-") for p in shard_dir.iterdir())

    snakemake(work, "--unlock", config=str(work / "faults.yaml"))
    snakemake(work, "--profile", LOCAL, "--cores", "2", target, config=str(work / "faults.yaml"))
    ref = "reference/chunk_0001"  # the same job, uninterrupted, by hand (other worker count)
    subprocess.run(
        [sys.executable, "-m", "filmorph.tokenize", "chunk", "--chunk",
         "resources/corpus/chunk_0001.jsonl", "--tokenizer-dir", "resources/tokenizers/llama",
         "--arm", "patok", "--arm-params", json.dumps(cfg["arms"]["patok"]),
         "--seed", str(cfg["seed"]), "--workers", "2", "--batch-size", "64", "--out-prefix", ref],
        check=True, capture_output=True, env=snakemake_env(), cwd=work)
    ref = work / ref
    for ext in ("bin", "idx", "doc_ids.txt"):
        assert (shard_dir / f"chunk_0001.{ext}").read_bytes() == Path(f"{ref}.{ext}").read_bytes(), ext
    volatile = {"seconds", "mb_per_s", "workers"}
    got, want = (json.loads(Path(p).read_text()) for p in (final[3], f"{ref}.stats.json"))
    assert {k: v for k, v in got.items() if k not in volatile} == \
        {k: v for k, v in want.items() if k not in volatile}


def test_skipped_corpus_lines_reconcile_through_tokenization(faults):
    """Under `on_bad_record: skip` every bad line is counted by reason, records_in =
    documents_out + skipped_total, and the tokenization stats of every chunk and arm add up
    to exactly the documents the corpus stage let through, with the ids of the good records."""
    from filmorph.corpus import read_chunk
    from filmorph.shards import read_shard

    work = faults["work"]
    arms = ("vanilla", "patok")
    targets = [f"results/shards/llama/{a}/chunk_{c:04d}.stats.json" for a in arms for c in (1, 2)]
    snakemake(work, "--profile", LOCAL, "--cores", "2", *targets, config=str(work / "faults.yaml"))

    counts = json.loads((work / "resources/corpus/counts.json").read_text())
    source_lines = (work / "corpus.jsonl").read_bytes().splitlines()
    assert counts["records_in"] == len(source_lines)
    assert counts["skipped"] == {r: 1 for r in REASONS.values()}
    assert counts["skipped_total"] == len(BAD)
    assert counts["records_in"] == counts["documents_out"] + counts["skipped_total"]
    good_ids = [f"f-{n:09d}" for n in range(len(source_lines)) if n not in REASONS]
    assert len(good_ids) == counts["documents_out"] == sum(counts["chunk_documents"])

    chunk_ids = []
    for c in (1, 2):
        ids = [d for d, _ in read_chunk(work / f"resources/corpus/chunk_{c:04d}.jsonl")]
        assert len(ids) == counts["chunk_documents"][c - 1]
        chunk_ids += ids
    assert chunk_ids == good_ids  # skipped records keep their numbers; nothing else is lost
    for arm in arms:
        shard_ids, docs_in, docs_out = [], 0, 0
        for c in (1, 2):
            prefix = work / f"results/shards/llama/{arm}/chunk_{c:04d}"
            stats = json.loads(Path(f"{prefix}.stats.json").read_text())
            assert stats["documents_in"] == stats["documents_out"] + stats["documents_skipped"]
            assert stats["documents_skipped"] == 0
            assert len(read_shard(prefix)) == stats["documents_out"]
            shard_ids += Path(f"{prefix}.doc_ids.txt").read_text().split()
            docs_in += stats["documents_in"]
            docs_out += stats["documents_out"]
        assert docs_in == docs_out == counts["documents_out"], arm
        assert shard_ids == good_ids, arm


def test_training_stopped_at_its_time_limit_resumes_on_retry(faults):
    """Slurm ends a job at its time limit with SIGTERM (then SIGKILL). The training process of
    a train_cpt job gets SIGTERM once its step-2 state is complete: it saves its state and
    exits 3 (incomplete); Snakemake's retry (`retries`, as in the Slurm profile) reruns the
    job, which continues from the newest complete state instead of starting over: every step
    is trained once, every checkpoint exists, the summary says where it resumed."""
    work, cfg = faults["work"], faults["config"]
    run = work / "results/checkpoints/llama/vanilla"
    max_steps = cfg["train"]["max_steps"]
    proc = _start(work, "results/checkpoints/llama/vanilla/train_summary.json", "--retries", "1")
    _wait_for(lambda: (run / "state/step_0000002/state.json").exists(), proc, work,
              "the first training state was saved")
    trainers = [p for p in _descendants(proc.pid) if "-m filmorph.train " in _cmdline(p)]
    assert len(trainers) == 1, [_cmdline(p) for p in _descendants(proc.pid)]
    os.kill(trainers[0], signal.SIGTERM)
    for _ in range(300):  # Slurm's KillWait: SIGKILL if it has not ended within 30 s
        if not Path(f"/proc/{trainers[0]}").exists() or "zombie" in _status(trainers[0]):
            break
        time.sleep(0.1)
    else:
        os.kill(trainers[0], signal.SIGKILL)
    proc.wait(timeout=1200)
    out = _output(work)
    assert proc.returncode == 0, out[-6000:]
    # the first attempt stopped with a resumable state (exit 3: incomplete), Snakemake retried
    assert "returned non-zero exit status 3" in out and "Trying to restart job" in out, out[-6000:]

    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == max_steps
    resumed = summary["resumed_from_step"]
    assert resumed is not None and 2 <= resumed < max_steps, resumed
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m.get("loss") is not None] == list(range(1, max_steps + 1))
    for step in range(2, max_steps + 1, 2):
        assert (run / f"hf/step_{step:07d}/model.safetensors").exists(), step


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
