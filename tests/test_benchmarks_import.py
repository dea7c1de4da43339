"""Tests of the published-benchmark converter (filmorph.benchmarks.convert, .sources,
.cute_published), its command line and the import rules, on small files in the published
formats (tests/fixtures/published; made-up items, the published record layouts)."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from filmorph.benchmarks import sources
from filmorph.benchmarks.__main__ import main as cli
from filmorph.benchmarks.convert import (
    Options,
    convert,
    convert_file,
    convert_source,
    detect_schema,
    langgame_task,
)
from filmorph.benchmarks.cute_published import ANSWER_CUE, TASKS
from filmorph.items import BadItemError, read_items

FIX = Path(__file__).parent / "fixtures" / "published"
DETECTED = {
    "mcq_affixation_dataset.jsonl": "pacute",
    "gen_manipulation_dataset.jsonl": "pacute",
    "affixation_mcq.jsonl": "pacute",
    "hierarchical_mcq.jsonl": "hierarchical",
    "hierarchical_gen.jsonl": "hierarchical",
    "stress_mcq.jsonl": "stress",
    "stress_gen.jsonl": "stress",
    "cute_gen.jsonl": "cute",
    "spell.tsv": "cute",
    "contains_word.tsv": "cute",
    "del_word.tsv": "cute",
    "langgame_mcq.jsonl": "langgame",
    "langgame_gen.jsonl": "langgame",
    "multi_digit_addition_mcq.jsonl": "addition",
    "multi_digit_addition_gen.jsonl": "addition",
}


def _data_lines(path: Path) -> int:
    lines = [ln for ln in path.read_text(encoding="utf-8").split("\n") if ln.strip()]
    return len(lines) - (1 if path.suffix == ".tsv" else 0)


@pytest.mark.parametrize("fname", sorted(DETECTED))
def test_every_fixture_converts_under_auto_with_consistent_counts(fname):
    conv = convert_source(str(FIX / fname), "x", Options(on_bad_item="skip"))
    s = conv.stats
    assert s["schema"] == DETECTED[fname] and s["schema_detected"] is True
    assert s["items_in"] == _data_lines(FIX / fname)
    assert s["items_in"] == s["items_out"] + sum(s["skipped"].values())
    assert len(s["skipped_lines"]) == sum(s["skipped"].values())
    assert s["source_sha256"] == sources.sha256_file(FIX / fname) and s["fetched"] is None
    assert all(it.meta["scoring"] == DETECTED[fname] for it in conv.items)
    assert len({(it.group, it.task) for it in conv.items}) >= 1


def test_pacute_without_id_gets_file_and_line_ids_and_with_id_keeps_its_own():
    a = convert(str(FIX / "mcq_affixation_dataset.jsonl"), "pacute", "x")
    assert [it.id for it in a] == [f"mcq_affixation_dataset-{n:05d}" for n in (1, 2, 3)]
    assert a == convert(str(FIX / "mcq_affixation_dataset.jsonl"), "pacute", "x")  # stable
    b = convert(str(FIX / "affixation_mcq.jsonl"), "pacute", "x")
    assert [it.id for it in b] == ["affixation_mcq_00000", "affixation_mcq_00001"]
    assert [(it.group, it.task) for it in b] == [
        ("affix_inflection", "prefix"),
        ("affix_identification", "prefix"),
    ]


def test_duplicate_options_dropped_or_skipped():
    items = convert(str(FIX / "mcq_affixation_dataset.jsonl"), "pacute", "x")
    up = items[1]
    assert up.options == ["BUkas", "BUKAS", "bukas"] and up.gold == 1 and up.answer == "BUKAS"
    assert up.meta["options_published"] == ["BUkas", "BUKAS", "bukas", "BUkas"]
    assert up.meta["duplicates_dropped"] == 1
    conv = convert_file(FIX / "mcq_affixation_dataset.jsonl", "x", Options(schema="pacute"))
    assert conv.stats["repaired"] == {"duplicate_options_dropped": 1}
    conv = convert_file(
        FIX / "mcq_affixation_dataset.jsonl",
        "x",
        Options(schema="pacute", on_bad_item="skip", duplicate_options="skip"),
    )
    assert conv.stats["skipped"] == {"duplicate_options": 1} and conv.stats["items_out"] == 2
    assert conv.stats["skipped_lines"][0]["line"] == 2
    with pytest.raises(BadItemError, match=r"mcq_affixation_dataset\.jsonl:2: MCQ options must be distinct"):
        convert(str(FIX / "mcq_affixation_dataset.jsonl"), "pacute", "x", duplicate_options="skip")


def test_gold_text_duplicated_stays_the_gold():
    # hierarchical line 1: options t, a, o, a; answer a
    (it, _) = convert(str(FIX / "hierarchical_mcq.jsonl"), "hierarchical", "x", on_bad_item="skip")
    assert it.options == ["t", "a", "o"] and it.gold == 1 and it.answer == "a"


def test_error_names_file_line_and_reason_skip_records_them(tmp_path):
    with pytest.raises(BadItemError, match=r"hierarchical_mcq\.jsonl:3: fewer than 2 distinct options"):
        convert(str(FIX / "hierarchical_mcq.jsonl"), "hierarchical", "x")
    src = (FIX / "langgame_mcq.jsonl").read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "lg.jsonl"
    lines = [src[0], '{"question": "no', "", "[1, 2]", src[1], '{"id": "q"}', src[2], src[0]]
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(BadItemError, match=r"lg\.jsonl:2: invalid JSON"):
        convert(str(bad), "langgame", "x")
    conv = convert_file(bad, "x", Options(schema="langgame", on_bad_item="skip"))
    s = conv.stats
    assert s["items_in"] == 7 and s["items_out"] == 3
    assert s["skipped"] == {"duplicate_id": 1, "invalid_json": 1, "missing_field": 1, "not_an_object": 1}
    assert [(d["line"], d["reason"]) for d in s["skipped_lines"]] == [
        (2, "invalid_json"),
        (4, "not_an_object"),
        (6, "missing_field"),
        (8, "duplicate_id"),
    ]


def test_langgame_task_from_the_question_template_never_the_option_words():
    q = "Which option is the longest? The options are: [ most, mostly, start, ends]. Answer:"
    assert langgame_task(q) == ("longest", None)
    q = "The choices: [ contains, shortest, longest, a]. Which of the choices starts with 'lo'? Answer:"
    assert langgame_task(q) == ("starts_with", "lo")
    q = "What  has the most letter 'e's? The available choices are: [ tree, starts, ends, b]. Answer:"
    assert langgame_task(q) == ("most_letter", "e")
    with pytest.raises(ValueError, match="0 LangGame templates"):
        langgame_task("Which is the best? [ a, b]. Answer:")
    items = convert(str(FIX / "langgame_mcq.jsonl"), "langgame", "x")
    assert [it.task for it in items] == ["starts_with", "longest", "most_letter"]
    assert all(it.group == "langgame" and it.options[0] == it.answer and it.delimiter == " " for it in items)


def test_cute_tsv_prompts_are_built_like_cute():
    items = convert(str(FIX / "spell.tsv"), "cute", "x")
    assert [it.id for it in items] == ["spell-00002", "spell-00003"]
    it = items[0]
    assert it.task == "spell" and it.group == "character" and it.answer == "r i v e r"
    assert it.prompt.endswith('Question: Spell out the word "river".' + ANSWER_CUE)
    assert it.stop == ['"', "\n"] and it.delimiter == ""
    lines = it.prompt.split("\n")
    assert lines[0].startswith("Spell out the word, putting spaces") and len(lines) == 8
    assert all(ln.startswith(" " * 12) for ln in lines[1:])
    assert [ln.strip()[:2] for ln in lines[2:6]] == ["1.", "2.", "3.", "4."]
    assert all('Answer: "' in ln for ln in lines[2:6])
    (w,) = [x for x in convert(str(FIX / "contains_word.tsv"), "cute", "x") if x.answer == "No"]
    assert w.group == "word" and 'Question: Is there a "dog" in "The cat sat."?' in w.prompt


def test_cute_rand_file_uses_its_base_task_and_cute_task_override(tmp_path):
    rand = tmp_path / "spell_rand.tsv"
    rand.write_text("input1\tlabel\nqzx\tq z x\n", encoding="utf-8")
    (it,) = convert(str(rand), "cute", "x")
    assert it.task == "spell_rand" and it.meta["cute_task"] == "spell"
    assert it.prompt.startswith(TASKS["spell"].instruction)
    other = tmp_path / "whatever.tsv"
    other.write_text("input1\tinput2\tlabel\na\tcat\tYes\n", encoding="utf-8")
    with pytest.raises(BadItemError, match="not a CUTE task"):
        convert(str(other), "cute", "x")
    (it,) = convert(str(other), "cute", "x", cute_task="contains_char")
    assert it.task == "contains_char" and 'Is there a "a" in "cat"?' in it.prompt
    bom = tmp_path / "del_char.tsv"
    bom.write_bytes(b"\xef\xbb\xbfinput1\tinput2\tlabel\r\na\tcat\tct\r\n")
    (it,) = convert(str(bom), "auto", "x")
    assert it.task == "del_char" and it.answer == "ct" and 'of "a" in "cat"' in it.prompt
    bad = tmp_path / "spell.tsv"
    bad.write_text("input1\tlabel\nab\ta b\textra\n", encoding="utf-8")
    with pytest.raises(BadItemError, match=r"spell\.tsv:2: 3 columns, the header has 2"):
        convert(str(bad), "cute", "x")


def test_study_cute_gen_gets_the_answer_cue_unless_asked_not_to():
    a, b = convert(str(FIX / "cute_gen.jsonl"), "cute", "x")
    assert a.prompt.endswith('" river ".' + ANSWER_CUE) and a.meta["answer_cue"] is True
    assert b.task == "del_word" and b.group == "word"
    a, _ = convert(str(FIX / "cute_gen.jsonl"), "cute", "x", cute_answer_cue=False)
    assert a.prompt.endswith('" river ".') and a.stop == ["\n"]


def test_language_and_lettered_variant():
    h = convert(str(FIX / "hierarchical_gen.jsonl"), "hierarchical", "x")
    assert h[0].prompt.startswith("Ilang") and h[0].group == "level_0"  # the study read prompt_tl
    assert convert(str(FIX / "hierarchical_gen.jsonl"), "hierarchical", "x", language="en")[
        0
    ].prompt.startswith("How many")
    s = convert(str(FIX / "stress_mcq.jsonl"), "stress", "x", language="tl")
    assert s[0].options == ["una", "ikalawa"] and s[0].answer == "ikalawa"
    (st, acc) = convert(str(FIX / "stress_mcq.jsonl"), "stress", "x", mcq_style="lettered")
    assert st.options == ["A", "B"] and st.answer == "B" and st.prompt.endswith("\nA. 1st\nB. 2nd\nAnswer:")
    assert acc.options == ["A", "B", "C"] and acc.meta["choices"][acc.gold] == "batà"
    (lg, *_) = convert(str(FIX / "langgame_mcq.jsonl"), "langgame", "x", mcq_style="lettered")
    assert lg.prompt.count("Answer:") == 1 and lg.prompt.endswith("D. stone\nAnswer:")


def test_format_forcing_and_detect_schema():
    gens = convert(str(FIX / "multi_digit_addition_mcq.jsonl"), "addition", "x", "gen")
    assert gens[0].format == "gen" and gens[0].answer == "455" and gens[0].delimiter == ""
    with pytest.raises(BadItemError, match="no options"):
        convert(str(FIX / "stress_gen.jsonl"), "stress", "x", "mcq")
    assert detect_schema({"question": "1+2=", "answer": "3"}) == "addition"
    assert detect_schema({"question": "Which? Answer:", "answer": " a"}) == "langgame"
    with pytest.raises(ValueError, match="no schema fits"):
        detect_schema({"foo": 1})
    with pytest.raises(ValueError, match="on_bad_item must be one of"):
        Options(on_bad_item="ignore").check()


def test_parquet_records(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(ln) for ln in (FIX / "cute_gen.jsonl").read_text().splitlines()]
    rows = [{"prompt": r["question"], "answer": r["answer"]} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "spell-00000-of-00001.parquet")
    conv = convert_file(tmp_path / "spell-00000-of-00001.parquet", "x")  # a hub shard's name
    assert conv.stats["schema"] == "cute" and conv.stats["items_in"] == 2
    assert [it.id for it in conv.items] == ["spell-00000-of-00001-00001", "spell-00000-of-00001-00002"]
    assert [it.task for it in conv.items] == ["spell", "spell"]


def test_hub_source_keeps_the_hub_loading_path(tmp_path, monkeypatch):
    calls = []

    def fake_download(repo, path):
        calls.append((repo, path))
        return FIX / "spell.tsv"

    monkeypatch.setattr(sources, "_download_hub", fake_download)
    assert sources.kind("leukas/cute:data/spell.tsv") == "hub"
    conv = convert_source("leukas/cute:data/spell.tsv", "x", Options())
    assert calls == [("leukas/cute", "data/spell.tsv")]
    assert conv.stats["schema"] == "cute" and [it.id for it in conv.items][0] == "spell-00002"
    assert (
        conv.stats["fetched"]["url"]
        == "https://huggingface.co/datasets/leukas/cute/resolve/main/data/spell.tsv"
    )
    assert (
        conv.stats["fetched"]["sha256"]
        == conv.stats["source_sha256"]
        == sources.sha256_file(FIX / "spell.tsv")
    )
    with pytest.raises(FileNotFoundError, match="hub id"):
        convert(str(tmp_path / "missing.jsonl"), "filmorph", "x")


@pytest.fixture()
def http_root(tmp_path):
    """A local http.server on 127.0.0.1 serving a copy of the fixtures."""
    root = tmp_path / "www"
    root.mkdir()
    for f in FIX.iterdir():
        (root / f.name).write_bytes(f.read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_source_fetch_with_sha256_and_cli(http_root, tmp_path, capsys):
    url = f"{http_root}/spell.tsv"
    want = sources.sha256_file(FIX / "spell.tsv")
    rec = sources.fetch(url, tmp_path / "f" / "spell.tsv", want)
    assert rec["sha256"] == want and rec["url"] == url and rec["bytes"] == (FIX / "spell.tsv").stat().st_size
    assert json.loads((tmp_path / "f" / "spell.tsv.fetch.json").read_text())["sha256"] == want
    with pytest.raises(ValueError, match="differs from the configured"):
        sources.fetch(url, tmp_path / "g" / "spell.tsv", "0" * 64)
    assert not (tmp_path / "g" / "spell.tsv").exists()
    out = tmp_path / "out" / "cute_spell.jsonl"
    assert (
        cli(["convert", "--input", url, "--name", "cute_spell", "--on-bad-item", "skip", "--out", str(out)])
        == 0
    )
    assert "schema cute, 2 in, 2 out" in capsys.readouterr().err
    stats = json.loads((tmp_path / "out" / "cute_spell.stats.json").read_text())
    assert stats["source_sha256"] == want and stats["fetched"]["url"] == url
    assert stats["items_in"] == stats["items_out"] == 2 and stats["args"]["on_bad_item"] == "skip"
    assert [it.benchmark for it in read_items(out)] == ["cute_spell", "cute_spell"]


def test_cli_error_exit_names_the_line(tmp_path):
    out = tmp_path / "h.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "filmorph.benchmarks", "convert",
         "--input", str(FIX / "hierarchical_mcq.jsonl"), "--name", "h", "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode != 0 and "hierarchical_mcq.jsonl:3: fewer than 2 distinct options" in res.stderr
    assert not out.exists()


def test_import_rules_fetch_a_url_and_convert_local_files(http_root, tmp_path):
    """fetch_benchmark (URL, sha256 checked) and import_benchmark (local TSV and the fetched file)
    run by Snakemake, with the configured options."""
    import yaml
    from conftest import REPO, snakemake

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["benchmarks"]["on_bad_item"] = "skip"
    cfg["benchmarks"]["external"] = {
        "pub_hier": {"input": f"{http_root}/hierarchical_mcq.jsonl", "schema": "hierarchical",
                     "sha256": sources.sha256_file(FIX / "hierarchical_mcq.jsonl"), "mcq_style": "lettered"},
        "pub_spell": {"input": str(FIX / "spell.tsv"), "cute_answer_cue": False},
    }  # fmt: skip
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    work = tmp_path / "w"
    targets = ["resources/benchmarks/pub_hier.jsonl", "resources/benchmarks/pub_spell.jsonl"]
    snakemake(work, "--cores", "1", *targets, config=str(conf))
    hs = json.loads((work / "resources/benchmarks/pub_hier.stats.json").read_text())
    assert hs["schema"] == "hierarchical" and hs["skipped"] == {"too_few_options": 1} and hs["items_out"] == 2
    assert hs["fetched"]["url"] == f"{http_root}/hierarchical_mcq.jsonl" and hs["mcq_style"] == "lettered"
    assert (work / "resources/benchmarks/source/pub_hier/hierarchical_mcq.jsonl.fetch.json").is_file()
    assert all(it.options[0] == "A" for it in read_items(work / "resources/benchmarks/pub_hier.jsonl"))
    spell = read_items(work / "resources/benchmarks/pub_spell.jsonl")
    assert spell[0].meta["answer_cue"] is False and spell[0].benchmark == "pub_spell"
