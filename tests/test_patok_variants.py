"""Patok variants (published, morph), their building blocks, the intensity and gold measures.

The invariants every variant shares (text, vocabulary, specials, determinism) are in
tests/test_arms.py; here are the behaviours that tell the variants apart."""

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filmorph.affixes import load_affixes
from filmorph.arms import make_arm
from filmorph.arms.intensity import figures, measure_arm, measure_published_impl, within
from filmorph.arms.morph_gold import (
    TYPES,
    GoldWord,
    load_gold,
    measure,
)
from filmorph.arms.patok_morph import MorphAnalyzer, dictionary_roots, word_list
from filmorph.arms.patok_published import PUBLISHED_AFFIXES, affix_variants
from filmorph.arms.seq import BlockSeq
from filmorph.arms.stochastok import stochastok_expand
from filmorph.rng import rng_for

TEXT = ("Si Maria ay kumain ng masarap na pagkain sa tindahan. Nagsasalita siya nang mahusay "
        "at pinakamaganda ang kanyang boses. Uminom sila ng tubig bago umalis. ")


@pytest.fixture(scope="module", params=["gemma", "llama"])
def fam(request, families):
    return families[request.param]


def _arm(fam, params):
    return make_arm("patok", params, token_bytes=fam.token_bytes, table=fam.table,
                    encode=fam.encode_batch, affixes=load_affixes(), byte_fallback_ids=fam.byte_fallback_ids)


def _pieces(fam, ids):
    return [fam.token_bytes[t] for t in ids]


# ------------------------------------------------------------------ BlockSeq


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), block=st.integers(1, 7),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 4),
                                st.lists(st.integers(0, 99), max_size=5)), max_size=30))
def test_block_seq_behaves_like_a_list(n, block, edits):
    ref = list(range(n))
    seq = BlockSeq(ref, block)
    for st_, k, new in edits:
        if not ref:
            break
        k = min(k, len(ref))
        s = st_ % (len(ref) - k + 1)
        assert seq.window(s, k) == ref[s:s + k]
        ref[s:s + k] = new
        seq.replace(s, k, new)
        assert len(seq) == len(ref)
    assert seq.to_list() == ref


# ------------------------------------------------------------------ published


def test_published_inventory_and_affix_tokens(fam):
    arm = _arm(fam, {"variant": "published"})
    assert len(PUBLISHED_AFFIXES["prefix"]) == 97 and len(PUBLISHED_AFFIXES["suffix"]) == 21
    for a in ("um", "di-", "ga", "in", "ki", "sa", "si", "tag", "tala", "kaka", "kanda", "napa",
              "panag"):
        assert a in PUBLISHED_AFFIXES["prefix"], a
    assert {"ana", "ano", "eriya"} <= set(PUBLISHED_AFFIXES["suffix"])
    variants = affix_variants(PUBLISHED_AFFIXES)
    assert {"ma", " ma", "Ma", " Ma", "an", "an "} <= set(variants)
    canon = {b: t for t, b in enumerate(fam.token_bytes) if b is not None}
    # bare forms select tokens; a space-led token (vocabulary string ▁ma / Ġma) does not
    assert arm.is_affix[canon[b"ma"]] and arm.is_affix[canon[b"an"]]
    assert not arm.is_affix[canon[b" ma"]]


def test_published_takes_every_window_and_cuts_anywhere(fam):
    ids = fam.encode_one(TEXT * 4)
    c = Counter()
    out = _arm(fam, {"variant": "published", "expand_prop": 0.0})(ids, random.Random(0), c)
    # every one of floor(0.3 n) iterations takes a window (retries, then the first k tokens)
    assert c["windows"] == int(0.3 * len(ids))
    assert c["windows_dropped_special"] == 0
    # most windows of Filipino text hold a variant somewhere: ~3/4 are cut (published ~0.74)
    assert 0.55 < c["affix_cuts"] / c["windows"] <= 0.95
    assert b"".join(_pieces(fam, out)) == TEXT.encode() * 4
    assert len(out) > 1.05 * len(ids)


def test_published_windows_overlap_earlier_ones(fam):
    """With contract_prop 1 there are n iterations on n tokens: more windows than disjoint
    windows could ever hold, so later windows re-cut tokens earlier ones produced."""
    ids = fam.encode_one(TEXT)
    c = Counter()
    _arm(fam, {"variant": "published", "contract_prop": 1.0, "expand_prop": 0.0})(
        ids, random.Random(1), c)
    assert c["windows"] == len(ids) > len(ids) // 2


def test_published_awareness_zero_never_cuts(fam):
    ids = fam.encode_one(TEXT)
    c = Counter()
    out = _arm(fam, {"variant": "published", "affix_awareness": 0.0,
                     "affix_awareness_if_overlap": 0.0, "expand_prop": 0.0})(
        ids, random.Random(2), c)
    assert c["affix_cuts"] == 0 and c["windows"] == int(0.3 * len(ids))
    assert b"".join(_pieces(fam, out)) == TEXT.encode()


def test_variants_reject_knobs_they_do_not_have(fam):
    with pytest.raises(ValueError, match="unknown patok parameters for variant 'published'"):
        _arm(fam, {"variant": "published", "min_root_chars": 3})
    with pytest.raises(ValueError, match="unknown patok parameters for variant 'morph'"):
        _arm(fam, {"variant": "morph", "affix_awareness": 0.95})
    with pytest.raises(ValueError, match="arms.patok.variant"):
        _arm(fam, {"variant": "nope"})


def test_stochastok_redraw_terminates_when_all_blocked(fam):
    ids = fam.encode_one(TEXT)
    blocked = bytearray([1]) * fam.vocab_size
    c = Counter()
    out = stochastok_expand(ids, fam.table, random.Random(0), 0.5, blocked=blocked,
                            counters=c, redraw_blocked=50)
    assert out == ids and c["expansions"] == 0 and c["expand_attempts"] == int(0.5 * len(ids))


# ------------------------------------------------------------------ morph


@pytest.fixture(scope="module")
def analyzer():
    return MorphAnalyzer(load_affixes(), dictionary_roots(), word_list())


@pytest.mark.parametrize("seg", ["k|um|ain", "um|inom", "nag|sa|salita", "pinaka|ma|ganda",
                                 "tinda|han", "ma|ganda", "k|um|a|kain", "basa|hin",
                                 "nag|la|laro", "ma|husay", "in|ayos", "b|um|ili"])
def test_morph_analyzer_parses(analyzer, seg):
    word = seg.replace("|", "")
    cuts, pos = [], 0
    for p in seg.split("|")[:-1]:
        pos += len(p)
        cuts.append(pos)
    assert analyzer.cuts(word) == tuple(cuts)
    assert analyzer.cuts(word.capitalize()) == tuple(cuts)


def test_morph_analyzer_leaves_roots_and_non_words(analyzer):
    for w in ("bahay", "salita", "galing", "xyzzy", "ang"):
        assert analyzer.cuts(w) == (), w


def test_morph_keeps_the_space_with_the_first_morpheme(fam):
    text = "Siya ay mahusay at kumain."
    ids = fam.encode_one(text)
    c = Counter()
    out = _arm(fam, {"variant": "morph", "contract_prop": 1.0, "expand_prop": 0.0})(
        ids, random.Random(0), c)
    pieces = _pieces(fam, out)
    assert b"".join(pieces) == text.encode()
    assert b" ma" in pieces and b" " not in pieces  # ␣ma|husay, not ␣|ma|husay
    starts = {sum(map(len, pieces[:i])) for i in range(len(pieces))}
    k = text.index("kumain")
    assert {k + 1, k + 3} <= starts  # k|um|ain
    assert c["words_cut"] >= 2 and c["morph_cuts"] >= 3


def test_morph_contract_zero_is_vanilla_plus_expansion(fam):
    ids = fam.encode_one(TEXT)
    arm = _arm(fam, {"variant": "morph", "contract_prop": 0.0, "expand_prop": 0.0})
    assert arm(ids, random.Random(0), Counter()) == ids
    c = Counter()
    out = _arm(fam, {"variant": "morph", "contract_prop": 0.0, "expand_prop": 0.5})(
        ids, random.Random(0), c)
    assert c["words_cut"] == 0 and len(out) == len(ids) + c["expansions"] > len(ids)


def test_variants_do_not_depend_on_what_was_processed_before(fam):
    """Memoised state (piece encodings, word analyses) never changes an output: a document
    comes out the same from a fresh arm and from one that has seen other documents (so a
    chunk's split or the worker count cannot change it)."""
    docs = [("a", TEXT), ("b", "Naglalaro ang mga bata. " * 3), ("c", TEXT[::-1])]
    for variant in ("published", "morph", "v1"):
        warm = _arm(fam, {"variant": variant})
        for doc_id, text in docs[::-1]:
            warm(fam.encode_one(text), rng_for(3, "patok", doc_id), Counter())
        for doc_id, text in docs:
            ids = fam.encode_one(text)
            fresh = _arm(fam, {"variant": variant})
            assert fresh(ids, rng_for(3, "patok", doc_id), Counter()) == \
                warm(ids, rng_for(3, "patok", doc_id), Counter()), (variant, doc_id)


def test_tokenize_documents_selects_the_variant(families, family_dirs):
    """The tokenize stage passes `variant` through: its ids (EOD appended) equal the morph
    arm's on each document alone."""
    from filmorph.tokenize import tokenize_documents

    fam = families["llama"]
    docs = [("d1", TEXT), ("d2", "Kumakain ang pusa. " * 4), ("d3", "umalis")]
    params = {"variant": "morph", "contract_prop": 0.5, "expand_prop": 0.2}
    together = tokenize_documents(docs, family_dirs["llama"], "patok", params, 5)
    for (doc_id, text), got in zip(docs, together, strict=True):
        want = _arm(fam, params)(fam.encode_one(text), rng_for(5, "patok", doc_id), Counter())
        assert got.tolist() == want + [fam.eod_id]


# ------------------------------------------------------------------ intensity


def test_intensity_figures_and_within():
    f = figures(2000, 2800, 600, 440)
    assert f["windows_per_1k"] == 300 and f["affix_cuts_per_1k"] == 220 and f["growth"] == 1.4
    near = figures(2000, 2700, 580, 420)
    far = figures(2000, 2300, 270, 100)
    assert all(within(near, f).values())
    assert not any(within(far, f).values())
    with pytest.raises(ValueError):
        figures(0, 0, 0, 0)


def test_measure_published_impl_counts_through_wrappers():
    """Duck-typed stand-in for the published processor: contract_expand calls its own
    contract_randomly / affix_aware_expand, which the measure counts, then restores."""

    class Fake:
        def contract_randomly(self, ids):
            return "ab", 0, 2

        def affix_aware_expand(self, s):
            return [s[:1], s[1:]] if random.random() < 0.5 else [s]

        def contract_expand(self, ids, contract_prop, expand_prop):
            for _ in range(int(len(ids) * contract_prop)):
                self.affix_aware_expand(self.contract_randomly(ids)[0])
            return ids + [0]

    proc = Fake()
    before = proc.contract_randomly
    f = measure_published_impl(proc, [[1] * 100, [2] * 50], seed=0, contract_prop=0.2)
    assert f["windows"] == 30 and 5 < f["affix_cuts"] < 25 and f["tokens"] == 152
    assert proc.contract_randomly == before


def test_measure_arm_counts_variant_units(fam):
    docs = [(str(i), fam.encode_one(TEXT)) for i in range(3)]
    f = measure_arm(_arm(fam, {"variant": "published", "expand_prop": 0.0}), "published", docs)
    assert f["windows"] == 3 * int(0.3 * len(docs[0][1]))
    g = measure_arm(_arm(fam, {"variant": "morph"}), "morph", docs)
    assert 0 < g["windows"] <= g["affix_cuts"]


# ------------------------------------------------------------------ gold


def test_gold_set_is_well_formed():
    gold = load_gold()
    assert len(gold) >= 300
    assert {t for g in gold for t in g.types} == set(TYPES)
    assert all(0 < c < len(g.word) for g in gold for c in g.cuts)


def test_gold_rejects_bad_rows(tmp_path):
    p = tmp_path / "g.tsv"
    p.write_text("word\tsegmentation\ttypes\nkumain\tk|um|ain\tinfix\nkain\tka|n\tprefix\n")
    with pytest.raises(ValueError, match=r"g\.tsv:3"):
        load_gold(p)
    p.write_text("word\tsegmentation\ttypes\nkumain\tk|um|ain\tinfixx\n")
    with pytest.raises(ValueError, match=r"g\.tsv:2"):
        load_gold(p)


def test_gold_measure_on_a_byte_tokenizer():
    """Bytes as tokens: every interior offset is a token boundary, so recall is 1 and
    precision is gold boundaries / interior offsets."""
    tb = [bytes([i]) for i in range(256)]

    def encode(s):
        return list(s.encode())

    gold = [GoldWord("kumain", (1, 3), ("infix",)), GoldWord("tindahan", (5,), ("suffix",))]
    res = measure(gold, {"bytes": lambda ids, rng, c: list(ids)}, encode, tb, renderings=2,
                  boot=50)
    for ctx in ("sentence", "alone"):
        a = res["bytes"][ctx]["all"]
        assert a["recall"]["value"] == 1.0 and a["morphscore"]["value"] == 1.0
        assert a["precision"]["value"] == pytest.approx(3 / 12, abs=1e-4)
        assert a["precision"]["lo"] <= a["precision"]["value"] <= a["precision"]["hi"]
        assert res["bytes"][ctx]["infix"]["precision"]["value"] == pytest.approx(2 / 5, abs=1e-4)
        assert "prefix" not in res["bytes"][ctx]


def test_arm_gold_summary_ranks_morph_above_vanilla(family_dirs):
    """The summary's gold measure of configured arms: morph finds most gold boundaries (the
    issue's goal: recall >= 0.8 with precision >= 0.5 in sentence context, >= 0.7 alone),
    vanilla far fewer."""
    from filmorph.arms.morph_gold import arm_gold_summary

    d = family_dirs["llama"]
    morph = arm_gold_summary(d, "patok", {"variant": "morph"}, 0, renderings=1, boot=20)
    vanilla = arm_gold_summary(d, "vanilla", {}, 0, renderings=1, boot=0)
    m, v = morph["sentence"]["all"], vanilla["sentence"]["all"]
    assert m["recall"]["value"] >= 0.8 and m["precision"]["value"] >= 0.5
    assert morph["alone"]["all"]["recall"]["value"] >= 0.7
    assert v["recall"]["value"] < 0.5 and v["recall"]["lo"] == v["recall"]["hi"]
    assert set(morph["sentence"]) == {"all", "words", *TYPES}


# ------------------------------------------------------------------ tools/bench_patok.py

_FAKE_BASE = '''
class TokenizerProcessor:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def get_mergeable_ranks(self):
        return {k.encode(): v for k, v in self.tokenizer.get_vocab().items()}

    def set_expansions(self):
        raise AssertionError("the runner must give the table ready-made")
'''
_FAKE_PATOK = '''
from .base_processor import TokenizerProcessor


class MorphologyAwarePatokProcessor(TokenizerProcessor):
    def __init__(self, tokenizer, prefix_file=None, infix_file=None, suffix_file=None, **kw):
        super().__init__(tokenizer)
        self.prefixes = open(prefix_file).read().split()
        self.kw = kw
        self.set_expansions()
'''


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "bench_patok.py"
    spec = importlib.util.spec_from_file_location("bench_patok_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("layout", ["checkout", "bare"])
def test_bench_runner_loads_the_published_code_at_run_time(tmp_path, layout):
    import shutil
    import subprocess
    import sys

    repo = tmp_path / "repo"
    (repo / "src/tokenization").mkdir(parents=True)
    (repo / "data/affixes_filipino").mkdir(parents=True)
    (repo / "src/tokenization/base_processor.py").write_text(_FAKE_BASE)
    (repo / "src/tokenization/patok_morphology.py").write_text(_FAKE_PATOK)
    for kind, words in (("prefix", "mag\nna\n"), ("infix", "um\n"), ("suffix", "an\n")):
        (repo / f"data/affixes_filipino/{kind}.txt").write_text(words)
    src = repo
    if layout == "bare":
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "x"], check=True)
        src = repo / ".git"
        for p in ("src", "data"):  # only the git objects remain
            shutil.rmtree(repo / p)
    bench = _bench_module()
    cls, base, files = bench.load_published(src, tmp_path / "tmp")
    try:
        class Tok:
            def get_vocab(self):
                return {"a": 0, "b": 1, "ab": 2, "ma": 3}

        proc = bench.make_published(cls, base, files, Tok())
        assert proc.prefixes == ["mag", "na"] and proc.kw == bench.STUDY
        assert proc.expansions == {2: [(0, 1)]}
        with pytest.raises(AssertionError, match="ready-made"):  # the original is back
            base.set_expansions(proc)
    finally:
        for name in [m for m in sys.modules if m.startswith("published_tokenization")]:
            del sys.modules[name]
