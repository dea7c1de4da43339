"""Nothing stale is served (issue 18, cases 3, 9, 11): code fingerprints follow each stage's
imports, stages read only the files their rule lists, a changed setting or input file reruns
its jobs, and the audit names what is missing or changed.

Fast: fingerprints of a copy of the package, direct calls, and `snakemake -n` dry runs.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, snakemake_env
from test_failfast import _validated, tiny_tok  # noqa: F401  (tiny_tok: a fixture)

from filmorph import corpus as C
from filmorph import fingerprint as FP

SRC = REPO / "src"


# ----------------------------------------------------------------------------- case 11
@pytest.fixture(scope="module")
def pkg_copy(tmp_path_factory):
    """A copy of the package's sources (no caches) to edit."""
    root = tmp_path_factory.mktemp("src")
    shutil.copytree(SRC / "filmorph", root / "filmorph",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def _touch(path: Path):
    data = path.read_bytes()
    path.write_bytes(data + b"\n# edited\n")
    return data


STAGES = {s: e for s, e in FP.stage_entries(["hf"]).items()
          if s in ("tokenize", "summary", "train", "evaluate")}


def test_closure_holds_the_modules_the_issue_found_missing():
    """The drift seen in issue 18: each of these is imported by the stage (at module level or
    inside a function) and was missing from the hand list."""
    names = {stage: {f.relative_to(SRC).as_posix() for f in FP.closure(e)}
             for stage, e in STAGES.items()}
    assert "filmorph/corpus.py" in names["tokenize"]
    assert {"filmorph/rng.py", "filmorph/tokenizers.py"} <= names["train"]
    assert {"filmorph/corpus.py", "filmorph/arms/__init__.py", "filmorph/rng.py",
            "filmorph/io.py", "filmorph/data/morph_gold.tsv"} <= names["summary"]
    assert "filmorph/tokenizers.py" in names["evaluate"]
    assert "filmorph/evaluate/scorer.py" in names["evaluate"]
    assert "filmorph/evaluate/__init__.py" not in names["tokenize"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_imported_module_changes_the_fingerprint_and_no_other_does(pkg_copy, stage):
    entries = STAGES[stage]
    inside = FP.closure(entries, pkg_copy)
    all_files = sorted(f for f in (pkg_copy / "filmorph").rglob("*")
                       if f.is_file() and (f.suffix == ".py" or f.parent.name == "data")
                       and f.suffix != ".md")
    outside = [f for f in all_files if f not in inside]
    assert inside and outside
    before = FP.fingerprint(entries, pkg_copy)
    unchanged = []
    for f in inside:
        old = _touch(f)
        if FP.fingerprint(entries, pkg_copy) == before:
            unchanged.append(f.name)
        f.write_bytes(old)
    assert unchanged == []
    olds = {f: _touch(f) for f in outside}  # every other file at once
    try:
        assert FP.fingerprint(entries, pkg_copy) == before
    finally:
        for f, old in olds.items():
            f.write_bytes(old)


def test_relative_and_submodule_imports_are_followed(tmp_path):
    """`from . import x`, `from .. import y`, `from filmorph.p import sub` (sub a module) and
    `import filmorph.a.b` (its package __init__ too) are all in the closure; a name imported
    from a module is not taken for a module."""
    pkg = tmp_path / "filmorph"
    files = {
        "__init__.py": "",
        "entry.py": "from filmorph.p import sub, helper\nimport filmorph.a.b\n"
                    "def f():\n    from .q import r\n",
        "p/__init__.py": "def helper(): pass\n",
        "p/sub.py": "from . import sibling\nfrom .. import top\n",
        "p/sibling.py": "",
        "top.py": "X = 'data/table.tsv'\n",
        "a/__init__.py": "", "a/b.py": "",
        "q/__init__.py": "", "q/r.py": "",
        "lonely.py": "", "data/table.tsv": "x\n", "data/other.tsv": "y\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    got = {f.relative_to(pkg).as_posix() for f in FP.closure(["filmorph.entry"], tmp_path)}
    assert got == set(files) - {"lonely.py", "data/other.tsv"}
    with pytest.raises(ValueError, match="filmorph.nosuch"):
        FP.closure(["filmorph.nosuch"], tmp_path)


def test_workflow_code_params_are_the_closure_fingerprints():
    """rules/common.smk holds no hand list: its STAGE_FINGERPRINTS come from filmorph.fingerprint."""
    text = (REPO / "rules/common.smk").read_text()
    assert "code_fingerprint(" not in text
    assert "STAGE_FINGERPRINTS = stage_fingerprints(" in text


def test_summarize_arm_counts_only_the_chunks_it_is_given(tiny_tok, tmp_path):  # noqa: F811
    """A chunk file left in the shard dir by an earlier run with more chunks is no input and
    is not counted."""
    from filmorph.summary import summarize_arm
    from filmorph.tokenize import tokenize_chunk

    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps({"text": f"Kumain na ako ng kanin {i}."}) + "\n"
                           for i in range(12)), encoding="utf-8")
    C.split_corpus(src, tmp_path / "corpus3", 3, id_prefix="t")
    shards = tmp_path / "shards"
    for i in (1, 2, 3):
        tokenize_chunk(tmp_path / "corpus3" / f"chunk_000{i}.jsonl", tiny_tok, "vanilla", {}, 1,
                       shards / f"chunk_000{i}", workers=1)
    args = ("tiny", "vanilla", shards, tmp_path / "corpus3", tiny_tok, 5, 1)
    two = summarize_arm(*args, chunks=["chunk_0001", "chunk_0002"])
    three = summarize_arm(*args, chunks=["chunk_0001", "chunk_0002", "chunk_0003"])
    assert two["chunks"] == 2 and three["chunks"] == 3
    assert two["documents_in"] < three["documents_in"] == 12
    with pytest.raises(FileNotFoundError, match="chunk_0009.stats.json"):
        summarize_arm(*args, chunks=["chunk_0001", "chunk_0009"])


# ----------------------------------------------------------------------------- case 9
TRAIN_TARGET = "results/checkpoints/llama/vanilla/train_summary.json"


def _smk(work: Path, cfg: dict, *args: str) -> subprocess.CompletedProcess:
    path = work.parent / f"{work.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [*SNAKEMAKE, *args, "-d", str(work), "--configfile", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(), timeout=300)


def _job_block(out: str, rule: str) -> str:
    return out.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0] if f"rule {rule}:" in out else ""


def _record_params(work: Path, output: str, rule: str, params: list[str]) -> None:
    """Snakemake's metadata record of a finished job (what a real run leaves in
    .snakemake/metadata, format version 6), holding the job's params."""
    import base64

    meta = work / ".snakemake/metadata"
    meta.mkdir(parents=True, exist_ok=True)
    record = {"rule": rule, "input": [], "log": [], "shellcmd": None,
              "params": sorted(repr(p) for p in params), "code": None,
              "record_format_version": 6, "conda_env": None, "container_img_url": None,
              "software_stack_hash": "", "job_hash": 0, "starttime": 0.0, "endtime": 0.0,
              "incomplete": False, "external_jobid": None, "input_checksums": {}}
    (meta / base64.b64encode(output.encode()).decode()).write_text(json.dumps(record))


@pytest.mark.parametrize("key,value", [("max_steps", 2)])
def test_changed_train_setting_reruns_training(tmp_path, key, value):
    """A finished training job whose recorded params hold the config's train settings: with
    the same config nothing is to be done; with a train setting changed the params trigger
    reruns it (snakemake -n --rerun-triggers params)."""
    from filmorph.config_checks import train_settings

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    work = tmp_path / "w"
    first = _smk(work, cfg, "-n", TRAIN_TARGET)
    block = _job_block(first.stdout, "train_cpt")
    assert block, first.stdout[-2000:] + first.stderr[-2000:]
    files = {k: [f.strip() for f in v.split(",")] for k, v in
             (line.strip().split(": ", 1) for line in block.splitlines()[1:3])}
    for f in files["input"] + files["output"]:
        p = work / f
        if p.suffix in (".bin", ".idx", ".json"):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("{}")
        else:
            p.mkdir(parents=True, exist_ok=True)
    engine = cfg["train"]["engine"]
    params = [json.dumps({**train_settings(_validated(cfg)), "engine": engine}, sort_keys=True), engine,
              FP.stage_fingerprints([engine])["train"]]
    for f in files["output"]:  # a real run records every output
        _record_params(work, f, "train_cpt", params)

    same = _smk(work, cfg, TRAIN_TARGET, "-n", "--rerun-triggers", "params",
               "--allowed-rules", "train_cpt")
    assert same.returncode == 0 and "rule train_cpt:" not in same.stdout, same.stdout[-3000:]
    changed = {**cfg, "train": {**cfg["train"], key: value}}
    rerun = _smk(work, changed, TRAIN_TARGET, "-n", "--rerun-triggers", "params",
               "--allowed-rules", "train_cpt")
    block = _job_block(rerun.stdout, "train_cpt")
    assert "Params have changed" in block and f'"{key}": {value}' in block, rerun.stdout[-3000:]


def test_edited_external_benchmark_file_is_reimported(tmp_path):
    """A local benchmarks.external file is an input of import_benchmark: after an import, an
    edit of the file reruns the import (and `--list-changes input`-style dry run names it)."""
    fix = REPO / "tests/fixtures/published"
    src = tmp_path / "spell.tsv"
    src.write_bytes((fix / "spell.tsv").read_bytes())
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["benchmarks"]["external"] = {"pub_spell": {"input": str(src)}}
    work = tmp_path / "w"
    target = "resources/benchmarks/pub_spell.jsonl"
    ran = _smk(work, cfg, "--cores", "1", target)
    assert ran.returncode == 0, ran.stderr[-3000:]
    same = _smk(work, cfg, "-n", target)
    assert "rule import_benchmark:" not in same.stdout
    src.write_bytes(src.read_bytes() + b"\n")
    os.utime(src, (time.time() + 5, time.time() + 5))
    again = _smk(work, cfg, "-n", target)
    block = _job_block(again.stdout, "import_benchmark")
    assert "Updated input files" in block and str(src) in block, again.stdout[-3000:]


# ----------------------------------------------------------------------------- shell rules
def test_shell_rule_failure_reaches_the_console(tmp_path):
    """The shell rules (rules/convert.smk, rules/export.smk) write their command's output to
    the log only; with_provenance copies the log's tail to the console when it fails."""
    text = (REPO / "rules/common.smk").read_text()
    fn = "def with_provenance(" + text.split("def with_provenance(", 1)[1].split("\n\n\n", 1)[0]
    (tmp_path / "Snakefile").write_text(
        fn + "\n\n\n"
        "rule convertish:\n"
        "    output: 'out.txt'\n"
        "    log: 'logs/convertish.log'\n"
        "    params: provenance=''\n"
        "    shell: with_provenance(\"(printf 'the-engine-%s' said-no; exit 3) > {log} 2>&1\")\n")
    res = subprocess.run([*SNAKEMAKE[:-2], "-s", str(tmp_path / "Snakefile"), "-d",
                          str(tmp_path), "--cores", "1", "out.txt"],
                         capture_output=True, text=True, env=snakemake_env(), timeout=120)
    assert res.returncode != 0
    assert "the-engine-said-no" in res.stderr and "logs/convertish.log" in res.stderr
    assert not (tmp_path / "out.txt").exists()


# ----------------------------------------------------------------------------- case 6 (benchmarks)
def _latin1_line2(path: Path, src: Path) -> int:
    """`src`'s lines with a Latin-1 byte (not UTF-8) in line 2; its byte offset."""
    lines = src.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"bato", b"bat\xf3", 1) if b"bato" in lines[1] else \
        lines[1][:20] + b"\xf3" + lines[1][20:]
    path.write_bytes(b"\n".join(lines))
    return path.read_bytes().index(b"\xf3")


def test_non_utf8_benchmark_file_names_file_line_and_offset_in_convert(tmp_path):
    fix = REPO / "tests/fixtures/published/hierarchical_mcq.jsonl"
    bad = tmp_path / "hier.jsonl"
    at = _latin1_line2(bad, fix)
    res = subprocess.run([sys.executable, "-m", "filmorph.benchmarks", "convert", "--input",
                          str(bad), "--name", "h", "--out", str(tmp_path / "o.jsonl")],
                         capture_output=True, text=True, env=snakemake_env(), timeout=120)
    assert res.returncode != 0
    assert f"{bad}:2:" in res.stderr and f"byte offset {at}" in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and not (tmp_path / "o.jsonl").exists()


def test_non_utf8_item_file_names_file_line_and_offset_when_evaluated(tmp_path):
    from filmorph.items import BadItemError, Item, read_items, write_items

    good = tmp_path / "b.jsonl"
    write_items(good, [Item(id=f"x{i}", benchmark="b", group="g", task="t", format="gen",
                            prompt=f"p{i}",
                            answer="sagot") for i in range(3)])
    bad = tmp_path / "bad.jsonl"
    at = _latin1_line2(bad, good)
    with pytest.raises(BadItemError, match=rf"bad\.jsonl:2: .*byte offset {at} "):
        read_items(bad)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())
    assert read_items(bom) == read_items(good)



# ----------------------------------------------------------------------------- case 3
def _record(rule: str, wildcards: dict, inputs: list[str], outputs: list[str]) -> None:
    from filmorph import provenance as P

    P.write_record(P.record_path(rule, wildcards),
                   P.build_record(rule=rule, wildcards=wildcards, params={}, inputs=inputs,
                                  outputs=outputs, start=P.utc_now()))


@pytest.fixture
def mini_run(tmp_path, monkeypatch):
    """A finished run in miniature: a model, a benchmark file, two evaluations of it and the
    report over both, each job with its provenance record (written as run_stage writes it),
    and the manifest. Returns (run dir, expected outputs)."""
    from filmorph import provenance as P

    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    Path("resources/models/m").mkdir(parents=True)
    Path("resources/models/m/config.json").write_text("{}")
    Path("resources/benchmarks").mkdir(parents=True)
    expected = []
    for b in ("b1", "b2"):
        bench = f"resources/benchmarks/{b}.jsonl"
        Path(bench).write_text(json.dumps({"id": b}) + "\n")
        out = Path(f"results/eval/m/base/base/{b}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps({
            "model": "resources/models/m", "model_sha256": P.sha256_tree("resources/models/m"),
            "benchmark_file": bench, "benchmark_sha256": P.sha256_file(bench),
            "labels": {"model": "m", "arm": "base", "checkpoint": "base", "benchmark": b}}))
        out.with_suffix(".jsonl").write_text("{}\n")
        outs = [f"{out}.json", f"{out}.jsonl"]
        _record("evaluate", {"model": "m", "arm": "base", "ckpt": "base", "bench": b},
                ["resources/models/m", bench], outs)
        expected += outs
    Path("results/tables").mkdir(parents=True)
    Path("results/tables/results.tsv").write_text("model\tbench\nm\tb1\nm\tb2\n")
    _record("report_results", {}, [e for e in expected if e.endswith(".jsonl")]
            + [e for e in expected if e.endswith(".json")], ["results/tables/results.tsv"])
    expected.append("results/tables/results.tsv")
    P.main(["manifest"])
    return run, expected


def _audit(run: Path, expected: list[str]) -> tuple[int, str, dict]:
    import contextlib
    import io

    from filmorph import audit as A

    exp = run.parent / "expected.txt"
    exp.write_text("".join(f"{e}\n" for e in expected))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = A.main([str(run), "--expected", str(exp), "--no-progress",
                     "--json", str(run.parent / "audit.json")])
    return rc, out.getvalue(), json.loads((run.parent / "audit.json").read_text())


def test_audit_fails_naming_a_deleted_evaluation_and_the_stale_report(mini_run):
    """Issue 18 case 3: the evaluation's .json/.jsonl and its record deleted, the manifest
    rebuilt: the audit FAILS, naming the missing outputs, and names report_results (whose
    results.tsv rows came from them) stale."""
    from filmorph import provenance as P

    run, expected = mini_run
    rc, table, report = _audit(run, expected)
    # a miniature run has no shards (the only failing row): everything else passes
    assert [(r["check"], r["subject"]) for r in report["rows"] if r["status"] == "fail"] == \
        [("retokenize", "results/shards")], table
    assert report["summary"]["complete"]["pass"] and report["summary"]["inputs"]["pass"] == 3

    gone = "results/eval/m/base/base/b2"
    for ext in (".json", ".jsonl"):
        Path(gone + ext).unlink()
    P.record_path("evaluate", {"model": "m", "arm": "base", "ckpt": "base",
                               "bench": "b2"}).unlink()
    P.main(["manifest"])
    rc, table, report = _audit(run, expected)
    assert rc == 1 and "audit FAILED" in table
    failing = {(r["check"], r["subject"]): r["detail"] for r in report["rows"]
               if r["status"] == "fail"}
    assert ("complete", f"{gone}.json") in failing and ("complete", f"{gone}.jsonl") in failing
    stale = failing[("inputs", "report_results/job")]
    assert f"{gone}.json is gone" in stale and f"{gone}.jsonl is gone" in stale


def test_audit_names_the_job_whose_input_changed(mini_run):
    """An input edited after the job read it (a benchmark file changed in place) makes the
    jobs that read it stale, by name; an output present but named by no record is flagged."""
    run, expected = mini_run
    Path("resources/benchmarks/b1.jsonl").write_text(json.dumps({"id": "edited"}) + "\n")
    Path("results/tables/extra.tsv").write_text("x\n")
    rc, _table, report = _audit(run, [*expected, "results/tables/extra.tsv"])
    failing = {(r["check"], r["subject"]): r["detail"] for r in report["rows"]
               if r["status"] == "fail"}
    assert rc == 1
    assert "resources/benchmarks/b1.jsonl changed" in \
        failing[("inputs", "evaluate/arm=base,bench=b1,ckpt=base,model=m")]
    assert ("inputs", "evaluate/arm=base,bench=b2,ckpt=base,model=m") not in failing
    assert "no provenance record" in failing[("complete", "results/tables/extra.tsv")]
