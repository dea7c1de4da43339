"""StochasTok's O(1) position sampler has the distribution of the naive algorithm
(a uniform index into the current, growing list), checked statistically on a toy vocab."""

import random
import statistics

from filmorph.arms.expansions import ExpansionTable
from filmorph.arms.stochastok import stochastok_expand

TOY = [b"a", b"b", b"c", b"d", b"ab", b"cd", b"abcd", b"bc", b"abc", b"bcd"]
TABLE = ExpansionTable.build(TOY)
IDS = [6] * 12  # "abcd" x 12: expansions can be re-split down to single letters


def _naive(ids, rng, p):
    seq = [(t, slot) for slot, t in enumerate(ids)]
    for _ in range(int(p * len(ids))):
        i = int(rng.random() * len(seq))
        t, slot = seq[i]
        pairs = TABLE.pairs(t)
        if pairs:
            left, right = pairs[int(rng.random() * len(pairs))]
            seq[i:i + 1] = [(left, slot), (right, slot)]
    return seq


def _stats(runs):
    lengths = [len(r) for r in runs]
    return statistics.mean(lengths), statistics.stdev(lengths)


def test_sampler_matches_naive_distribution():
    n = 4000
    ours, naive_len, naive_max = [], [], []
    for k in range(n):
        out = stochastok_expand(IDS, TABLE, random.Random(k), 1.0)
        assert b"".join(TOY[t] for t in out) == b"abcd" * 12
        ours.append(out)
        seq = _naive(IDS, random.Random(10**6 + k), 1.0)
        naive_len.append(len(seq))
        naive_max.append(max(sum(1 for _, s in seq if s == slot) for slot in range(12)))
    # pieces per slot are not visible in our output, so compare the length distribution
    # and the spread of the largest split (re-splitting expanded pieces drives both)
    m1, s1 = _stats(ours)
    m2, s2 = statistics.mean(naive_len), statistics.stdev(naive_len)
    se = (s1**2 / n + s2**2 / n) ** 0.5
    assert abs(m1 - m2) < 4 * se, (m1, m2, se)
    assert abs(s1 - s2) < 0.1 * s2
    # the share of outputs containing a single-letter run "a","b" from one "abcd"
    # (needs a re-split of an expanded piece) agrees too
    def deep(seq_ids):
        return sum(1 for i in range(len(seq_ids) - 1) if seq_ids[i] == 0 and seq_ids[i + 1] == 1)

    d1 = statistics.mean(deep(o) for o in ours)
    d2 = statistics.mean(deep([t for t, _ in _naive(IDS, random.Random(2 * 10**6 + k), 1.0)])
                         for k in range(n))
    assert abs(d1 - d2) < 0.08 * max(d1, d2) + 0.02, (d1, d2)
    assert max(naive_max) >= 3  # the setup really exercises re-splitting
