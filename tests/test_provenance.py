"""Provenance records: hashing, the record a job leaves (run_stage), secrets never written,
the shell-rule and manifest commands, and the records of a real workflow run."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO, snakemake_env

from filmorph import provenance as P
from filmorph.workflow import run_stage

SECRET = "hf_AUDITtestSECRETvalue0123456789abcdef"


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_hash_path_file_dir_missing(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_bytes(b"bee")
    (tmp_path / "d" / "sub" / "a.bin").write_bytes(b"\x00\x01")
    f = P.hash_path(tmp_path / "d" / "b.txt")
    assert f == {"type": "file", "bytes": 3, "sha256": _sha(b"bee")}
    d = P.hash_path(tmp_path / "d")
    assert d["type"] == "dir" and d["bytes"] == 5
    assert list(d["files"]) == ["b.txt", "sub/a.bin"]  # sorted relative POSIX paths
    assert d["files"]["sub/a.bin"]["sha256"] == _sha(b"\x00\x01")
    lines = f"{_sha(b'bee')}  b.txt\n{_sha(bytes([0, 1]))}  sub/a.bin\n"
    assert d["sha256"] == _sha(lines.encode()) == P.sha256_tree(tmp_path / "d")
    assert P.hash_path(tmp_path / "nope") == {"type": "missing"}
    # the tree hash depends on content and names, not on creation order
    (tmp_path / "e" / "sub").mkdir(parents=True)
    (tmp_path / "e" / "sub" / "a.bin").write_bytes(b"\x00\x01")
    (tmp_path / "e" / "b.txt").write_bytes(b"bee")
    assert P.sha256_tree(tmp_path / "e") == d["sha256"]
    (tmp_path / "e" / "b.txt").write_bytes(b"bed")
    assert P.sha256_tree(tmp_path / "e") != d["sha256"]


def test_record_path_is_deterministic():
    a = P.record_path("tokenize_chunk", {"family": "gemma", "chunk": "chunk_0001", "arm": "patok"})
    b = P.record_path("tokenize_chunk", {"arm": "patok", "chunk": "chunk_0001", "family": "gemma"})
    assert a == b == Path("results/provenance/tokenize_chunk/"
                          "arm=patok,chunk=chunk_0001,family=gemma.json")
    assert P.record_path("split_corpus", {}) == Path("results/provenance/split_corpus/job.json")
    assert P.record_path("r", {"x": "a/b"}).name == "x=a%2Fb.json"  # never a subdirectory


def test_secret_keys_and_scrub():
    for key in ("token", "hf_token", "HF_TOKEN", "use_auth_token", "api_key", "WANDB_API_KEY",
                "password", "db_passwd", "client_secret", "credentials", "key"):
        assert P.is_secret_key(key), key
    for key in ("tokenizer", "max_new_tokens", "eos_token_id", "tokenizer_json_sha256", "seed",
                "keys", "monkey", "tokens"):
        assert not P.is_secret_key(key), key
    env = {"HF_TOKEN": SECRET, "HOME": "/root", "SHORT_KEY": "abc"}
    obj = {"spec": {"source": "hf", "token": "x"}, "note": f"Bearer {SECRET}!", "home": "/root",
           "n": 3, "list": [SECRET, {"api_key": None}]}
    out = P.scrub(obj, environ=env)
    assert out == {"spec": {"source": "hf", "token": P.REDACTED}, "note": f"Bearer {P.REDACTED}!",
                   "home": "/root", "n": 3, "list": [P.REDACTED, {"api_key": None}]}
    # keys=False (dicts keyed by paths) still removes environment secrets
    assert P.scrub({"secret/path": SECRET}, keys=False, environ=env) == {"secret/path": P.REDACTED}


def test_config_subset_decodes_json_params_and_hashes_canonically():
    a = P.config_subset({"arm_params": json.dumps({"b": 1, "a": 2}), "seed": 3, "code": "abc"})
    b = P.config_subset({"seed": 3, "code": "abc", "arm_params": {"a": 2, "b": 1}})
    assert a == b and a["values"]["arm_params"] == {"a": 2, "b": 1}
    assert a["sha256"] == _sha(P.canonical_json(a["values"]).encode())
    assert P.config_subset({"seed": 4})["sha256"] != P.config_subset({"seed": 3})["sha256"]


def test_code_version_and_packages(tmp_path):
    here = P.code_version()
    assert here["source"] == "git" and len(here["commit"]) == 40 and isinstance(here["dirty"], bool)
    assert P.code_version(tmp_path) == {"commit": "unknown", "dirty": None, "source": "unknown"}
    v = P.package_versions(["numpy", "surely-not-installed-filmorph-xyz"])
    assert v["numpy"] and v["surely-not-installed-filmorph-xyz"] is None and v["python"]
    assert {"torch", "transformers", "tokenizers", "megatron-core", "numpy", "snakemake"} <= set(
        P.package_versions())


class _Named(list):
    """A Snakemake Namedlist stand-in: a list with named entries."""

    def __init__(self, items=(), **named):
        super().__init__([*items, *named.values()])
        self._named = named
        for k, v in named.items():
            setattr(self, k, v)

    def items(self):
        return self._named.items()


def _fake_job(tmp_path, *, params=None):
    (tmp_path / "in.txt").write_text("input")
    return SimpleNamespace(
        rule="demo_rule", wildcards=_Named(family="gemma", arm="patok"),
        params=_Named(**(params or {"arm_params": '{"expand_prop": 0.1}', "seed": 7})),
        input=_Named(src="in.txt"), output=_Named(out="out/result.txt"),
        log=_Named(["logs/demo.log"]), config={"seed": 1})


def test_run_stage_writes_a_record_and_none_for_a_failed_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs").mkdir()
    smk = _fake_job(tmp_path)

    def good(argv):
        Path("out").mkdir(exist_ok=True)
        Path("out/result.txt").write_text("result " + " ".join(argv))
        return 0

    run_stage(smk, good, ["a", 1])
    path = tmp_path / "results/provenance/demo_rule/arm=patok,family=gemma.json"
    rec = json.loads(path.read_text())
    assert rec["rule"] == "demo_rule" and rec["wildcards"] == {"arm": "patok", "family": "gemma"}
    assert rec["config"]["values"] == {"arm_params": {"expand_prop": 0.1}, "seed": 7}
    assert rec["config"]["sha256"] == _sha(P.canonical_json(rec["config"]["values"]).encode())
    assert rec["seed"] == 7
    assert rec["inputs"] == {"in.txt": {"type": "file", "bytes": 5, "sha256": _sha(b"input")}}
    assert rec["outputs"]["out/result.txt"]["sha256"] == _sha(b"result a 1")
    assert rec["start"] <= rec["end"] and rec["start"].endswith("Z") and rec["seconds"] >= 0
    assert rec["host"] and rec["code"]["source"] == "git" and rec["packages"]["python"]
    assert rec["log"] == "logs/demo.log"
    assert "provenance: results/provenance/demo_rule" in (tmp_path / "logs/demo.log").read_text()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left

    # a failing job removes the old record and leaves none
    with pytest.raises(SystemExit):
        run_stage(smk, lambda argv: 3, [])
    assert not path.exists()
    # without provenance (the manifest rule) nothing is written
    run_stage(smk, good, [], provenance=False)
    assert not path.exists()


def test_record_without_seed_param_takes_the_root_seed_and_scrubs_secrets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("WANDB_API_KEY", "wandb-" + SECRET[::-1])
    smk = _fake_job(tmp_path, params={"spec": json.dumps({"source": "hf", "token": SECRET,
                                                          "name_or_path": "org/model"}),
                                      "note": f"uses {SECRET}"})
    smk.log = _Named()
    run_stage(smk, lambda argv: 0, [])
    text = (tmp_path / "results/provenance/demo_rule/arm=patok,family=gemma.json").read_text()
    rec = json.loads(text)
    assert rec["seed"] == 1 and rec["log"] is None
    assert rec["config"]["values"]["spec"] == {"source": "hf", "token": P.REDACTED,
                                               "name_or_path": "org/model"}
    assert SECRET not in text and SECRET[::-1] not in text and "HF_TOKEN" not in text
    assert "environ" not in text


def test_cli_record_and_manifest(tmp_path, monkeypatch):
    """What the megatron shell rules run after their command; then the manifest."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    Path("a.txt").write_text("a")
    Path("ckpt").mkdir()
    Path("ckpt/w.bin").write_bytes(b"w")
    assert P.main(["record", "--rule", "export_checkpoint", "--wildcard=family=llama",
                   "--wildcard=iter=0000004", "--params", '{"code": "c0de", "tp": 1}',
                   "--input", "a.txt", "--output", "ckpt", "--start", "2025-01-02T03:04:05Z"]) == 0
    rec = json.loads(Path("results/provenance/export_checkpoint/"
                          "family=llama,iter=0000004.json").read_text())
    assert rec["start"] == "2025-01-02T03:04:05.000000Z" and rec["seed"] is None
    assert rec["outputs"]["ckpt"]["files"]["w.bin"]["sha256"] == _sha(b"w")
    assert rec["config"]["values"] == {"code": "c0de", "tp": 1}
    assert P.main(["record", "--rule", "b_rule", "--start", "2025-01-02T03:04:05Z"]) == 0
    assert P.main(["manifest"]) == 0
    first = Path("results/manifest.json").read_text()
    man = json.loads(first)
    assert man["records"] == 2 and [j["rule"] for j in man["jobs"]] == ["b_rule",
                                                                         "export_checkpoint"]
    assert man["jobs"][1]["record"] == ("results/provenance/export_checkpoint/"
                                        "family=llama,iter=0000004.json")
    assert P.main(["manifest"]) == 0
    assert Path("results/manifest.json").read_text() == first  # deterministic
    assert SECRET not in first
    with pytest.raises(SystemExit):
        P.main(["record", "--rule", "x", "--wildcard", "novalue", "--start", "2025-01-01T00:00:00Z"])


def test_hf_token_never_reaches_records_of_a_real_workflow_job(tmp_path):
    """Snakemake jobs run with HF_TOKEN / WANDB_API_KEY in their environment: neither value
    appears in the job's provenance record nor in the manifest."""
    env = snakemake_env()
    env["HF_TOKEN"] = SECRET
    env["WANDB_API_KEY"] = "wandb-" + SECRET[::-1]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
           "--configfile", str(REPO / "config/config.yaml"), "--cores", "1",
           "resources/benchmarks/addition_gen.jsonl"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    subprocess.run([sys.executable, "-m", "filmorph.provenance", "manifest"], cwd=tmp_path,
                   env=env, check=True, capture_output=True)
    records = list((tmp_path / "results/provenance").rglob("*.json"))
    assert [p.relative_to(tmp_path).as_posix() for p in records] == [
        "results/provenance/make_benchmarks/benchmark=addition,fmt=gen.json"]
    for p in [*records, tmp_path / "results/manifest.json"]:
        text = p.read_text()
        assert SECRET not in text and SECRET[::-1] not in text, p
        assert "HF_TOKEN" not in text and "WANDB" not in text, p
    rec = json.loads(records[0].read_text())
    assert rec["config"]["values"]["items_per_task"] == 8 and rec["seed"] == 1859


def test_every_job_of_the_local_run_left_a_record(local_run):
    """The session's workflow run: one record per job, each naming its outputs with the hashes
    they have now, and the config subset the job was given."""
    recs = {(r["rule"], P.record_name(r["wildcards"])): r
            for _p, r in P.iter_records(local_run / P.PROVENANCE_DIR)}
    rules = {}
    for rule, _name in recs:
        rules[rule] = rules.get(rule, 0) + 1
    assert rules["tokenize_chunk"] == 2 * 3 * 2 and rules["train_cpt"] == 6
    assert rules["prepare_tokenizer"] == 2 and rules["split_corpus"] == 1
    assert rules["evaluate"] == 2 + 6 and rules["report_results"] == 1
    # one evaluate job per model x arm x checkpoint scores the 4 files: its record names each
    # file's scores and predictions (hashed as they are now), the model and each benchmark file
    ev = recs[("evaluate", "arm=vanilla,ckpt=step_0000004,model=gemma")]
    scored = sorted((local_run / "results/eval/gemma/vanilla/step_0000004").glob("*.json"))
    assert len(scored) == 4
    for f in scored:
        s = json.loads(f.read_text(encoding="utf-8"))
        assert s["labels"]["benchmark"] == f.stem and s["benchmark_file"] in ev["inputs"]
        for out in (f, f.with_suffix(".jsonl")):
            rel = str(out.relative_to(local_run))
            assert ev["outputs"][rel]["sha256"] == P.sha256_file(out)
    assert "results/checkpoints/gemma/vanilla/hf/step_0000004" in ev["inputs"]
    tok = recs[("tokenize_chunk", "arm=patok,chunk=chunk_0001,family=llama")]
    assert tok["config"]["values"]["arm_params"]["contract_prop"] == 0.3 and tok["seed"] == 1234
    for ext in ("bin", "idx", "doc_ids.txt", "stats.json"):
        out = f"results/shards/llama/patok/chunk_0001.{ext}"
        assert tok["outputs"][out]["sha256"] == P.sha256_file(local_run / out)
    assert tok["inputs"]["resources/tokenizers/llama"]["type"] == "dir"
    train = recs[("train_cpt", "arm=vanilla,family=gemma")]
    assert train["seed"] == 1234 and train["config"]["values"]["train_config"]["max_steps"] == 4
    ckpt = "results/checkpoints/gemma/vanilla/hf/step_0000004"
    assert train["outputs"][ckpt]["sha256"] == P.sha256_tree(local_run / ckpt)


def test_shell_rules_record_their_provenance(tmp_path):
    """The megatron engine's shell jobs (import, verify, export) end with
    `python -m filmorph.provenance record`: run that part of the planned export command for
    real (after a stand-in for the export) and read the record."""
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(REPO / "config/config.yaml"), "--config",
         'train={"engine": "megatron"}', "-n", "-p", "results/checkpoints/llama/patok/hf/step_0000004"],
        capture_output=True, text=True, env=snakemake_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    shells = [line.split("Shell command: ", 1)[1] for line in res.stdout.splitlines()
              if line.startswith("Shell command: start=")]
    assert len(shells) == 3 and all(" && PYTHONPATH=" in s and "filmorph.provenance record" in s
                                    for s in shells)
    export = next(s for s in shells if "--rule export_checkpoint" in s)
    # `start=…; { <export> && PYTHONPATH=… provenance record …; } || { <echo the log>; }`:
    # the same command with a stand-in for the export
    head, record = export.split(" && PYTHONPATH=", 1)
    prefix = head[: head.index("{ ") + 2]
    out = tmp_path / "results/checkpoints/llama/patok/hf/step_0000004"
    for d in ("results/checkpoints/llama/patok/megatron/iter_0000004", "resources/models/llama",
              "resources/tokenizers/llama", "logs/export_checkpoint/llama/patok"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    (tmp_path / "resources/tokenizers/llama/tokenizer.json").write_text("{}")
    stand_in = f"mkdir -p {out} && echo weights > {out}/model.safetensors"
    subprocess.run(["bash", "-c", f"{prefix}{stand_in} && PYTHONPATH={record}"], cwd=tmp_path,
                   check=True, env=snakemake_env())
    rec = json.loads((tmp_path / "results/provenance/export_checkpoint/"
                      "arm=patok,family=llama,iter=0000004.json").read_text())
    assert rec["rule"] == "export_checkpoint" and set(rec["config"]["values"]) == {"code"}
    assert rec["outputs"]["results/checkpoints/llama/patok/hf/step_0000004"]["files"][
        "model.safetensors"]["sha256"] == _sha(b"weights\n")
    assert rec["inputs"]["resources/tokenizers/llama"]["files"]["tokenizer.json"]["sha256"] == _sha(b"{}")
    assert rec["log"] == "logs/export_checkpoint/llama/patok/0000004.log" and rec["start"] <= rec["end"]


def test_package_versions_reads_a_target_dir_first(tmp_path):
    """A package installed with ``pip --target`` for a job's subprocesses (the fine-tuning run's
    Mamba kernels) is reported from that dir; elsewhere it is absent (null)."""
    from filmorph.provenance import package_versions

    info = tmp_path / "mamba_ssm-2.3.2.post1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mamba_ssm\nVersion: 2.3.2.post1\n")
    assert package_versions(["mamba-ssm"])["mamba-ssm"] is None
    assert package_versions(["mamba-ssm"], paths=[tmp_path])["mamba-ssm"] == "2.3.2.post1"
    assert package_versions(["mamba-ssm"], paths=[tmp_path / "missing"])["mamba-ssm"] is None
