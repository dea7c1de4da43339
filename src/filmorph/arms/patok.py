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
2. **Contract.** An accepted window's tokens are merged into their text s. If the window's
   bytes are not valid UTF-8 (a byte-level BPE token that splits a character), the window
   is left as it was.
3. **Affix-aware split.** With probability `affix_awareness`, s is cut at morpheme
   boundaries found by Aho-Corasick (pyahocorasick) over the lower-cased text with the
   affix inventory: one match chosen uniformly among the *positionally valid* ones
   (a prefix at a word start, a suffix at a word end, an infix right after a word's first
   consonant; at least `min_root_chars` letters of root left), plus reduplication cuts:
   at a word start, or right after the chosen prefix, a repeated first syllable (CV·CV,
   ``gaganda`` → ``ga|ganda``; V·V, ``aalis`` → ``a|alis``) is cut off.
4. **Re-tokenize.** Each piece between cuts is tokenized on its own: a piece that is one
   vocabulary token becomes that token; otherwise the tokenizer encodes it (memoised).
   The window's new ids are kept only if they spell exactly the window's bytes (else the
   window is left as it was, counted as a fallback). So ``nag|lalaro`` →
   ``▁nag`` + ``la`` + ``laro`` when the tokenizer has those pieces.
5. **Expand the rest.** StochasTok on the result with `expand_prop` (0.3), never splitting
   an affix token (such attempts fail; they do not loop).

Invariants (property-tested): the decoded text is unchanged, every id is a vocabulary id,
special tokens are neither created nor removed, and the output depends only on
(seed, document id, ids, parameters).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import ahocorasick

from filmorph.arms.expansions import ExpansionTable, canonical_ids
from filmorph.arms.stochastok import stochastok_expand

VOWELS = frozenset("aeiouáàâéèêíìîóòôúùû")
_SIZES = (2, 3, 4)


@dataclass(frozen=True)
class PatokParams:
    """Patok's knobs; defaults are the study's (contract 0.3, expand 0.3, awareness 0.95)."""

    contract_prop: float = 0.3
    expand_prop: float = 0.3
    affix_awareness: float = 0.95
    affix_awareness_if_overlap: float = 0.75
    window_weights: tuple[float, float, float] = (0.35, 0.35, 0.30)
    min_root_chars: int = 3

    def __post_init__(self) -> None:
        for name in ("contract_prop", "expand_prop", "affix_awareness",
                     "affix_awareness_if_overlap"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"patok {name} must be in [0, 1], got {v}")
        if len(self.window_weights) != 3 or min(self.window_weights) < 0 or sum(
                self.window_weights) <= 0:
            raise ValueError("patok window_weights must be three non-negative weights")


def _is_letter_byte(b: int) -> bool:
    # ASCII letters; any non-ASCII byte is taken as part of a letter (ñ, á, ...).
    return b >= 0x80 or (0x41 <= b <= 0x5A) or (0x61 <= b <= 0x7A)


class Patok:
    """The Patok arm for one tokenizer: `Patok(...)(ids, rng)` returns the new ids."""

    name = "patok"

    def __init__(self, token_bytes: Sequence[bytes | None], table: ExpansionTable,
                 encode: Callable[[str], list[int]], affixes: Mapping[str, Iterable[str]],
                 params: PatokParams = PatokParams(), secondary_ids: Sequence[int] = ()):
        self.tb = token_bytes
        self.table = table
        self.params = params
        self._encode = encode
        self._cache: dict[str, tuple[int, ...]] = {}
        self._analysis: dict[tuple, tuple] = {}
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
    def encode_piece(self, piece: str) -> tuple[int, ...]:
        """Ids for one piece of text: a single vocab token when it is one, else the encoder's."""
        got = self._cache.get(piece)
        if got is None:
            tid = self._canon.get(piece.encode("utf-8"))
            got = (tid,) if tid is not None else tuple(self._encode(piece))
            if len(self._cache) < 2_000_000:
                self._cache[piece] = got
        return got

    def matches(self, s: str, starts_word: bool, ends_word: bool
                ) -> list[tuple[int, int, str]]:
        """Positionally valid affix matches (start, end, kind) in `s`; see the module doc."""
        low = s.lower()
        if len(low) != len(s):
            return []
        n = len(s)
        min_root = self.params.min_root_chars
        out = []
        for end_idx, (length, kinds) in self.automaton.iter(low):
            start, end = end_idx - length + 1, end_idx + 1
            at_word_start = (start == 0 and starts_word) or (start > 0 and not s[start - 1].isalpha())
            if "prefix" in kinds and at_word_start:
                j = end
                while j < n and s[j].isalpha():
                    j += 1
                if j - end >= min_root:
                    out.append((start, end, "prefix"))
            if "suffix" in kinds and ((end == n and ends_word) or (end < n and not s[end].isalpha())):
                j = start
                while j > 0 and s[j - 1].isalpha():
                    j -= 1
                if start - j >= min_root and not (j == 0 and not starts_word):
                    out.append((start, end, "suffix"))
            if "infix" in kinds and start >= 1 and s[start - 1].isalpha() \
                    and s[start - 1].lower() not in VOWELS:
                w0 = start - 1
                if (w0 == 0 and starts_word) or (w0 > 0 and not s[w0 - 1].isalpha()):
                    j = end
                    while j < n and s[j].isalpha():
                        j += 1
                    if j - end >= 2:
                        out.append((start, end, "infix"))
        return out

    @staticmethod
    def _redup_cut(low: str, p: int) -> int | None:
        """Cut position of a reduplicated first syllable starting at `p`, if any."""
        c0 = low[p:p + 1]
        if not c0.isalpha():
            return None
        if c0 in VOWELS:
            return p + 1 if low[p + 1:p + 2] == c0 else None
        if low[p + 1:p + 2] in VOWELS and low[p:p + 2] == low[p + 2:p + 4]:
            return p + 2
        return None

    def analyze(self, window: tuple[int, ...], starts_word: bool, ends_word: bool
                ) -> tuple[bytes, str | None, list[tuple[int, int, str]], list[int], bool]:
        """Deterministic facts about a window (memoised): its bytes, text, valid affix
        matches, reduplication cuts at word starts, and whether affix matches overlap."""
        key = (window, starts_word, ends_word)
        got = self._analysis.get(key)
        if got is not None:
            return got
        raw = b"".join(self.tb[t] for t in window)
        try:
            s: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            s = None
        found: list[tuple[int, int, str]] = []
        redup: list[int] = []
        overlap = False
        if s is not None:
            found = self.matches(s, starts_word, ends_word)
            spans = sorted((a, b) for a, b, _ in found)
            overlap = any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))
            low = s.lower()
            if len(low) == len(s):
                for i, ch in enumerate(s):
                    if ch.isalpha() and ((i == 0 and starts_word) or (i > 0 and not s[i - 1].isalpha())):
                        c = self._redup_cut(low, i)
                        if c is not None:
                            redup.extend((i, c))
        got = (raw, s, found, redup, overlap)
        if len(self._analysis) < 1_000_000:
            self._analysis[key] = got
        return got

    def cut_points(self, s: str, found: list[tuple[int, int, str]], redup: list[int],
                   choice: int, counters: Counter) -> list[int]:
        """Interior cut positions of window text `s` for affix match number `choice`
        (-1: none) plus the reduplication cuts."""
        cuts = set(redup)
        if redup:
            counters["split_redup"] += len(redup) // 2
        if choice >= 0:
            start, end, kind = found[choice]
            cuts.update((start, end))
            counters[f"split_{kind}"] += 1
            if kind == "prefix" and len(s.lower()) == len(s):
                c = self._redup_cut(s.lower(), end)
                if c is not None:
                    cuts.update((end, c))
                    counters["split_redup"] += 1
        return sorted(c for c in cuts if 0 < c < len(s))

    # ------------------------------------------------------------------ arm
    def __call__(self, ids: Sequence[int], rng: random.Random,
                 counters: Counter | None = None) -> list[int]:
        """Patok-process one document's ids (see the module docstring)."""
        counters = counters if counters is not None else Counter()
        p = self.params
        n = len(ids)
        special = bytes(map(self.special.__getitem__, ids))
        affix = bytes(map(self.is_affix.__getitem__, ids))
        rand = rng.random
        taken = bytearray(n)
        windows: list[tuple[int, int]] = []
        attempts = int(p.contract_prop * n) if n >= 2 else 0
        c1, c2 = self._cum
        for _ in range(attempts):
            r = rand()
            k = _SIZES[0] if r < c1 else (_SIZES[1] if r < c2 else _SIZES[2])
            k = min(k, n)
            st = int(rand() * (n - k + 1))
            en = st + k
            if special.find(1, st, en) != -1 or taken.find(1, st, en) != -1:
                counters["windows_blocked"] += 1
                continue
            if affix.find(1, st, en) != -1:
                overlap = self.analyze(tuple(ids[st:en]), True, True)[4]
                aware = p.affix_awareness_if_overlap if overlap else p.affix_awareness
                if rand() < aware:
                    counters["windows_skipped_affix"] += 1
                    continue
            taken[st:en] = b"\x01" * k
            windows.append((st, en))
        counters["contract_attempts"] += attempts
        if not windows:
            out = list(ids)
        else:
            windows.sort()
            out = []
            prev = 0
            for st, en in windows:
                out.extend(ids[prev:st])
                out.extend(self._rewrite(ids, st, en, rng, counters))
                prev = en
            out.extend(ids[prev:])
        return stochastok_expand(out, self.table, rng, p.expand_prop, blocked=self.is_affix,
                                 counters=counters)

    def _rewrite(self, ids: Sequence[int], st: int, en: int, rng: random.Random,
                 counters: Counter) -> Sequence[int]:
        tb = self.tb
        window = tuple(ids[st:en])
        before = tb[ids[st - 1]] if st > 0 else None
        after = tb[ids[en]] if en < len(ids) else None
        starts_word = not before or not _is_letter_byte(before[-1])
        ends_word = not after or not _is_letter_byte(after[0])
        raw, s, found, redup, _ = self.analyze(window, starts_word, ends_word)
        if s is None:
            counters["windows_undecodable"] += 1
            return window
        counters["windows_contracted"] += 1
        choice = -2  # not affix-aware this time: re-tokenize the contracted text whole
        if rng.random() < self.params.affix_awareness:
            choice = int(rng.random() * len(found)) if found else -1
        key = (window, starts_word, ends_word, choice)
        new = self._rewritten.get(key)
        if new is None:
            cuts = [] if choice == -2 else self.cut_points(s, found, redup, choice, Counter())
            pieces: list[int] = []
            prev = 0
            for c in (*cuts, len(s)):
                pieces.extend(self.encode_piece(s[prev:c]))
                prev = c
            ok = b"".join(tb[t] if tb[t] is not None else b"\x00" for t in pieces) == raw
            new = tuple(pieces) if ok else ()
            if len(self._rewritten) < 1_000_000:
                self._rewritten[key] = new
        if not new:
            counters["windows_fallback"] += 1
            return window
        if choice >= 0:
            counters[f"split_{found[choice][2]}"] += 1
        if choice != -2 and redup:
            counters["split_redup"] += len(redup) // 2
        return new
