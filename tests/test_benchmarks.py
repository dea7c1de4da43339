"""Benchmark generators (filmorph.benchmarks): schema, counts, determinism, gold answers checked
independently, distractors, few-shot hygiene, the affixation rules, external conversion, CLI."""

import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from filmorph.benchmarks import BENCHMARKS, convert, generate, morph, tasks
from filmorph.items import BadItemError, read_items, validate_item, write_items
from filmorph.syllabify import count_syllables, reduplicate_first_syllable, syllabify

N = {"pacute": 12, "hierarchical": 12, "cute": 12, "langgame": 40, "addition": 200}
SEED = 7


@pytest.fixture(scope="module")
def items():
    """{(benchmark, fmt): items} at N[benchmark] items per task."""
    return {(b, f): generate(b, f, N[b], SEED) for b in BENCHMARKS for f in ("mcq", "gen")}


def test_task_lists():
    assert BENCHMARKS == ("pacute", "hierarchical", "cute", "langgame", "addition")
    assert tasks("cute") == [
        "spell",
        "spell_inverse",
        "contains_char",
        "contains_word",
        "orth",
        "sem",
        "ins_char",
        "ins_word",
        "del_char",
        "del_word",
        "sub_char",
        "sub_word",
        "swap_char",
        "swap_word",
    ]
    assert tasks("langgame") == ["most_letter", "contains", "starts_with", "ends_with", "longest", "shortest"]
    pacute = tasks("pacute")
    assert {
        "prefix_apply",
        "infix_identify",
        "suffix_apply",
        "circumfix_apply",
        "reduplication_apply",
        "spelling",
        "word_formation",
        "swap_chars",
        "syllable_split",
        "nth_syllable",
        "prefix_select",
        "char_exactly",
        "length_least",
        "uppercase_exactly",
        "duplicate_char",
        "lowercase",
    } <= set(pacute)
    for b in BENCHMARKS:
        assert tasks(b) == tasks(b) and len(set(tasks(b))) == len(tasks(b))
    with pytest.raises(ValueError, match="unknown benchmark"):
        tasks("nope")


@pytest.mark.parametrize("bench", BENCHMARKS)
@pytest.mark.parametrize("fmt", ["mcq", "gen"])
def test_schema_counts_ids(items, bench, fmt):
    its = items[(bench, fmt)]
    counts = Counter(it.task for it in its)
    assert counts == {t: N[bench] for t in tasks(bench)}
    assert len({it.id for it in its}) == len(its)
    for it in its:
        validate_item(it)
        assert it.benchmark == bench and it.format == fmt
        assert re.fullmatch(rf"{bench}-{fmt}-{re.escape(it.group)}-{it.task}-\d{{5}}", it.id)
        assert (it.level is not None) == (bench == "hierarchical")
        if fmt == "mcq":
            assert len(it.options) == 4 and len(set(it.options)) == 4
            assert it.options[it.gold] == it.answer
        else:
            assert it.answer.strip() and it.stop == ["\n"] and "\n" not in it.answer
        if bench == "addition":
            assert it.delimiter == "" and it.source == []
        else:
            assert it.prompt.endswith("Answer:") and it.delimiter == " " and it.source
    if bench != "addition":
        assert all(it.meta for it in its)


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_mcq_and_gen_ask_the_same_questions(items, bench):
    mcq, gen = items[(bench, "mcq")], items[(bench, "gen")]
    assert [(m.prompt, m.answer) for m in mcq] == [(g.prompt, g.answer) for g in gen]


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_gold_positions_spread(items, bench):
    pos = Counter(it.gold for it in items[(bench, "mcq")])
    total = sum(pos.values())
    assert set(pos) == {0, 1, 2, 3}
    assert min(pos.values()) >= 0.12 * total, pos


def test_hierarchical_levels(items):
    its = items[("hierarchical", "mcq")]
    assert {it.level for it in its} == set(range(6))
    assert all(it.group == f"level_{it.level}" for it in its)


def test_sources_name_the_lexical_data(items):
    pac = items[("pacute", "mcq")]
    assert any(s.startswith("tglstemmer:") for it in pac for s in it.source)
    assert any(s.startswith("affix:prefix:") for it in pac for s in it.source)
    assert all(s.startswith("wordfreq:en:") for it in items[("langgame", "mcq")] for s in it.source)
    sem = [it for it in items[("cute", "mcq")] if it.task == "sem"]
    assert all(s.startswith("semantic_groups:") for it in sem for s in it.source)


# --------------------------------------------------------------------------- gold checked independently


def _by_task(its):
    out = {}
    for it in its:
        out.setdefault(it.task, []).append(it)
    return out


def test_gold_addition(items):
    for it in items[("addition", "mcq")]:
        a, b = map(int, it.prompt.rstrip("=").split("+"))
        assert 100 <= a <= 999 and 0 <= b <= 999
        assert it.answer == str(a + b)
        assert all(o.isdigit() and int(o) >= 0 for o in it.options)
        assert all(
            0 < abs(int(o) - (a + b)) <= 100 or sorted(o) == sorted(it.answer)
            for o in it.options
            if o != it.answer
        )


def test_gold_pacute_composition_and_syllables(items):
    t = _by_task(items[("pacute", "mcq")])
    for it in t["spelling"]:
        assert it.answer == " ".join(it.meta["word"])
    for it in t["char_count"]:
        assert it.answer == str(it.meta["word"].count(it.meta["letter"]))
    for it in t["vowel_count"]:
        assert it.answer == str(sum(c in "aeiou" for c in it.meta["word"]))
    for it in t["length"]:
        assert it.answer == str(len(it.meta["word"]))
    for it in t["word_formation"]:
        assert (
            sorted(it.meta["pieces"]) == sorted(syllabify(it.answer))
            and "".join(it.meta["pieces"]) != it.answer
        )
    for it in t["syllable_count"]:
        assert it.answer == str(count_syllables(it.meta["word"]))
    for it in t["syllable_split"]:
        assert it.answer == "-".join(syllabify(it.meta["word"]))
    for it in t["first_syllable"]:
        assert it.answer == syllabify(it.meta["word"])[0]
    for it in t["last_syllable"]:
        assert it.answer == syllabify(it.meta["word"])[-1]
    for it in t["nth_syllable"]:
        assert it.answer == syllabify(it.meta["word"])[it.meta["index"] - 1]
        assert f"{it.meta['index']}" in it.prompt


def _check_positional(t):
    for it in t["insert_char"]:
        w, k, c = it.meta["word"], it.meta["position"], it.meta["letter"]
        assert it.answer == w[:k] + c + w[k:]
    for it in t["delete_char"]:
        w, k = it.meta["word"], it.meta["position"]
        assert it.answer == w[: k - 1] + w[k:]
    for it in t["substitute_char"]:
        w, k, c = it.meta["word"], it.meta["position"], it.meta["letter"]
        assert it.answer == w[: k - 1] + c + w[k:] and it.answer != w
    for it in t["swap_chars"]:
        w = list(it.meta["word"])
        i, j = (p - 1 for p in it.meta["positions"])
        w[i], w[j] = w[j], w[i]
        assert it.answer == "".join(w) != it.meta["word"]


def test_gold_manipulation(items):
    _check_positional(_by_task(items[("pacute", "mcq")]))
    h = _by_task(items[("hierarchical", "mcq")])
    _check_positional(h)
    for it in h["char_at"]:
        assert it.answer == it.meta["word"][it.meta["position"] - 1]
    for it in h["char_in_word"]:
        assert [o in it.meta["word"] for o in it.options].count(True) == 1 and it.answer in it.meta["word"]


def test_gold_affixes(items):
    t = _by_task(items[("pacute", "mcq")])
    for it in t["prefix_apply"]:
        p, root, rules = it.meta["affix"].rstrip("-"), it.meta["root"], it.meta["analysis"]["rules"]
        if "d_to_r" in rules:
            assert root[0] == "d" and it.answer == p + "r" + root[1:]
        elif "stacked" in rules:
            assert it.answer == p + "ma" + root == p + it.meta["stem"]
        else:
            assert it.answer.replace("-", "") == p + root
    for it in t["infix_apply"]:
        infix, root = it.meta["affix"].strip("-"), it.meta["root"]
        if "ni" in it.meta["analysis"]["rules"]:
            assert infix == "in" and root[0] in "ly" and it.answer == "ni" + root
        else:
            assert it.answer.replace(infix, "", 1) == root
            assert it.answer.startswith(infix) == (root[0] in "aeiou")
    for task in ("prefix_apply", "infix_apply", "suffix_apply", "circumfix_apply"):
        for it in t[task]:  # every affixation item carries its analysis and its dictionary entry
            a = it.meta["analysis"]
            assert a["form"] == it.answer and a["root"] == it.meta["root"] and a["dictionary"]["entry"]
    for it in t["suffix_apply"]:
        assert it.answer.startswith(it.meta["root"][:-2]) and it.answer.endswith(it.meta["affix"].lstrip("-"))
    for it in t["prefix_identify"] + t["infix_identify"] + t["suffix_identify"] + t["circumfix_identify"]:
        assert it.answer == it.meta["surface_affix"]
    for task in ("reduplication_apply",):
        for it in t[task]:
            root, affix, red = it.meta["root"], it.meta["affix"], reduplicate_first_syllable(it.meta["root"])
            rules = it.meta["analysis"]["rules"]
            if affix is None:
                assert it.answer == red
            elif "ki_redup" in rules:  # nakikipaglaro: the prefix's ki is copied
                assert it.answer == affix[:2] + "ki" + affix[2:] + root
            elif affix == "in" and root[0] in "ly":  # niluluto: ni- before l/y
                assert it.answer == "ni" + red
            elif it.meta["base"].replace("-", "").startswith(affix + root):
                assert it.answer.replace("-", "") == affix + red
            else:
                assert it.answer.replace(affix, "", 1) == red
    for it in t["reduplication_identify"]:
        assert it.answer + it.answer in it.meta["word"] or it.meta["word"].count(it.answer) >= 2
    h = _by_task(items[("hierarchical", "mcq")])
    for it in h["root_extract"] + h["affix_remove"]:
        assert it.answer == it.meta["root"]
    for it in h["affix_type"]:
        assert it.answer == it.meta["affix_type"] and sorted(it.options) == [
            "circumfix",
            "infix",
            "prefix",
            "suffix",
        ]
    for it in h["root_syllables"]:
        assert it.answer == str(count_syllables(it.meta["root"]))
    for it in h["infix_redup"] + h["prefix_redup"]:
        assert (
            it.answer == it.meta["word"]
            and reduplicate_first_syllable(it.meta["root"]).replace(it.meta["copy"], "", 1) == it.meta["root"]
        )


def test_gold_new_pacute_families(items):
    """The families added for issue 19, each gold checked from the item's own strings."""
    t = _by_task(items[("pacute", "mcq")])
    for it in t["char_exactly"]:
        c, n = it.meta["letter"], it.meta["count"]
        assert [o.count(c) == n for o in it.options].count(True) == 1 and it.answer.count(c) == n
    for task, better in (("char_most", lambda a, b: a > b), ("char_least", lambda a, b: a < b)):
        for it in t[task]:
            c = it.meta["letter"]
            assert all(better(it.answer.count(c), o.count(c)) for o in it.options if o != it.answer)
    for it in t["length_exactly"]:
        assert [len(o) == it.meta["length"] for o in it.options].count(True) == 1
    for task, better in (("length_most", lambda a, b: a > b), ("length_least", lambda a, b: a < b)):
        for it in t[task]:
            assert all(better(len(it.answer), len(o)) for o in it.options if o != it.answer)
    for it in t["uppercase_exactly"]:
        ups = [sum(ch.isupper() for ch in o) for o in it.options]
        assert ups.count(it.meta["count"]) == 1 and sum(ch.isupper() for ch in it.answer) == it.meta["count"]
    for it in t["duplicate_char"]:
        w, c = it.meta["word"], it.meta["letter"]
        assert it.answer == "".join(ch * 2 if ch == c else ch for ch in w)
    for it in t["uppercase"]:
        assert it.answer == it.meta["word"].upper() and it.answer.isupper()
    for it in t["lowercase"]:
        assert it.answer == it.meta["shown"].lower() == it.meta["word"]
    for kind in ("prefix", "infix", "suffix"):
        for it in t[f"{kind}_select"]:
            assert it.answer == it.meta["word"] and it.meta["analysis"]["dictionary"]
            assert it.meta["surface_affix"] in it.prompt
            assert all(o in it.prompt for o in it.options)
            affix = it.meta["affix"].strip("-")
            for o in it.options:
                if o != it.answer and kind == "prefix":
                    assert not o.startswith(affix), (it.id, o)
                if o != it.answer and kind == "suffix":
                    assert not o.endswith(affix), (it.id, o)


def test_gold_cute(items):
    t = _by_task(items[("cute", "mcq")])
    for it in t["spell"]:
        assert it.answer == " ".join(it.meta["word"])
    for it in t["spell_inverse"]:
        assert it.answer == it.meta["word"]
    for it in t["contains_char"]:
        assert [o in it.meta["word"] for o in it.options].count(True) == 1
    for it in t["contains_word"]:
        words = it.meta["sentence"].split()
        assert [o in words for o in it.options].count(True) == 1
    for it in t["ins_char"]:
        m = it.meta
        assert it.answer == m["word"].replace(m["after"], m["after"] + m["insert"])
    for it in t["del_char"]:
        assert it.answer == it.meta["word"].replace(it.meta["delete"], "")
    for it in t["sub_char"]:
        assert it.answer == it.meta["word"].replace(it.meta["replace"], it.meta["with"])
    for it in t["swap_char"]:
        a, b = it.meta["swap"]
        assert it.answer == it.meta["word"].translate(str.maketrans({a: b, b: a}))
    for it in t["del_word"]:
        assert it.answer.split() == [w for w in it.meta["sentence"].split() if w != it.meta["word"]]
    for it in t["sub_word"]:
        m = it.meta
        assert it.answer.split() == [m["replacement"] if w == m["word"] else w for w in m["sentence"].split()]
    for it in t["swap_word"]:
        a, b = it.meta["swap"]
        assert it.answer.split() == [b if w == a else a if w == b else w for w in it.meta["sentence"].split()]
    for it in t["orth"]:
        d = it.meta["distances"]
        assert d[it.gold] == min(d) and d.count(min(d)) == 1
    from filmorph.benchmarks.lexicon import semantic_groups

    group = {r.word: r.group for r in semantic_groups()}
    for it in t["sem"]:
        same = [group[o] == it.meta["group"] for o in it.options]
        assert same.count(True) == 1 and same[it.gold]


def test_gold_langgame(items):
    def holds(qtype, w, others, x):
        if qtype == "starts_with":
            return w.startswith(x) and not any(o.startswith(x) for o in others)
        if qtype == "ends_with":
            return w.endswith(x) and not any(o.endswith(x) for o in others)
        if qtype == "contains":
            return x in w and all(x not in o for o in others)
        if qtype == "most_letter":  # the published margins: >= 2 against <= 1
            return w.count(x) >= 2 and all(o.count(x) <= 1 for o in others)
        if qtype == "longest":  # length gaps of 3 or more
            return len(w) >= 7 and all(len(o) <= 4 for o in others)
        return len(w) <= 3 and all(len(o) >= 6 for o in others)

    lengths = Counter()
    for it in items[("langgame", "mcq")]:
        others = [o for o in it.options if o != it.answer]
        x = it.meta.get("letter") or it.meta.get("substring")
        assert holds(it.task, it.answer, others, x)
        assert f"[ {', '.join(it.options)}]." in it.prompt and it.prompt.endswith("Answer:")
        if it.task in ("contains", "starts_with", "ends_with"):
            assert 1 <= len(x) <= 3
            lengths[len(x)] += 1
    assert set(lengths) == {1, 2, 3}  # substrings of 1-3 letters
    assert len({it.prompt.split(" [")[0][:12] for it in items[("langgame", "mcq")]}) > 3  # varied wording


def test_cute_few_shot_never_contains_the_item_word(items):
    for it in items[("cute", "gen")]:
        blocks = it.prompt.split("\n\n")
        assert len(blocks) == it.meta["shots"] + 1 == 5
        shots = " ".join(blocks[:-1]).lower()
        shot_words = set(re.findall(r"[^\W\d_]+", shots))
        own = (
            [it.meta.get("word")]
            + [it.meta.get(k) for k in ("insert", "replacement")]
            + it.meta.get("swap", [])
        )
        for w in (w for w in own if w and len(w) > 1):  # words, not the letters of character tasks
            assert not set(w.lower().split("-")) & shot_words, (it.id, w)
        if len(it.answer) > 3:  # not a single letter
            assert it.answer not in [b.rsplit("Answer: ", 1)[-1] for b in blocks[:-1]]
    # the shots are fixed: the same for every item of a task, whatever the seed
    other = generate("cute", "gen", 2, SEED + 1)
    first = {it.task: it.prompt.rsplit("\n\n", 1)[0] for it in items[("cute", "gen")]}
    assert all(it.prompt.rsplit("\n\n", 1)[0] == first[it.task] for it in other)


# --------------------------------------------------------------------------- determinism and capacity


def test_determinism_and_seed(items):
    again = generate("pacute", "mcq", N["pacute"], SEED)
    assert [i.to_json() for i in again] == [i.to_json() for i in items[("pacute", "mcq")]]
    other = generate("pacute", "mcq", N["pacute"], SEED + 1)
    assert [i.prompt for i in other] != [i.prompt for i in again]
    # a larger request extends a smaller one (frequency-weighted sampling without replacement)
    small = generate("langgame", "gen", 5, SEED)
    assert [i.prompt for i in small] == [i.prompt for i in items[("langgame", "gen")] if int(i.id[-5:]) < 5]


def test_too_many_items_names_task_and_maximum():
    with pytest.raises(ValueError, match=r"cute task 'contains_word'.* at most \d+ distinct items"):
        generate("cute", "gen", 2000, 0)
    with pytest.raises(ValueError, match="format"):
        generate("cute", "xyz", 1, 0)
    with pytest.raises(ValueError, match="positive"):
        generate("cute", "gen", 0, 0)


def test_study_size_is_supported():
    """Capacity at study size: 100 items per task for every benchmark (checked for the small pools)."""
    from filmorph.benchmarks import hierarchical, pacute
    from filmorph.benchmarks.common import make_items

    for mod, name in ((pacute, "pacute"), (hierarchical, "hierarchical")):
        for task in mod.TASKS:
            if task.name.startswith("circumfix"):
                assert len(make_items(name, task, "gen", 100, 0)) == 100


# --------------------------------------------------------------------------- affixation rules


GOLD_INFLECTIONS = [
    # (rule, affix, root, real inflected word): hand-checked Tagalog forms
    ("infix", "um", "kain", "kumain"),
    ("infix", "um", "sulat", "sumulat"),
    ("infix", "in", "kain", "kinain"),
    ("infix", "in", "sulat", "sinulat"),
    ("infix", "um", "akyat", "umakyat"),
    ("infix", "in", "alis", "inalis"),
    ("infix", "um", "ngiti", "ngumiti"),
    ("infix", "um", "takbo", "tumakbo"),
    ("infix", "um", "bili", "bumili"),
    ("suffix", "in", "basa", "basahin"),
    ("suffix", "in", "sulat", "sulatin"),
    ("suffix", "in", "inom", "inumin"),
    ("suffix", "an", "kain", "kainan"),
    ("suffix", "in", "sagot", "sagutin"),
    ("suffix", "an", "inom", "inuman"),
    ("suffix", "an", "tira", "tirahan"),
    ("prefix", "mag", "aral", "mag-aral"),
    ("prefix", "mag", "luto", "magluto"),
    ("prefix", "nag", "sulat", "nagsulat"),
    ("prefix", "ma", "ganda", "maganda"),
    ("prefix", "pag", "asa", "pag-asa"),
    ("circumfix", ("ka", "an"), "ibig", "kaibigan"),
    ("circumfix", ("pag", "an"), "aral", "pag-aralan"),
    ("circumfix", ("ka", "an"), "ganda", "kagandahan"),
    ("circumfix", ("pa", "an"), "aral", "paaralan"),
]
GOLD_REDUPLICATIONS = [
    ("none", "", "kain", "kakain"),
    ("none", "", "alis", "aalis"),
    ("none", "", "sulat", "susulat"),
    ("prefix", "mag", "luto", "magluluto"),
    ("prefix", "nag", "laro", "naglalaro"),
    ("prefix", "mag", "aral", "mag-aaral"),
    ("infix", "um", "kain", "kumakain"),
    ("infix", "in", "gawa", "ginagawa"),
    ("infix", "um", "alis", "umaalis"),
]


@pytest.mark.parametrize("rule, affix, root, word", GOLD_INFLECTIONS)
def test_inflection_rules(rule, affix, root, word):
    if rule == "prefix":
        got = morph.apply_prefix(affix, root)
    elif rule == "infix":
        got = morph.apply_infix(affix, root)
    elif rule == "suffix":
        got = morph.apply_suffix(affix, root)
    else:
        got = morph.apply_circumfix(*affix, root)
    assert got == word


@pytest.mark.parametrize("kind, affix, root, word", GOLD_REDUPLICATIONS)
def test_reduplication_rules(kind, affix, root, word):
    assert morph.build_reduplication(root, kind, affix)[1] == word


def test_attested_pools_hold_the_gold_forms():
    forms = {d.form: d for d in morph.derivations()}
    for want in (
        "kumain",
        "sumulat",
        "kinain",
        "sinulat",
        "sulatin",
        "inumin",
        "umakyat",
    ):
        assert want in forms, want
    assert forms["inumin"].root == "inom" and "inomin" in forms["inumin"].alternatives
    # basa + -in has two dictionary-backed answers (basahin "read", basain "wet"): no item
    assert "basahin" not in forms and "basain" not in forms
    reds = {r.form for r in morph.reduplications()}
    assert {"magluluto", "kumakain", "niluluto"} <= reds
    # glottal-final roots take -in without h (luto -> lutuin): the rule form is not attested, so unused
    assert "lutuhin" not in forms
    assert morph.parses("kumain") == {("infix", ("um",), "kain")}


# --------------------------------------------------------------------------- conversion


def _write_jsonl(path, rows, bad=None):
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    if bad is not None:
        lines.insert(1, bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_convert_pacute(tmp_path):
    mcq = {
        "category": "affixation",
        "subcategory": "prefix",
        "label": "C",
        "id": "affixation_mcq_00001",
        "prompts": [
            {
                "text_en": 'Which option has the prefix "um-"?',
                "text_tl": "Alin?",
                "mcq_options": {"correct": "umalis", "incorrect1": "a", "incorrect2": "b", "incorrect3": "c"},
                "choice1": "a",
                "choice2": "b",
                "choice3": "umalis",
                "choice4": "c",
            }
        ],
    }
    gen = {
        "category": "composition",
        "subcategory": "spelling",
        "label": "s i l a",
        "id": "composition_gen_00001",
        "prompts": [{"text_en": 'Spell out the word "sila".', "text_tl": "Baybayin"}],
    }
    p = _write_jsonl(tmp_path / "pacute.jsonl", [mcq, gen])
    a, b = convert(str(p), "pacute", "pacute_up")
    assert (
        a.format == "mcq" and a.gold == 2 and a.answer == "umalis" and a.options == ["a", "b", "umalis", "c"]
    )
    assert a.group == "affixation" and a.task == "prefix" and a.benchmark == "pacute_up"
    assert b.format == "gen" and b.answer == "s i l a" and b.prompt == 'Spell out the word "sila".'
    gens = convert(str(p), "pacute", "pacute_up", "gen")
    assert [g.format for g in gens] == ["gen", "gen"] and gens[0].answer == "umalis"
    with pytest.raises(BadItemError, match="no options"):
        convert(str(p), "pacute", "x", "mcq")
    wrong = dict(mcq, label="A")
    p2 = _write_jsonl(tmp_path / "wrong.jsonl", [wrong])
    with pytest.raises(BadItemError, match=r"wrong\.jsonl:1: .*mcq_options\.correct"):
        convert(str(p2), "pacute", "x")


def test_convert_hierarchical_gold_is_the_answer_not_options0(tmp_path):
    row = {
        "level": 2,
        "category": "morpheme_decomposition",
        "subcategory": "root_extraction",
        "prompt_en": "What is the root of 'kumain'?",
        "prompt_tl": "Ano ang salitang-ugat ng 'kumain'?",
        "options": ["umain", "kain", "kumai", "main"],
        "answer": "kain",
        "word": "kumain",
        "metadata": {},
        "id": "h1",
    }
    p = _write_jsonl(tmp_path / "h.jsonl", [row, dict(row, id="h2", level="3", options=None, answer="x")])
    a, b = convert(str(p), "hierarchical", "hier_up", language="en")
    assert a.gold == 1 and a.answer == "kain" and a.level == 2 and a.group == "level_2"
    assert a.task == "root_extraction" and a.prompt == "What is the root of 'kumain'?"
    assert b.format == "gen" and b.level == 3
    p3 = _write_jsonl(tmp_path / "h3.jsonl", [dict(row, answer="nope")])
    with pytest.raises(BadItemError, match=r"h3\.jsonl:1: .*not among the options"):
        convert(str(p3), "hierarchical", "x")


def test_convert_cute_langgame_addition(tmp_path):
    cute = [
        {
            "question": 'Spell out the word "bahay".\nAnswer: "',
            "answer": 'b a h a y"',
            "task_type": "spell",
            "id": "cute_gen_00000",
        },
        {
            "question": "Swap 'a' and 'b' in 'a b c'.\nAnswer:",
            "answer": "b a c",
            "task_type": "swap_word",
            "id": "c1",
        },
    ]
    c = convert(str(_write_jsonl(tmp_path / "c.jsonl", cute)), "cute", "cute_up")
    assert (
        c[0].delimiter == "" and c[0].group == "character" and c[1].delimiter == " " and c[1].group == "word"
    )
    lg = [
        {
            "question": "What word starts with 'm'? The available options are: [ make, river, blue, cat]. "
            "Answer:",
            "answer": " make",
            "options": [" make", " river", " blue", " cat"],
            "id": "langgame_mcq_00000",
        }
    ]
    (g,) = convert(str(_write_jsonl(tmp_path / "l.jsonl", lg)), "langgame", "lg_up")
    assert g.gold == 0 and g.answer == "make" and g.options[0] == "make" and g.delimiter == " "
    assert g.task == "starts_with"
    ad = [
        {
            "question": "341+114=",
            "answer": "455",
            "options": ["455", "454", "465", "445"],
            "id": "add_mcq_00000",
        },
        {"question": "1+2=", "answer": "3", "id": "add_gen_00000"},
    ]
    a, b = convert(str(_write_jsonl(tmp_path / "a.jsonl", ad)), "addition", "add_up")
    assert a.delimiter == "" and a.gold == 0 and a.prompt == "341+114=" and b.format == "gen"
    bad_opts = [dict(ad[0], options=["454", "455", "465", "445"])]
    with pytest.raises(BadItemError, match=r"options\[0\]"):
        convert(str(_write_jsonl(tmp_path / "a2.jsonl", bad_opts)), "addition", "x")


@pytest.mark.parametrize("schema", ["pacute", "hierarchical", "cute", "langgame", "addition", "filmorph"])
def test_convert_bad_line_names_file_and_line(tmp_path, schema):
    ok = {
        "pacute": {
            "category": "c",
            "subcategory": "s",
            "label": "x",
            "id": "p0",
            "prompts": [{"text_en": "Q?"}],
        },
        "hierarchical": {
            "level": 0,
            "category": "c",
            "subcategory": "s",
            "prompt_en": "Q?",
            "answer": "x",
            "id": "h0",
        },
        "filmorph": {
            "id": "f0",
            "benchmark": "b",
            "task": "t",
            "format": "gen",
            "prompt": "Q?",
            "answer": "x",
        },
        "langgame": {"question": "Which word is the longest? [ a, bb]. Answer:", "answer": " bb", "id": "l0"},
    }.get(schema, {"question": "1+2=", "answer": "3", "id": "x0", "task_type": "spell"})
    p = _write_jsonl(tmp_path / f"{schema}.jsonl", [ok], bad='{"not json"')
    with pytest.raises(BadItemError, match=rf"{schema}\.jsonl:2: "):
        convert(str(p), schema, "x")
    p = _write_jsonl(tmp_path / f"{schema}_missing.jsonl", [{"id": "only"}])
    with pytest.raises(BadItemError, match=rf"{schema}_missing\.jsonl:1: missing field"):
        convert(str(p), schema, "x")


def test_convert_filmorph_roundtrip(tmp_path, items):
    src = items[("addition", "mcq")][:5]
    write_items(tmp_path / "ours.jsonl", src)
    back = convert(str(tmp_path / "ours.jsonl"), "filmorph", "addition")
    assert [i.to_json() for i in back] == [i.to_json() for i in src]
    gen = convert(str(tmp_path / "ours.jsonl"), "filmorph", "addition", "gen")
    assert all(i.format == "gen" and i.options is None for i in gen)
    with pytest.raises(FileNotFoundError, match="hub id"):
        convert(str(tmp_path / "missing.jsonl"), "filmorph", "x")


# --------------------------------------------------------------------------- CLI


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "filmorph.benchmarks", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )


def test_cli_make_is_byte_identical_and_writes_stats(tmp_path):
    outs = []
    for i, (seed, hashseed) in enumerate([(3, "1"), (3, "2"), (4, "1")]):
        out = tmp_path / f"run{i}" / "cute_mcq.jsonl"
        _cli(
            "make",
            "--benchmark",
            "cute",
            "--format",
            "mcq",
            "--items-per-task",
            "3",
            "--seed",
            str(seed),
            "--out",
            str(out),
            env={"PYTHONHASHSEED": hashseed},
        )
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert outs[0].read_bytes() != outs[2].read_bytes()
    its = read_items(outs[0])
    stats = json.loads((tmp_path / "run0" / "cute_mcq.stats.json").read_text())
    assert stats["items"] == len(its) == 3 * len(tasks("cute"))
    assert stats["per_task"] == {t: 3 for t in tasks("cute")}
    assert stats["per_group"] == dict(Counter(i.group for i in its))
    assert (
        stats["seed"] == 3 and stats["args"]["items_per_task"] == 3 and stats["args"]["benchmark"] == "cute"
    )
    assert 0 < stats["distinct_source_words"] <= stats["distinct_sources"]
    assert sum(stats["gold_positions"].values()) == len(its)


def test_cli_hierarchical_stats_levels_and_convert(tmp_path):
    out = tmp_path / "h.jsonl"
    _cli(
        "make",
        "--benchmark",
        "hierarchical",
        "--format",
        "gen",
        "--items-per-task",
        "2",
        "--seed",
        "1",
        "--out",
        str(out),
    )
    stats = json.loads((tmp_path / "h.stats.json").read_text())
    per_level = Counter(str(i.level) for i in read_items(out))
    assert stats["per_level"] == dict(per_level) and set(per_level) == {str(k) for k in range(6)}
    conv = tmp_path / "conv.jsonl"
    _cli("convert", "--input", str(out), "--schema", "filmorph", "--name", "hier_copy", "--out", str(conv))
    cstats = json.loads((tmp_path / "conv.stats.json").read_text())
    assert cstats["items"] == stats["items"] and cstats["args"]["schema"] == "filmorph"
    assert all(i.benchmark == "hier_copy" for i in read_items(conv))
    help_text = _cli("make", "--help").stdout
    assert "--items-per-task" in help_text and "--benchmark" in help_text
    assert "--schema" in _cli("convert", "--help").stdout
