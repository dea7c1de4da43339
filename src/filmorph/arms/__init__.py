"""The three tokenization arms. Each maps one document's token ids to new token ids.

- ``vanilla``: the tokenizer's own ids, unchanged.
- ``stochastok`` (Sims et al., 2025; :func:`filmorph.arms.stochastok.stochastok_expand`):
  floor(p·n) attempts (p = `expand_prop`, 0.1), each picking a position uniformly in the
  current sequence and, if its token has expansions, replacing it by a uniformly chosen
  pair of tokens whose bytes concatenate to its bytes (the table of
  :mod:`filmorph.arms.expansions`; SentencePiece ``▁`` and byte-fallback pieces and
  byte-level BPE handled on bytes). O(n) per document.
- ``patok`` (:class:`filmorph.arms.patok.Patok`), affix-aware contract-then-expand for
  Filipino: (1) floor(contract_prop·n) attempts at disjoint windows of 2-4 tokens (weights
  0.35/0.35/0.30), skipping windows that hold an affix token with probability
  `affix_awareness` (0.95; 0.75 when affix matches overlap); (2) with probability
  `affix_awareness` a window's text is cut at a positionally valid prefix / infix / suffix
  found by Aho-Corasick over the affix inventory, and at reduplicated first syllables
  (gaganda -> ga|ganda); (3) cut windows are re-tokenized piece by piece, cut-free ones
  contract to one token when their text is one; (4) StochasTok with `expand_prop` (0.3)
  on the result, never splitting affix tokens. Details in that module's docstring.

Arms take a `random.Random` seeded by the caller from (seed, arm, document id)
(:func:`filmorph.rng.rng_for`); they open no files and know no file formats.
Build one with :func:`make_arm`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from filmorph.arms.expansions import ExpansionTable
from filmorph.arms.patok import Patok, PatokParams
from filmorph.arms.stochastok import stochastok_expand
from filmorph.paths import ARMS

Arm = Callable[[Sequence[int], random.Random, Counter], list[int]]


def make_arm(name: str, params: Mapping[str, Any], *, token_bytes: Sequence[bytes | None],
             table: ExpansionTable | None, encode: Callable[[list[str]], list[list[int]]] | None = None,
             affixes: Mapping[str, Sequence[str]] | None = None,
             secondary_ids: Sequence[int] = ()) -> Arm:
    """The arm `name` as a function (ids, rng, counters) -> ids, configured by `params`.

    `encode` (patok only) tokenizes a batch of raw texts without special tokens."""
    if name == "vanilla":
        return lambda ids, rng, counters: list(ids)
    if name == "stochastok":
        if table is None:
            raise ValueError("stochastok needs an expansion table")
        p = float(params.get("expand_prop", 0.1))
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"stochastok expand_prop must be in [0, 1], got {p}")
        return lambda ids, rng, counters: stochastok_expand(ids, table, rng, p, counters=counters)
    if name == "patok":
        if table is None or encode is None or affixes is None:
            raise ValueError("patok needs an expansion table, an encoder and an affix inventory")
        known = set(PatokParams.__dataclass_fields__)
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown patok parameters: {sorted(unknown)}")
        kw = dict(params)
        if "window_weights" in kw:
            kw["window_weights"] = tuple(kw["window_weights"])
        return Patok(token_bytes, table, encode, affixes, PatokParams(**kw), secondary_ids)
    raise ValueError(f"unknown arm {name!r}; expected one of {ARMS}")


__all__ = ["ARMS", "Arm", "ExpansionTable", "Patok", "PatokParams", "make_arm",
           "stochastok_expand"]
