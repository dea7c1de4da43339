"""Tagalog affixation rules and the attested derivations the affix tasks are built from.

Rules (standard descriptions of Tagalog morphology, in our words):

- **Prefix**: concatenated; a prefix ending in a consonant is joined to a vowel-initial root with
  a hyphen (``mag + aral -> mag-aral``, ``pag + asa -> pag-asa``).
- **Infix** ``-um-`` / ``-in-``: after the first consonant of the root (``ng`` is one consonant:
  ``sulat -> sumulat``, ``ngiti -> ngumiti``); a vowel-initial root takes it as a prefix
  (``akyat -> umakyat``, ``alis -> inalis``). Only roots with a single-consonant onset are used.
- **Suffix** ``-an`` / ``-in``: ``-han`` / ``-hin`` after a vowel-final root (``basa -> basahin``),
  and an ``o`` in the root's last syllable is raised to ``u`` (``inom -> inumin``,
  ``luto -> lutuan``).
- **Circumfix** ``ka-...-an``, ``pag-...-an``, ``pa-...-an``: the suffix rule, then the prefix rule
  (``bata -> kabataan``, ``aral -> pag-aralan``).
- **Reduplication**: the root's first CV (or V) is copied (:func:`reduplicate_first_syllable`:
  ``kain -> kakain``); a prefix or infix attaches to the reduplicated root
  (``magluluto``, ``kumakain``).

Spelling exceptions (glottal-final roots that take ``-in`` without ``h``: *luto -> lutuin*;
syncope: *bukas -> buksan*) are not predictable from the written root, so a derivation is used only
when its rule form is attested (wordfreq ``fil`` or tglstemmer, :func:`lexicon.attestation`) and at
least ten times more frequent than each competing realisation (the same affix without raising,
with/without ``h``, syncopated). The competing realisations then serve as near-miss distractors.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ..syllabify import reduplicate_first_syllable, syllabify
from . import lexicon

VOWELS = lexicon.VOWELS
#: Prefixes used by the affix tasks (all rows of data/affixes.tsv).
PREFIXES = (
    "mag nag pag ma na pa ka maka naka i ipa ipag magpa nagpa pagka paki maki naki makipag nakipag "
    "taga pinaka napaka"
).split()
INFIXES = ("um", "in")
SUFFIXES = ("an", "in")
CIRCUMFIXES = (("ka", "an"), ("pag", "an"), ("pa", "an"))
#: Prefixes whose reduplicated forms (prefix + CV + root) are used.
REDUP_PREFIXES = ("mag", "nag", "ma", "na", "maka", "naka", "pag")
#: Other prefixes that only serve as identification distractors and in parse checks.
EXTRA_PREFIXES = (
    "mang",
    "pang",
    "nang",
    "magka",
    "nagka",
    "magsi",
    "ika",
    "ni",
    "tag",
    "ipina",
    "pina",
    "pinag",
)
MARGIN = 1.0  # in Zipf units: 10x more frequent


def starts_with_vowel(word: str) -> bool:
    return word[:1] in VOWELS


def onset(root: str) -> str | None:
    """The root's single-consonant onset (``ng`` counts as one), ``""`` for a vowel-initial root,
    None for a cluster onset (``trabaho``) or an odd root."""
    if not root:
        return None
    if root[0] in VOWELS:
        return ""
    c = "ng" if root.startswith("ng") else root[0]
    return c if root[len(c) : len(c) + 1] in VOWELS and root[len(c) :] else None


def apply_prefix(prefix: str, root: str) -> str:
    if prefix[-1] not in VOWELS and starts_with_vowel(root):
        return f"{prefix}-{root}"
    return prefix + root


def apply_infix(infix: str, root: str) -> str:
    c = onset(root)
    if c is None:
        raise ValueError(f"{root!r} has no single-consonant onset")
    return infix + root if c == "" else c + infix + root[len(c) :]


def raise_last_o(root: str) -> str:
    """``o`` -> ``u`` in the last syllable (``inom -> inum``, ``luto -> lutu``)."""
    syl = syllabify(root)
    last = syl[-1]
    if "o" not in last:
        return root
    return "".join(syl[:-1]) + last.replace("o", "u")


def apply_suffix(suffix: str, root: str, *, raise_o: bool = True, h: bool | None = None) -> str:
    """Rule form by default; ``raise_o`` / ``h`` override the two rules (for near misses)."""
    stem = raise_last_o(root) if raise_o else root
    if h is None:
        h = root[-1] in VOWELS
    return stem + ("h" if h else "") + suffix


def syncopated(suffix: str, root: str) -> str | None:
    """The syncopated form (last vowel of the root dropped: ``bukas -> buksan``, ``dala -> dalhin``)."""
    if len(root) < 4:
        return None
    if root[-1] in VOWELS:
        return root[:-1] + "h" + suffix
    if root[-2] in VOWELS and root[-3] not in VOWELS:
        return root[:-2] + root[-1] + suffix
    return None


def apply_circumfix(prefix: str, suffix: str, root: str, **kw) -> str:
    return apply_prefix(prefix, apply_suffix(suffix, root, **kw))


def reduplicate(root: str) -> str:
    return reduplicate_first_syllable(root)


def label(kind: str, affix: tuple[str, ...]) -> str:
    """The written label of an affix: ``mag-``, ``-um-``, ``-an``, ``ka-...-an``."""
    if kind == "prefix":
        return f"{affix[0]}-"
    if kind == "infix":
        return f"-{affix[0]}-"
    if kind == "suffix":
        return f"-{affix[0]}"
    if kind == "circumfix":
        return f"{affix[0]}-...-{affix[1]}"
    raise ValueError(kind)


@dataclass(frozen=True)
class Derivation:
    """An attested derived word: ``form`` = rule(kind, affix, root).

    ``affix`` is the underlying affix (``("in",)``, ``("ka", "an")``); ``surface`` the affix as
    written in ``form`` (``-hin`` in *basahin*, ``ka-...-han`` in *kasamahan*). ``alternatives``
    are the competing realisations (wrong under the rules, less attested)."""

    root: str
    kind: str
    affix: tuple[str, ...]
    form: str
    surface: tuple[str, ...]
    score: float
    alternatives: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return label(self.kind, self.affix)

    @property
    def surface_label(self) -> str:
        return label(self.kind, self.surface)

    @property
    def key(self) -> str:
        return f"{self.kind}:{'+'.join(self.affix)}:{self.root}"

    def sources(self) -> list[str]:
        kinds = ("prefix", "suffix") if self.kind == "circumfix" else (self.kind,)
        affixes = [f"affix:{k}:{a}" for k, a in zip(kinds, self.affix, strict=True)]
        return [f"tglstemmer:{self.root}", f"wordfreq:fil:{self.root}", *affixes]


def _suffix_variants(suffix: str, root: str) -> tuple[str, tuple[str, ...], str]:
    """(rule form, competing forms, surface suffix)."""
    gold = apply_suffix(suffix, root)
    alts = {
        apply_suffix(suffix, root, raise_o=False),
        apply_suffix(suffix, root, h=root[-1] not in VOWELS) if root[-1] in VOWELS else gold,
        apply_suffix(suffix, root, raise_o=False, h=False),
    }
    sync = syncopated(suffix, root)
    if sync:
        alts.add(sync)
    alts.discard(gold)
    surface = ("h" + suffix) if root[-1] in VOWELS else suffix
    return gold, tuple(sorted(alts)), surface


def _dominant(gold: str, alts: tuple[str, ...]) -> float | None:
    score = lexicon.attestation(gold)
    if score <= 0:
        return None
    if any(lexicon.attestation(a) > score - MARGIN for a in alts):
        return None
    return score


def derive(kind: str, affix: tuple[str, ...], root: str) -> Derivation | None:
    """The attested, dominant derivation of ``root`` with ``affix``, or None."""
    if kind == "prefix":
        gold, alts, surface = apply_prefix(affix[0], root), (), affix
    elif kind == "infix":
        if onset(root) is None:
            return None
        gold, alts, surface = apply_infix(affix[0], root), (), affix
    elif kind == "suffix":
        gold, alts, s = _suffix_variants(affix[0], root)
        surface = (s,)
    elif kind == "circumfix":
        inner, inner_alts, s = _suffix_variants(affix[1], root)
        gold = apply_prefix(affix[0], inner)
        alts = tuple(apply_prefix(affix[0], a) for a in inner_alts)
        surface = (affix[0], s)
    else:
        raise ValueError(kind)
    score = _dominant(gold, alts)
    if score is None:
        return None
    return Derivation(root, kind, tuple(affix), gold, tuple(surface), score, alts)


def _affix_specs() -> list[tuple[str, tuple[str, ...]]]:
    specs: list[tuple[str, tuple[str, ...]]] = [("prefix", (p,)) for p in PREFIXES]
    specs += [("infix", (i,)) for i in INFIXES]
    specs += [("suffix", (s,)) for s in SUFFIXES]
    specs += [("circumfix", c) for c in CIRCUMFIXES]
    return specs


@cache
def derivations() -> tuple[Derivation, ...]:
    """Every attested dominant derivation of every root, most attested first."""
    out = []
    for root in lexicon.roots():
        for kind, affix in _affix_specs():
            d = derive(kind, affix, root)
            if d is not None and d.form != root:
                out.append(d)
    out.sort(key=lambda d: (-d.score, d.key))
    return tuple(out)


def derivations_of(kind: str) -> tuple[Derivation, ...]:
    return tuple(d for d in derivations() if d.kind == kind)


# --------------------------------------------------------------------------- parsing (ambiguity)

ALL_PREFIXES = tuple(dict.fromkeys(PREFIXES + list(REDUP_PREFIXES) + list(EXTRA_PREFIXES)))


def parses(word: str) -> set[tuple[str, tuple[str, ...], str]]:
    """Every (kind, surface affix, root) reading of ``word`` as one affix (prefix, infix, suffix or
    circumfix of the inventories here) on a vocabulary word of >= 2 syllables; the readings
    respect the hyphen rule. Used to reject words whose affix is ambiguous."""
    vocab = lexicon.vocabulary_set()
    out: set[tuple[str, tuple[str, ...], str]] = set()

    def is_root(r: str) -> bool:
        return len(r) >= 3 and r in vocab and len(syllabify(r)) >= 2

    def strip_prefix(w: str):
        for p in ALL_PREFIXES:
            if not w.startswith(p):
                continue
            rest = w[len(p) :]
            if rest.startswith("-"):
                if p[-1] in VOWELS or not starts_with_vowel(rest[1:]):
                    continue
                rest = rest[1:]
            elif p[-1] not in VOWELS and starts_with_vowel(rest):
                continue
            yield p, rest

    def strip_suffix(w: str):
        for s in ("han", "hin", "an", "in"):
            if w.endswith(s):
                stem = w[: -len(s)]
                if not stem or (s[0] == "h") != (stem[-1] in VOWELS):
                    continue
                yield s, stem
                lowered = lexicon._lower_last_u(stem)
                if lowered != stem:
                    yield s, lowered

    for p, rest in strip_prefix(word):
        if is_root(rest):
            out.add(("prefix", (p,), rest))
        for s, stem in strip_suffix(rest):
            if is_root(stem):
                out.add(("circumfix", (p, s), stem))
    for i in INFIXES:
        c = "ng" if word.startswith("ng") else word[:1]
        if c and c not in VOWELS and word[len(c) : len(c) + 2] == i:
            r = c + word[len(c) + 2 :]
            if is_root(r):
                out.add(("infix", (i,), r))
        if word.startswith(i) and is_root(word[2:]) and starts_with_vowel(word[2:]):
            out.add(("infix", (i,), word[2:]))
    for s, stem in strip_suffix(word):
        if is_root(stem):
            out.add(("suffix", (s,), stem))
    return out


def unambiguous(d: Derivation) -> bool:
    """Whether ``d.form`` has exactly one affix reading (the derivation's own)."""
    return parses(d.form) == {(d.kind, d.surface, d.root)}


# ---------------------------------------------------------------------------------- reduplication


@dataclass(frozen=True)
class Reduplication:
    """An attested aspect form: ``form`` = the affix (if any) on the CV-reduplicated root;
    ``base`` = the same affix on the plain root (``magluto`` for ``magluluto``)."""

    root: str
    kind: str  # "none", "prefix" or "infix"
    affix: str
    base: str
    form: str
    copy: str  # the copied syllable (``lu``)
    score: float

    @property
    def key(self) -> str:
        return f"redup:{self.kind}:{self.affix}:{self.root}"

    def sources(self) -> list[str]:
        out = [f"tglstemmer:{self.root}", f"wordfreq:fil:{self.root}"]
        if self.kind != "none":
            out.append(f"affix:{self.kind}:{self.affix}")
        return out


def build_reduplication(root: str, kind: str, affix: str) -> tuple[str, str, str]:
    """(base, reduplicated form, copied syllable)."""
    red = reduplicate(root)
    copy = red[: len(red) - len(root)]
    if kind == "none":
        return root, red, copy
    if kind == "prefix":
        return apply_prefix(affix, root), apply_prefix(affix, red), copy
    return apply_infix(affix, root), apply_infix(affix, red), copy


@cache
def reduplications() -> tuple[Reduplication, ...]:
    """Attested reduplicated forms of roots: bare (``kakain``), after a prefix of
    :data:`REDUP_PREFIXES` (``magluluto``) and with an infix (``kumakain``); the base must be
    attested too (or be the root). Most attested first."""
    out = []
    specs = [("none", "")] + [("prefix", p) for p in REDUP_PREFIXES] + [("infix", i) for i in INFIXES]
    for root in lexicon.roots():
        if onset(root) is None:
            continue
        for kind, affix in specs:
            base, form, copy = build_reduplication(root, kind, affix)
            score = lexicon.attestation(form)
            if score <= 0 or (kind != "none" and lexicon.attestation(base) <= 0):
                continue
            out.append(Reduplication(root, kind, affix, base, form, copy, score))
    out.sort(key=lambda r: (-r.score, r.key))
    return tuple(out)
