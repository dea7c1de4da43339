"""PACUTE's stress and diacritic tasks (filmorph.benchmarks.stress) on a small fixture lexicon in
the UP Diksiyonaryong Filipino JSONL format (tests/fixtures/updf_stress.jsonl, glosses our own):
the classification rules, the lexicon filters and homographs, the generated items' gold answers
checked against hand-written expectations, check, skipping without a lexicon, the CLI stats."""

import json
from collections import Counter
from pathlib import Path

import pytest

import filmorph.benchmarks as B
from filmorph.benchmarks import skipped_tasks, stress, tasks
from filmorph.benchmarks.__main__ import main
from filmorph.benchmarks.check import check
from filmorph.benchmarks.common import make_items
from filmorph.items import read_items

FIXTURE = str(Path(__file__).parent / "fixtures" / "updf_stress.jsonl")
LEX = (FIXTURE,)
N = 3
SEED = 11

# hand-written: plain word -> (stress class, stressed syllable counted from 1, marked spelling)
GOLD = {
    "anak": ("mabilis", 2, "anák"),
    "ibon": ("mabilis", 2, "ibón"),
    "kamay": ("mabilis", 2, "kamáy"),
    "bundok": ("mabilis", 2, "bundók"),
    "ulan": ("mabilis", 2, "ulán"),
    "bata": ("malumi", 1, "batà"),
    "lupa": ("malumi", 1, "lupà"),
    "pusa": ("malumi", 1, "pusà"),
    "puno": ("malumi", 1, "punò"),
    "isda": ("maragsa", 2, "isdâ"),
    "dugo": ("maragsa", 2, "dugô"),
    "sampu": ("maragsa", 2, "sampû"),
    "kabila": ("maragsa", 3, "kabilâ"),
    "bahay": ("malumay", 1, "báhay"),
    "salamat": ("malumay", 2, "salámat"),
    "tubig": ("malumay", 1, "túbig"),
    "araw": ("malumay", 1, "áraw"),
    "dalisay": ("malumay", 2, "dalísay"),
}
HOMOGRAPHS = {"pala", "bukas", "tasa"}  # tasá's second reading tása is only in a definition


def stress_items(fmt: str, n: int, seed: int) -> list:
    """The stress tasks' items as ``generate("pacute", fmt, n, seed, LEX)`` makes them (the other
    PACUTE tasks left out, for speed)."""
    return [it for t in stress.tasks_for(LEX) for it in make_items("pacute", t, fmt, n, seed)]


@pytest.fixture(scope="module")
def items():
    return {f: stress_items(f, N, SEED) for f in ("mcq", "gen")}


@pytest.mark.parametrize(
    "word, cls, index",
    [
        ("sukób", "mabilis", 1),
        ("batà", "malumi", 0),
        ("kabilâ", "maragsa", 2),
        ("dalísay", "malumay", 1),
        ("úlag", "malumay", 0),
        ("malumì", "malumi", 1),
        ("mataharì", "malumi", 2),
    ],
)
def test_classification_rules(word, cls, index):
    a = stress.analyse(word)
    assert a.stress_class == cls and a.stress_index == index and a.plain == stress.strip_marks(word)


@pytest.mark.parametrize("word", ["pánubigin", "dulàan", "tagapágsalitâ", "bató-batô", "anak", "ák", "pâla"])
def test_no_class(word):
    """Acute before the penult, grave/circumflex before the last syllable, two marks, a hyphen, no
    mark, one syllable: none of the four classes."""
    assert stress.analyse(word) is None


def test_marks_helpers():
    assert stress.strip_marks("tagapágsalitâ") == "tagapagsalita"
    assert stress.strip_marks("pañuélo") == "pañuelo"  # ñ is a letter, not a stress mark
    assert stress.diacritic_count("tagapágsalitâ") == 2 and stress.diacritic_count("anak") == 0
    assert stress.marked_letters("tagapágsalitâ") == ("á", "â")
    assert set(stress.markings("bata")) == {"báta", "batá", "batà", "batâ"}


def test_lexicon_filters_and_readings():
    lex = stress.load(LEX)
    words = {e.word for e in lex.entries}
    # Filipino etymology, lower-case single words of two syllables or more; first entry of a spelling
    assert {"kompyúter", "kasángkayán", "Maynílà", "ng"}.isdisjoint(words)
    assert not any(" " in w for w in words)
    assert sum(e.word == "ulán" for e in lex.entries) == 1
    assert lex.readings["pala"] == ("palá", "pála") and lex.readings["bukas"] == ("bukás", "búkas")
    assert lex.readings["tasa"] == ("tasá", "tása") and "tasá" in words
    pool = {a.plain: (a.stress_class, a.stress_index + 1, a.word) for _, a in lex.stress_pool}
    assert pool == GOLD  # homographs, two marks, odd placements are out
    assert Counter(a.stress_class for _, a in lex.class_pool[:8]) == dict.fromkeys(stress.CLASSES, 2)
    assert [stress.diacritic_count(e.word) for e in lex.count_pool[:2]] == [1, 2]
    assert lex.files[0]["file"] == "updf_stress.jsonl" and len(lex.files[0]["sha256"]) == 64


def test_bad_lexicon_lines_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"word": "anák", "part_of_speech": "png", "etymology": "none"}\n{"word": 3}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: .*string fields word, part_of_speech, etymology"):
        stress.load((str(bad),))
    bad.write_text("not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not a JSON object"):
        stress.load((str(bad),))
    with pytest.raises(FileNotFoundError, match="benchmarks.stress_lexicon"):
        stress.load((str(tmp_path / "missing.jsonl"),))


def test_tasks_only_with_a_lexicon():
    assert not set(stress.TASK_NAMES) & set(tasks("pacute"))
    assert tasks("pacute", LEX)[-6:] == list(stress.TASK_NAMES)
    assert skipped_tasks("pacute") == dict.fromkeys(stress.TASK_NAMES, stress.NO_LEXICON)
    assert skipped_tasks("pacute", LEX) == {} and skipped_tasks("cute") == {}


def test_counts_schema_and_same_questions(items):
    for fmt in ("mcq", "gen"):
        assert Counter(it.task for it in items[fmt]) == dict.fromkeys(stress.TASK_NAMES, N)
    assert [(m.prompt, m.answer) for m in items["mcq"]] == [(g.prompt, g.answer) for g in items["gen"]]
    groups = {it.task: it.group for it in items["mcq"]}
    assert groups["stress_classify"] == "syllabification" and groups["diacritic_exactly"] == "composition"
    assert groups["diacritic_normalize"] == "manipulation"
    for it in items["mcq"]:
        assert it.options[it.gold] == it.answer and len(set(it.options)) == len(it.options) >= 2
        assert it.source and all(s.startswith("stress_lexicon:updf_stress.jsonl:") for s in it.source)


def test_gold_against_the_hand_table(items):
    for it in items["mcq"]:
        m = it.meta
        if it.task.startswith("stress_"):
            cls, pos, marked = GOLD[m["word"]]
            assert m["word"] not in HOMOGRAPHS and f'"{m["word"]}"' in it.prompt
            want = {"stress_identify": f"{pos}{['st', 'nd', 'rd'][pos - 1]}", "stress_classify": cls}
            assert it.answer == want.get(it.task, marked)
            assert m["stress"]["entry"]["word"] == marked and m["stress"]["readings"] == [marked]
            if it.task == "stress_identify":
                assert it.options == ["1st", "2nd", "3rd"][: len(m["stress"]["syllables"])]
            if it.task == "stress_place":
                assert all(
                    stress.strip_marks(o) == m["word"] and stress.diacritic_count(o) == 1 for o in it.options
                )
        elif it.task == "diacritic_exactly":
            right = [o for o in it.options if o.count(m["letter"]) == m["count"]]
            assert right == [it.answer] and f'exactly {m["count"]} "{m["letter"]}"' in it.prompt
        elif it.task == "diacritic_count":
            assert it.answer == str(stress.diacritic_count(m["word"]))
        else:
            assert it.answer == stress.strip_marks(m["word"]) and m["word"] in it.options
            assert all(stress.diacritic_count(o) for o in it.options if o != it.answer)


def test_deterministic_and_seeded(items):
    again = stress_items("mcq", N, SEED)
    assert [it.to_json() for it in again] == [it.to_json() for it in items["mcq"]]
    other = stress_items("mcq", N, SEED + 1)
    assert [it.prompt for it in other] != [it.prompt for it in items["mcq"]]


def test_check_passes_clean_items_and_flags_tampered_ones(items):
    report = check(items["mcq"])
    assert report["undictionaried"] == [] and report["double_answers"] == []
    ident = next(it for it in items["mcq"] if it.task == "stress_classify")
    wrong = next(o for o in ident.options if o != ident.answer)
    plain = ident.meta["word"]
    reading = next(
        w for w in stress.markings(plain) if stress.analyse(w) and stress.analyse(w).stress_class == wrong
    )
    bad = ident.from_json(
        {
            **ident.to_json(),
            "meta": {
                **ident.meta,
                "stress": {**ident.meta["stress"], "readings": [ident.meta["stress"]["word"], reading]},
            },
        }
    )
    assert "gives the distractor" in check([bad])["double_answers"][0]["why"]
    k = (ident.gold + 1) % len(ident.options)
    flipped = ident.from_json({**ident.to_json(), "answer": ident.options[k], "gold": k})
    assert "not the gold" in check([flipped])["undictionaried"][0]["why"]
    sel = next(it for it in items["mcq"] if it.task == "diacritic_exactly")
    j = (sel.gold + 1) % 4
    opts = list(sel.options)
    opts[j] = sel.answer + "x"
    assert check([sel.from_json({**sel.to_json(), "options": opts})])["double_answers"]


def _make(tmp_path, *extra):
    out = tmp_path / "p.jsonl"
    argv = ["make", "--benchmark", "pacute", "--format", "gen", "--items-per-task", "1", "--seed", "1"]
    assert main([*argv, "--out", str(out), *extra]) == 0
    return read_items(out), json.loads((tmp_path / "p.stats.json").read_text())


def test_cli_records_skipped_tasks_and_the_lexicon(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "_tasks", lambda benchmark: ())  # the other PACUTE tasks: not needed here
    its, st = _make(tmp_path)
    assert its == []
    assert st["skipped_tasks"] == dict.fromkeys(stress.TASK_NAMES, stress.NO_LEXICON)
    assert not {it.task for it in its} & set(stress.TASK_NAMES) and "stress_lexicon" not in st
    its, st = _make(tmp_path, "--stress-lexicon", FIXTURE)
    assert st["skipped_tasks"] == {} and st["stress_lexicon"][0]["entries"] == 32
    assert st["per_task"] == dict.fromkeys(stress.TASK_NAMES, 1)
    assert (
        main(
            [
                "make",
                "--benchmark",
                "pacute",
                "--format",
                "gen",
                "--items-per-task",
                "1",
                "--seed",
                "1",
                "--out",
                str(tmp_path / "x.jsonl"),
                "--stress-lexicon",
                str(tmp_path / "none.jsonl"),
            ]
        )
        == 1
    )
