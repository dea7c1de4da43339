"""Tagalog affixation rules and the dictionary-backed derivations the affix tasks are built from.

Regular rules (standard descriptions of Tagalog morphology, in our words):

- **Prefix**: concatenated; a prefix ending in a consonant is joined to a vowel-initial root with
  a hyphen (``mag + aral -> mag-aral``, ``pag + asa -> pag-asa``).
- **Infix** ``-um-`` / ``-in-``: after the first consonant of the root (``ng`` is one consonant:
  ``sulat -> sumulat``, ``ngiti -> ngumiti``); a vowel-initial root takes it as a prefix
  (``akyat -> umakyat``, ``alis -> inalis``). Only roots with a single-consonant onset are used.
- **Suffix** ``-an`` / ``-in``: ``-han`` / ``-hin`` after a vowel-final root (``basa -> basahin``).
- **Circumfix** ``ka-...-an``, ``pag-...-an``, ``pa-...-an`` (the suffix, then the prefix:
  ``bata -> kabataan``, ``aral -> pag-aralan``) and ``-in-...-an`` (the suffix, then the infix:
  ``sulat -> sinulatan``).
- **Reduplication**: the root's first CV (or V) is copied (:func:`reduplicate_first_syllable`:
  ``kain -> kakain``); a prefix or infix attaches to the reduplicated root (``magluluto``,
  ``kumakain``); after ``maki-``/``naki-``/``makipag-``/``nakipag-`` the prefix's ``ki`` is copied
  instead (``nakikiinom``, ``nakikipaglaro``).

Irregular rules (:data:`RULES`), each a competing realisation that :func:`candidates` builds:

- ``ni``: ``-in-`` is written ``ni-`` before ``l`` and ``y`` (``luto -> niluto``, ``linis -> nilinis``);
- ``glottal``: a vowel-final root ending in a glottal stop takes ``-in``/``-an`` without ``h``
  (``luto -> lutuin``);
- ``raise``: ``o`` in the root's last syllable is raised to ``u`` before a suffix, with ``h``
  (``takbo -> takbuhan``) or without (``inom -> inumin``, ``luto -> lutuin``);
- ``syncope``: the root's last vowel drops before the suffix (``bukas -> buksan``,
  ``bigay -> bigyan``, ``gawa -> gawin``, ``dala -> dalhin``, ``bili -> bilhin``);
- ``d_to_r``: ``d`` between vowels becomes ``r`` (``lakad -> lakarin``, ``ma + dami -> marami``);
- ``stacked``: ``pinaka-``/``napaka-`` on the ``ma-`` adjective (``pinakamaganda``).

Which realisation a root takes is lexical, so the dictionary decides (:mod:`.dictionary`): a
derivation is used only when exactly one candidate is dictionary-backed for its root (the rule-built
form then agrees with the attested form by construction), the form is attested in wordfreq ``fil``
(:func:`lexicon.attestation`) at least ten times more often than any competing candidate
(*kasuutan* and *kasuotan* are both in use: no item), and no other affix reading of the word exists
(nasal substitution, *mamula* = mang- + *pula*; a lost root vowel, *nalaman* = na-...-an + *alam*).
The other candidates are its near-miss distractors. Every derivation carries its analysis
(:meth:`Derivation.analysis`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache

from ..syllabify import reduplicate_first_syllable, syllabify
from . import dictionary, lexicon

VOWELS = lexicon.VOWELS
#: Prefixes used by the affix tasks (all rows of data/affixes.tsv).
PREFIXES = (
    "mag nag pag ma na pa ka maka naka i ipa ipag magpa nagpa pagka paki maki naki makipag nakipag "
    "taga pinaka napaka"
).split()
INFIXES = ("um", "in")
SUFFIXES = ("an", "in")
CIRCUMFIXES = (("ka", "an"), ("pag", "an"), ("pa", "an"), ("in", "an"))
#: Prefixes whose reduplicated forms (prefix + CV + root) are used.
REDUP_PREFIXES = ("mag", "nag", "ma", "na", "maka", "naka", "pag")
#: Prefixes whose progressive/contemplative copy their own ``ki`` (nakikiinom, nakikipaglaro).
KI_PREFIXES = ("maki", "naki", "makipag", "nakipag")
MARGIN = 1.0  # Zipf units: the gold form is at least 10x more frequent than any competing spelling
#: Prefixes after which a root-initial d may be written r (marami, parangal).
D_TO_R_PREFIXES = ("ma", "na", "pa", "ka")
#: Irregular rules whose form must share meaning with the root's family (see derivations()).
IRREGULAR = frozenset({"syncope", "d_to_r", "raise", "glottal", "ni"})
#: Prefixes that stack on the ``ma-`` adjective (pinakamaganda).
STACKING_PREFIXES = ("pinaka", "napaka")
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
#: The irregular rules (see the module docstring), name -> description.
RULES = {
    "hyphen": "a consonant-final prefix before a vowel-initial root is joined with a hyphen",
    "h": "-han/-hin after a vowel-final root",
    "glottal": "no h before -an/-in after a glottal-final root",
    "raise": "o in the root's last syllable raised to u before a suffix",
    "syncope": "the root's last vowel dropped before a suffix",
    "d_to_r": "d between vowels written r",
    "ni": "-in- written ni- before l or y",
    "merge": "the root's final i merged with -in",
    "stacked": "the prefix attached to the ma- adjective",
    "redup": "first CV of the root copied",
    "ki_redup": "the ki of the prefix copied",
}


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
    """The regular infix rule (no ``ni-`` allomorph: see :func:`infix_candidates`)."""
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
    """The regular form by default (raised, ``h`` after a vowel); ``raise_o`` / ``h`` override the
    two rules (for near misses)."""
    stem = raise_last_o(root) if raise_o else root
    if h is None:
        h = root[-1] in VOWELS
    return stem + ("h" if h else "") + suffix


def syncopated(suffix: str, root: str) -> str | None:
    """The syncopated form (last vowel of the root dropped: ``bukas -> buksan``, ``dala -> dalhin``)."""
    if len(root) < 4:
        return None
    if root[-1] in VOWELS:
        return root[:-1] + "h" + suffix if root[-2] not in VOWELS else None
    if root[-2] in VOWELS and root[-3] not in VOWELS:
        return root[:-2] + root[-1] + suffix
    return None


Candidate = tuple[str, tuple[str, ...]]


def _add(out: list[Candidate], form: str | None, rules: tuple[str, ...]) -> None:
    if form and all(f != form for f, _ in out):
        out.append((form, rules))


def suffix_candidates(suffix: str, root: str) -> list[Candidate]:
    """Every realisation of ``root`` + ``-suffix`` the rules allow, with the rules each applies."""
    v = root[-1] in VOWELS
    out: list[Candidate] = []
    _add(out, root + ("h" if v else "") + suffix, ("h",) if v else ())
    raised = raise_last_o(root)
    if raised != root:
        _add(out, raised + ("h" if v else "") + suffix, ("raise", "h") if v else ("raise",))
        if v:
            _add(out, raised + suffix, ("raise", "glottal"))
    if v:
        _add(out, root + suffix, ("glottal",))
    if len(root) >= 3 and root[-1] == "d" and root[-2] in VOWELS:
        _add(out, root[:-1] + "r" + suffix, ("d_to_r",))
    if v and root.endswith("i") and len(root) >= 4:
        _add(out, root + "n", ("merge",))  # hingi -> hingin
    if len(root) >= 4:
        if v and root[-2] not in VOWELS:
            _add(out, root[:-1] + "h" + suffix, ("syncope", "h"))
            if root[-2] in "wy":
                _add(out, root[:-1] + suffix, ("syncope",))
        elif not v and root[-2] in VOWELS and root[-3] not in VOWELS:
            _add(out, root[:-2] + root[-1] + suffix, ("syncope",))
    return out


def infix_candidates(infix: str, root: str) -> list[Candidate]:
    out: list[Candidate] = []
    c = onset(root)
    if c is None:
        return out
    _add(out, apply_infix(infix, root), ())
    if infix == "in" and root[:1] in ("l", "y"):
        _add(out, "ni" + root, ("ni",))
    return out


def prefix_candidates(prefix: str, root: str) -> list[Candidate]:
    out: list[Candidate] = []
    plain = apply_prefix(prefix, root)
    _add(out, plain, ("hyphen",) if "-" in plain else ())
    if prefix in D_TO_R_PREFIXES and root.startswith("d") and root[1:2] in VOWELS:
        _add(out, prefix + "r" + root[1:], ("d_to_r",))
    if prefix in STACKING_PREFIXES:
        _add(out, prefix + "ma" + root, ("stacked",))
    return out


def candidates(kind: str, affix: tuple[str, ...], root: str) -> list[Candidate]:
    """Every realisation of ``affix`` on ``root`` (regular first), with the rules each applies."""
    if kind == "prefix":
        return prefix_candidates(affix[0], root)
    if kind == "infix":
        return infix_candidates(affix[0], root)
    if kind == "suffix":
        return suffix_candidates(affix[0], root)
    if kind == "circumfix":
        p, s = affix
        out: list[Candidate] = []
        for inner, rules in suffix_candidates(s, root):
            if p in INFIXES:
                for form, more in infix_candidates(p, inner):
                    _add(out, form, rules + more)
            else:
                for form, more in prefix_candidates(p, inner):
                    if "stacked" not in more:
                        _add(out, form, rules + more)
        return out
    raise ValueError(kind)


def apply_circumfix(prefix: str, suffix: str, root: str, **kw) -> str:
    inner = apply_suffix(suffix, root, **kw)
    return apply_infix(prefix, inner) if prefix in INFIXES else apply_prefix(prefix, inner)


def reduplicate(root: str) -> str:
    return reduplicate_first_syllable(root)


def label(kind: str, affix: tuple[str, ...]) -> str:
    """The written label of an affix: ``mag-``, ``-um-``, ``-an``, ``ka-...-an``, ``-in-...-an``."""
    if kind == "prefix":
        return f"{affix[0]}-"
    if kind == "infix":
        return f"-{affix[0]}-"
    if kind == "suffix":
        return f"-{affix[0]}"
    if kind == "circumfix":
        return f"-{affix[0]}-...-{affix[1]}" if affix[0] in INFIXES else f"{affix[0]}-...-{affix[1]}"
    raise ValueError(kind)


@dataclass(frozen=True)
class Derivation:
    """A dictionary-backed derived word: ``form`` = rule(kind, affix, root).

    ``affix`` is the underlying affix (``("in",)``, ``("ka", "an")``); ``surface`` the affix as
    written in ``form`` (``-hin`` in *basahin*, ``ka-...-han`` in *kasamahan*). ``alternatives``
    are the competing realisations (candidates the dictionary does not list for this root);
    ``rules`` the irregular rules the form applies; ``stem`` what the affix attaches to when not
    the bare root (``maganda`` in *pinakamaganda*); ``backing`` the dictionary's support."""

    root: str
    kind: str
    affix: tuple[str, ...]
    form: str
    surface: tuple[str, ...]
    score: float
    alternatives: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    stem: str = ""
    backing: dictionary.Backing | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return label(self.kind, self.affix)

    @property
    def surface_label(self) -> str:
        return label(self.kind, self.surface)

    @property
    def key(self) -> str:
        return f"{self.kind}:{'+'.join(self.affix)}:{self.root}"

    @property
    def base(self) -> str:
        """What the affix attaches to: the stem, else the root."""
        return self.stem or self.root

    def analysis(self) -> dict:
        """Root, affixes, irregular rules and dictionary entry the item rests on."""
        affixes = [label(self.kind, self.affix)]
        if "stacked" in self.rules:
            affixes.append("ma-")
        return {
            "form": self.form,
            "root": self.root,
            "affixes": affixes,
            "rules": list(self.rules),
            "dictionary": self.backing.to_json() if self.backing else None,
        }

    def sources(self) -> list[str]:
        kinds = ("prefix", "suffix") if self.kind == "circumfix" else (self.kind,)
        if self.kind == "circumfix" and self.affix[0] in INFIXES:
            kinds = ("infix", "suffix")
        affixes = [f"affix:{k}:{a}" for k, a in zip(kinds, self.affix, strict=True)]
        dic = self.backing.sources() if self.backing else []
        return [f"tglstemmer:{self.root}", f"wordfreq:fil:{self.root}", *dic, *affixes]


def _surface(kind: str, affix: tuple[str, ...], form: str) -> tuple[str, ...]:
    if kind in ("prefix", "infix"):
        return affix
    s = affix[-1]
    surf = "h" + s if form.endswith("h" + s) else s
    return (affix[0], surf) if kind == "circumfix" else (surf,)


def derive(kind: str, affix: tuple[str, ...], root: str) -> Derivation | None:
    """The dictionary-backed, attested derivation of ``root`` with ``affix``, or None (none or
    several candidates backed, or the form unattested in wordfreq)."""
    cands = candidates(kind, affix, root)
    if not cands:
        return None
    backed = []
    for form, rules in cands:
        stem = "ma" + root if "stacked" in rules else ""
        b = dictionary.backing(stem or form, root)
        if b is not None:
            backed.append((form, rules, stem, b))
    if len(backed) != 1:
        return None
    form, rules, stem, b = backed[0]
    score = lexicon.attestation(form)
    if score <= 0:
        return None
    if any(lexicon.attestation(f) > score - MARGIN for f, _ in cands if f != form):
        return None  # a competing spelling is about as common (kasuutan / kasuotan): no clear gold
    if stem and score <= lexicon.attestation(f"{affix[0]}{root}"):
        return None  # the unstacked form (pinakaganda) is as common: no clear gold
    alts = tuple(sorted(f for f, _ in cands if f != form))
    return Derivation(
        root, kind, tuple(affix), form, _surface(kind, affix, form), score, alts, rules, stem, b
    )


def _affix_specs() -> list[tuple[str, tuple[str, ...]]]:
    specs: list[tuple[str, tuple[str, ...]]] = [("prefix", (p,)) for p in PREFIXES]
    specs += [("infix", (i,)) for i in INFIXES]
    specs += [("suffix", (s,)) for s in SUFFIXES]
    specs += [("circumfix", c) for c in CIRCUMFIXES]
    return specs


@cache
def _all_derivations() -> tuple[Derivation, ...]:
    out = []
    for root in lexicon.roots():
        if not dictionary.is_root(root):
            continue
        for kind, affix in _affix_specs():
            d = derive(kind, affix, root)
            if d is not None and d.form != root:
                out.append(d)
    return tuple(out)


@cache
def derivations() -> tuple[Derivation, ...]:
    """Every dictionary-backed derivation of every root whose word has no other affix reading
    (one derivation per word; none read as another affix on a vocabulary word, nor as a
    reduplication), most attested first."""
    alls = _all_derivations()
    per_form = Counter(d.form for d in alls)
    redup_forms = {r.form for r in _all_reduplications()}
    family: dict[str, set[str]] = {}
    for d in alls:
        family.setdefault(d.root, {d.root})
        if not IRREGULAR & set(d.rules):
            family[d.root].add(d.form)
    out = [
        d
        for d in alls
        if per_form[d.form] == 1
        and d.form not in redup_forms
        and not other_readings(d.form, own(d), intermediates(d))
        and (not IRREGULAR & set(d.rules) or dictionary.related(d.form, family[d.root]))
    ]
    out.sort(key=lambda d: (-d.score, d.key))
    return tuple(out)


@cache
def backed_readings() -> dict[str, frozenset[tuple[str, str, str]]]:
    """{form: {(kind, affix label, root)}} for every candidate realisation of every affix spec on
    every root that the dictionary backs (before any uniqueness filter; labels both underlying
    and as written, ``-in`` and ``-hin``). What ``check`` uses to find distractors that are also
    right answers."""
    out: dict[str, set[tuple[str, str, str]]] = {}
    for root in lexicon.roots():
        if not dictionary.is_root(root):
            continue
        for kind, affix in _affix_specs():
            for form, rules in candidates(kind, affix, root):
                stem = "ma" + root if "stacked" in rules else ""
                if dictionary.backing(stem or form, root) is None:
                    continue
                for lab in {label(kind, affix), label(kind, _surface(kind, affix, form))}:
                    out.setdefault(form, set()).add((kind, lab, root))
    return {k: frozenset(v) for k, v in out.items()}


def derivations_of(kind: str) -> tuple[Derivation, ...]:
    return tuple(d for d in derivations() if d.kind == kind)


def own(d: Derivation) -> set[tuple[str, tuple[str, ...], str]]:
    """``d``'s own readings (with the ``ni-`` allomorph, also as prefix ``ni-``)."""
    out = {(d.kind, d.surface, d.root)}
    if "ni" in d.rules:
        out.add(("prefix", ("ni",), d.root))
    return out


def intermediates(d: Derivation) -> set[str]:
    """The forms ``d`` passes through (the ``ma-`` stem of a stacked prefix; the prefix-only and
    suffix-only forms of a circumfix): a reading of the word on one of them agrees with ``d``."""
    out = {d.stem} if d.stem else set()
    if d.kind == "circumfix":
        p, s = d.affix
        inner = d.form[: -len(d.surface[1])]
        out.add(inner)  # sinulat (+ -an), kaganda (+ -han)
        out.add(d.form.replace("-", "")[len(p) :] if p not in INFIXES else d.form.replace(p, "", 1))
    return out


def other_readings(word: str, readings=frozenset(), agree: set[str] = frozenset()) -> set:
    """Readings of ``word`` (:func:`parses`) other than ``readings`` and those on a form of
    ``agree``."""
    return {r for r in parses(word) - set(readings) if r[2] not in agree}


# --------------------------------------------------------------------------- parsing (ambiguity)

ALL_PREFIXES = tuple(dict.fromkeys(PREFIXES + list(REDUP_PREFIXES) + list(EXTRA_PREFIXES)))


@cache
def _common_words() -> frozenset[str]:
    """Alphabetic words of wordfreq ``fil`` at Zipf >= 2.5 (beyond the vocabulary: *sali*)."""
    return frozenset(w for w, f in lexicon.fil_freq().items() if w.isalpha() and lexicon.zipf(f) >= 2.5)


def parses(word: str) -> set[tuple[str, tuple[str, ...], str]]:
    """Every (kind, surface affix, root) reading of ``word`` as one affix (prefix, infix, suffix or
    circumfix of the inventories here) on a vocabulary word of >= 2 syllables; the readings
    respect the hyphen rule. Used to reject words whose affix is ambiguous."""
    vocab = lexicon.vocabulary_set()
    common = _common_words()
    out: set[tuple[str, tuple[str, ...], str]] = set()

    def is_root(r: str) -> bool:
        return len(r) >= 3 and (r in vocab or r in common) and len(syllabify(r)) >= 2

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
    for p in ALL_PREFIXES:  # a vowel-initial root losing its vowel after the prefix (nalaman: alam)
        if len(p) < 2 or p[-1] not in VOWELS or not word.startswith(p):
            continue
        rest = word[len(p) :]
        if is_root(p[-1] + rest):
            out.add(("prefix", (p,), p[-1] + rest))
        for sfx, stem in strip_suffix(rest):
            if is_root(p[-1] + stem):
                out.add(("circumfix", (p, sfx), p[-1] + stem))
    for p, restored in nasal_readings(word):
        if is_root(restored):
            out.add(("prefix", (p,), restored))
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


#: Nasal substitution: the prefix's nasal replaces the root's first consonant (mang + pula ->
#: mamula, mang + tahan -> manahan, mang + kuha -> manguha); used to find competing readings.
_NASAL = {"m": "pb", "n": "tds", "ng": "k"}


def nasal_readings(word: str) -> list[tuple[str, str]]:
    """(prefix, restored root) for every nasal-substitution reading of ``word`` (``mamula`` ->
    (``mang``, ``pula``)); also ``mang`` + a vowel-initial root (``mangaral``)."""
    out = []
    for p in ("ma", "na", "pa", "pina", "nag", "mag", "pag", "paki"):
        for nasal, consonants in _NASAL.items():
            head = p + nasal if not p.endswith("g") else None
            if not head or not word.startswith(head) or word[len(head) : len(head) + 1] not in VOWELS:
                continue
            rest = word[len(head) :]
            out += [(p + "ng", c + rest) for c in consonants]
            if nasal == "ng":
                out.append((p + "ng", rest))
    return out


def plausible_word(w: str) -> bool:
    """Whether ``w`` is, or reads as, a Filipino word: known to wordfreq ``fil``, tglstemmer or the
    dictionary, or one affix on a known word (*mabaha* = ma- + *baha*, in none of the lists)."""
    return w in lexicon.fil_freq() or w in lexicon.tgl_words() or dictionary.listed(w) or bool(parses(w))


def unambiguous(d: Derivation) -> bool:
    """Whether ``d.form`` has no affix reading but the derivation's own."""
    return not other_readings(d.form, own(d), intermediates(d))


# ---------------------------------------------------------------------------------- reduplication


@dataclass(frozen=True)
class Reduplication:
    """A dictionary-backed aspect form: ``form`` = the affix (if any) on the CV-reduplicated root
    (for a ``ki`` prefix, the prefix's ``ki`` copied: *nakikiinom*); ``base`` = the same affix on
    the plain root (``magluto`` for ``magluluto``)."""

    root: str
    kind: str  # "none", "prefix" or "infix"
    affix: str
    base: str
    form: str
    copy: str  # the copied syllable (``lu``)
    score: float
    backing: dictionary.Backing | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"redup:{self.kind}:{self.affix}:{self.root}"

    @property
    def ki(self) -> bool:
        """Whether the prefix's ``ki`` (not the root's first syllable) is copied."""
        return self.kind == "prefix" and self.affix in KI_PREFIXES

    def analysis(self) -> dict:
        affixes = [] if self.kind == "none" else [label(self.kind, (self.affix,))]
        return {
            "form": self.form,
            "root": self.root,
            "affixes": affixes,
            "rules": ["ki_redup" if self.ki else "redup"],
            "dictionary": self.backing.to_json() if self.backing else None,
        }

    def sources(self) -> list[str]:
        out = [f"tglstemmer:{self.root}", f"wordfreq:fil:{self.root}"]
        if self.backing:
            out += self.backing.sources()
        if self.kind != "none":
            out.append(f"affix:{self.kind}:{self.affix}")
        return out


def build_reduplication(root: str, kind: str, affix: str) -> tuple[str, str, str]:
    """(base, reduplicated form, copied syllable)."""
    if kind == "prefix" and affix in KI_PREFIXES:
        base = apply_prefix(affix, root)
        return base, affix[:2] + "ki" + base[2:], "ki"
    red = reduplicate(root)
    copy = red[: len(red) - len(root)]
    if kind == "none":
        return root, red, copy
    if kind == "prefix":
        return apply_prefix(affix, root), apply_prefix(affix, red), copy
    if affix == "in" and root[:1] in ("l", "y"):
        return "ni" + root, "ni" + red, copy
    return apply_infix(affix, root), apply_infix(affix, red), copy


@cache
def _all_reduplications() -> tuple[Reduplication, ...]:
    out = []
    specs = [("none", "")] + [("prefix", p) for p in REDUP_PREFIXES + KI_PREFIXES]
    specs += [("infix", i) for i in INFIXES]
    for root in lexicon.roots():
        if onset(root) is None or not dictionary.is_root(root):
            continue
        for kind, affix in specs:
            base, form, copy = build_reduplication(root, kind, affix)
            score = lexicon.attestation(form)
            if score <= 0 or (kind != "none" and lexicon.attestation(base) <= 0):
                continue
            b = dictionary.backing(form, root)
            if b is None or (kind != "none" and dictionary.backing(base, root) is None):
                continue
            out.append(Reduplication(root, kind, affix, base, form, copy, score, b))
    return tuple(out)


@cache
def reduplications() -> tuple[Reduplication, ...]:
    """Dictionary-backed reduplicated forms of roots: bare (``kakain``), after a prefix of
    :data:`REDUP_PREFIXES` (``magluluto``) or :data:`KI_PREFIXES` (``nakikipaglaro``), with an
    infix (``kumakain``, ``niluluto``); the base must be attested and backed too (or be the root),
    and the form must have no single-affix reading (``iisip`` is also i- + *isip*, ``nakikita``
    also naki- + *kita*). Most attested first."""
    alls = _all_reduplications()
    per_form = Counter(r.form for r in alls)
    derived = {d.form for d in _all_derivations()}
    out = []
    for r in alls:
        agree = {reduplicate(r.root)} | ({r.base} if r.kind != "none" else set())
        if per_form[r.form] == 1 and r.form not in derived and not other_readings(r.form, (), agree):
            out.append(r)
    out.sort(key=lambda r: (-r.score, r.key))
    return tuple(out)
