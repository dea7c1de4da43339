"""StochasTok (Sims et al., 2025): random splitting of tokens into pairs that spell them."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from filmorph.arms.expansions import ExpansionTable

try:  # the C loop (setup.py), taken when the caller's stream is a filmorph._native.Rng
    from filmorph._native import Rng as _NativeRng
    from filmorph._native import expand as _native_expand
except ImportError:  # pragma: no cover -- where the extension is not built
    _NativeRng = _native_expand = None


def stochastok_expand(ids: Sequence[int], table: ExpansionTable, rng: random.Random,
                      expand_prop: float, *, blocked: bytes | bytearray | None = None,
                      counters: Counter | None = None, redraw_blocked: int = 0) -> list[int]:
    """Make floor(expand_prop·len(ids)) expansion attempts on `ids`; return the new ids.

    Each attempt picks a position uniformly from the *current* sequence (so a piece made
    by an earlier expansion can be split again); if its token has expansions (and is not
    `blocked`), it is replaced by one of its pairs chosen uniformly. Failed attempts count.
    With `redraw_blocked` > 0 an attempt that lands on a blocked token draws a new position,
    up to that many times, before it fails (the published Patok redraws without limit).

    Positions are drawn in O(1) without rebuilding the list. Each original position
    ("slot") holds its current pieces. With L = unexpanded slots + pieces of expanded
    slots, an attempt first picks the region: the expanded pieces with probability
    pieces/L, else an unexpanded slot uniformly (redrawn if it was expanded). Within the
    expanded region a slot is drawn uniformly and accepted with probability
    size/max_size (rejection sampling), then a piece uniformly within it. Every current
    position thus has probability 1/L, and the total work is O(len(ids)).

    With `rng` a :class:`filmorph._native.Rng` (:func:`filmorph.rng.arm_rng`) the loop runs
    in C, draw for draw the same as here.
    """
    if type(rng) is _NativeRng:  # the extension is built (else _NativeRng is None)
        return _native_expand(ids, table.native, rng, expand_prop, blocked, redraw_blocked,
                              False, counters)
    slots = expand_slots(ids, table, rng, expand_prop, blocked=blocked, counters=counters,
                         redraw_blocked=redraw_blocked)
    if not slots:
        return list(ids)
    out: list[int] = []
    prev = 0
    for s in sorted(slots):
        out.extend(ids[prev:s])
        out.extend(slots[s])
        prev = s + 1
    out.extend(ids[prev:])
    return out


def expand_slots(ids: Sequence[int], table: ExpansionTable, rng: random.Random,
                 expand_prop: float, *, blocked: bytes | bytearray | None = None,
                 counters: Counter | None = None,
                 redraw_blocked: int = 0) -> dict[int, list[int]]:
    """The work of :func:`stochastok_expand`: {position in `ids`: the pieces that replace it}
    for the positions that were expanded (in the order they were first expanded)."""
    if type(rng) is _NativeRng:  # the extension is built (else _NativeRng is None)
        return _native_expand(ids, table.native, rng, expand_prop, blocked, redraw_blocked,
                              True, counters)
    n0 = len(ids)
    attempts = int(expand_prop * n0)
    if attempts <= 0:
        return {}
    starts, counts = table.starts_counts
    lefts, rights = table.lefts, table.rights
    rand = rng.random
    slots: dict[int, list[int]] = {}
    expanded: list[int] = []  # slots with more than one piece, in expansion order
    pieces_in_expanded = 0
    maxc = 2
    done = 0  # each expansion adds one token: the current length is n0 + done
    draws = range(redraw_blocked + 1)
    for _ in range(attempts):
        for _draw in draws:
            if pieces_in_expanded and rand() * (n0 + done) < pieces_in_expanded:
                while True:
                    s = expanded[int(rand() * len(expanded))]
                    pieces = slots[s]
                    c = len(pieces)
                    if c == maxc or rand() * maxc < c:
                        break
                j = int(rand() * c)
                tid = pieces[j]
            else:
                s = int(rand() * n0)
                while s in slots:
                    s = int(rand() * n0)
                pieces = None
                tid = ids[s]
            if blocked is None or not blocked[tid]:
                break
        else:
            continue  # every draw landed on a blocked token
        k = counts[tid]
        if not k:
            continue
        m = starts[tid] + int(rand() * k)
        if pieces is None:
            slots[s] = [lefts[m], rights[m]]
            expanded.append(s)
            pieces_in_expanded += 2
        else:
            pieces[j:j + 1] = (lefts[m], rights[m])
            pieces_in_expanded += 1
            if c + 1 > maxc:
                maxc = c + 1
        done += 1
    if counters is not None:
        counters["expand_attempts"] += attempts
        counters["expansions"] += done
    return slots
