"""filmorph.syllabify: hand-checked splits, counts, the ng-digraph flag, reduplication, validity,
hypothesis properties, and a sweep over the tglstemmer word list + wordfreq's Filipino top 30k."""

import re
import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filmorph import syllabify as S
from filmorph.syllabify import (
    ONSET_CLUSTERS,
    count_syllables,
    first_syllable,
    is_valid_filipino_word,
    last_syllable,
    reduplicate_first_syllable,
    syllabify,
)

# word -> expected syllables, dot-separated (hyphens in the word are boundaries, not syllable text)
SPLITS = {
    # CV / CVC, single intervocalic consonant to the next syllable
    "bata": "ba.ta",
    "ibon": "i.bon",
    "bahay": "ba.hay",
    "baboy": "ba.boy",
    "bakit": "ba.kit",
    "salamat": "sa.la.mat",
    "sinulat": "si.nu.lat",
    "kapatid": "ka.pa.tid",
    "bumili": "bu.mi.li",
    "Pilipinas": "Pi.li.pi.nas",
    "Tagalog": "Ta.ga.log",
    "pinakamaganda": "pi.na.ka.ma.gan.da",
    "kasaysayan": "ka.say.sa.yan",
    # adjacent vowels: unwritten glottal stop, separate syllables
    "paaralan": "pa.a.ra.lan",
    "maaga": "ma.a.ga",
    "aalis": "a.a.lis",
    "buo": "bu.o",
    "totoo": "to.to.o",
    "kaibigan": "ka.i.bi.gan",
    "kumain": "ku.ma.in",
    "baít": "ba.ít",
    # two consonants: split
    "aklat": "ak.lat",
    "itlog": "it.log",
    "sundalo": "sun.da.lo",
    "tindahan": "tin.da.han",
    "buksan": "buk.san",
    "pinto": "pin.to",
    "tuktok": "tuk.tok",
    "isda": "is.da",
    "aywan": "ay.wan",
    "Maynila": "May.ni.la",
    "sobre": "sob.re",
    "kapre": "kap.re",
    "kutsara": "kut.sa.ra",
    # ng is one consonant
    "ngayon": "nga.yon",
    "sanga": "sa.nga",
    "magandang": "ma.gan.dang",
    "nagluluto": "nag.lu.lu.to",
    "tingnan": "ting.nan",
    "pinggan": "ping.gan",
    "hangganan": "hang.ga.nan",
    "tanghalian": "tang.ha.li.an",
    "alingawngaw": "a.li.ngaw.ngaw",
    "lenggwahe": "leng.gwa.he",
    # three or more consonants; onset clusters from loans
    "eksperto": "eks.per.to",
    "ekstra": "eks.tra",
    "transportasyon": "trans.por.tas.yon",
    "sentro": "sen.tro",
    "asambleya": "a.sam.ble.ya",
    "empleyado": "em.ple.ya.do",
    "alambre": "a.lam.bre",
    "instrumento": "ins.tru.men.to",
    "eksklusibo": "eks.klu.si.bo",
    "abstrakto": "abs.trak.to",
    "eskwela": "es.kwe.la",
    "plantsa": "plan.tsa",
    "kompyuter": "kom.pyu.ter",
    "konsyerto": "kon.syer.to",
    "biskwit": "bis.kwit",
    # word-initial clusters stay together
    "trabaho": "tra.ba.ho",
    "kwento": "kwen.to",
    "tsinelas": "tsi.ne.las",
    "dyip": "dyip",
    "blusa": "blu.sa",
    # hyphens are boundaries
    "araw-araw": "a.raw.a.raw",
    "mag-aral": "mag.a.ral",
    "pag-ibig": "pag.i.big",
    "tag-init": "tag.i.nit",
    "ika-": "i.ka",
    "di--katulad": "di.ka.tu.lad",
    # no vowel / one-syllable function words
    "ng": "ng",
    "mga": "mga",
    "sa": "sa",
    # case and diacritics preserved
    "NGAYON": "NGA.YON",
    "Ngayon": "Nga.yon",
    "mahál": "ma.hál",
    "batà": "ba.tà",
    "pô": "pô",
    "piña": "pi.ña",
    "señora": "se.ño.ra",
    "ba\u0301ta": "ba\u0301.ta",  # decomposed accent stays with its vowel
    # non-letters are consonants; the function is total
    "ako'y": "a.ko'y",
    "bagama't": "ba.ga.ma't",
    "123": "123",
    "": "",
}


@pytest.mark.parametrize("word", sorted(SPLITS))
def test_hand_checked_splits(word):
    expected = SPLITS[word].split(".") if SPLITS[word] else []
    assert syllabify(word) == expected
    assert count_syllables(word) == len(expected)


def test_table_size():
    assert len(SPLITS) >= 40


@pytest.mark.parametrize(
    ("word", "n"),
    [("bata", 2), ("paaralan", 4), ("ngayon", 2), ("mga", 1), ("ng", 1), ("araw-araw", 4),
     ("pinakamaganda", 6), ("kaibigan", 4), ("magandang", 3), ("", 0), ("-", 0), ("Pilipinas", 4)],
)
def test_counts(word, n):
    assert count_syllables(word) == n
    assert count_syllables(word, ng_digraph=False) == n


def test_ng_digraph_flag():
    # same count, different split
    assert syllabify("sanga") == ["sa", "nga"]
    assert syllabify("sanga", ng_digraph=False) == ["san", "ga"]
    assert count_syllables("sanga") == count_syllables("sanga", ng_digraph=False) == 2
    assert syllabify("Inglatera") == ["Ing", "la", "te", "ra"]
    assert syllabify("Inglatera", ng_digraph=False) == ["In", "gla", "te", "ra"]
    # same split: word-initial ng, or ng before a consonant
    for w in ("ngayon", "tingnan", "hangganan", "tanghalian", "magandang"):
        assert syllabify(w, ng_digraph=False) == syllabify(w), w


def test_first_last():
    assert first_syllable("ngayon") == "nga"
    assert last_syllable("araw-araw") == "raw"
    assert first_syllable("trabaho") == "tra"
    assert last_syllable("sanga") == "nga"
    assert last_syllable("sanga", ng_digraph=False) == "ga"
    for bad in ("", "-", "--"):
        with pytest.raises(ValueError):
            first_syllable(bad)
        with pytest.raises(ValueError):
            last_syllable(bad)


def test_type_errors():
    for f in (syllabify, count_syllables, reduplicate_first_syllable):
        with pytest.raises(TypeError):
            f(None)
    assert is_valid_filipino_word(None) is False


def test_result_is_a_fresh_list():
    a = syllabify("kaibigan")
    a.append("x")
    assert syllabify("kaibigan") == ["ka", "i", "bi", "gan"]


@pytest.mark.parametrize(
    ("root", "out"),
    [("kain", "kakain"), ("sulat", "susulat"), ("alis", "aalis"), ("laro", "lalaro"),
     ("bili", "bibili"), ("trabaho", "tatrabaho"), ("hintay", "hihintay"), ("pasok", "papasok"),
     ("takbo", "tatakbo"), ("iyak", "iiyak"), ("upo", "uupo"), ("ngiti", "ngingiti"),
     ("prito", "piprito"), ("tsismis", "tsitsismis"), ("kwento", "kukwento"), ("sweldo", "susweldo"),
     ("dyaryo", "didyaryo"), ("Kain", "Kakain"), ("KAIN", "KAKAIN"), ("KWENTO", "KUKWENTO"),
     ("Ngiti", "Ngingiti"), ("aral-aral", "aaral-aral")],
)
def test_reduplication(root, out):
    assert reduplicate_first_syllable(root) == out


@pytest.mark.parametrize("root", ["", "-aral", "ng", "brr"])
def test_reduplication_rejects(root):
    with pytest.raises(ValueError):
        reduplicate_first_syllable(root)


@pytest.mark.parametrize(
    ("word", "ok"),
    [("bata", True), ("mag-aral", True), ("araw-araw", True), ("Señora", True), ("mahál", True),
     ("PÔ", True), ("ba\u0301ta", True), ("kwento", True), ("x", True), ("", False), ("-", False),
     ("ika-", False), ("-um", False), ("di--katulad", False), ("ako'y", False), ("tv5", False),
     ("bata ", False), ("ä", False), ("u.s", False), ("дом", False)],
)
def test_is_valid(word, ok):
    assert is_valid_filipino_word(word) is ok


# ---------------------------------------------------------------- properties

def _is_vowel_char(c):
    """Test oracle, independent of the module: base letter of the NFD form is a, e, i, o or u."""
    return not unicodedata.combining(c) and unicodedata.normalize("NFD", c)[0].lower() in "aeiou"


def _n_vowels(s):
    return sum(_is_vowel_char(c) for c in s)


def _check_word(word, ng_digraph=True):
    syl = syllabify(word, ng_digraph=ng_digraph)
    assert "".join(syl) == word.replace("-", "")
    parts = [p for p in word.split("-") if p]
    assert syl == [s for p in parts for s in syllabify(p, ng_digraph=ng_digraph)]
    assert len(syl) == count_syllables(word) == count_syllables(word, ng_digraph=not ng_digraph)
    assert len(syl) == sum(max(1, _n_vowels(p)) for p in parts)
    for p in parts:
        ps = syllabify(p, ng_digraph=ng_digraph)
        if _n_vowels(p) == 0:
            assert ps == [p]
        else:
            # exactly one vowel letter (one nucleus) per syllable
            assert all(_n_vowels(s) == 1 for s in ps), (word, ps)
    return syl


# pieces biased toward Filipino shapes, including traps (n+g, clusters, accents, case, hyphens)
PIECES = list("aeiouaeiou") + list("bkdghlmnprstwyñ") + [
    "ng", "n", "g", "tr", "pl", "kw", "ts", "sy", "bl", "á", "Ó", "e\u0301", "A", "N", "G", "-", "'",
]
words = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)


@settings(max_examples=400, deadline=None)
@given(words, st.booleans())
def test_properties_filipino_like(word, ng_digraph):
    _check_word(word, ng_digraph)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.booleans())
def test_properties_any_text(word, ng_digraph):
    _check_word(word, ng_digraph)


ASCII_WORDS = st.lists(
    st.sampled_from(list("aeiouaeiou") + list("bkdghlmnprstwy") + ["ng", "tr", "kw", "ts", "pl", "sy"]),
    min_size=1, max_size=14,
).map("".join)
_VOWEL = "aeiou"


def _units(s, ng_digraph):
    return re.findall(r"ng|." if ng_digraph else r".", s)


@settings(max_examples=400, deadline=None)
@given(ASCII_WORDS, st.booleans())
def test_boundary_placement(word, ng_digraph):
    """Where each boundary falls, recomputed from the consonants around it (rule 5)."""
    syl = syllabify(word, ng_digraph=ng_digraph)
    for s1, s2 in zip(syl, syl[1:], strict=False):
        coda = re.search(r"[^aeiou]*$", s1).group()
        onset = re.match(r"[^aeiou]*", s2).group()
        if ng_digraph:
            assert not (s1.endswith("n") and s2.startswith("g")), (word, syl)  # never inside ng
        cu, on = _units(coda, ng_digraph), _units(onset, ng_digraph)
        k = len(cu) + len(on)
        if k == 0:
            continue
        if k <= 2:
            assert len(on) == 1, (word, syl)
        elif "".join((cu + on)[-2:]) in ONSET_CLUSTERS:
            assert len(on) == 2, (word, syl)
        else:
            assert len(on) == 1, (word, syl)
    # every syllable's nucleus is a single vowel
    assert all(sum(c in _VOWEL for c in s) == 1 for s in syl) or not any(c in _VOWEL for c in word)


@settings(max_examples=300, deadline=None)
@given(ASCII_WORDS.filter(lambda w: any(c in _VOWEL for c in w)))
def test_reduplication_properties(root):
    out = reduplicate_first_syllable(root)
    copy = out[: len(out) - len(root)]
    assert out.endswith(root)
    assert count_syllables(out) == count_syllables(root) + 1
    assert 1 <= len(copy) <= 3 and copy[-1] in _VOWEL and sum(c in _VOWEL for c in copy) == 1
    onset = re.match(r"[^aeiou]*", root).group()
    if not onset:
        assert copy == root[0]
    else:
        assert root.startswith(copy[:-1])  # the copied consonant(s) open the root


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=sorted(S.VALID_LETTERS), min_size=1, max_size=8), min_size=1, max_size=3))
def test_is_valid_properties(parts):
    word = "-".join(parts)
    assert is_valid_filipino_word(word)
    assert not is_valid_filipino_word(word + "-")
    assert not is_valid_filipino_word("-" + word)
    assert not is_valid_filipino_word(word + "5")


# ---------------------------------------------------------------- real word lists

def _word_lists():
    from importlib.resources import files

    tgl = pytest.importorskip("tglstemmer")
    wordfreq = pytest.importorskip("wordfreq")
    tgl_words = (files(tgl) / "resources" / "tgl_wordlist.txt").read_text(encoding="utf-8").split()
    return tgl_words + wordfreq.top_n_list("fil", 30000)


def test_word_lists(record_property):
    ws = _word_lists()
    assert len(ws) > 60000
    S._syllabify.cache_clear()
    t0 = time.perf_counter()
    for w in ws:
        syllabify(w)
        syllabify(w, ng_digraph=False)
    cold = time.perf_counter() - t0
    record_property("syllabify_cold_s", round(cold, 3))
    print(f"\nsyllabify: {len(ws)} words x 2 flags, cold cache: {cold:.3f} s")
    assert cold < 10  # ~0.6 s measured; generous bound
    for w in ws:
        _check_word(w, True)
        _check_word(w, False)
    valid = [w for w in ws if is_valid_filipino_word(w)]
    assert len(valid) > 0.95 * len(ws)
    for w in valid:
        if any(_is_vowel_char(c) for c in w.split("-")[0]):
            r = reduplicate_first_syllable(w)
            assert r.lower().endswith(w.lower()) and count_syllables(r) == count_syllables(w) + 1
