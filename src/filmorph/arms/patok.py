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
"""

from __future__ import annotations

import random
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

import ahocorasick

from filmorph.arms.expansions import ExpansionTable, canonical_ids
from filmorph.arms.patok_published import PublishedParams
from filmorph.arms.stochastok import stochastok_expand
from filmorph.phonology import VOWEL_LETTERS as VOWELS

_SPLIT_KEY = {k: f"split_{k}" for k in ("prefix", "infix", "suffix")}
_ONES = {k: b"\x01" * k for k in range(1, 5)}
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
                 params: PatokParams = PatokParams(), secondary_ids: Sequence[int] = ()):
        self.tb = token_bytes
        self.table = table
        self.params = params
        self._encode = encode
        self._tb0 = [b or b"" for b in token_bytes]  # specials spell nothing
        self._tblen = [len(b) for b in self._tb0]
        self._cache: dict[bytes, tuple[int, ...]] = {}
        self._words: dict[bytes, tuple] = {}
        self._rewritten: dict[tuple, tuple[int, ...]] = {}
        self._canon = canonical_ids(token_bytes, secondary_ids)
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
            got = ((), None)
            self._words[word] = got
            return got
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
        got = (tuple(facts), redup)
        if len(self._words) < 2_000_000:
            self._words[word] = got
        return got

    def document_facts(self, raw: bytes) -> tuple[list[int], list[tuple], list[int],
                                                 list[tuple[int, int]]]:
        """Affix matches and reduplications of a whole document, as sorted byte spans:
        (match starts, matches, redup starts, redups)."""
        matches: list[tuple] = []
        redups: list[tuple[int, int]] = []
        get = self._words.get
        for m in _LETTER_BYTES.finditer(raw):
            w = m.group()
            got = get(w)
            facts, redup = got if got is not None else self.word_facts(w)
            if facts or redup:
                a = m.start()
                matches.extend((x + a, y + a, kind, c + a if c >= 0 else -1)
                               for x, y, kind, c in facts)
                if redup:
                    redups.append((redup[0] + a, redup[1] + a))
        return [x[0] for x in matches], matches, [r[0] for r in redups], redups

    # ------------------------------------------------------------------ arm
    def __call__(self, ids: Sequence[int], rng: random.Random,
                 counters: Counter | None = None) -> list[int]:
        """Patok-process one document's ids (see the module docstring)."""
        counters = counters if counters is not None else Counter()
        p = self.params
        n = len(ids)
        attempts = int(p.contract_prop * n) if n >= 2 else 0
        counters["contract_attempts"] += attempts
        windows: list[tuple[int, int]] = []
        if attempts:
            special = bytes(map(self.special.__getitem__, ids))
            affix = bytes(map(self.is_affix.__getitem__, ids))
            raw = b"".join(map(self._tb0.__getitem__, ids))
            offsets = [0, *accumulate(map(self._tblen.__getitem__, ids))]
            facts = self.document_facts(raw)
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
            plans = [self._plan(st, en, raw, offsets, facts, rng, counters)
                     for st, en in windows]
            one = sum(1 for k in plans if type(k) is int)
            cut = sum(1 for k in plans if type(k) is tuple)
            counters["windows_contracted"] += len(plans)
            counters["windows_to_one_token"] += one
            counters["windows_cut"] += cut
            fresh = self._encode_missing(plans)
            out = []
            prev = 0
            for (st, en), key in zip(windows, plans, strict=True):
                out.extend(ids[prev:st])
                if key is None:
                    out.extend(ids[st:en])
                elif type(key) is int:
                    out.append(key)
                else:
                    new = fresh.get(key)
                    if new is None:
                        new = self._rewritten[key]
                    if not new:
                        counters["windows_fallback"] += 1
                        new = ids[st:en]
                    out.extend(new)
                prev = en
            out.extend(ids[prev:])
        return stochastok_expand(out, self.table, rng, p.expand_prop, blocked=self.is_affix,
                                 counters=counters)

    @staticmethod
    def _inside(facts, o1: int, o2: int) -> list[tuple]:
        """Affix matches lying wholly inside the byte range [o1, o2)."""
        starts, matches = facts[0], facts[1]
        out = []
        for i in range(bisect_left(starts, o1), len(starts)):
            if starts[i] >= o2:
                break
            if matches[i][1] <= o2:
                out.append(matches[i])
        return out

    def _plan(self, st: int, en: int, raw: bytes, offsets: list[int], facts,
              rng: random.Random, counters: Counter) -> tuple | int | None:
        """Decide a window's cuts (drawing from `rng`). Returns the rewrite key (window
        bytes, cut offsets) for a window with morpheme cuts; for one without, the single
        token its text is, or None (the window keeps its ids)."""
        o1, o2 = offsets[st], offsets[en]
        # a window edge inside a UTF-8 character (byte-level BPE): leave it as it is
        if (o1 < len(raw) and 0x80 <= raw[o1] < 0xC0) or (o2 < len(raw) and 0x80 <= raw[o2] < 0xC0):
            return None
        span = raw[o1:o2]
        if rng.random() >= self.params.affix_awareness:
            return self._canon.get(span)
        starts, rstarts = facts[0], facts[2]
        cuts: set[int] | None = None
        i = bisect_left(starts, o1)
        if i < len(starts) and starts[i] < o2:
            found = self._inside(facts, o1, o2)
            if found:
                start, end, kind, rcut = found[int(rng.random() * len(found))]
                cuts = {start, end}
                counters[_SPLIT_KEY[kind]] += 1
                if 0 <= rcut <= o2:
                    cuts.add(rcut)
                    counters["split_redup"] += 1
        i = bisect_left(rstarts, o1)
        if i < len(rstarts) and rstarts[i] < o2:
            redups = facts[3]
            for k in range(i, len(rstarts)):
                if rstarts[k] >= o2:
                    break
                a, c = redups[k]
                if c <= o2:
                    if cuts is None:
                        cuts = set()
                    cuts.update((a, c))
                    counters["split_redup"] += 1
        if not cuts:
            return self._canon.get(span)
        return (span, tuple(sorted(c - o1 for c in cuts if o1 < c < o2)))

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
