"""Patok: affix-aware contract-then-expand tokenization for Filipino.

Patok rewrites a document's token ids so that more token boundaries fall on Filipino
morpheme boundaries (affixes, reduplicated syllables), while the decoded text stays the
same byte for byte. For a document of n tokens, with a `random.Random` seeded from
(seed, "patok", document id):

1. **Contraction windows.** floor(contract_prop · n) attempts. Each draws a window size
   k ∈ {2, 3, 4} (weights 0.35 / 0.35 / 0.30) and a start uniformly in [0, n-k]. A window
   is dropped (the attempt fails) if it holds a special token or overlaps a window already
   taken. A window that holds an *affix token* (a token whose text, without its leading
   space, is an inventory affix, e.g. ``▁mag`` or ``um``) is skipped with probability
   `affix_awareness` (0.95), or `affix_awareness_if_overlap` (0.75) when the window's text
   has overlapping affix matches (an ambiguous analysis). Windows are disjoint and refer
   to the original sequence, so the work is O(n).
2. **Contract.** An accepted window's tokens are merged into their text s (its bytes). If a
   window edge falls inside a UTF-8 character (a byte-level BPE token that splits a
   character), the window is left as it was.
3. **Affix-aware split.** With probability `affix_awareness`, s is cut at morpheme
   boundaries. Each document's words are scanned once with an Aho-Corasick automaton
   (pyahocorasick) over the affix inventory (lower-cased; facts memoised per word), keeping
   the *positionally valid* matches: a prefix at a word start, a suffix at a word end, an
   infix right after a word's first consonant, with at least `min_root_chars` letters of
   root left. Among the matches lying inside the window one is chosen uniformly and cut
   out; reduplication is cut too: a repeated first syllable at a word start, or right after
   the chosen prefix (CV·CV, ``gaganda`` → ``ga|ganda``; V·V, ``aalis`` → ``a|alis``).
4. **Re-tokenize.** A window with cuts is re-tokenized piece by piece: a piece that is one
   vocabulary token becomes that token, otherwise the tokenizer encodes it (memoised). The
   new ids are kept only if they spell exactly the window's bytes (else the window stays,
   counted as a fallback). So ``nag|lalaro`` → ``▁nag`` + ``la`` + ``laro`` when the
   tokenizer has those pieces. A window without cuts is contracted to one token when its
   whole text is a vocabulary token; otherwise it keeps the tokenizer's own (in-context)
   segmentation: re-encoding it alone would reproduce that segmentation up to edge
   effects, at the price of an encoder call per window.
5. **Expand the rest.** StochasTok on the result with `expand_prop` (0.3), never splitting
   an affix token (such attempts fail; they do not loop).

Invariants (property-tested): the decoded text is unchanged, every id is a vocabulary id,
special tokens are neither created nor removed, and the output depends only on
(seed, document id, ids, parameters).

Handed a :class:`filmorph._native.Rng` (:func:`filmorph.rng.arm_rng`), the whole arm runs in
C (``filmorph._native.v1_call``), draw for draw the same, calling back here for a word's
facts, a span's vocabulary token and a rewrite's ids the first time they are met.
"""

from __future__ import annotations

import random
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate

import ahocorasick
import numpy as np

from filmorph.arms.expansions import ExpansionTable, canonical_ids, token_blob
from filmorph.arms.patok_published import PublishedParams
from filmorph.arms.stochastok import stochastok_expand

try:  # the whole arm in C (setup.py), taken when the stream is a filmorph._native.Rng
    from filmorph._native import BytesMemo as _NativeBytesMemo
    from filmorph._native import Rng as _NativeRng
    from filmorph._native import v1_call as _native_v1
except ImportError:  # pragma: no cover -- where the extension is not built
    _NativeBytesMemo = _NativeRng = _native_v1 = None
from filmorph.phonology import VOWEL_LETTERS as VOWELS

_SPLIT_KEY = {k: f"split_{k}" for k in ("prefix", "infix", "suffix")}
_VECTOR_MIN = 48  # documents of this many tokens or more get their per-token lookups from numpy
_NO_FACTS: tuple = ((), None)  # the memo's value for a word without matches or reduplication
_ONES = {k: b"\x01" * k for k in range(1, 5)}
_KIND_CODE = {"prefix": 0, "infix": 1, "suffix": 2}  # the C loop's kinds (split_* counters)
_V = "aeiouáàâéèêíìîóòôúùû"
# A reduplicated first syllable at a word start (lower-cased text): CV·CV (gaganda) or V·V
# (aalis). Group 1 is the copied syllable; the cut goes right after it.
_LETTERS = re.compile(r"[^\W\d_]+")
# Runs of letter bytes: ASCII letters and any non-ASCII byte (refined per word with _LETTERS).
# Words under 4 bytes cannot hold an affix plus a root or a CV-CV reduplication: skipped.
_LETTER_BYTES = re.compile(rb"(?<![A-Za-z\x80-\xff])[A-Za-z\x80-\xff]{4,}")
_REDUP = re.compile(rf"(?<![^\W\d_])(?:([^\W\d_{_V}][{_V}])\1|([{_V}])\2)")


@dataclass(frozen=True)
class PatokParams(PublishedParams):
    """The ``v1`` variant's knobs: the published ones (same defaults and checks) and the
    letters that must remain besides a prefix or suffix."""

    min_root_chars: int = 3


class Patok:
    """The Patok arm for one tokenizer: `Patok(...)(ids, rng)` returns the new ids."""

    name = "patok"

    def __init__(self, token_bytes: Sequence[bytes | None], table: ExpansionTable,
                 encode: Callable[[list[str]], list[list[int]]], affixes: Mapping[str, Iterable[str]],
                 params: PatokParams = PatokParams(), byte_fallback_ids: Sequence[int] = ()):
        self.tb = token_bytes
        self.table = table
        self.params = params
        self._encode = encode
        self._tb0 = [b or b"" for b in token_bytes]  # specials spell nothing
        self._tblen = [len(b) for b in self._tb0]
        self._cache: dict[bytes, tuple[int, ...]] = {}
        self._words: dict[bytes, tuple] = {}
        self._rewritten: dict[tuple, tuple[int, ...]] = {}
        self._canon = canonical_ids(token_bytes, byte_fallback_ids)
        kinds: dict[str, set[str]] = {}
        for kind in ("prefix", "infix", "suffix"):
            for a in affixes.get(kind, ()):
                a = a.strip().lower().replace("-", "")
                if a:
                    kinds.setdefault(a, set()).add(kind)
        if not kinds:
            raise ValueError("patok needs a non-empty affix inventory")
        self.automaton = ahocorasick.Automaton()
        for a, ks in kinds.items():
            self.automaton.add_word(a, (len(a), frozenset(ks)))
        self.automaton.make_automaton()
        affix_set = set(kinds)
        self.special = bytearray(len(token_bytes))
        self.is_affix = bytearray(len(token_bytes))
        for tid, b in enumerate(token_bytes):
            if b is None:
                self.special[tid] = 1
                continue
            try:
                s = b.decode("utf-8").strip().lower()
            except UnicodeDecodeError:
                continue
            if s in affix_set:
                self.is_affix[tid] = 1
        self._special_np = np.frombuffer(bytes(self.special), dtype=np.uint8)
        self._affix_np = np.frombuffer(bytes(self.is_affix), dtype=np.uint8)
        self._tblen_np = np.array(self._tblen, dtype=np.int64)
        w = params.window_weights
        total = sum(w)
        self._cum = (w[0] / total, (w[0] + w[1]) / total)

    # ------------------------------------------------------------------ pieces
    def matches(self, word: str) -> list[tuple[int, int, str]]:
        """Positionally valid affix matches (start, end, kind) in one whole word: a prefix at
        its start, a suffix at its end, an infix right after its first consonant, each
        leaving at least `min_root_chars` letters of root (2 after an infix)."""
        low = word.lower()
        if len(low) != len(word):
            return []
        n = len(word)
        min_root = self.params.min_root_chars
        out = []
        for end_idx, (length, kinds) in self.automaton.iter(low):
            start, end = end_idx - length + 1, end_idx + 1
            if "prefix" in kinds and start == 0 and n - end >= min_root:
                out.append((start, end, "prefix"))
            if "suffix" in kinds and end == n and start >= min_root:
                out.append((start, end, "suffix"))
            if "infix" in kinds and start == 1 and low[0] not in VOWELS and n - end >= 2:
                out.append((start, end, "infix"))
        return out

    def word_facts(self, word: bytes) -> tuple[tuple[tuple[int, int, str, int], ...],
                                                 tuple[int, int] | None]:
        """Facts of one whole word (a run of letter bytes), memoised per word: its valid
        affix matches as byte spans (start, end, kind, reduplication cut after a prefix or
        -1), and its word-initial reduplication (start, cut) or None."""
        got = self._words.get(word)
        if got is not None:
            return got
        try:
            text = word.decode("utf-8")
        except UnicodeDecodeError:
            self._words[word] = _NO_FACTS
            return _NO_FACTS
        ascii_only = len(text) == len(word)
        facts: list[tuple[int, int, str, int]] = []
        redup: tuple[int, int] | None = None
        # A letter-byte run can hold non-letters (em dash); look at real letter runs only.
        for m in _LETTERS.finditer(text):
            a = m.start() if ascii_only else len(text[:m.start()].encode("utf-8"))
            w = m.group()
            low = w.lower()

            def bpos(k: int, w: str = w, a: int = a) -> int:
                return a + (k if ascii_only else len(w[:k].encode("utf-8")))

            for start, end, kind in self.matches(w):
                cut = -1
                if kind == "prefix" and len(low) == len(w):
                    r = _REDUP.match(low, end)
                    if r and (r.group(1) or r.group(2)):
                        cut = bpos(end + len(r.group(1) or r.group(2)))
                facts.append((bpos(start), bpos(end), kind, cut))
            if redup is None and len(low) == len(w):
                r = _REDUP.match(low)
                if r:
                    redup = (bpos(0), bpos(len(r.group(1) or r.group(2))))
        facts.sort()
        got = (tuple(facts), redup) if facts or redup else _NO_FACTS
        if len(self._words) < 2_000_000:
            self._words[word] = got
        return got

    def document_words(self, raw: bytes) -> tuple[list[int], list[int], list[tuple]]:
        """The words of a whole document that have affix matches or a reduplication, in
        order: (their start bytes, their end bytes, their :meth:`word_facts`, relative to the
        word). :meth:`_inside` places the facts a window needs in the document."""
        starts: list[int] = []
        ends: list[int] = []
        facts: list[tuple] = []
        get = self._words.get
        for m in _LETTER_BYTES.finditer(raw):
            w = m.group()
            got = get(w)
            if got is None:
                got = self.word_facts(w)
            if got is not _NO_FACTS:
                starts.append(m.start())
                ends.append(m.end())
                facts.append(got)
        return starts, ends, facts

    # ------------------------------------------------------------------ the C loop's callbacks
    def flat_facts(self, word: bytes) -> tuple[int, ...]:
        """:meth:`word_facts` as flat ints for the C loop: (has reduplication, its start, its
        cut, number of matches, then start, end, kind code, reduplication cut per match), or
        () for a word without facts."""
        facts, redup = self.word_facts(word)
        if not facts and redup is None:
            return ()
        out = [1, *redup] if redup is not None else [0, 0, 0]
        out.append(len(facts))
        for x, y, kind, c in facts:
            out += (x, y, _KIND_CODE[kind], c)
        return tuple(out)

    def canon_one(self, span: bytes) -> tuple[int, ...]:
        """(the vocabulary token that `span` is,) or ()."""
        tid = self._canon.get(span)
        return () if tid is None else (tid,)

    def rewrite_one(self, span: bytes, cuts: tuple[int, ...]) -> tuple[int, ...]:
        """The ids of `span` cut at `cuts` (() when they would not spell it), memoised."""
        key = (span, cuts)
        got = self._rewritten.get(key)
        return got if got is not None else self._encode_missing([key])[key]

    @cached_property
    def _native_args(self) -> tuple:
        """The C loop's fixed arguments (``filmorph._native.v1_call``): the vocabulary's
        bytes, offsets, special and affix flags, its memos with the callbacks that fill them,
        the knobs and the expansion table (built once)."""
        p = self.params
        return (*token_blob(self._tb0), bytes(self.special), bytes(self.is_affix),
                _NativeBytesMemo(), self.flat_facts, _NativeBytesMemo(), self.canon_one,
                _NativeBytesMemo(), self.rewrite_one,
                (p.contract_prop, p.expand_prop, *self._cum, p.affix_awareness,
                 p.affix_awareness_if_overlap), self.table.native)

    # ------------------------------------------------------------------ arm
    def __call__(self, ids: Sequence[int], rng: random.Random,
                 counters: Counter | None = None) -> list[int]:
        """Patok-process one document's ids (see the module docstring)."""
        counters = counters if counters is not None else Counter()
        p = self.params
        if type(rng) is _NativeRng:  # the extension is built (else _NativeRng is None)
            return _native_v1(ids, rng, self._native_args, counters)  # counters included
        n = len(ids)
        attempts = int(p.contract_prop * n) if n >= 2 else 0
        counters["contract_attempts"] += attempts
        windows: list[tuple[int, int]] = []
        if attempts:
            if n < _VECTOR_MIN:
                special = bytes(map(self.special.__getitem__, ids))
                affix = bytes(map(self.is_affix.__getitem__, ids))
                offsets = [0, *accumulate(map(self._tblen.__getitem__, ids))]
            else:  # the same per-token lookups, vectorised
                x = np.array(ids, dtype=np.int64)
                special = self._special_np[x].tobytes()
                affix = self._affix_np[x].tobytes()
                off = np.zeros(n + 1, dtype=np.int64)
                np.cumsum(self._tblen_np[x], out=off[1:])
                offsets = off.tolist()
            raw = b"".join(map(self._tb0.__getitem__, ids))
            facts = self.document_words(raw)
            rand = rng.random
            taken = bytearray(special)  # specials block windows like taken positions do
            c1, c2 = self._cum
            blocked = skipped = 0
            aware_plain, aware_overlap = p.affix_awareness, p.affix_awareness_if_overlap
            for _ in range(attempts):
                r = rand()
                k = 2 if r < c1 else (3 if r < c2 else 4)
                if k > n:
                    k = n
                st = int(rand() * (n - k + 1))
                en = st + k
                if taken.find(1, st, en) != -1:
                    blocked += 1
                    continue
                if affix.find(1, st, en) != -1:
                    aware = aware_plain
                    if aware_overlap != aware_plain:
                        inside = self._inside(facts, offsets[st], offsets[en])
                        end = -1
                        for x, y, _, _ in inside:  # sorted by start
                            if x < end:
                                aware = aware_overlap
                                break
                            end = max(end, y)
                    if rand() < aware:
                        skipped += 1
                        continue
                taken[st:en] = _ONES[k]
                windows.append((st, en))
            counters["windows_blocked"] += blocked
            counters["windows_skipped_affix"] += skipped
        if not windows:
            out = list(ids)
        else:
            windows.sort()
            plans = self._plans(windows, raw, offsets, facts, rng, counters)
            one = sum(1 for k in plans if type(k) is int)
            cut = sum(1 for k in plans if type(k) is tuple)
            counters["windows_contracted"] += len(plans)
            counters["windows_to_one_token"] += one
            counters["windows_cut"] += cut
            fresh = self._encode_missing(plans)
            rewritten_get = self._rewritten.get
            out = []
            prev = 0
            for (st, en), key in zip(windows, plans, strict=True):
                out.extend(ids[prev:st])
                if key is None:
                    out.extend(ids[st:en])
                elif type(key) is int:
                    out.append(key)
                else:
                    new = rewritten_get(key)
                    if new is None:
                        new = fresh[key]
                    if not new:
                        counters["windows_fallback"] += 1
                        new = ids[st:en]
                    out.extend(new)
                prev = en
            out.extend(ids[prev:])
        return stochastok_expand(out, self.table, rng, p.expand_prop, blocked=self.is_affix,
                                 counters=counters)

    @staticmethod
    def _inside(words, o1: int, o2: int, with_redups: bool = False):
        """The affix matches (start, end, kind, reduplication cut or -1) lying wholly inside
        the byte range [o1, o2), sorted, as document byte offsets; with `with_redups`, also
        the word-initial reduplications (start, cut) starting in it and cut inside it."""
        wstarts, wends, wfacts = words
        out: list[tuple] = []
        redups: list[tuple[int, int]] = []
        i = bisect_right(wends, o1)  # the first word ending after o1
        n = len(wstarts)
        while i < n:
            a = wstarts[i]
            if a >= o2:
                break
            facts, redup = wfacts[i]
            for x, y, kind, c in facts:  # sorted by start
                x += a
                if x >= o2:
                    break
                if x >= o1 and y + a <= o2:
                    out.append((x, y + a, kind, c + a if c >= 0 else -1))
            if with_redups and redup is not None:
                x, c = redup[0] + a, redup[1] + a
                if o1 <= x < o2 and c <= o2:
                    redups.append((x, c))
            i += 1
        return (out, redups) if with_redups else out

    def _plans(self, windows: list[tuple[int, int]], raw: bytes, offsets: list[int], facts,
               rng: random.Random, counters: Counter) -> list:
        """Decide each window's cuts (drawing from `rng`, windows in order). A window's plan
        is the rewrite key (window bytes, cut offsets) when it has morpheme cuts; without
        cuts, the single token its text is, or None (the window keeps its ids)."""
        rand = rng.random
        aware = self.params.affix_awareness
        canon_get = self._canon.get
        wstarts, wends = facts[0], facts[1]
        nraw = len(raw)
        inside = self._inside
        split = dict.fromkeys(_SPLIT_KEY, 0)
        n_redup = 0
        plans: list = []
        add = plans.append
        for st, en in windows:
            o1, o2 = offsets[st], offsets[en]
            # a window edge inside a UTF-8 character (byte-level BPE): leave it as it is
            if (o1 < nraw and 0x80 <= raw[o1] < 0xC0) or (o2 < nraw and 0x80 <= raw[o2] < 0xC0):
                add(None)
                continue
            span = raw[o1:o2]
            if rand() >= aware:
                add(canon_get(span))
                continue
            cuts: set[int] | None = None
            i = bisect_right(wends, o1)
            if i < len(wstarts) and wstarts[i] < o2:  # a word with facts meets the window
                found, redups = inside(facts, o1, o2, True)
                if found:
                    start, end, kind, rcut = found[int(rand() * len(found))]
                    cuts = {start, end}
                    split[kind] += 1
                    if 0 <= rcut <= o2:
                        cuts.add(rcut)
                        n_redup += 1
                for a, c in redups:
                    if cuts is None:
                        cuts = set()
                    cuts.update((a, c))
                    n_redup += 1
            if not cuts:
                add(canon_get(span))
            else:
                add((span, tuple(sorted(c - o1 for c in cuts if o1 < c < o2))))
        for kind, v in split.items():
            if v:
                counters[_SPLIT_KEY[kind]] += v
        if n_redup:
            counters["split_redup"] += n_redup
        return plans

    def _encode_missing(self, plans: list) -> dict[tuple, tuple[int, ...]]:
        """Rewrites of this document's keys not yet memoised, encoding every piece that is
        neither a vocabulary token nor cached in one batch call. () marks a fallback."""
        todo = {k: None for k in plans if type(k) is tuple and k not in self._rewritten}
        fresh: dict[tuple, tuple[int, ...]] = {}
        if not todo:
            return fresh
        cache, canon = self._cache, self._canon
        missing: dict[bytes, None] = {}
        for span, cuts in todo:
            prev = 0
            for c in (*cuts, len(span)):
                piece = span[prev:c]
                if piece not in cache and piece not in canon:
                    missing[piece] = None
                prev = c
        if missing:
            pieces = list(missing)
            for piece, got in zip(pieces, self._encode([p.decode("utf-8") for p in pieces]),
                                  strict=True):
                missing[piece] = tuple(got)
                if len(cache) < 2_000_000:
                    cache[piece] = missing[piece]
        tb = self.tb
        for key in todo:
            span, cuts = key
            new_ids: list[int] = []
            prev = 0
            for c in (*cuts, len(span)):
                piece = span[prev:c]
                tid = canon.get(piece)
                if tid is not None:
                    new_ids.append(tid)
                else:
                    got = missing.get(piece)
                    new_ids.extend(got if got is not None else cache[piece])
                prev = c
            ok = b"".join(tb[t] or b"\x00" for t in new_ids) == span
            fresh[key] = tuple(new_ids) if ok else ()
            if len(self._rewritten) < 1_000_000:
                self._rewritten[key] = fresh[key]
        return fresh
