"""Patok, ``variant: published``: the published algorithm's semantics, text-preserving.

The study's Patok (Africa, Montalan, Gamboa; its ``MorphologyAwarePatokProcessor``) as its
code behaves, re-implemented here. For a document of n tokens, with one `random.Random`
seeded from (seed, "patok", document id):

1. floor(contract_prop · n) iterations (n is the length before the first one). Each draws a
   window size k ∈ {2, 3, 4} (weights 0.35 / 0.35 / 0.30) and, in the *current* sequence
   (so windows may overlap tokens earlier windows produced), up to 100 starts uniformly in
   [0, L - k]. A start is accepted when its window holds no *affix token* or, holding one,
   when U[0,1) >= the awareness (0.95, or 0.75 when two affix matches in the window's text
   start at the same position). After 100 rejections the window is the first k tokens.
   If the sequence is shorter than k, the window is the whole sequence.
2. The window's text is cut once: with probability 0.95 (when the text has any affix match)
   at one match chosen uniformly among all Aho-Corasick matches of the affix *variants*
   anywhere in the text (no positional check; matches that carry a space, `` ma`` or
   ``an ``, are preferred when there are any): before | affix | after.
3. Each piece is cut at its first repeated character pair (``gaganda`` → ``ga|ganda``).
4. Each piece is encoded on its own and the ids replace the window.
5. StochasTok with `expand_prop` on the result, over the current length; a draw that lands
   on an affix token draws again.

The affix inventory is the published one (:data:`PUBLISHED_AFFIXES`: 97 prefixes, 2 infixes,
21 suffixes, typos and hyphens kept). Variants: each prefix as is, with a leading space,
capitalized, and both; infixes as is; each suffix as is and with a trailing space. *Affix
tokens* are the tokens whose vocabulary string equals a variant; in the published code the
vocabulary strings of SentencePiece (``▁ma``) and byte-level BPE (``Ġma``) vocabularies
never hold a plain space, so only the bare and capitalized forms select tokens.

Where the published code loses text, this arm keeps it (these are the only departures):
a window holding a special token is never taken (start redrawn up to 100 times, then the
iteration is dropped; the published code then takes it); a window whose bytes are not
whole UTF-8 characters, or whose re-encoded pieces do not spell its bytes, keeps its ids
(counted `windows_kept`); bytes are joined directly rather than decoded with the
tokenizer's clean-up; a StochasTok draw gives up after 1,000 redraws on affix tokens
instead of looping for ever. All randomness comes from the one `random.Random`. Edits go
through :class:`filmorph.arms.seq.BlockSeq` (a document of one block, the common case, is
edited as a plain list, the same edits), so a document costs O(n log n) rather than the
published O(n²). Handed a :class:`filmorph._native.Rng` (:func:`filmorph.rng.arm_rng`), a
document of at most :data:`NATIVE_MAX_TOKENS` tokens runs steps 1-5 in C
(``filmorph._native.published_contract``), draw for draw the same: the C loop memoises
windows and outcomes itself and calls :meth:`PatokPublished._facts` and
:meth:`PatokPublished._outcome_of` (the matching and cutting here) the first time it meets
one.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import ahocorasick

from filmorph.arms.expansions import ExpansionTable
from filmorph.arms.seq import BlockSeq
from filmorph.arms.stochastok import stochastok_expand

try:  # the window loop in C (setup.py), taken when the stream is a filmorph._native.Rng
    from filmorph._native import Memo as _NativeMemo
    from filmorph._native import Rng as _NativeRng
    from filmorph._native import published_contract as _native_contract
except ImportError:  # pragma: no cover -- where the extension is not built
    _NativeMemo = _NativeRng = _native_contract = None

# The published inventory (data/affixes_filipino/{prefix,infix,suffix}.txt), as it is.
PUBLISHED_AFFIXES: dict[str, tuple[str, ...]] = {
    "prefix": tuple("""de- di- ga ika ipa ipag ipam ipan ipang in ka kaka kasim kasin kasing ki
        kanda labim labin labing- ma mag magka magkanda magma magpa magpaka magsi magpsipag
        maka makapag makapam makapan makapang maki makipag mala mam man mang mapa mapag mapam
        mapan mapang may na nag nagka nagma nagkanda nagpa nagpaka nagsi nagsipag naka nakapag
        nakapam nakapan nakapang naki nakipag nam nan nang napa napag napam napan napang napaka
        pa pag pagka paki pakiki pakikipag pala pam pan panag pang pinaka sa sam san sang si
        sim sin sing tag taga tagapag tala tig um""".split()),
    "infix": ("in", "um"),
    "suffix": tuple("""ado an ana ano asyon era eriya ero erya han hin ilyo in ismo ista ita
        ito nan nin siyon syon""".split()),
}
MAX_ATTEMPTS = 100
MAX_REDRAWS = 1000
# Documents up to this many tokens take the C window loop (a flat array: an edit moves the
# tail, O(n)); longer ones the BlockSeq loop here. Both make the same edits.
NATIVE_MAX_TOKENS = 4096
_REPEAT = re.compile(r"(..)\1", re.S)  # the first character pair repeated right after itself


def affix_variants(affixes: dict[str, Sequence[str]]) -> list[str]:
    """The published variant set, in a stable order."""
    out: dict[str, None] = {}
    for p in affixes.get("prefix", ()):
        for v in (p, " " + p, p.capitalize(), " " + p.capitalize()):
            out[v] = None
    for i in affixes.get("infix", ()):
        out[i] = None
    for s in affixes.get("suffix", ()):
        out[s] = None
        out[s + " "] = None
    return list(out)


@dataclass(frozen=True)
class PublishedParams:
    """The published knobs (study: contract 0.3, expand 0.3, awareness 0.95 / 0.75), their
    defaults and their checks: the one home of both, which :class:`filmorph.arms.patok.PatokParams`
    (the ``v1`` variant) extends."""

    contract_prop: float = 0.3
    expand_prop: float = 0.3
    affix_awareness: float = 0.95
    affix_awareness_if_overlap: float = 0.75
    window_weights: tuple[float, float, float] = (0.35, 0.35, 0.30)

    def __post_init__(self) -> None:
        for name in ("contract_prop", "expand_prop", "affix_awareness",
                     "affix_awareness_if_overlap"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"patok {name} must be in [0, 1], got {v}")
        w = self.window_weights
        if len(w) != 3 or min(w) < 0 or sum(w) <= 0:
            raise ValueError("patok window_weights must be three non-negative weights with a "
                             f"positive sum, got {list(w)}")


class PatokPublished:
    """`PatokPublished(...)(ids, rng, counters)` returns the new ids."""

    name = "patok"
    variant = "published"

    def __init__(self, token_bytes: Sequence[bytes | None], table: ExpansionTable,
                 encode: Callable[[list[str]], list[list[int]]],
                 params: PublishedParams = PublishedParams(),
                 affixes: dict[str, Sequence[str]] | None = None, block: int = 256):
        self.tb = token_bytes
        self.table = table
        self.params = params
        self._encode = encode
        self._block = block
        self.variants = affix_variants(affixes or PUBLISHED_AFFIXES)
        self.automaton = ahocorasick.Automaton()
        for v in self.variants:
            self.automaton.add_word(v, len(v))
        self.automaton.make_automaton()
        bare = {v.encode("utf-8") for v in self.variants if " " not in v}
        self.special = bytearray(len(token_bytes))
        self.is_affix = bytearray(len(token_bytes))
        for tid, b in enumerate(token_bytes):
            if b is None:
                self.special[tid] = 1
            elif b in bare:
                self.is_affix[tid] = 1
        self._special_ids = frozenset(t for t, b in enumerate(token_bytes) if b is None)
        w = params.window_weights
        total = sum(w)
        self._cum = (w[0] / total, (w[0] + w[1]) / total)
        self._pieces: dict[str, tuple[int, ...]] = {}
        self._spans: dict[tuple[int, ...], tuple] = {}
        # the C loop's own memo of the same facts (windows and outcomes, ids inline)
        self._native_memo = _NativeMemo(len(token_bytes)) if _NativeMemo is not None else None

    def find(self, s: str) -> list[tuple[int, str]]:
        """All affix-variant matches (start, variant) in `s`."""
        return [(end - ln + 1, s[end - ln + 1:end + 1]) for end, ln in self.automaton.iter(s)]

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        got = self._pieces.get(piece)
        if got is None:
            got = tuple(self._encode([piece])[0])
            if len(self._pieces) < 1_000_000:
                self._pieces[piece] = got
        return got

    def __call__(self, ids: Sequence[int], rng: random.Random,
                 counters: Counter | None = None) -> list[int]:
        if counters is None:
            counters = Counter()
        if type(rng) is _NativeRng and len(ids) <= NATIVE_MAX_TOKENS:  # the extension is built
            return _native_contract(ids, rng, self._native_args, counters)  # steps 1-5 in C
        p = self.params
        lst, *tally = self._contract(ids, rng, int(len(ids) * p.contract_prop))
        for name, v in zip(("windows", "affix_cuts", "redup_cuts", "windows_kept",
                            "windows_first_k", "windows_dropped_special"), tally, strict=True):
            counters[name] += v
        counters["windows_contracted"] += tally[0]  # the summary's contracted_window_rate
        return stochastok_expand(lst, self.table, rng, p.expand_prop, blocked=self.is_affix,
                                 counters=counters, redraw_blocked=MAX_REDRAWS)

    @cached_property
    def _native_args(self) -> tuple:
        """The C loop's fixed arguments (``filmorph._native.published_contract``), built once."""
        p = self.params
        return (p.contract_prop, *self._cum, bytes(self.special), self._native_memo, self._facts,
                self._outcome_of, p.affix_awareness, p.affix_awareness_if_overlap, MAX_ATTEMPTS,
                self.table.native, p.expand_prop, bytes(self.is_affix), MAX_REDRAWS)

    def _contract(self, ids: Sequence[int], rng: random.Random, iterations: int) -> tuple:
        """The window loop (steps 1-4): (new ids, windows, affix cuts, reduplication cuts,
        windows kept, first-k fallbacks, windows dropped for a special token)."""
        p = self.params
        n0 = len(ids)
        special = self.special
        rand = rng.random
        c1, c2 = self._cum
        # A document of at most one block is edited as a plain list (the common case; no
        # method call per window), a longer one through BlockSeq: the same edits.
        single = n0 <= self._block
        if single:
            lst = list(ids)
            seq = None
        else:
            seq = BlockSeq(ids, self._block)
            window_of, replace = seq.window, seq.replace
        has_special = not self._special_ids.isdisjoint(ids)
        windows = cuts = redups = kept = fallbacks = dropped = 0
        spans_get = self._spans.get
        aware_plain, aware_overlap = p.affix_awareness, p.affix_awareness_if_overlap
        for _ in range(iterations):
            r = rand()
            k = 2 if r < c1 else (3 if r < c2 else 4)
            L = len(lst) if single else seq.n
            info = None
            if L < k:
                st, k = 0, L
                window = lst[:L] if single else window_of(0, L)
                if has_special and any(special[t] for t in window):
                    dropped += 1
                    continue
            else:
                st = -1
                span = L - k + 1
                for _attempt in range(MAX_ATTEMPTS):
                    s0 = int(rand() * span)
                    window = lst[s0:s0 + k] if single else window_of(s0, k)
                    if has_special:
                        for _redraw in range(MAX_ATTEMPTS):
                            if not any(special[t] for t in window):
                                break
                            s0 = int(rand() * span)
                            window = lst[s0:s0 + k] if single else window_of(s0, k)
                        else:
                            continue
                    info = spans_get(tuple(window)) or self._info(window)
                    if not info[4]:  # no affix token in the window
                        st = s0
                        break
                    if rand() >= (aware_overlap if info[1] else aware_plain):
                        st = s0
                        break
                    info = None
                if st < 0:
                    fallbacks += 1
                    st = 0
                    window = lst[:k] if single else window_of(0, k)
                    if has_special and any(special[t] for t in window):
                        dropped += 1
                        continue
            windows += 1
            if info is None:
                info = spans_get(tuple(window)) or self._info(window)
            text, _, choices, outcomes, _ = info
            if text is None:  # not whole UTF-8 characters: keep the window's ids
                kept += 1
                continue
            j = -1
            if choices and not rand() > aware_plain:
                j = int(rand() * len(choices))
            res = outcomes.get(j)
            if res is None:
                res = self._outcome_of(info, j)
            new, cut, red = res
            cuts += cut
            redups += red
            if new is None:
                kept += 1
                continue
            if single:
                lst[st:st + k] = new
            else:
                replace(st, k, new)
        return (lst if single else seq.to_list(), windows, cuts, redups, kept, fallbacks,
                dropped)

    def _outcome_of(self, info: tuple, j: int) -> tuple:
        """The outcome of choice `j` (-1: no affix cut) of a window with facts `info`,
        computed and stored in the window's outcomes."""
        text, _, choices, outcomes, _ = info
        res = outcomes[j] = self._outcome(text, choices[j] if j >= 0 else None)
        return res

    def _info(self, window: list[int]) -> tuple:
        """:meth:`_facts` of a window's ids, memoised (up to a million windows)."""
        key = tuple(window)
        got = self._spans.get(key)
        if got is None:
            got = self._facts(key)
            if len(self._spans) < 1_000_000:
                self._spans[key] = got
        return got

    def _facts(self, window: Sequence[int]) -> tuple:
        """(text or None, overlapping matches?, the matches a cut chooses among, outcomes,
        holds an affix token?) of a window's ids; outcomes fill in as choices are drawn. The C
        loop memoises these itself, so it calls this directly (the Python memo's million
        tuples would only add to the garbage collector's rounds)."""
        affix = any(self.is_affix[t] for t in window)
        try:
            text = b"".join([self.tb[t] for t in window]).decode("utf-8")
        except UnicodeDecodeError:
            return (None, False, (), {}, affix)
        matches = self.find(text)
        starts = [i for i, _ in matches]
        spaced = [m for m in matches if " " in m[1]]
        return (text, len(starts) != len(set(starts)), tuple(spaced or matches), {}, affix)

    def _outcome(self, text: str, match: tuple[int, str] | None) -> tuple:
        """(new ids or None when they would not spell `text`, affix cut?, reduplication cuts)
        of cutting `text` at `match` (None: no affix cut)."""
        pieces = [text]
        if match is not None:
            i, a = match
            pieces = [x for x in (text[:i], a, text[i + len(a):]) if x]
        out_pieces: list[str] = []
        red = 0
        for piece in pieces:
            m = _REPEAT.search(piece)
            if m is None:
                out_pieces.append(piece)
            else:
                j = m.start()
                red += 1
                out_pieces.extend(x for x in (piece[:j], piece[j:j + 2], piece[j + 2:]) if x)
        new: list[int] = []
        for piece in out_pieces:
            new.extend(self._encode_piece(piece))
        ok = b"".join(self.tb[t] or b"\x00" for t in new) == text.encode("utf-8")
        return (tuple(new) if ok else None, len(pieces) > 1, red)
