"""filmorph._native (the arms' C loops) against the pure-Python reference: the same random
stream, the same ids, counters and stream position after every arm.

CI sets FILMORPH_REQUIRE_NATIVE=1 so that a missing build fails instead of skipping."""

import os
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filmorph.affixes import load_affixes
from filmorph.arms import make_arm
from filmorph.arms import patok_published as published_mod
from filmorph.arms.expansions import ExpansionTable
from filmorph.arms.stochastok import expand_slots, stochastok_expand
from filmorph.corpus import embedded_corpus_path, iter_documents
from filmorph.rng import arm_rng, derive_seed, native_available, rng_for

if not native_available():
    if os.environ.get("FILMORPH_REQUIRE_NATIVE") == "1":
        raise RuntimeError("filmorph._native is not built (pip install -e . builds it; "
                           "FILMORPH_REQUIRE_NATIVE=1)")
    pytest.skip("filmorph._native is not built", allow_module_level=True)

from filmorph._native import Rng, Table, expand  # noqa: E402

TOY = [b"a", b"b", b"c", b"d", b"ab", b"cd", b"abcd", b"bc", b"abc", b"bcd", None]
TOY_TABLE = ExpansionTable.build(TOY)


def _pair(seed: int):
    """(the C stream, the Python stream) for one seed."""
    return Rng(seed.to_bytes(max(1, (seed.bit_length() + 7) // 8), "little")), random.Random(seed)


@pytest.mark.parametrize("seed", [0, 1, 5, 2**32 - 1, 2**32, 2**64 + 5, 2**127 + 3, 2**300 + 17])
def test_rng_is_random_randoms_stream(seed):
    c, py = _pair(seed)
    assert [c.random() for _ in range(2000)] == [py.random() for _ in range(2000)]


def test_rng_from_padded_bytes_and_arm_rng():
    # leading zero words do not change the key (CPython drops them too)
    assert Rng(b"\x05" + b"\x00" * 15).random() == random.Random(5).random()
    assert Rng(b"").random() == random.Random(0).random()
    for k in range(200):
        a, b = arm_rng(k, "patok", f"doc{k}"), rng_for(k, "patok", f"doc{k}")
        assert isinstance(a, Rng)
        assert [a.random() for _ in range(50)] == [b.random() for _ in range(50)]
    assert derive_seed(3, "x", "y") == int.from_bytes(
        derive_seed(3, "x", "y").to_bytes(16, "little"), "little")


def test_table_refuses_bad_arrays():
    from array import array

    with pytest.raises(TypeError, match="int64"):
        Table(array("i", [0]), array("q"), array("q"))
    with pytest.raises(ValueError, match="offsets"):
        Table(array("q", [0, 3]), array("q", [1]), array("q", [1]))
    t = TOY_TABLE.native
    with pytest.raises(IndexError, match="vocabulary"):
        expand([0, 99], t, Rng(b"\x01"), 1.0)
    with pytest.raises(TypeError, match="counters"):
        expand([0, 1], t, Rng(b"\x01"), 1.0, counters=[])


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(st.integers(0, 10), max_size=40), prop=st.sampled_from([0.0, 0.1, 0.3, 1.0, 2.5]),
       seed=st.integers(0, 2**64), block=st.booleans(), redraw=st.integers(0, 3))
def test_expand_matches_python_draw_for_draw(ids, prop, seed, block, redraw):
    blocked = bytearray(len(TOY))
    if block:
        blocked[6] = blocked[4] = 1  # "abcd" and "ab" never split
    kw = {"blocked": blocked if block else None, "redraw_blocked": redraw}
    c, py = _pair(seed)
    cc, pc = Counter(), Counter()
    assert stochastok_expand(ids, TOY_TABLE, c, prop, counters=cc, **kw) == \
        stochastok_expand(ids, TOY_TABLE, py, prop, counters=pc, **kw)
    assert dict(cc) == dict(pc)  # the same keys, zeros included (stats.json's arm_counters)
    assert c.random() == py.random()  # the stream is left at the same place
    c, py = _pair(seed)
    slots_c = expand_slots(ids, TOY_TABLE, c, prop, **kw)
    slots_py = expand_slots(ids, TOY_TABLE, py, prop, **kw)
    assert list(slots_c.items()) == list(slots_py.items())  # same pieces, same order


def _arm(fam, name, params):
    return make_arm(name, params, token_bytes=fam.token_bytes, table=fam.table,
                    encode=fam.encode_batch, affixes=load_affixes(),
                    byte_fallback_ids=fam.byte_fallback_ids)


ARMS = {
    "stochastok": {"expand_prop": 0.1},
    "patok": {"variant": "v1", "contract_prop": 0.3, "expand_prop": 0.3},
    "patok_published": {"type": "patok", "variant": "published", "contract_prop": 0.3,
                        "expand_prop": 0.3},
    "patok_published_hard": {"type": "patok", "variant": "published", "contract_prop": 1.0,
                             "expand_prop": 1.0, "affix_awareness_if_overlap": 0.5},
    "patok_morph": {"type": "patok", "variant": "morph"},
}
CORPUS = [t for _, t in iter_documents(embedded_corpus_path(), id_prefix="emb")]  # 183 documents
TEXTS = [
    "Si Maria ay kumain ng masarap na pagkain sa tindahan.",
    "Nagsasalita siya nang mahusay at pinakamaganda ang kanyang boses.",
    "Uminom sila ng tubig bago umalis. " * 40,  # several hundred tokens
    "a", "", "Kumakain kami ngayon, at bukas ay magluluto.",
    "Nakakapagpabagabag " + "pinakamaganda" * 8 + " ang tindahan.",  # a word past 64 bytes
    "Si Niño ay kumakain ng piña at ubé — talagang masaráp ang mga pagkaing ito!",
]


@pytest.mark.parametrize("family", ["gemma", "llama"])
@pytest.mark.parametrize("name", list(ARMS))
def test_every_arm_gives_the_same_ids_with_either_stream(families, family, name, monkeypatch):
    fam = families[family]
    docs = [fam.encode_batch([t])[0] for t in TEXTS]
    specials = [t for t, b in enumerate(fam.token_bytes) if b is None][:3]
    docs.append(docs[0][:5] + specials + docs[1])  # specials inside a document
    docs.append(docs[2] * 12)  # past NATIVE_MAX_TOKENS after the patch below: Python loop
    monkeypatch.setattr(published_mod, "NATIVE_MAX_TOKENS", 1024)
    arm_c, arm_py = _arm(fam, name, ARMS[name]), _arm(fam, name, ARMS[name])
    cc, pc = Counter(), Counter()
    for i, ids in enumerate(docs):
        for rep in range(3):
            c, py = arm_rng(7, name, f"d{i}:{rep}"), rng_for(7, name, f"d{i}:{rep}")
            assert isinstance(c, Rng)
            out_c, out_py = arm_c(list(ids), c, cc), arm_py(list(ids), py, pc)
            assert out_c == out_py, (name, i, rep)
            assert c.random() == py.random()
            text = b"".join(fam.token_bytes[t] or b"" for t in ids)
            assert b"".join(fam.token_bytes[t] or b"" for t in out_c) == text
    assert dict(cc) == dict(pc)  # the same keys, zeros included (stats.json's arm_counters)


def test_published_loop_refuses_ids_outside_the_vocabulary(families):
    fam = families["gemma"]
    arm = _arm(fam, "patok_published", ARMS["patok_published"])
    with pytest.raises(IndexError, match="vocabulary"):
        arm([2, len(fam.token_bytes) + 5, 3, 4], arm_rng(0, "p", "d"), Counter())


def test_published_memo_emptied_when_full_changes_nothing(families):
    """A C memo that fills up is emptied (max_slots / 2 entries): the ids stay the same."""
    from filmorph._native import Memo

    fam = families["llama"]
    docs = fam.encode_batch(CORPUS[:40])
    small, big = (_arm(fam, "patok_published", ARMS["patok_published_hard"]) for _ in range(2))
    small._native_memo = Memo(len(fam.token_bytes), max_slots=1024)
    with pytest.raises(ValueError, match="power of two"):
        Memo(10, max_slots=1000)
    for i, ids in enumerate(docs):
        assert small(ids, arm_rng(1, "p", str(i)), Counter()) == \
            big(ids, arm_rng(1, "p", str(i)), Counter())
    windows, outcomes = small._native_memo.sizes()
    assert 0 < windows < 512 and 0 < outcomes < 512
    assert max(big._native_memo.sizes()) > 512  # the small one was emptied at least once


def test_morph_memos_emptied_when_full_change_nothing(families):
    """The morph loop's C memos (word cuts, rewrites) emptied when full: the same ids."""
    from filmorph._native import BytesMemo

    fam = families["gemma"]
    docs = fam.encode_batch(CORPUS)
    small, big = (_arm(fam, "patok_morph", {"type": "patok", "variant": "morph",
                                            "contract_prop": 1.0}) for _ in range(2))
    args = list(small._native_args)
    args[3], args[5] = BytesMemo(max_slots=1024), BytesMemo(max_slots=1024)
    small._native_args = tuple(args)
    for i, ids in enumerate(docs):
        assert small(ids, arm_rng(1, "m", str(i)), Counter()) == \
            big(ids, arm_rng(1, "m", str(i)), Counter())
    assert 0 < small._native_args[5].size() < 512
    assert big._native_args[3].size() > 512 and big._native_args[5].size() > 512  # emptied
    with pytest.raises(ValueError, match="power of two"):
        BytesMemo(max_slots=3000)


@pytest.mark.parametrize("arm,params", [
    ("stochastok", {}), ("patok", {}), ("patok", {"variant": "published"}),
    ("patok_morph", {"type": "patok", "variant": "morph"})])
def test_tokenize_stage_writes_the_same_shard_either_way(family_dirs, tmp_path, monkeypatch,
                                                         capsys, arm, params):
    """The tokenize stage with the extension and without it (`arm_rng` handing out
    `random.Random`): byte-identical shards and counters; `arm_loops` says which ran, and
    without it the job's log says so and how to build it."""
    import json

    import filmorph.rng
    from filmorph.corpus import split_corpus
    from filmorph.tokenize import tokenize_chunk

    split_corpus(embedded_corpus_path(), tmp_path / "corpus", 1, id_prefix="emb")
    chunk = tmp_path / "corpus" / "chunk_0001.jsonl"
    stats = {}
    for code in ("compiled", "python"):
        if code == "python":
            monkeypatch.setattr(filmorph.rng, "_NativeRng", None)
            monkeypatch.setattr(filmorph.rng, "_NATIVE_ERROR", "No module named 'filmorph._native'")
        stats[code] = tokenize_chunk(chunk, family_dirs["llama"], arm, params, 3,
                                     tmp_path / code / "c")
        err = capsys.readouterr().err
        if code == "python":
            assert "filmorph._native is not built for this Python" in err
            assert "No module named" in err and "pip install --no-deps -e" in err
        else:
            assert "filmorph._native" not in err
        assert json.loads((tmp_path / code / "c.stats.json").read_text())["arm_loops"] == code
    for ext in ("bin", "idx", "doc_ids.txt"):
        assert (tmp_path / "compiled" / f"c.{ext}").read_bytes() == \
            (tmp_path / "python" / f"c.{ext}").read_bytes(), ext
    assert stats["compiled"]["arm_counters"] == stats["python"]["arm_counters"]
    assert stats["compiled"]["documents_out"] == 183
