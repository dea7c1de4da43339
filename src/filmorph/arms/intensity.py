"""How hard a Patok arm rewrites text: the side-by-side intensity measure.

Three figures, all over one corpus of documents already encoded by the vanilla tokenizer:

- ``windows_per_1k``: rewritten units per 1,000 vanilla tokens (contraction windows for the
  published implementation, ``published`` and ``v1``; cut words for ``morph``);
- ``affix_cuts_per_1k``: cuts at an affix per 1,000 vanilla tokens (windows whose text was
  split at an affix match; for ``morph``, morpheme cuts made);
- ``growth``: output tokens / vanilla tokens;
- ``space_tokens_per_1k``: output tokens that are a lone space, per 1,000 vanilla tokens
  (a prefix cut that leaves the word's space behind, ``␣|ma|husay``), when token bytes are
  given.

:func:`measure_arm` runs one of our arms; :func:`measure_published_impl` runs the published
implementation's processor object (``MorphologyAwarePatokProcessor``, loaded at run time
from a checkout of its repository by ``tools/bench_patok.py``; nothing of it lives here),
counting through thin wrappers around its ``contract_randomly`` and ``affix_aware_expand``
methods. :func:`within` compares two measures.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from filmorph.rng import arm_rng

# counters of each variant that make up "windows" and "affix cuts"
_WINDOWS = {"v1": ("windows_contracted",), "published": ("windows",), "morph": ("words_cut",)}
_CUTS = {"v1": ("split_prefix", "split_infix", "split_suffix"), "published": ("affix_cuts",),
         "morph": ("morph_cuts",)}


def figures(n_vanilla: int, n_out: int, windows: int, affix_cuts: int,
            seconds: float | None = None, space_tokens: int | None = None) -> dict[str, float]:
    """The three intensity figures (and the raw counts) of one run."""
    if n_vanilla <= 0:
        raise ValueError("intensity needs at least one vanilla token")
    out = {"vanilla_tokens": n_vanilla, "tokens": n_out, "windows": windows,
           "affix_cuts": affix_cuts,
           "windows_per_1k": round(1000 * windows / n_vanilla, 2),
           "affix_cuts_per_1k": round(1000 * affix_cuts / n_vanilla, 2),
           "growth": round(n_out / n_vanilla, 4)}
    if space_tokens is not None:
        out["space_tokens_per_1k"] = round(1000 * space_tokens / n_vanilla, 2)
    if seconds is not None:
        out["seconds"] = round(seconds, 3)
    return out


def _space_ids(token_bytes: Sequence[bytes | None] | None) -> frozenset[int] | None:
    if token_bytes is None:
        return None
    return frozenset(t for t, b in enumerate(token_bytes) if b == b" ")


def measure_arm(arm: Callable, variant: str, docs: Iterable[tuple[str, Sequence[int]]],
                seed: int = 0, arm_name: str = "patok",
                token_bytes: Sequence[bytes | None] | None = None) -> dict[str, float]:
    """Run one of our Patok arms over (document id, vanilla ids) pairs; its figures."""
    if variant not in _WINDOWS:
        raise ValueError(f"unknown patok variant {variant!r}")
    counters: Counter = Counter()
    spaces = _space_ids(token_bytes)
    n_in = n_out = n_space = 0
    secs = 0.0
    for doc_id, ids in docs:
        n_in += len(ids)
        t0 = time.perf_counter()
        out = arm(list(ids), arm_rng(seed, arm_name, doc_id), counters)
        secs += time.perf_counter() - t0
        n_out += len(out)
        if spaces:
            n_space += sum(1 for t in out if t in spaces)
    return figures(n_in, n_out, sum(counters[k] for k in _WINDOWS[variant]),
                   sum(counters[k] for k in _CUTS[variant]), secs,
                   n_space if spaces is not None else None)


def measure_published_impl(proc: Any, docs: Iterable[Sequence[int]], seed: int = 0,
                           contract_prop: float = 0.3, expand_prop: float = 0.3,
                           token_bytes: Sequence[bytes | None] | None = None) -> dict[str, float]:
    """Run the published processor's ``contract_expand`` over vanilla id lists (seeded once,
    as its preprocessing does: ``random`` and ``numpy``), counting windows and affix cuts."""
    import numpy as np

    counts = Counter()
    orig_contract, orig_affix = proc.contract_randomly, proc.affix_aware_expand

    def contract_randomly(token_ids):
        counts["windows"] += 1
        return orig_contract(token_ids)

    def affix_aware_expand(token):
        pieces = orig_affix(token)
        if len(pieces) > 1:
            counts["affix_cuts"] += 1
        return pieces

    proc.contract_randomly = contract_randomly
    proc.affix_aware_expand = affix_aware_expand
    random.seed(seed)
    np.random.seed(seed)
    spaces = _space_ids(token_bytes)
    n_in = n_out = n_space = 0
    secs = 0.0
    try:
        for ids in docs:
            n_in += len(ids)
            t0 = time.perf_counter()
            out = proc.contract_expand(list(ids), contract_prop=contract_prop,
                                       expand_prop=expand_prop)
            secs += time.perf_counter() - t0
            n_out += len(out)
            if spaces:
                n_space += sum(1 for t in out if t in spaces)
    finally:
        proc.contract_randomly, proc.affix_aware_expand = orig_contract, orig_affix
    return figures(n_in, n_out, counts["windows"], counts["affix_cuts"], secs,
                   n_space if spaces is not None else None)


def within(ours: Mapping[str, float], published: Mapping[str, float],
           tolerance: float = 0.10) -> dict[str, bool]:
    """Per figure: is ours within `tolerance` (relative) of the published figure?"""
    out = {}
    for k in ("windows_per_1k", "affix_cuts_per_1k", "growth"):
        ref = published[k]
        out[k] = abs(ours[k] - ref) <= tolerance * abs(ref) if ref else ours[k] == 0
    return out


def published_expansions(mergeable_ranks: Mapping[bytes, int]) -> dict[int, list[tuple[int, int]]]:
    """The published expansion table's definition (every 2-way byte split of a vocabulary
    key whose halves are both keys), computed with a dict rather than its list scan: for
    giving the published processor its table in seconds instead of hours."""
    merges: dict[tuple[int, int], int] = {}
    get = mergeable_ranks.get
    for key, tid in mergeable_ranks.items():
        for j in range(1, len(key)):
            a = get(key[:j])
            if a is not None:
                b = get(key[j:])
                if b is not None:
                    merges[(a, b)] = tid
    out: dict[int, list[tuple[int, int]]] = {}
    for pair, tid in merges.items():
        out.setdefault(tid, []).append(pair)
    return out
