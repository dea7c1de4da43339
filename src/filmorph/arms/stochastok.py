"""StochasTok (Sims et al., 2025): random splitting of tokens into pairs that spell them."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from filmorph.arms.expansions import ExpansionTable


def stochastok_expand(ids: Sequence[int], table: ExpansionTable, rng: random.Random,
                      expand_prop: float, *, blocked: bytes | bytearray | None = None,
                      counters: Counter | None = None) -> list[int]:
    """Make floor(expand_prop·len(ids)) expansion attempts on `ids`; return the new ids.

    Each attempt picks a position uniformly from the *current* sequence (so a piece made
    by an earlier expansion can be split again); if its token has expansions (and is not
    `blocked`), it is replaced by one of its pairs chosen uniformly. Failed attempts count.

    Positions are drawn in O(1) without rebuilding the list: each original position
    ("slot") holds its current pieces; a slot is drawn uniformly and accepted with
    probability pieces/max_pieces (rejection sampling), then a piece uniformly within
    it — exactly uniform over current positions. Total work is O(len(ids)).
    """
    n0 = len(ids)
    attempts = int(expand_prop * n0)
    if attempts <= 0:
        return list(ids)
    offsets, lefts, rights = table.offsets, table.lefts, table.rights
    rand = rng.random
    slots: dict[int, list[int]] = {}
    maxc = 1
    done = 0
    for _ in range(attempts):
        while True:
            s = int(rand() * n0)
            pieces = slots.get(s)
            c = 1 if pieces is None else len(pieces)
            if c == maxc or rand() * maxc < c:
                break
        if pieces is None:
            j, tid = 0, ids[s]
        else:
            j = int(rand() * c)
            tid = pieces[j]
        lo = offsets[tid]
        k = offsets[tid + 1] - lo
        if k == 0 or (blocked is not None and blocked[tid]):
            continue
        m = lo + int(rand() * k)
        if pieces is None:
            slots[s] = [lefts[m], rights[m]]
        else:
            pieces[j:j + 1] = (lefts[m], rights[m])
        if c + 1 > maxc:
            maxc = c + 1
        done += 1
    if counters is not None:
        counters["expand_attempts"] += attempts
        counters["expansions"] += done
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
