"""Fail fast and loud (issue 18): a tokenization worker that cannot start fails the job in
seconds; credentials in the config are refused and never echoed; config mistakes are refused
when the config is read, naming the key; every failure reaches the rule's log and the console;
corpus errors name file, line and byte offset; no temporary file survives a failure (a full
disk included).

Fast by construction: a tiny byte-level BPE tokenizer (prepared once per module), direct calls
of the package's functions, and `snakemake -n` only where the workflow's own wiring is tested.
"""

import copy
import errno
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, snakemake_env

from filmorph import corpus as C

TEXTS = ["Kumain na ako ng kanin.", "Naglalaro ang mga bata sa labas.", "Magandang umaga po.",
         "Pinakamaganda ang bulaklak.", "Sumulat siya ng liham.", "Umuulan na naman kahapon."]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory):
    """A prepared tokenizer dir (`filmorph.tokenize.prepare`) of a 300-id byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from filmorph.tokenize import prepare

    root = tmp_path_factory.mktemp("tiny_tok")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(root / "hf")
    prepare("tiny", {"source": "local", "path": str(root / "hf")}, root / "tiny")
    return root / "tiny"


@pytest.fixture
def chunk(tmp_path):
    """A corpus chunk of 40 documents, as the corpus stage writes it."""
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps({"text": TEXTS[i % len(TEXTS)] * (1 + i % 3)}) + "\n"
                           for i in range(40)), encoding="utf-8")
    C.split_corpus(src, tmp_path / "corpus", 1, id_prefix="t")
    return tmp_path / "corpus" / "chunk_0001.jsonl"


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


class _Deadline:
    """SIGALRM after `seconds`: a hang fails the test instead of blocking the suite."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self):
        def fire(signum, frame):
            raise TimeoutError(f"still running after {self.seconds} s (a hang)")

        self.old = signal.signal(signal.SIGALRM, fire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


# ----------------------------------------------------------------------------- case 1: hang
@pytest.mark.parametrize("what", ["window_weights", "affixes"])
def test_worker_that_cannot_start_fails_fast_with_its_error_and_no_temp_file(tiny_tok, chunk,
                                                                            tmp_path, what):
    from filmorph.tokenize import WorkerStartError, tokenize_chunk

    params = {"window_weights": [0, 0, 0]} if what == "window_weights" else {}
    affixes = str(tmp_path / "no_such_affixes.tsv") if what == "affixes" else None
    out = tmp_path / "out"
    with _Deadline(20), pytest.raises(WorkerStartError) as err:
        tokenize_chunk(chunk, tiny_tok, "patok", params, 1, out / "chunk_0001", workers=2,
                       batch_size=8, affix_path=affixes)
    expect = "window_weights" if what == "window_weights" else "no_such_affixes.tsv"
    assert expect in str(err.value) and "worker traceback" in str(err.value)
    assert _leftovers(out) == []  # no .chunk_0001.tmp-PID.bin


def _die(batch, seed):
    os._exit(9)  # a worker killed mid-task (the OOM killer, a segfault)


def test_worker_that_dies_breaks_the_pool_instead_of_hanging(tiny_tok, chunk, tmp_path,
                                                             monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    import filmorph.tokenize as T

    monkeypatch.setattr(T, "_process_batch", _die)  # forked workers inherit it
    with _Deadline(20), pytest.raises(BrokenProcessPool):
        T.tokenize_chunk(chunk, tiny_tok, "vanilla", {}, 1, tmp_path / "out" / "c", workers=2,
                         batch_size=8)
    assert _leftovers(tmp_path / "out") == []


def test_issue_reproduction_exits_nonzero_within_seconds_error_in_log(tiny_tok, chunk, tmp_path):
    """The issue's command (`--workers 2`, window weights summing to 0), run as a workflow job
    through `run_stage`: non-zero exit well within 30 s, the worker's error in the rule's log
    and on the console, no temporary file."""
    log = tmp_path / "logs" / "tokenize.log"
    log.parent.mkdir()
    out = tmp_path / "x"
    script = textwrap.dedent(f"""
        from types import SimpleNamespace
        from filmorph.tokenize import main
        from filmorph.workflow import run_stage
        smk = SimpleNamespace(rule="tokenize_chunk", log=[{str(log)!r}])
        run_stage(smk, main, ["chunk", "--chunk", {str(chunk)!r}, "--tokenizer-dir",
                              {str(tiny_tok)!r}, "--arm", "patok", "--arm-params",
                              '{{"window_weights": [0, 0, 0]}}', "--seed", "1", "--workers", "2",
                              "--out-prefix", {str(out / "chunk")!r}], provenance=False)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=snakemake_env(), timeout=30)
    assert res.returncode != 0
    text = log.read_text()
    assert text.startswith("argv: chunk")
    assert "failed to start" in text and "positive sum" in text and "Traceback" in text
    assert "positive sum" in res.stderr
    assert _leftovers(out) == []


def test_pool_output_is_byte_identical_to_one_process(tiny_tok, chunk, tmp_path):
    """The bounded, ordered process pool writes what one process writes (3 workers, batches of
    3 documents: more batches than the 6 in flight)."""
    from filmorph.tokenize import tokenize_chunk

    params = {"window_weights": [0.2, 0.5, 0.3]}
    for workers in (1, 3):
        tokenize_chunk(chunk, tiny_tok, "patok", params, 5, tmp_path / f"w{workers}" / "c",
                       workers=workers, batch_size=3)
    for ext in ("bin", "idx", "doc_ids.txt"):
        assert (tmp_path / "w1" / f"c.{ext}").read_bytes() == \
            (tmp_path / "w3" / f"c.{ext}").read_bytes(), ext
    assert (tmp_path / "w1" / "c.doc_ids.txt").read_text().count("\n") == 40


def test_chunk_with_no_document_is_refused_not_a_zero_byte_shard(tiny_tok, tmp_path):
    from filmorph.tokenize import tokenize_chunk

    empty = tmp_path / "chunk_0002.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="chunk_0002.jsonl: no documents"):
        tokenize_chunk(empty, tiny_tok, "vanilla", {}, 1, tmp_path / "out" / "chunk_0002")
    assert _leftovers(tmp_path / "out") == []


# ----------------------------------------------------------------------------- case 8: full disk
class _FullDisk(io.RawIOBase):
    """A raw file on a full disk: every write fails with ENOSPC."""

    def writable(self):
        return True

    def write(self, b):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_out_of_disk_during_tokenization_leaves_no_temp_file(tiny_tok, chunk, tmp_path,
                                                            monkeypatch):
    """The shard's buffered writes fail with ENOSPC mid-way; the clean-up (closing the file
    flushes the same buffer, and fails again) still removes every temporary file."""
    from filmorph import shards
    from filmorph.tokenize import tokenize_chunk

    real_init = shards.ShardWriter.__init__

    def init_on_full_disk(self, *a, **kw):
        real_init(self, *a, **kw)  # creates the hidden .bin temp file
        self._builder.data_file.close()
        self._builder.data_file = io.BufferedWriter(_FullDisk(), buffer_size=256)

    monkeypatch.setattr(shards.ShardWriter, "__init__", init_on_full_disk)
    out = tmp_path / "out"
    with pytest.raises(OSError) as err:
        tokenize_chunk(chunk, tiny_tok, "vanilla", {}, 1, out / "chunk_0001", workers=1,
                       batch_size=4)
    assert err.value.errno == errno.ENOSPC
    assert _leftovers(out) == []


# ----------------------------------------------------------------------------- case 5: logs
def _run_stage_script(tmp_path: Path, body: str) -> tuple[subprocess.CompletedProcess, str]:
    log = tmp_path / "stage.log"
    script = "\n".join([
        "import sys",
        "from types import SimpleNamespace",
        "from filmorph.workflow import run_stage",
        "def main(argv):",
        textwrap.indent(textwrap.dedent(body).strip(), "    "),
        f"run_stage(SimpleNamespace(rule='demo', log=[{str(log)!r}]), main, ['--x', 1],",
        "          provenance=False)",
    ])
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=snakemake_env(), timeout=60)
    return res, log.read_text()


def test_uncaught_exception_lands_in_the_log_and_on_the_console(tmp_path):
    res, log = _run_stage_script(tmp_path, """
        print("progress 10%", file=sys.stderr)
        raise RuntimeError("disk quota exceeded writing shard 7")
    """)
    assert res.returncode != 0
    assert log.startswith("argv: --x 1\n") and "progress 10%" in log
    assert "Traceback" in log and "RuntimeError: disk quota exceeded writing shard 7" in log
    assert "RuntimeError: disk quota exceeded writing shard 7" in res.stderr


def test_nonzero_status_message_reaches_the_console_too(tmp_path):
    res, log = _run_stage_script(tmp_path, """
        print("error: corpus.jsonl:7: bad record (invalid_json)", file=sys.stderr)
        return 2
    """)
    assert res.returncode == 2
    assert "error: corpus.jsonl:7: bad record (invalid_json)" in log and "exit status: 2" in log
    assert "error: corpus.jsonl:7: bad record (invalid_json)" in res.stderr
    assert "demo failed (exit status 2)" in res.stderr


def test_training_job_failing_before_its_engine_starts_logs_it(tmp_path):
    """The train_cpt job script (not run through run_stage): a train config its TrainConfig
    refuses fails the job with the message in the rule's log and on the console (it used to
    leave an empty log)."""
    log = tmp_path / "logs" / "train.log"
    log.parent.mkdir()
    script = "\n".join([
        "import runpy",
        "from types import SimpleNamespace as NS",
        f"smk = NS(rule='train_cpt', scriptdir={str(REPO / 'workflow_scripts')!r},",
        f"         log=[{str(log)!r}], params=NS(train_config='{{\"split\": \"abc\"}}'),",
        "         input=NS(shards=[]),",
        f"         output=NS(summary={str(tmp_path / 'run' / 'train_summary.json')!r}))",
        f"runpy.run_path({str(REPO / 'workflow_scripts/train_cpt.py')!r},",
        "               init_globals={'snakemake': smk})",
    ])
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=snakemake_env(), timeout=60)
    assert res.returncode != 0
    text = log.read_text()
    assert "Traceback" in text and "split must be 1-3 comma-separated numbers" in text
    assert "split must be 1-3 comma-separated numbers" in res.stderr


# ----------------------------------------------------------------------------- cases 6, 10: corpus
def _truncated_gz(path: Path, lines: int = 2000) -> Path:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        for i in range(lines):
            gz.write(json.dumps({"text": f"{TEXTS[i % len(TEXTS)]} {i}"}).encode() + b"\n")
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_truncated_gzip_corpus_names_file_line_and_offset(tmp_path, policy):
    src = _truncated_gz(tmp_path / "corpus.jsonl.gz")
    with pytest.raises(C.CorpusFileError) as err:
        C.split_corpus(src, tmp_path / "out", 1, id_prefix="t", on_bad_record=policy)
    msg = str(err.value)
    assert f"{src}:" in msg and "truncated or corrupt" in msg and "byte" in msg
    line = int(msg.split(f"{src}:", 1)[1].split(":", 1)[0])
    assert 2 <= line <= 2000
    assert _leftovers(tmp_path / "out") == []
    # the stage's command line: exit status 2 and the same message
    rc = C.main(["split", "--input", str(src), "--num-chunks", "1", "--out-dir",
                 str(tmp_path / "out"), "--on-bad-record", policy])
    assert rc == 2


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_non_utf8_corpus_names_file_line_and_byte_offset(tmp_path, policy):
    src = tmp_path / "latin1.jsonl"
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in ("Magandang gabi", "Kumusta")]
    lines += [json.dumps({"text": "Paalam, señor"}, ensure_ascii=False)] * 2
    src.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    first_bad = src.read_bytes().index(b"\xf1")
    if policy == "error":
        with pytest.raises(C.BadRecordError) as err:
            C.split_corpus(src, tmp_path / "out", 1, id_prefix="t")
        assert f"{src}:3:" in str(err.value) and f"byte offset {first_bad}" in str(err.value)
    else:  # the bad lines are skipped and their numbers recorded
        res = C.split_corpus(src, tmp_path / "out", 1, id_prefix="t", on_bad_record="skip")
        assert res["skipped_lines"]["invalid_utf8"] == [3, 4]
        assert json.loads((tmp_path / "out/counts.json").read_text())["skipped_lines"] == \
            res["skipped_lines"]
        # a corpus with nothing but bad lines: refused naming the file, not 0-byte chunks
        only_bad = tmp_path / "only_bad.jsonl"
        only_bad.write_bytes("\n".join(lines[2:]).encode("latin-1") + b"\n")
        with pytest.raises(ValueError, match=r"only_bad.jsonl after skipping 2 bad record.*"
                                             r"no documents"):
            C.split_corpus(only_bad, tmp_path / "out2", 1, id_prefix="t", on_bad_record="skip")


@pytest.mark.parametrize("suffix", [".jsonl", ".txt"])
def test_utf8_bom_at_file_start_is_accepted(tmp_path, suffix):
    src = tmp_path / f"bom{suffix}"
    body = (json.dumps({"text": "Unang dokumento"}) + "\n" + json.dumps({"text": "Ikalawa"}) + "\n"
            if suffix == ".jsonl" else "Unang dokumento\n\nIkalawa\n")
    src.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    docs = list(C.iter_documents(src, id_prefix="b"))
    assert docs == [("b-000000000", "Unang dokumento"), ("b-000000001", "Ikalawa")]


def test_control_character_message_is_whole(tmp_path):
    src = tmp_path / "ctl.jsonl"
    src.write_bytes(b'{"text": "ok"}\n{"text": "tab\there"}\n')
    with pytest.raises(C.BadRecordError) as err:
        list(C.iter_documents(src, id_prefix="c"))
    msg = str(err.value)
    assert f"{src}:2:" in msg and "Invalid control character '\\t' at column 14" in msg


def test_skip_records_the_line_of_every_skipped_record(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_bytes(b'{"text": "a"}\n{bad\n\n{"text": ""}\n{"text": "b"}\n[1]\n{bad\n')
    counts = C.Counts()
    docs = list(C.iter_documents(src, id_prefix="c", on_bad_record="skip", counts=counts))
    assert [d for _, d in docs] == ["a", "b"]
    lines = counts.as_dict()["skipped_lines"]
    assert lines["invalid_json"] == [2, 7] and lines["empty_text"] == [4]
    assert lines["not_an_object"] == [6]


# ----------------------------------------------------------------------------- case 7: chunks
@pytest.mark.parametrize("docs,chunks,fits", [(3, 5, [3]), (10, 6, [5, 10]), (183, 20, [19, 21])])
def test_more_chunks_than_the_documents_fill_is_refused_naming_both(tmp_path, docs, chunks, fits):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": f"dok {i}"}) + "\n" for i in range(docs)))
    with pytest.raises(ValueError) as err:
        C.split_corpus(src, tmp_path / "out", chunks, id_prefix="t")
    msg = str(err.value)
    assert f"{chunks} chunks for {docs} documents" in msg
    assert msg.endswith(" or ".join(map(str, fits)))
    assert _leftovers(tmp_path / "out") == []  # nothing written
    for n in fits:
        res = C.split_corpus(src, tmp_path / f"ok{n}", n, id_prefix="t")
        assert min(res["chunk_documents"]) > 0 and sum(res["chunk_documents"]) == docs


# ----------------------------------------------------------------------------- config checks
def _config(name: str = "config.yaml") -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def _validated(cfg: dict) -> dict:
    from snakemake.utils import validate

    from filmorph.config_checks import refuse_credentials

    cfg = copy.deepcopy(cfg)
    refuse_credentials(cfg)
    validate(cfg, str(REPO / "config/schema.yaml"))
    return cfg


@pytest.mark.parametrize("name", ["config.yaml", "study.yaml"])
def test_shipped_configs_pass_every_check(name):
    from filmorph.config_checks import check_config

    check_config(_validated(_config(name)))


def _edit(path: str, value):
    def apply(cfg):
        *keys, last = path.split(".")
        node = cfg
        for k in keys:
            node = node.setdefault(k, {})
        if value is _DROP:
            node.pop(last)
        else:
            node[last] = value
        return cfg

    return apply


_DROP = object()
CONFIG_MISTAKES = {
    # case 4
    "baseline_arm_not_enabled": ([_edit("arms.vanilla", _DROP)], "report.baseline_arm"),
    # case 7
    "split_abc": ([_edit("train.split", "abc")], "split"),
    "batch_not_divisible": ([_edit("train.global_batch_size", 3), _edit("train.micro_batch_size", 2)],
                            "global_batch_size 3 is not a multiple"),
    "batch_not_divisible_by_dp": ([_edit("train.global_batch_size", 2), _edit("train.gpus_per_node", 4)],
                                  "global_batch_size 2 is not a multiple"),
    "megatron_tp": ([_edit("train.engine", "megatron"), _edit("train.gpus_per_node", 2),
                     _edit("train.global_batch_size", 4), _edit("train.megatron", {"tensor_parallel": 3})],
                    "train.megatron.tensor_parallel"),
    # one family on megatron (families.<name>.engine) is enough for the tensor-parallel check
    "megatron_tp_family_engine": ([_edit("families.llama.engine", "megatron"),
                                   _edit("train.gpus_per_node", 2), _edit("train.global_batch_size", 4),
                                   _edit("train.megatron", {"tensor_parallel": 3})],
                                  "train.megatron.tensor_parallel"),
    "family_engine_unknown": ([_edit("families.gemma.engine", "deepspeed")], "deepspeed"),
    "misspelled_tokenizer_key": ([_edit("families.llama.tokenizer.revison", "abc123")], "revison"),
    "hf_tokenizer_without_name": ([_edit("families.llama.tokenizer", {"source": "hf"})],
                                  "name_or_path"),
    "model_config_free_form": ([_edit("families.llama.model.config", {"hiden_size": 8})],
                               "hiden_size"),
    "no_benchmark": ([_edit("benchmarks.items_per_task", {})], "benchmarks.items_per_task"),
    "window_weights_zero": ([_edit("arms.patok.window_weights", [0, 0, 0])], "positive sum"),
    "named_arm_without_type": ([_edit("arms.patok2", {"variant": "morph"})], "arms.patok2: no `type`"),
    "named_patok_knob_of_another_variant": (
        [_edit("arms.patok_morph", {"type": "patok", "variant": "morph", "window_weights": [1, 1, 1]})],
        "arms.patok_morph: unknown patok parameters for variant 'morph'"),
    "named_patok_unknown_variant": ([_edit("arms.pm", {"type": "patok", "variant": "v9"})],
                                    "instance['arms']['pm']['variant']"),
    "arm_named_base": ([_edit("arms.base", {"type": "vanilla"})], "base"),
    "arm_name_uppercase": ([_edit("arms.Patok", {"type": "patok"})], "Patok"),
    "affix_file_missing": ([_edit("patok_affixes", "/nonexistent/affixes.tsv")],
                           "patok_affixes: /nonexistent/affixes.tsv is not a file"),
    "embedded_chunks_exceed_documents": ([_edit("corpus.num_chunks", 500)],
                                         "500 chunks for 183 documents"),
    "embedded_chunk_left_empty": ([_edit("corpus.num_chunks", 20)],
                                  "20 chunks for 183 documents of the embedded corpus leave "
                                  "chunk_0020 empty"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_MISTAKES))
def test_config_mistake_is_refused_when_read_naming_the_key(case):
    from filmorph.config_checks import check_config

    edits, expect = CONFIG_MISTAKES[case]
    cfg = _config()
    for edit in edits:
        cfg = edit(cfg)
    with pytest.raises(Exception) as err:
        check_config(_validated(cfg))
    assert expect in str(err.value), str(err.value)


CANARY = "hf_CanaryCanaryCanary0123456789abcdefXYZ"


@pytest.mark.parametrize("path", ["families.llama.tokenizer.token", "families.llama.model.hf_token",
                                  "evaluate.reference_models.smollm2-135m.api_key",
                                  "corpus.hf.password", "families.gemma.tokenizer.revision",
                                  "finetune.runs.tiny_lora.automodel_overrides.clientSecret"])
def test_credentials_are_refused_naming_the_key_never_the_value(path):
    from filmorph.config_checks import ConfigError, refuse_credentials

    cfg = _edit(path, CANARY)(_config())
    with pytest.raises(ConfigError) as err:
        refuse_credentials(cfg)
    assert path in str(err.value) and "HF_TOKEN" in str(err.value)
    assert CANARY not in str(err.value)


def test_tokenization_only_config_needs_no_benchmark():
    from filmorph.config_checks import check_config

    cfg = _config()
    for fam in cfg["families"].values():
        fam.pop("model")
    cfg["evaluate"]["reference_models"] = {}
    cfg["benchmarks"]["items_per_task"] = {}
    check_config(_validated(cfg))


def test_credential_key_names():
    from filmorph.config_checks import is_credential_key

    for key in ("token", "hf_token", "HF_TOKEN", "api_key", "apiKey", "password", "secret",
                "use_auth_token", "private_key", "access-token"):
        assert is_credential_key(key), key
    for key in ("tokenizer", "tokenize", "max_new_tokens", "seed", "name_or_path", "key",
                "sample_docs"):
        assert not is_credential_key(key), key


# ----------------------------------------------------------------------------- through Snakemake
def _smk(workdir: Path, config: Path, *args: str, env: dict | None = None):
    cmd = [*SNAKEMAKE, *args, "-d", str(workdir), "--configfile", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or snakemake_env(),
                          timeout=300)


def test_dry_run_refuses_a_config_mistake_naming_the_key(tmp_path):
    """The checks are wired into the workflow: `snakemake -n` fails when the config is read."""
    cfg = _config()
    cfg["arms"].pop("vanilla")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = _smk(tmp_path / "work", path, "all", "-n")
    assert res.returncode != 0 and "report.baseline_arm" in res.stdout + res.stderr


def test_canary_token_leaks_nowhere(tmp_path):
    """A token in the config is refused by `snakemake -n`; a token in the environment
    (HF_TOKEN, HUGGING_FACE_HUB_TOKEN) with a clean config goes through a real stage (the
    corpus split); neither reaches any file under the working directory nor the console."""
    work = tmp_path / "work"
    env = {**snakemake_env(), "HF_TOKEN": CANARY, "HUGGING_FACE_HUB_TOKEN": CANARY}
    cfg = _config()
    cfg["families"] = {"llama": cfg["families"]["llama"]}
    cfg["evaluate"]["reference_models"] = {}
    clean = tmp_path / "clean.yaml"
    clean.write_text(yaml.safe_dump(cfg))
    leaky = copy.deepcopy(cfg)
    leaky["families"]["llama"]["tokenizer"]["token"] = CANARY
    bad = tmp_path / "leaky.yaml"
    bad.write_text(yaml.safe_dump(leaky))

    refused = _smk(work, bad, "all", "-n", env=env)
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "families.llama.tokenizer.token" in said and "HF_TOKEN" in said
    ran = _smk(work, clean, "resources/corpus/counts.json", "--cores", "1", env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert (work / "logs/split_corpus/split.log").exists()
    assert (work / ".snakemake/metadata").is_dir()

    console = refused.stdout + refused.stderr + ran.stdout + ran.stderr
    assert CANARY not in console
    leaked = [str(p.relative_to(work)) for p in work.rglob("*")
              if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert leaked == []
