"""Patok, ``variant: morph`` (ours, beyond the study): lexicon-backed morpheme cuts per word.

For a document, with one `random.Random` seeded from (seed, "patok", document id):

1. **Analyse each word** (a run of letters) with :class:`MorphAnalyzer`: every parse made of
   stacked prefixes (``pinaka|ma|ganda``), ``um-``/``in-`` before a vowel (``um|inom``), an
   infix after the first consonant (``k|um|ain``, ``k|um|a|kain``), a reduplicated first
   syllable after the prefixes (``nag|sa|salita``, ``ma|ka|kain``) and a suffix (``tinda|han``)
   whose root is a dictionary root (``tagalog_roots.json`` of the ``filipino-tokenizer``
   package), else a word of wordfreq's Filipino list (a dictionary root beats a listed word).
   Among those: a root of 4+ letters before a shorter one (``um|inom``, not ``um|i|nom``), no
   Spanish suffix before one (``nag|sa|salita``, not ``nag|sasal|ita``), then the shortest
   root (``ma|ganda`` over ``maganda``), the fewest prefixes (``pinaka|ma|ganda`` over
   ``pina|ka|ma|ganda``), the most other cuts. A word with no such parse has no cuts.
   Memoised per word.
2. **Cut** each word that has cuts with probability `contract_prop`: the tokens covering it
   are replaced by its morphemes, each one vocabulary token when it is one, else encoded on
   its own; the leading space (and any other
   bytes of the first covering token) stays with the first morpheme (``␣ma|ganda``), trailing
   bytes of the last covering token with the last one. The new ids must spell the same bytes,
   else the word keeps its ids (counted `words_kept`).
3. **Expand elsewhere**: StochasTok with `expand_prop` over the tokens not in cut words.

Text-preserving, deterministic per (seed, arm, document), O(n) per document (memoised
analyses and piece encodings). Handed a :class:`filmorph._native.Rng`
(:func:`filmorph.rng.arm_rng`), steps 2-3 run in C (``filmorph._native.morph_call``), draw for
draw the same, calling back here for a word's analysis and a rewrite's ids the first time
they are met.
"""

from __future__ import annotations

import json
import random
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib.resources import files
from itertools import accumulate
from pathlib import Path

from filmorph.arms.expansions import ExpansionTable, canonical_ids, token_blob
from filmorph.arms.stochastok import expand_slots

try:  # the whole arm in C (setup.py), taken when the stream is a filmorph._native.Rng
    from filmorph._native import BytesMemo as _NativeBytesMemo
    from filmorph._native import Rng as _NativeRng
    from filmorph._native import morph_call as _native_morph
except ImportError:  # pragma: no cover -- where the extension is not built
    _NativeBytesMemo = _NativeRng = _native_morph = None

VOWELS = frozenset("aeiou")
# Affixes the morph analyser adds to the inventory (filmorph/data/affixes.tsv): the published
# list's entries ours lacks, minus the two-letter prefixes too ambiguous to strip without more
# than a lexicon (ga, sa, si, ki), plus -ana/-ano/-eriya.
EXTRA_PREFIXES = ("um", "in", "di", "tag", "tala", "kaka", "kanda", "makapa", "nakapa", "napa",
                  "panag", "nagkaka", "magkaka", "pinag", "ipinag", "pinaka", "ka")
EXTRA_SUFFIXES = ("ana", "ano", "eriya")
# Suffixes stripped from any root of min_root letters; the others (Spanish -ado, -ista...)
# need a root of 4 letters or more (sal|ita is not a parse of salita).
NATIVE_SUFFIXES = frozenset(("an", "han", "nan", "in", "hin", "nin"))
_LETTER_RUN = re.compile(rb"[A-Za-z\x80-\xff]+")
_LETTERS = re.compile(r"[^\W\d_]+")
MAX_PREFIXES = 3


@lru_cache(maxsize=1)
def dictionary_roots() -> frozenset[str]:
    """Headwords of ``filipino_tokenizer/data/tagalog_roots.json`` (the package's own file)."""
    try:
        path = Path(str(files("filipino_tokenizer").joinpath("data/tagalog_roots.json")))
    except ModuleNotFoundError as e:
        raise RuntimeError("patok variant 'morph' needs the 'filipino-tokenizer' package "
                           "(its data/tagalog_roots.json is the root dictionary)") from e
    with open(path, encoding="utf-8") as fh:
        entries = json.load(fh)
    return frozenset(str(e["word"]).strip().lower() for e in entries if e.get("word"))


@lru_cache(maxsize=1)
def word_list() -> frozenset[str]:
    """wordfreq's top 50k Filipino words (the secondary lexicon)."""
    from wordfreq import top_n_list

    return frozenset(top_n_list("fil", 50000))


def _syllable(s: str) -> int:
    """Length of the first (C)(C)V syllable of `s` (0 if none)."""
    i = 0
    while i < len(s) and i < 2 and s[i] not in VOWELS:
        i += 1
    return i + 1 if i < len(s) and s[i] in VOWELS else 0


class MorphAnalyzer:
    """Lexicon-backed segmentation of one Filipino word into morphemes (character cuts)."""

    def __init__(self, affixes: Mapping[str, Iterable[str]], roots: frozenset[str],
                 words: frozenset[str] = frozenset(), min_root: int = 3):
        pre = {a.strip().lower() for a in affixes.get("prefix", ())} | set(EXTRA_PREFIXES)
        self.prefixes = sorted(p for p in pre if p and "-" not in p)
        self.infixes = ("um", "in")
        suf = {a.strip().lower() for a in affixes.get("suffix", ())} | set(EXTRA_SUFFIXES)
        self.suffixes = sorted(s for s in suf if s and "-" not in s)
        self.roots = roots
        self.words = words
        self.min_root = min_root
        self._cache: dict[str, tuple[int, ...]] = {}

    def _level(self, root: str) -> int:
        if len(root) < self.min_root:
            return 0
        if root in self.roots:
            return 2
        if root in self.words:
            return 1
        return 0

    def _root_level(self, root: str) -> int:
        lv = self._level(root)
        if lv == 0 and root.endswith("u"):  # inumin <- inom: o -> u before a suffix
            lv = self._level(root[:-1] + "o")
        return lv

    def _prefix_chains(self, w: str) -> list[tuple[int, ...]]:
        """Cut positions of every chain of up to MAX_PREFIXES prefixes w starts with."""
        out: list[tuple[int, ...]] = [()]
        frontier: list[tuple[int, ...]] = [()]
        for _ in range(MAX_PREFIXES):
            nxt = []
            for chain in frontier:
                pos = chain[-1] if chain else 0
                for p in self.prefixes:
                    if w.startswith(p, pos) and len(w) - pos - len(p) >= self.min_root - 1:
                        nxt.append((*chain, pos + len(p)))
            out.extend(nxt)
            frontier = nxt
        return out

    def parses(self, w: str) -> list[tuple[int, int, int, tuple[int, ...], bool]]:
        """(lexicon level, root length, prefixes, cuts, foreign suffix) of every parse of
        lower-case `w`."""
        out = []
        n = len(w)
        for chain in self._prefix_chains(w):
            pos = chain[-1] if chain else 0
            stems: list[tuple[tuple[int, ...], str]] = [(chain, w[pos:])]
            rest = w[pos:]
            # reduplicated first syllable after the prefixes (nag|sa|salita, ma|ka|kain)
            k = _syllable(rest)
            if k and rest[k:].startswith(rest[:k]) and n - pos - k >= self.min_root:
                stems.append(((*chain, pos + k), rest[k:]))
            # an infix after the first consonant (cluster), with an optional reduplication
            for c in (1, 2):
                if len(rest) > c + 3 and all(ch not in VOWELS for ch in rest[:c]):
                    for inf in self.infixes:
                        if rest.startswith(inf, c):
                            root = rest[:c] + rest[c + 2:]
                            stems.append(((*chain, pos + c, pos + c + 2), root))
                            v = rest[c + 2]
                            tail = rest[c + 3:]
                            if v in VOWELS and tail.startswith(rest[:c] + v):
                                stems.append(((*chain, pos + c, pos + c + 2, pos + c + 3), tail))
            npre = len(chain)
            for cuts, stem in stems:
                lv = self._root_level(stem)
                if lv:
                    out.append((lv, len(stem), npre, cuts, False))
                for s in self.suffixes:
                    if stem.endswith(s) and len(stem) > len(s):
                        root = stem[:-len(s)]
                        if s not in NATIVE_SUFFIXES and len(root) < 4:
                            continue
                        lv = self._root_level(root)
                        if lv:
                            out.append((lv, len(root), npre, (*cuts, n - len(s)),
                                        s not in NATIVE_SUFFIXES))
        return out

    def cuts(self, word: str) -> tuple[int, ...]:
        """Interior character cuts of `word` (empty when no parse has a lexicon root)."""
        got = self._cache.get(word)
        if got is not None:
            return got
        w = word.lower()
        best: tuple[int, ...] = ()
        if len(w) == len(word) and len(w) > self.min_root:
            cands = self.parses(w)
            if cands:
                top = max(c[0] for c in cands)
                cands = [c for c in cands if c[0] == top and c[3]]
                if cands:
                    # a root of 4+ letters, then no Spanish suffix, then the shortest root,
                    # then the fewest prefixes, then the most other cuts, then stable
                    cands.sort(key=lambda c: (c[1] < 4, c[4], c[1], c[2], -len(c[3]), c[3]))
                    best = tuple(sorted(set(x for x in cands[0][3] if 0 < x < len(w))))
        if len(self._cache) < 1_000_000:
            self._cache[word] = best
        return best


@dataclass(frozen=True)
class MorphParams:
    """`contract_prop`: probability of cutting a word that has an analysis (default 0.9, the
    published class's default); `expand_prop`: StochasTok elsewhere (0.1)."""

    contract_prop: float = 0.9
    expand_prop: float = 0.1
    min_root_chars: int = 3

    def __post_init__(self) -> None:
        for name in ("contract_prop", "expand_prop"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"patok {name} must be in [0, 1], got {v}")
        if self.min_root_chars < 1:
            raise ValueError("patok min_root_chars must be >= 1")


class PatokMorph:
    """`PatokMorph(...)(ids, rng, counters)` returns the new ids."""

    name = "patok"
    variant = "morph"

    def __init__(self, token_bytes: Sequence[bytes | None], table: ExpansionTable,
                 encode: Callable[[list[str]], list[list[int]]],
                 affixes: Mapping[str, Iterable[str]], params: MorphParams = MorphParams(),
                 byte_fallback_ids: Sequence[int] = (), analyzer: MorphAnalyzer | None = None):
        self.tb = token_bytes
        self.table = table
        self.params = params
        self._encode = encode
        self.analyzer = analyzer or MorphAnalyzer(affixes, dictionary_roots(), word_list(),
                                                  params.min_root_chars)
        self._word_cuts: dict[bytes, tuple[int, ...]] = {}
        self._tb0 = [b or b"" for b in token_bytes]  # specials spell nothing
        self._special_ids = frozenset(t for t, b in enumerate(token_bytes) if b is None)
        self._rewritten: dict[tuple, tuple[int, ...]] = {}
        self._tblen = [len(b) for b in self._tb0]
        # a piece that is one vocabulary token becomes that token; others are encoded
        self._pieces: dict[bytes, tuple[int, ...]] = {
            b: (t,) for b, t in canonical_ids(token_bytes, byte_fallback_ids).items()}

    def word_cuts(self, run: bytes) -> tuple[int, ...]:
        """Byte cuts inside a run of letter bytes (memoised)."""
        got = self._word_cuts.get(run)
        if got is not None:
            return got
        try:
            text = run.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        out: list[int] = []
        if text is not None:
            for m in _LETTERS.finditer(text):
                w = m.group()
                cs = self.analyzer.cuts(w)
                if cs:
                    a = len(text[:m.start()].encode("utf-8"))
                    out.extend(a + len(w[:c].encode("utf-8")) for c in cs)
        got = tuple(out)
        if len(self._word_cuts) < 1_000_000:
            self._word_cuts[run] = got
        return got

    def _encode_pieces(self, pieces: list[bytes]) -> list[int] | None:
        missing = [p for p in dict.fromkeys(pieces) if p not in self._pieces]
        if missing:
            try:
                texts = [p.decode("utf-8") for p in missing]
            except UnicodeDecodeError:
                return None
            for p, got in zip(missing, self._encode(texts), strict=True):
                self._pieces[p] = tuple(got)
        out: list[int] = []
        for p in pieces:
            out.extend(self._pieces[p])
        return out

    def _rewrite(self, span: bytes, start: int, cs: tuple[int, ...]) -> tuple[int, ...]:
        """The ids of `span` cut at `start` + each of `cs` (pieces encoded on their own), or
        () when they would not spell `span` (memoised by the caller)."""
        bounds = [0, *(start + c for c in cs), len(span)]
        pieces = [span[x:y] for x, y in zip(bounds, bounds[1:], strict=False) if y > x]
        new = self._encode_pieces(pieces)
        if new is None or b"".join(self.tb[t] or b"\x00" for t in new) != span:
            return ()
        return tuple(new)

    def rewrite(self, span: bytes, start: int, cs: tuple[int, ...]) -> tuple[int, ...]:
        """:meth:`_rewrite`, memoised (up to 2 million rewrites)."""
        key = (span, start, cs)
        new = self._rewritten.get(key)
        if new is None:
            new = self._rewrite(span, start, cs)
            if len(self._rewritten) < 2_000_000:
                self._rewritten[key] = new
        return new

    @cached_property
    def _native_args(self) -> tuple:
        """The C loop's fixed arguments (``filmorph._native.morph_call``): every token's bytes
        in one blob, their offsets, the special flags, its own memos of word cuts and rewrites
        (with the callbacks that fill them), the knobs and the expansion table."""
        p = self.params
        special = bytes(b is None for b in self.tb)
        return (*token_blob(self._tb0), special, _NativeBytesMemo(), self.word_cuts,
                _NativeBytesMemo(), self.rewrite, p.contract_prop, self.table.native,
                p.expand_prop)

    def __call__(self, ids: Sequence[int], rng: random.Random,
                 counters: Counter | None = None) -> list[int]:
        if counters is None:
            counters = Counter()
        if type(rng) is _NativeRng:  # the extension is built (else _NativeRng is None)
            return _native_morph(ids, rng, self._native_args, counters)  # counters included
        p = self.params
        tb = self.tb
        n = len(ids)
        tb0, tblen = self._tb0, self._tblen
        offsets = [0, *accumulate([tblen[t] for t in ids])]
        raw = b"".join([tb0[t] for t in ids])
        # rewrites: (first token, end token, new ids), in order, disjoint
        rewrites: list[tuple[int, int, list[int]]] = []
        last_end = 0
        words = cut = kept = morph_cuts = 0
        rand = rng.random
        memo = self._word_cuts
        has_special = not self._special_ids.isdisjoint(ids)
        for m in _LETTER_RUN.finditer(raw):
            w = m.group()
            cs = memo.get(w)
            if cs is None:
                cs = self.word_cuts(w)
            if not cs:
                continue
            words += 1
            if rand() >= p.contract_prop:
                continue
            a, b = m.start(), m.end()
            t1 = bisect_right(offsets, a) - 1  # the token whose bytes hold byte a
            t2 = bisect_left(offsets, b, t1)  # tokens t1..t2-1 cover [a, b)
            if t1 < last_end or (has_special and any(tb[t] is None for t in ids[t1:t2])):
                kept += 1
                continue
            o1, o2 = offsets[t1], offsets[t2]
            new = self.rewrite(raw[o1:o2], a - o1, cs)
            if not new:
                kept += 1
                continue
            rewrites.append((t1, t2, new))
            last_end = t2
            cut += 1
            morph_cuts += len(cs)
        counters["words_analysed"] += words
        counters["words_cut"] += cut
        counters["windows_contracted"] += cut  # the summary's contracted_window_rate
        counters["words_kept"] += kept
        counters["morph_cuts"] += morph_cuts
        # StochasTok over the tokens outside the cut words
        if rewrites:
            inside = bytearray(n)
            for t1, t2, _ in rewrites:
                inside[t1:t2] = b"\x01" * (t2 - t1)
            where = [i for i in range(n) if not inside[i]]
            rest = [ids[i] for i in where]
        else:
            where = None
            rest = list(ids)
        slots = expand_slots(rest, self.table, rng, p.expand_prop, counters=counters)
        if where is not None:
            slots = {where[k]: v for k, v in slots.items()}
        events = sorted([(t1, t2, new) for t1, t2, new in rewrites]
                        + [(k, k + 1, v) for k, v in slots.items()])
        out: list[int] = []
        prev = 0
        for t1, t2, new in events:
            out.extend(ids[prev:t1])
            out.extend(new)
            prev = t2
        out.extend(ids[prev:])
        return out
