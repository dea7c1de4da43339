"""The three tokenization arms. Each maps one document's token ids to new token ids.

- ``vanilla``: the tokenizer's own ids, unchanged.
- ``stochastok`` (Sims et al., 2025; :func:`filmorph.arms.stochastok.stochastok_expand`):
  floor(p·n) attempts (p = `expand_prop`, 0.1), each picking a position uniformly in the
  current sequence and, if its token has expansions, replacing it by a uniformly chosen
  pair of tokens whose bytes concatenate to its bytes (the table of
  :mod:`filmorph.arms.expansions`; SentencePiece ``▁`` and byte-fallback pieces and
  byte-level BPE handled on bytes). O(n) per document.
- ``patok``, affix-aware contract-then-expand for Filipino, in three variants chosen by the
  ``variant`` parameter:

  - ``v1`` (default; :class:`filmorph.arms.patok.Patok`): (1) floor(contract_prop·n)
    attempts at disjoint windows of 2-4 tokens (weights 0.35/0.35/0.30), skipping windows
    that hold an affix token with probability `affix_awareness` (0.95; 0.75 when affix
    matches overlap); (2) with probability `affix_awareness` a window's text is cut at a
    positionally valid prefix / infix / suffix found by Aho-Corasick over the affix
    inventory, and at reduplicated first syllables (gaganda -> ga|ganda); (3) cut windows are
    re-tokenized piece by piece, cut-free ones contract to one token when their text is one;
    (4) StochasTok with `expand_prop` (0.3) on the result, never splitting affix tokens.
  - ``published`` (:class:`filmorph.arms.patok_published.PatokPublished`): the study's
    algorithm as its code behaves (retried, overlapping windows in the current sequence, one
    cut at any match of the published inventory's variants), text-preserving.
  - ``morph`` (:class:`filmorph.arms.patok_morph.PatokMorph`, ours): each word with a
    lexicon-backed morpheme analysis is cut into its morphemes with probability
    `contract_prop` (0.9); StochasTok (`expand_prop` 0.1) elsewhere.

  Details in each module's docstring; :mod:`filmorph.arms.intensity` and
  :mod:`filmorph.arms.morph_gold` measure them.

A config's ``arms:`` holds *named instances* of these types: ``patok_morph: {type: patok,
variant: morph}`` beside ``patok: {variant: published}``; without ``type`` the name is the
type (:func:`resolve_arm`, the one home of that rule). The name is what paths, seeds and
tables carry. Arms take a random stream seeded by the caller from (seed, arm name,
document id): :func:`filmorph.rng.arm_rng`, a :class:`filmorph._native.Rng` (the same
numbers as ``random.Random``'s ``random()``) with which every arm runs its C loop, or a
`random.Random` (:func:`filmorph.rng.rng_for`) with which it runs the pure-Python reference
code; the ids are the same. Arms draw only with ``random()``, open no files and know no
file formats. Build one with :func:`make_arm`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from filmorph.arms.expansions import ExpansionTable
from filmorph.arms.patok import Patok, PatokParams
from filmorph.arms.patok_morph import MorphParams, PatokMorph
from filmorph.arms.patok_published import PatokPublished, PublishedParams
from filmorph.arms.stochastok import stochastok_expand
from filmorph.paths import ARMS

ARM_NAME = re.compile(r"[a-z][a-z0-9_]*")
RESERVED_ARM_NAMES = ("base",)  # results/eval/{model}/base/: a model before training
DEFAULT_EXPAND_PROP = 0.1  # stochastok
PATOK_VARIANTS = ("v1", "published", "morph")
DEFAULT_PATOK_VARIANT = "v1"

Arm = Callable[[Sequence[int], random.Random, Counter], list[int]]


def _check_params(variant: str, kw: Mapping[str, Any], cls: type) -> None:
    unknown = set(kw) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown patok parameters for variant {variant!r}: {sorted(unknown)}")


def patok_params(params: Mapping[str, Any], name: str = "patok") -> tuple[str, Any]:
    """``arms.<name>`` (a patok arm, ``type`` already removed) as (variant, that variant's
    checked parameters): an unknown variant, a knob the variant lacks or an out-of-range
    value raises ValueError naming it."""
    kw = dict(params or {})
    variant = kw.pop("variant", DEFAULT_PATOK_VARIANT)
    if variant not in PATOK_VARIANTS:
        raise ValueError(f"arms.{name}.variant: unknown {variant!r}; expected one of {PATOK_VARIANTS}")
    if "window_weights" in kw:
        kw["window_weights"] = tuple(kw["window_weights"])
    cls = {"published": PublishedParams, "morph": MorphParams, "v1": PatokParams}[variant]
    _check_params(variant, kw, cls)
    return variant, cls(**kw)


def resolve_arm(name: str, params: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """An arm instance ``arms.<name>`` as (its type, its parameters without ``type``): the
    type is ``params["type"]``, or the name itself when that is absent (``vanilla``,
    ``stochastok``, ``patok``). A bad name or type raises ValueError naming ``arms.<name>``."""
    if not isinstance(name, str) or not ARM_NAME.fullmatch(name) or name in RESERVED_ARM_NAMES:
        raise ValueError(f"arms.{name}: an arm name matches {ARM_NAME.pattern} and is not one of "
                         f"{RESERVED_ARM_NAMES} (reserved)")
    kw = dict(params or {})
    kind = kw.pop("type", None)
    if kind is None:
        if name not in ARMS:
            raise ValueError(f"arms.{name}: no `type`; give one of {ARMS} (only an arm named "
                             "after its type may leave it out)")
        kind = name
    if kind not in ARMS:
        raise ValueError(f"arms.{name}.type: unknown {kind!r}; expected one of {ARMS}")
    return kind, kw


def arm_names(arms: Mapping[str, Any] | Sequence[str]) -> list[str]:
    """Arm names in display order: today's three in the study's order, then the others in
    the order given (a config's ``arms:``)."""
    names = list(arms)
    return [a for a in ARMS if a in names] + [a for a in names if a not in ARMS]


def check_arm(name: str, params: Mapping[str, Any] | None) -> tuple[str, Any]:
    """``arms.<name>`` as (its type, its checked parameters: None for vanilla, the
    expand_prop for stochastok, (variant, parameters) for patok); a knob the type lacks or
    an out-of-range value raises ValueError naming it."""
    kind, kw = resolve_arm(name, params)
    if kind == "vanilla":
        if kw:
            raise ValueError(f"unknown vanilla parameters: {sorted(kw)} (vanilla has none)")
        return kind, None
    if kind == "stochastok":
        unknown = set(kw) - {"expand_prop"}
        if unknown:
            raise ValueError(f"unknown stochastok parameters: {sorted(unknown)}")
        p = float(kw.get("expand_prop", DEFAULT_EXPAND_PROP))
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"stochastok expand_prop must be in [0, 1], got {p}")
        return kind, p
    return kind, patok_params(kw, name)


def make_arm(name: str, params: Mapping[str, Any], *, token_bytes: Sequence[bytes | None],
             table: ExpansionTable | None, encode: Callable[[list[str]], list[list[int]]] | None = None,
             affixes: Mapping[str, Sequence[str]] | None = None,
             byte_fallback_ids: Sequence[int] = ()) -> Arm:
    """The arm instance `name` (its type by :func:`resolve_arm`) as a function
    (ids, rng, counters) -> ids, configured by `params`.

    `encode` (patok only) tokenizes a batch of raw texts without special tokens."""
    kind, checked = check_arm(name, params)
    if kind == "vanilla":
        return lambda ids, rng, counters: list(ids)
    if kind == "stochastok":
        if table is None:
            raise ValueError("stochastok needs an expansion table")
        return lambda ids, rng, counters: stochastok_expand(ids, table, rng, checked,
                                                            counters=counters)
    if kind == "patok":
        if table is None or encode is None:
            raise ValueError("patok needs an expansion table and an encoder")
        variant, p = checked
        if variant == "published":
            return PatokPublished(token_bytes, table, encode, p)
        if affixes is None:
            raise ValueError(f"patok variant {variant!r} needs an affix inventory")
        if variant == "morph":
            return PatokMorph(token_bytes, table, encode, affixes, p, byte_fallback_ids)
        return Patok(token_bytes, table, encode, affixes, p, byte_fallback_ids)
    raise AssertionError(kind)  # pragma: no cover -- resolve_arm admits only ARMS


__all__ = ["ARMS", "ARM_NAME", "DEFAULT_PATOK_VARIANT", "PATOK_VARIANTS", "RESERVED_ARM_NAMES",
           "Arm", "ExpansionTable", "MorphParams", "Patok", "PatokMorph", "PatokParams",
           "PatokPublished", "PublishedParams", "arm_names", "check_arm", "make_arm",
           "patok_params", "resolve_arm", "stochastok_expand"]
