"""Arms on both real tokenizers: decode invariance, vocabulary bounds, specials, determinism."""

import random
import string
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filmorph.affixes import load_affixes
from filmorph.arms import make_arm
from filmorph.arms.expansions import ExpansionTable, canonical_ids
from filmorph.arms.stochastok import stochastok_expand
from filmorph.rng import arm_rng, rng_for

FILIPINO = ("Kumain na ba kayo? Naglalaro ang mga bata sa labas, at gaganda pa ang panahon "
            "bukas. Sinulatan niya ang kaniyang ina — “Mag-iingat ka!” Pinakamaganda ang "
            "tanawin sa Baguio; umuulan daw roon araw-araw. Niño, 3,450 piso.\n\tHuwag na!")
ALPHABET = string.ascii_letters + "ñÑáàâéèêíìîóòôúùû -,.!?“”'\n\t0123456789" + "ŋ日本語🙂"
texts = st.one_of(st.text(alphabet=ALPHABET, min_size=0, max_size=200),
                  st.text(min_size=0, max_size=60),
                  st.sampled_from(FILIPINO.split(". ")))
# arm key -> (arm type, params): every Patok variant is held to the same invariants
ARM_PARAMS = {"vanilla": ("vanilla", {}), "stochastok": ("stochastok", {"expand_prop": 0.5}),
              "patok": ("patok", {"contract_prop": 0.6, "expand_prop": 0.3}),
              "patok_published": ("patok", {"variant": "published", "contract_prop": 0.6,
                                            "expand_prop": 0.3}),
              "patok_morph": ("patok", {"variant": "morph", "contract_prop": 1.0,
                                        "expand_prop": 0.3})}


@pytest.fixture(scope="module", params=["gemma", "llama"])
def fam(request, families):
    return families[request.param]


@pytest.fixture(scope="module")
def arms(fam):
    affixes = load_affixes()
    return {key: make_arm(name, params, token_bytes=fam.token_bytes, table=fam.table,
                          encode=fam.encode_batch, affixes=affixes, byte_fallback_ids=fam.byte_fallback_ids)
            for key, (name, params) in ARM_PARAMS.items()}


def _bytes(tb, ids):
    return b"".join(tb[t] or b"" for t in ids)


def _valid(tb, ids):
    try:
        _bytes(tb, ids).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _decoded(fam, ids):
    return fam.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=texts, doc=st.integers(0, 10**6), specials=st.lists(st.integers(0, 10**6), max_size=3))
def test_invariants(fam, arms, text, doc, specials):
    ids = fam.encode_one(text)
    special_ids = sorted(set(fam.tokenizer.all_special_ids))
    # plant special tokens (bos/eos/...) inside the sequence, at character boundaries (a
    # special inside a character's bytes makes invalid UTF-8, which HF's byte-fallback
    # decoder renders run-wise): arms must leave them in place
    for s in specials:
        cuts = [i for i in range(len(ids) + 1) if _valid(fam.token_bytes, ids[:i])]
        ids.insert(cuts[s % len(cuts)], special_ids[s % len(special_ids)])
    for name, arm in arms.items():
        out = arm(list(ids), rng_for(7, name, str(doc)), Counter())
        assert _bytes(fam.token_bytes, out) == _bytes(fam.token_bytes, ids), name
        assert _decoded(fam, out) == _decoded(fam, ids), name
        assert all(0 <= t < fam.vocab_size for t in out), name
        assert [t for t in out if fam.token_bytes[t] is None] == \
            [t for t in ids if fam.token_bytes[t] is None], name
        # the stream the tokenize stage uses (the compiled loops where built): the same ids
        assert arm(list(ids), arm_rng(7, name, str(doc)), Counter()) == out, name


def test_determinism_comes_from_seed_arm_and_doc(fam, arms):
    ids = fam.encode_one(FILIPINO * 3)
    for name in ("stochastok", "patok", "patok_published", "patok_morph"):
        arm = arms[name]
        a = arm(list(ids), rng_for(1, name, "doc-1"), Counter())
        b = arm(list(ids), rng_for(1, name, "doc-1"), Counter())
        c = arm(list(ids), rng_for(1, name, "doc-2"), Counter())
        d = arm(list(ids), rng_for(2, name, "doc-1"), Counter())
        assert a == b and a != c and a != d and a != ids


def test_input_is_not_mutated(fam, arms):
    ids = fam.encode_one(FILIPINO)
    before = list(ids)
    for name, arm in arms.items():
        for stream in (rng_for, arm_rng):
            arm(ids, stream(0, name, "x"), Counter())
            assert ids == before, (name, stream.__name__)


def test_expansion_table_is_exact_and_complete(fam):
    tb, table = fam.token_bytes, fam.table
    canon = canonical_ids(tb, fam.byte_fallback_ids)
    rng = random.Random(0)
    for tid in rng.sample(range(len(tb)), 3000):
        pairs = table.pairs(tid)
        b = tb[tid]
        if b is None:
            assert pairs == []
            continue
        assert all(tb[left] + tb[right] == b for left, right in pairs)
        expected = {(canon[b[:j]], canon[b[j:]]) for j in range(1, len(b))
                    if b[:j] in canon and b[j:] in canon}
        assert set(pairs) == expected
    assert table.num_pairs > 0.5 * len(tb)


def test_stochastok_attempt_budget(fam):
    ids = fam.encode_one(FILIPINO * 5)
    c = Counter()
    out = stochastok_expand(ids, fam.table, random.Random(3), 0.1, counters=c)
    assert c["expand_attempts"] == int(0.1 * len(ids))
    assert len(out) - len(ids) == c["expansions"] <= c["expand_attempts"]
    assert c["expansions"] > 0.5 * c["expand_attempts"]  # most Filipino tokens are splittable
    assert stochastok_expand(ids, fam.table, random.Random(3), 0.0) == ids


def test_table_save_load_roundtrip(fam, tmp_path):
    fam.table.save(tmp_path / "t.npz")
    back = ExpansionTable.load(tmp_path / "t.npz", expect_fingerprint=fam.table.fingerprint)
    assert back.offsets == fam.table.offsets and back.lefts == fam.table.lefts
    with pytest.raises(ValueError, match="another tokenizer"):
        ExpansionTable.load(tmp_path / "t.npz", expect_fingerprint="0" * 64)


def test_patok_splits_off_affixes(fam):
    """With full awareness and every window contracted, known affixed words get cut at
    their morpheme boundaries whenever the tokenizer allows it."""
    arm = make_arm("patok", {"contract_prop": 1.0, "expand_prop": 0.0, "affix_awareness": 1.0,
                             "affix_awareness_if_overlap": 1.0},
                   token_bytes=fam.token_bytes, table=fam.table, encode=fam.encode_batch,
                   affixes=load_affixes(), byte_fallback_ids=fam.byte_fallback_ids)
    text = " naglalaro kumain sinulatan gaganda " * 20
    ids = fam.encode_one(text)
    c = Counter()
    out = arm(ids, random.Random(0), c)
    assert _decoded(fam, out) == _decoded(fam, ids)
    assert c["split_prefix"] + c["split_infix"] + c["split_suffix"] + c["split_redup"] > 0


def test_patok_rejects_bad_params(fam):
    with pytest.raises(ValueError):
        make_arm("patok", {"contract_prop": 1.5}, token_bytes=fam.token_bytes, table=fam.table,
                 encode=fam.encode_batch, affixes=load_affixes())
    with pytest.raises(ValueError, match="unknown patok"):
        make_arm("patok", {"contrat_prop": 0.5}, token_bytes=fam.token_bytes, table=fam.table,
                 encode=fam.encode_batch, affixes=load_affixes())


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=texts)
def test_family_backend_encodes_like_encode_texts(fam, text):
    """The fast path workers use (raw backend) gives the same ids as encode_texts, and the
    cached token bytes equal token_bytes() of the transformers tokenizer."""
    from filmorph.tokenizers import encode_texts

    assert fam.encode_one(text) == fam.encode_batch([text])[0] == encode_texts(fam.tokenizer, [text])[0]


def test_cached_token_bytes_match(fam):
    from filmorph.tokenizers import token_bytes

    assert fam.token_bytes == token_bytes(fam.tokenizer)


# --------------------------------------------------------------- named arm instances
def test_resolve_arm_name_is_the_type_unless_type_is_given():
    from filmorph.arms import arm_names, check_arm, resolve_arm

    assert resolve_arm("patok", {"variant": "morph"}) == ("patok", {"variant": "morph"})
    assert resolve_arm("vanilla", None) == ("vanilla", {})
    assert resolve_arm("patok_morph", {"type": "patok", "variant": "morph"}) == (
        "patok", {"variant": "morph"})
    assert resolve_arm("stochastok", {"type": "vanilla"}) == ("vanilla", {})
    for name, params, msg in [("patok2", {"variant": "morph"}, "arms.patok2: no `type`"),
                              ("base", {"type": "vanilla"}, "reserved"),
                              ("Patok", {"type": "patok"}, "a-z"),
                              ("2nd", {"type": "patok"}, "a-z"),
                              ("x", {"type": "bpe"}, "arms.x.type: unknown 'bpe'")]:
        with pytest.raises(ValueError, match=msg):
            resolve_arm(name, params)
    with pytest.raises(ValueError, match="arms.pm.variant: unknown"):
        check_arm("pm", {"type": "patok", "variant": "nope"})
    with pytest.raises(ValueError, match="unknown vanilla parameters"):
        check_arm("vanilla", {"expand_prop": 0.1})
    with pytest.raises(ValueError, match="unknown stochastok parameters"):
        check_arm("st2", {"type": "stochastok", "contract_prop": 0.1})
    assert arm_names(["patok_morph", "patok", "zeta", "vanilla"]) == [
        "vanilla", "patok", "patok_morph", "zeta"]


def test_named_patok_instances_give_their_own_shards(family_dirs):
    """Two patok instances with different variants tokenize differently; an old-style arm
    (no `type`) gives the same shards as with its type spelled out; seeds follow the name."""
    from filmorph.tokenize import tokenize_documents

    docs = [(f"d{i}", s) for i, s in enumerate(FILIPINO.split(". "))]

    def shards(name, params):
        out = tokenize_documents(docs, family_dirs["llama"], name, params, 7)
        return b"".join(a.tobytes() for a in out)

    published = {"variant": "published", "contract_prop": 0.6, "expand_prop": 0.3}
    base = shards("patok", published)
    assert shards("patok", dict(published, type="patok")) == base
    assert shards("patok_morph", {"type": "patok", "variant": "morph"}) != base
    assert shards("patok_morph", {"type": "patok", "variant": "morph"}) == shards(
        "patok_morph", {"type": "patok", "variant": "morph"})
    assert shards("pub2", dict(published, type="patok")) != base  # (seed, arm name, doc)


def test_summary_table_orders_named_arms_after_the_study_arms(tmp_path):
    from filmorph.summary import write_table

    rows = [{"family": f, "arm": a, "tokens_per_word": 1.5, "affix_boundary_alignment": 0.5}
            for f in ("llama", "gemma") for a in ("patok_morph", "vanilla", "patok")]
    write_table(rows, tmp_path / "s.tsv", tmp_path / "s.png")
    lines = (tmp_path / "s.tsv").read_text().splitlines()[1:]
    assert [ln.split("\t")[:2] for ln in lines] == [
        [f, a] for f in ("gemma", "llama") for a in ("vanilla", "patok", "patok_morph")]
    assert (tmp_path / "s.png").stat().st_size > 0
