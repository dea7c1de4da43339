"""The audit (python -m filmorph.audit, rule audit): a clean run passes; a flipped byte in a
.bin, a truncated .idx, a changed token of a sampled document, a checkpoint trained on another
tokenizer and a changed benchmark file are each named; the shard structure check on its own."""

import json
import os
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, snakemake

from filmorph import audit as A

FAMILIES = ("gemma", "llama")
ARMS = ("vanilla", "stochastok", "patok")


@pytest.fixture(scope="module")
def audited(local_run):
    """The session's run with `snakemake audit` done (manifest + audit jobs): (run dir, report,
    seconds the audit job took)."""
    t0 = time.perf_counter()
    snakemake(local_run, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", "audit",
              config=str(local_run / "ci_config.yaml"))
    wall = time.perf_counter() - t0
    report = json.loads((local_run / "results/audit/audit.json").read_text())
    return local_run, report, wall


def test_clean_run_passes(audited):
    run, report, _wall = audited
    failing = [r for r in report["rows"] if r["status"] == "fail"]
    assert report["ok"] and not failing, failing
    assert set(report["summary"]) == set(A.CHECKS)  # every check ran (config too: the rule passes it)
    assert all(c["pass"] > 0 for c in report["summary"].values())
    rows = {(r["check"], r["subject"]) for r in report["rows"]}
    assert {("retokenize", f"{f}/{a}") for f in FAMILIES for a in ARMS} <= rows
    assert {("checkpoint", f"results/checkpoints/{f}/{a}") for f in FAMILIES for a in ARMS} <= rows
    assert ("hash", "results/shards/llama/patok/chunk_0002.bin") in rows
    assert ("manifest", "results/manifest.json") in rows and ("records", "coverage") in rows
    assert sum(r[0] == "evaluation" for r in rows) == (2 + 6) * 4
    sample = report["sample"]
    assert sample["size"] == 20 and len(set(sample["documents"])) == 20
    assert sample["seed"] == 1234  # audit.seed null: the root seed
    tsv = (run / "results/audit/audit.tsv").read_text().splitlines()
    assert tsv[0] == "check\tsubject\tstatus\tdetail" and len(tsv) == 1 + len(report["rows"])
    assert "audit PASSED" in (run / "logs/audit/audit.log").read_text()
    manifest = json.loads((run / "results/manifest.json").read_text())
    rules = [j["rule"] for j in manifest["jobs"]]
    assert manifest["records"] == len(rules) and rules == sorted(rules)
    assert {"tokenize_chunk", "train_cpt", "evaluate", "report_results"} <= set(rules)
    assert not {"manifest", "audit"} & set(rules)  # these two leave no record


def _snapshot(run: Path, dest: Path) -> Path:
    """A hard-linked copy of the run's resources/ and results/ (cheap); files to corrupt are
    rewritten as new files (_rewrite), so the session's run stays untouched."""
    for part in ("resources", "results"):
        shutil.copytree(run / part, dest / part, copy_function=os.link, symlinks=True)
    shutil.copy(run / "ci_config.yaml", dest / "ci_config.yaml")
    return dest


def _rewrite(path: Path, change) -> None:
    data = path.read_bytes()
    path.unlink()  # break the hard link
    path.write_bytes(change(data))


def _entry_of(prefix: Path, doc_id: str) -> int:
    return Path(f"{prefix}.doc_ids.txt").read_text().split().index(doc_id)


def test_corruptions_are_each_named(audited, tmp_path, capsys):
    from filmorph.shards import read_shard

    run, clean, _wall = audited
    copy = _snapshot(run, tmp_path / "run")
    shards = copy / "results/shards"

    # a flipped byte in the middle of a .bin
    flipped = shards / "gemma/vanilla/chunk_0001.bin"
    _rewrite(flipped, lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0x01]) + b[len(b) // 2 + 1:])
    # a truncated .idx
    _rewrite(shards / "llama/stochastok/chunk_0002.idx", lambda b: b[:-8])
    # one token of a sampled document changed (to another valid id) in the llama/patok shard
    doc = clean["sample"]["documents"][0]
    prefix = next(p.with_name(p.name[: -len(".doc_ids.txt")])
                  for p in (shards / "llama/patok").glob("*.doc_ids.txt")
                  if doc in p.read_text().split())
    entry = _entry_of(prefix, doc)
    ds = read_shard(prefix)
    offset = int(ds.index.sequence_pointers[entry])
    old = int(ds[entry][0])
    del ds

    def change_token(b: bytes) -> bytes:
        (value,) = struct.unpack_from("<i", b, offset)
        assert value == old
        return b[:offset] + struct.pack("<i", old + 1 if old < 1000 else old - 1) + b[offset + 4:]

    _rewrite(Path(f"{prefix}.bin"), change_token)
    # a checkpoint whose recorded tokenizer is not the family's
    tc = copy / "results/checkpoints/gemma/patok/train_config.json"
    rec = json.loads(tc.read_text())
    for tok in [rec["tokenizer"], *(s["tokenizer"] for s in rec["shards"])]:
        tok["tokenizer_json_sha256"] = "0" * 64
    tc.unlink()
    tc.write_text(json.dumps(rec))
    # a benchmark file changed after it was scored
    _rewrite(copy / "resources/benchmarks/addition_gen.jsonl", lambda b: b + b"\n")

    out_json = tmp_path / "audit.json"
    rc = A.main([str(copy), "--config", str(copy / "ci_config.yaml"), "--json", str(out_json),
                 "--tsv", str(tmp_path / "audit.tsv"), "--no-progress"])
    table = capsys.readouterr().out
    assert rc == 1 and "audit FAILED" in table
    report = json.loads(out_json.read_text())
    assert not report["ok"] and report["sample"]["documents"] == clean["sample"]["documents"]
    fails = {(r["check"], r["subject"]): r["detail"] for r in report["rows"] if r["status"] == "fail"}

    # the flipped byte: the .bin is named by its hash
    assert "changed: recorded sha256" in fails[("hash", "results/shards/gemma/vanilla/chunk_0001.bin")]
    # the truncated .idx: by its hash and by the structure check (sizes)
    assert ("hash", "results/shards/llama/stochastok/chunk_0002.idx") in fails
    detail = fails[("shard", "results/shards/llama/stochastok/chunk_0002")]
    assert "results/shards/llama/stochastok/chunk_0002.idx" in detail and "truncated" in detail
    # ... and the training run that read it sees its shard changed
    assert "chunk_0002.idx: changed since training" in fails[
        ("checkpoint", "results/checkpoints/llama/stochastok")]
    # the changed token: re-tokenization names the document and the entry
    detail = fails[("retokenize", "llama/patok")]
    assert doc in detail and f"{prefix.relative_to(copy).as_posix()}.bin entry {entry}" in detail
    assert "differs at token 0" in detail
    # the checkpoint trained on another tokenizer
    detail = fails[("checkpoint", "results/checkpoints/gemma/patok")]
    assert "tokenizer sha256 000000000000" in detail and "resources/tokenizers/gemma" in detail
    # the benchmark file: its hash, and every evaluation that scored it
    assert ("hash", "resources/benchmarks/addition_gen.jsonl") in fails
    for m, a, c in [(f, "base", "base") for f in FAMILIES] + [
            (f, a, "step_0000004") for f in FAMILIES for a in ARMS]:
        assert "benchmark resources/benchmarks/addition_gen.jsonl: sha256 now" in fails[
            ("evaluation", f"results/eval/{m}/{a}/{c}/addition_gen.json")]
    # each failing file is in the printed table
    for name in ("gemma/vanilla/chunk_0001.bin", "llama/stochastok/chunk_0002.idx", doc,
                 "checkpoints/gemma/patok", "addition_gen.jsonl"):
        assert name in table, name
    # nothing untouched fails
    touched = ("gemma/vanilla", "llama/stochastok", "llama/patok", "gemma/patok", "addition_gen")
    assert all(any(t in subject or (check == "inputs" and t in detail) for t in touched)
               for (check, subject), detail in fails.items()), sorted(fails)
    # the jobs that read a changed file are named stale (their record's input hash is old)
    assert "results/shards/llama/stochastok/chunk_0002.idx changed" in fails[
        ("inputs", "train_cpt/arm=stochastok,family=llama")]
    ok = {(r["check"], r["subject"]) for r in report["rows"] if r["status"] == "pass"}
    assert {("retokenize", "gemma/stochastok"), ("checkpoint", "results/checkpoints/llama/vanilla"),
            ("shard", "results/shards/gemma/vanilla/chunk_0001"),
            ("evaluation", "results/eval/llama/patok/step_0000004/addition_mcq.json")} <= ok
    tsv = (tmp_path / "audit.tsv").read_text()
    assert "fail" in tsv and "llama/stochastok/chunk_0002.idx" in tsv


def test_audit_names_unreadable_record_and_missing_run_parts(tmp_path, capsys):
    prov = tmp_path / "results/provenance/x"
    prov.mkdir(parents=True)
    (prov / "bad.json").write_text("{not json")
    rc = A.main([str(tmp_path), "--no-progress", "--json", str(tmp_path / "a.json")])
    assert rc == 1
    fails = {(r["check"], r["subject"]) for r in json.loads((tmp_path / "a.json").read_text())["rows"]
             if r["status"] == "fail"}
    assert ("records", "results/provenance/x/bad.json") in fails
    assert ("records", "results/provenance") in fails  # no readable record at all
    assert ("retokenize", "results/shards") in fails
    with pytest.raises(SystemExit):
        A.main([str(tmp_path / "nope")])


# ----------------------------------------------------------------------- shard structure
@pytest.fixture()
def shard(tmp_path):
    from filmorph.shards import ShardWriter

    prefix = tmp_path / "chunk_0001"
    docs = [[5, 6, 7, 2], [8, 2], [9, 9, 9, 9, 2]]
    with ShardWriter(prefix, 100) as w:
        for d in docs:
            w.add(d)
    Path(f"{prefix}.doc_ids.txt").write_text("a\nb\nc\n")
    stats = {"eod_id": 2, "tokenizer": {"vocab_size": 100}, "documents_out": 3,
             "tokens_written": 11, "dtype": "uint16"}
    return prefix, stats


def test_check_shard_sound(shard):
    prefix, stats = shard
    assert A.check_shard(prefix, stats=stats) == []


@pytest.mark.parametrize("case", ["truncated_idx", "padded_idx", "short_bin", "long_bin",
                                  "bad_magic", "wrong_eod", "out_of_vocab", "doc_ids",
                                  "stats_count", "missing_bin", "tiny_idx"])
def test_check_shard_names_the_broken_file(shard, case):
    prefix, stats = shard
    idx, bin_ = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    expect = {"truncated_idx": (idx, "truncated"), "padded_idx": (idx, "extra bytes"),
              "short_bin": (bin_, "the index expects"), "long_bin": (bin_, "the index expects"),
              "bad_magic": (idx, "bad magic"), "wrong_eod": (bin_, "not the EOD id"),
              "out_of_vocab": (bin_, "outside the vocabulary"),
              "doc_ids": (Path(f"{prefix}.doc_ids.txt"), "2 document ids for 3"),
              "stats_count": (idx, "stats.json says 4"), "missing_bin": (bin_, "missing"),
              "tiny_idx": (idx, "shorter than")}[case]
    if case == "truncated_idx":
        idx.write_bytes(idx.read_bytes()[:-3])
    elif case == "padded_idx":
        idx.write_bytes(idx.read_bytes() + b"\x00")
    elif case == "short_bin":
        bin_.write_bytes(bin_.read_bytes()[:-2])
    elif case == "long_bin":
        bin_.write_bytes(bin_.read_bytes() + b"\x00\x00")
    elif case == "bad_magic":
        idx.write_bytes(b"XXIDIDX\x00\x00" + idx.read_bytes()[9:])
    elif case == "wrong_eod":
        data = np.fromfile(bin_, dtype=np.uint16)
        data[5] = 3  # the end of the second document
        data.tofile(bin_)
    elif case == "out_of_vocab":
        data = np.fromfile(bin_, dtype=np.uint16)
        data[0] = 100
        data.tofile(bin_)
    elif case == "doc_ids":
        Path(f"{prefix}.doc_ids.txt").write_text("a\nb\n")
    elif case == "stats_count":
        stats = {**stats, "documents_out": 4}
    elif case == "missing_bin":
        bin_.unlink()
    elif case == "tiny_idx":
        idx.write_bytes(idx.read_bytes()[:20])
    problems = A.check_shard(prefix, stats=stats)
    path, words = expect
    assert any(p.startswith(f"{path}:") and words in p for p in problems), problems


def test_sample_is_seeded_and_spans_chunks(tmp_path):
    corpus = tmp_path / "resources/corpus"
    corpus.mkdir(parents=True)
    for c in range(3):
        with open(corpus / f"chunk_{c + 1:04d}.jsonl", "w") as fh:
            for i in range(10):
                fh.write(json.dumps({"id": f"d-{c}-{i}", "text": f"text {c} {i}"}) + "\n")
    pick = [A.Auditor(tmp_path, sample_size=6, seed=s).sample_documents() for s in (1, 1, 2)]
    assert pick[0] == pick[1] != pick[2] and len(pick[0]) == 6
    assert all(text == f"text {d.split('-')[1]} {d.split('-')[2]}" and line == int(d.split("-")[2])
               for _chunk, line, d, text in pick[0])
    assert len(A.Auditor(tmp_path, sample_size=100, seed=0).sample_documents()) == 30


def test_train_config_check_takes_each_familys_engine(tmp_path):
    """families.<name>.engine: a run is checked against its family's engine (default
    train.engine), so a mixed plan passes and a run on another engine is named."""
    from filmorph.config_checks import train_settings

    config = {"seed": 7, "train": {"engine": "hf", "max_steps": 4},
              "families": {"gemma": {"engine": "automodel"}, "llama": {}}}
    runs = {}
    for family, engine in (("gemma", "automodel"), ("llama", "hf"), ("llama2", "automodel")):
        run = tmp_path / "results/checkpoints" / family / "vanilla"
        run.mkdir(parents=True)
        rec = {**train_settings(config), "engine": engine}
        (run / "train_config.json").write_text(json.dumps({"config": rec}))
        runs[family] = run
    config["families"]["llama2"] = {"engine": "megatron"}
    auditor = A.Auditor(tmp_path, config=config, progress=False)
    for run in runs.values():
        auditor._check_train_config(run)
    status = {r.subject.split("/")[2]: (r.status, r.detail) for r in auditor.rows}
    assert status["gemma"][0] == status["llama"][0] == "pass"
    assert status["llama2"] == ("fail", "trained with other engine than the config")


def test_evaluation_labels_must_name_their_own_path(tmp_path):
    """The scores JSON's labels and its path agree through filmorph.paths.eval_path: a file
    moved (or labelled) elsewhere, and one without a label, are named."""
    from filmorph.provenance import sha256_file, sha256_tree

    (tmp_path / "resources/models/m").mkdir(parents=True)
    (tmp_path / "resources/models/m/config.json").write_text("{}")
    bench = tmp_path / "resources/benchmarks/b.jsonl"
    bench.parent.mkdir(parents=True)
    bench.write_text('{"id": "x"}\n')
    good = {"model": "m", "arm": "base", "checkpoint": "base", "benchmark": "b"}
    cases = {"results/eval/m/base/base/b.json": good,
             "results/eval/m/vanilla/base/b.json": good,  # labels say arm base
             "results/eval/m/base/base/c.json": {k: v for k, v in good.items() if k != "benchmark"}}
    for rel, labels in cases.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"labels": labels, "model": "resources/models/m",
                                 "model_sha256": sha256_tree(tmp_path / "resources/models/m"),
                                 "benchmark_file": "resources/benchmarks/b.jsonl",
                                 "benchmark_sha256": sha256_file(bench)}))
    auditor = A.Auditor(tmp_path, progress=False)
    auditor.check_evaluations()
    rows = {r.subject: r for r in auditor.rows}
    assert rows["results/eval/m/base/base/b.json"].status == "pass"
    moved = rows["results/eval/m/vanilla/base/b.json"]
    assert moved.status == "fail" and "name results/eval/m/base/base/b.json, not this file" in moved.detail
    unlabelled = rows["results/eval/m/base/base/c.json"]
    assert unlabelled.status == "fail" and "lack benchmark" in unlabelled.detail
