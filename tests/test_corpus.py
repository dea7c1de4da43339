"""Corpus stage: validation, counted skips, file:line errors, chunking, stable ids."""

import gzip
import json

import pytest

from filmorph import corpus as C


def _write(path, lines: list[bytes]):
    path.write_bytes(b"".join(lines))
    return path


BAD = [
    b'{"text": "Kumain na ako."}\n',
    b"\xff\xfe not utf8\n",
    b"{not json\n",
    b"[1, 2]\n",
    b'{"body": "walang text"}\n',
    b'{"text": 42}\n',
    b'{"text": "   "}\n',
    b"\n",
    b'{"text": "Naglalaro ang mga bata."}\n',
]


def test_skip_counts_each_reason_and_reconciles(tmp_path):
    src = _write(tmp_path / "c.jsonl", BAD)
    res = C.split_corpus(src, tmp_path / "out", 2, id_prefix="t", on_bad_record="skip")
    assert res["records_in"] == 8  # the blank line is a separator, not a record
    assert res["documents_out"] == 2
    assert res["skipped"] == {r: 1 for r in C.BAD_REASONS}
    assert res["records_in"] == res["documents_out"] + res["skipped_total"]
    docs = [d for f in sorted((tmp_path / "out").glob("chunk_*.jsonl")) for d in C.read_chunk(f)]
    # ids keep the record number, so they do not shift when records are skipped
    assert docs == [("t-000000000", "Kumain na ako."), ("t-000000007", "Naglalaro ang mga bata.")]
    assert json.loads((tmp_path / "out" / "counts.json").read_text())["skipped_total"] == 6


@pytest.mark.parametrize("line,lineno,reason", [
    (b"\xff\n", 2, "invalid_utf8"), (b"{x\n", 2, "invalid_json"),
    (b'{"text": ""}\n', 2, "empty_text"), (b'{"t": "a"}\n', 2, "missing_text")])
def test_error_names_file_line_and_reason(tmp_path, line, lineno, reason):
    src = _write(tmp_path / "c.jsonl", [b'{"text": "isa"}\n', line])
    with pytest.raises(C.BadRecordError) as err:
        C.split_corpus(src, tmp_path / "out", 1, id_prefix="t")
    assert f"c.jsonl:{lineno}:" in str(err.value) and reason in str(err.value)
    assert not list((tmp_path / "out").glob("chunk_*"))  # nothing written before failing


def test_chunking_is_contiguous_and_independent_of_count(tmp_path):
    src = tmp_path / "c.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        for i in range(23):
            fh.write(json.dumps({"text": f"dokumento {i}"}) + "\n")
    seen = {}
    for n in (1, 3, 5):
        res = C.split_corpus(src, tmp_path / f"o{n}", n, id_prefix="d")
        files = sorted((tmp_path / f"o{n}").glob("chunk_*.jsonl"))
        assert [f.name for f in files] == [f"chunk_{i + 1:04d}.jsonl" for i in range(n)]
        docs = [d for f in files for d in C.read_chunk(f)]
        assert sum(res["chunk_documents"]) == len(docs) == 23
        seen[n] = docs
    assert seen[1] == seen[3] == seen[5]


def test_plain_text_paragraphs(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("Unang talata.\nTuloy pa.\n\n\nIkalawang talata.\n", encoding="utf-8")
    docs = list(C.iter_documents(src, id_prefix="p"))
    assert docs == [("p-000000000", "Unang talata.\nTuloy pa."), ("p-000000001", "Ikalawang talata.")]


def test_embedded_corpus_is_large_and_clean():
    path = C.embedded_corpus_path()
    assert path.stat().st_size >= 30_000
    counts = C.Counts()
    docs = list(C.iter_documents(path, id_prefix="e", counts=counts))
    assert counts.skipped_total == 0 and len(docs) >= 50
    text = " ".join(t for _, t in docs).lower()
    for form in ("nag", "mag", "um", "in", "han"):
        assert form in text


def test_synthesize_is_deterministic(tmp_path):
    a = C.synthesize(tmp_path / "a.jsonl", 60_000, seed=3)
    C.synthesize(tmp_path / "b.jsonl", 60_000, seed=3)
    C.synthesize(tmp_path / "c.jsonl", 60_000, seed=4)
    assert a["text_bytes"] >= 60_000
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()


def test_cli_error_exit_code(tmp_path, capsys):
    src = _write(tmp_path / "c.jsonl", [b"{oops\n"])
    rc = C.main(["split", "--input", str(src), "--num-chunks", "1", "--out-dir",
                 str(tmp_path / "o")])
    assert rc == 2 and "c.jsonl:1:" in capsys.readouterr().err


def test_fetch_hf_streams_a_dataset_dir(tmp_path, monkeypatch):
    """The hub path (datasets.load_dataset, streaming) on a local dataset dir: order kept,
    bad texts passed on for split_corpus's policy, no token needed or written."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    data = tmp_path / "ds"
    data.mkdir()
    rows = [{"text": "Kumain ka na?"}, {"text": ""}, {"text": "Oo, salamat."}]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "source.jsonl.gz"
    res = C.fetch_hf(str(data), out, split="train", text_field="text", progress=False)
    assert res["records"] == 3
    with gzip.open(out, "rt", encoding="utf-8") as fh:
        assert [json.loads(line) for line in fh] == rows
    counts = C.split_corpus(out, tmp_path / "chunks", 1, id_prefix="hf", on_bad_record="skip")
    assert counts["documents_out"] == 2 and counts["skipped"]["empty_text"] == 1
    assert "token" not in json.dumps(res).lower()
