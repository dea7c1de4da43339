"""Question builders for affixes and reduplication (PACUTE affixation, hierarchical levels 2-5).

Every builder takes a :class:`morph.Derivation` or :class:`morph.Reduplication` of the attested
pools and an RNG. Distractors are near misses: the competing realisations that the spelling rules
exclude (no o->u raising, wrong h, syncope, wrong hyphen), the right affix at the wrong place, a
similar affix, a reduplicated or half-built form, a segmentation one character off.
"""

from __future__ import annotations

import random
from functools import cache

from ..scoring import levenshtein
from ..syllabify import count_syllables, syllabify
from . import morph
from .common import ANSWER, Question, choose, listed_options, near_numbers, q
from .morph import Derivation, Reduplication

KIND_NAMES = ("prefix", "infix", "suffix", "circumfix")


def _meta(d: Derivation) -> dict:
    out = {
        "word": d.form,
        "root": d.root,
        "affix": d.label,
        "affix_type": d.kind,
        "surface_affix": d.surface_label,
        "analysis": d.analysis(),
    }
    if d.stem:
        out["stem"] = d.stem
    return out


def _question(d: Derivation, prompt: str, answer: str, distractors: list[str] | None) -> Question | None:
    if distractors is None:
        return None
    return Question(prompt, answer, distractors, source=d.sources(), meta=_meta(d), words=(d.root, d.form))


# ----------------------------------------------------------------------------------------- pools


@cache
def pool(kind: str) -> tuple[Derivation, ...]:
    return morph.derivations_of(kind)


@cache
def identifiable(kind: str | None = None, consonant_initial: bool = True) -> tuple[Derivation, ...]:
    """Derivations whose word has one affix reading only (and, for infixes, a consonant onset, so
    that the infix is inside the word)."""
    out = []
    for d in morph.derivations():
        if kind is not None and d.kind != kind:
            continue
        if consonant_initial and d.kind == "infix" and morph.starts_with_vowel(d.root):
            continue
        if d.stem or (d.kind == "circumfix" and d.affix[0] in morph.INFIXES) or "ni" in d.rules:
            continue  # stacked prefixes, -in-...-an and ni- are asked only as affix application
        if morph.unambiguous(d):
            out.append(d)
    return tuple(out)


# ------------------------------------------------------------------------------------------ apply


def _similar_prefixes(p: str, n: int = 4) -> list[str]:
    cands = [x for x in morph.PREFIXES if x != p]
    cands.sort(key=lambda x: (levenshtein(x, p), abs(len(x) - len(p)), x))
    return cands[:n]


def apply_distractors(d: Derivation, rng: random.Random) -> list[str] | None:
    """Near misses of applying ``d``'s affix to its root."""
    r = d.root
    if d.stem:  # stacked: pinaka- + maganda
        p = d.affix[0]
        cands = [p + r, f"{p}-{d.stem}", morph.apply_prefix(p, morph.reduplicate(d.stem)), "ma" + p + r]
        return choose(
            d.form, cands + list(d.alternatives), rng, [f"{x}{d.stem}" for x in _similar_prefixes(p)]
        )
    if d.kind == "prefix":
        p = d.affix[0]
        hyphen = (
            d.form.replace("-", "") if "-" in d.form else (f"{p}-{r}" if p[-1] not in morph.VOWELS else None)
        )
        structural = [hyphen, morph.apply_prefix(p, morph.reduplicate(r))]
        similar = [morph.apply_prefix(x, r) for x in _similar_prefixes(p)]
        return choose(d.form, structural + similar[:2], rng, similar)
    if d.kind == "infix":
        i = d.affix[0]
        other = "in" if i == "um" else "um"
        c = morph.onset(r)
        assert c is not None
        if "ni" in d.rules:  # niluto: the regular placement and the other infix are the near misses
            placement = [r[:1] + i + r[1:], "in" + r]
        elif c:
            placement = [i + r, r[: len(c) + 1] + i + r[len(c) + 1 :]]
        else:  # vowel-initial: after the first consonant instead of before the root, or after the root
            k = next((j for j in range(1, len(r)) if r[j] not in morph.VOWELS), len(r) - 1)
            placement = [r[: k + 1] + i + r[k + 1 :], r[:1] + i + r[1:]]
        cands = placement + [morph.apply_infix(other, r), morph.apply_infix(i, morph.reduplicate(r))]
        return choose(d.form, cands, rng, [r + i, r[:-1] + i + r[-1]])
    if d.kind == "suffix":
        s = d.affix[0]
        other = "an" if s == "in" else "in"
        rules = [
            morph.apply_suffix(s, r, raise_o=False),
            morph.apply_suffix(s, r, h=r[-1] not in morph.VOWELS),
            morph.apply_suffix(s, r, raise_o=False, h=r[-1] not in morph.VOWELS),
            morph.syncopated(s, r),
        ]
        return choose(
            d.form,
            list(d.alternatives) + rules,
            rng,
            [morph.apply_suffix(other, r)],
            [morph.apply_suffix(s, morph.reduplicate(r))],
        )
    # circumfix
    p, s = d.affix
    if p in morph.INFIXES:  # -in-...-an
        suffixed = morph.apply_suffix(s, r)
        cands = list(d.alternatives) + [suffixed, morph.apply_infix("um", suffixed), "in" + suffixed]
        return choose(d.form, cands, rng, [morph.apply_infix(p, r), morph.apply_circumfix("ka", s, r)])
    inner = [
        morph.apply_prefix(p, a)
        for a in (
            morph.apply_suffix(s, r, raise_o=False),
            morph.apply_suffix(s, r, h=r[-1] not in morph.VOWELS),
        )
    ]
    partial = [morph.apply_prefix(p, r), morph.apply_suffix(s, r)]
    others = [morph.apply_circumfix(x, y, r) for x, y in morph.CIRCUMFIXES if (x, y) != (p, s)]
    return choose(d.form, list(d.alternatives) + inner + partial, rng, others)


def build_apply(d: Derivation, rng: random.Random) -> Question | None:
    what = {"prefix": "prefix", "infix": "infix", "suffix": "suffix", "circumfix": "circumfix"}[d.kind]
    if d.stem:
        prompt = f"Add the {what} {q(d.label)} to the Filipino word {q(d.stem)}.{ANSWER}"
    else:
        prompt = f"Add the {what} {q(d.label)} to the Filipino root {q(d.root)}.{ANSWER}"
    return _question(d, prompt, d.form, apply_distractors(d, rng))


# --------------------------------------------------------------------------------------- identify


def _is_reading(word: str, kind: str, surface: tuple[str, ...]) -> bool:
    return any(k == kind and s == surface for k, s, _ in morph.parses(word))


def identify_distractors(d: Derivation, rng: random.Random) -> list[str] | None:
    """Affix labels that are wrong for ``d.form`` but look plausible."""
    w = d.form
    if d.kind == "prefix":
        p = d.affix[0]
        labels = [x for x in morph.ALL_PREFIXES if x != p and not _is_reading(w, "prefix", (x,))]
        looks = [x for x in labels if w.startswith(x)]
        near = sorted(labels, key=lambda x: (levenshtein(x, p), x))[:5]
        return choose(d.label, [f"{x}-" for x in looks[:2] + near[:3]], rng, [f"{x}-" for x in near])
    if d.kind == "infix":
        i = d.affix[0]
        k = len(morph.onset(d.root) or "")
        other = "in" if i == "um" else "um"
        cands = [f"-{other}-", f"-{w[k + 1 : k + 3]}-", f"-{w[k - 1 : k + 1]}-" if k >= 1 else None, f"{i}-"]
        return choose(d.label, cands, rng, [f"-{w[k + 2 : k + 4]}-"])
    if d.kind == "suffix":
        s = d.surface[0]
        base = s.removeprefix("h")
        other = "an" if base == "in" else "in"
        h = s.startswith("h")
        cands = [f"-{'h' if h else ''}{other}", f"-{'' if h else 'h'}{other}"]
        flip = ("" if h else "h") + base
        if not w.endswith(flip):
            cands.append(f"-{flip}")
        cands.append(f"-{w[-(len(s) + 1) :]}")
        return choose(d.surface_label, cands, rng)
    p, s = d.surface
    base = s.removeprefix("h")
    other = "in" if base == "an" else "an"
    h = "h" if s.startswith("h") else ""
    same_suffix = [f"{x}-...-{s}" for x in ("ka", "pag", "pa", "pagka", "pang", "mag") if x != p]
    same_prefix = [
        f"{p}-...-{h}{other}",
        f"{p}-...-{'' if h else 'h'}{base}" if not w.endswith(("" if h else "h") + base) else None,
    ]
    cands = [c for c in same_suffix + same_prefix if c]
    ok = []
    for c in cands:
        cp, cs = c.split("-...-")
        if not _is_reading(w, "circumfix", (cp, cs)):
            ok.append(c)
    return choose(d.surface_label, ok[:3] + same_prefix, rng, ok)


def build_identify(d: Derivation, rng: random.Random) -> Question | None:
    prompt = f"Which {d.kind} is attached to the root of the Filipino word {q(d.form)}?{ANSWER}"
    return _question(d, prompt, d.surface_label, identify_distractors(d, rng))


def build_identify_any(d: Derivation, rng: random.Random) -> Question | None:
    prompt = f"Which affix is attached to the root of the Filipino word {q(d.form)}?{ANSWER}"
    return _question(d, prompt, d.surface_label, identify_distractors(d, rng))


def build_affix_type(d: Derivation, rng: random.Random) -> Question | None:
    ans = d.kind
    opts = listed_options(ans, [k for k in KIND_NAMES if k != ans], rng)
    prompt = (
        f"Is the affix in the Filipino word {q(d.form)} a prefix, an infix, a suffix or a circumfix?{ANSWER}"
    )
    qn = _question(d, prompt, ans, [k for k in opts if k != ans])
    if qn is not None:
        qn.options = opts
    return qn


# ------------------------------------------------------------------------------------ root / remove


def root_distractors(d: Derivation, rng: random.Random) -> list[str] | None:
    w, r = d.form, d.root
    if d.kind == "prefix":
        rest = w[len(d.affix[0]) :].lstrip("-")
        cands = [
            w[len(d.affix[0]) - 1 :].lstrip("-"),
            rest[1:],
            w[len(d.affix[0]) + 1 :].lstrip("-"),
            morph.reduplicate(r),
        ]
    elif d.kind == "infix":
        c = morph.onset(r) or ""
        cands = [w[len(c) :], w[len(c) + 2 :], c + w[len(c) + 1 :], w[1:] if c else w[2:]]
    elif d.kind == "suffix":
        stem = w[: -len(d.surface[0])]
        cands = [stem, w[: -len(d.affix[0])], stem[:-1], stem + d.affix[0][0]]
    else:
        p, s = d.surface
        inner = w[len(p) :].lstrip("-")
        cands = [inner, w[: -len(s)], inner[: -len(s)], w[len(p) : -len(d.affix[1])].lstrip("-")]
    return choose(r, cands, rng, [r[:-1], r[1:], r + r[-1]])


def build_root(d: Derivation, rng: random.Random) -> Question | None:
    prompt = f"What is the root of the Filipino word {q(d.form)}?{ANSWER}"
    return _question(d, prompt, d.root, root_distractors(d, rng))


def build_remove(d: Derivation, rng: random.Random) -> Question | None:
    prompt = f"Remove the {d.kind} {q(d.label)} from the Filipino word {q(d.form)}.{ANSWER}"
    return _question(d, prompt, d.root, root_distractors(d, rng))


# --------------------------------------------------------------------------------------- swap

#: Affix replacements used by the swap task (both directions).
SWAPS = {
    ("prefix", "mag"): ("nag",),
    ("prefix", "nag"): ("mag",),
    ("prefix", "ma"): ("na",),
    ("prefix", "na"): ("ma",),
    ("prefix", "maka"): ("naka",),
    ("prefix", "naka"): ("maka",),
    ("prefix", "magpa"): ("nagpa",),
    ("prefix", "nagpa"): ("magpa",),
    ("prefix", "maki"): ("naki",),
    ("prefix", "naki"): ("maki",),
    ("prefix", "pag"): ("mag",),
    ("infix", "um"): ("in",),
    ("infix", "in"): ("um",),
    ("suffix", "an"): ("in",),
    ("suffix", "in"): ("an",),
}


@cache
def swap_pool() -> tuple[tuple[Derivation, Derivation], ...]:
    """(from, to) pairs of attested derivations of one root whose affixes :data:`SWAPS` relates."""
    by_root: dict[tuple[str, str, str], Derivation] = {}
    for d in morph.derivations():
        if d.kind != "circumfix":
            by_root[(d.root, d.kind, d.affix[0])] = d
    out = []
    for d in morph.derivations():
        for target in SWAPS.get((d.kind, d.affix[0]) if d.kind != "circumfix" else ("", ""), ()):
            e = by_root.get((d.root, d.kind, target))
            if e is not None and morph.unambiguous(d):
                out.append((d, e))
    return tuple(out)


def build_swap(pair: tuple[Derivation, Derivation], rng: random.Random) -> Question | None:
    d, e = pair
    w, r = d.form, d.root
    if d.kind == "prefix":
        new = e.affix[0]
        cands = [new + w, morph.apply_prefix(new, morph.reduplicate(r))]
        cands += [morph.apply_prefix(x, r) for x in _similar_prefixes(new, 3) if x != d.affix[0]]
        if "-" in e.form:
            cands.insert(0, e.form.replace("-", ""))
    elif d.kind == "infix":
        new = e.affix[0]
        c = morph.onset(r) or ""
        cands = [
            new + w if c else None,
            c + new + w[len(c) :] if c else new + w,
            morph.apply_infix(new, morph.reduplicate(r)),
            new + r if c else r[:1] + new + r[1:],
        ]
    else:
        new = e.affix[0]
        cands = [
            w + new,
            morph.apply_suffix(new, r, raise_o=False),
            morph.apply_suffix(new, r, h=r[-1] not in "aeiou"),
            morph.syncopated(new, r),
            w[: -len(d.affix[0])] + new,
        ]
    dist = choose(
        e.form,
        cands,
        rng,
        [morph.apply_prefix(x, r) for x in _similar_prefixes(new, 4)]
        if d.kind == "prefix"
        else [e.form[:-1], e.form + e.form[-1]],
    )
    prompt = f"Replace the {d.kind} {q(d.label)} in the Filipino word {q(w)} with {q(e.label)}.{ANSWER}"
    qn = _question(e, prompt, e.form, dist)
    if qn is not None:
        qn.meta.update(word=w, from_affix=d.label, to_affix=e.label, result=e.form)
        qn.words = (r, w, e.form)
        qn.source = sorted(set(d.sources() + e.sources()))
    return qn


def swap_key(pair: tuple[Derivation, Derivation]) -> str:
    return f"{pair[0].key}>{pair[1].affix[0]}"


# ------------------------------------------------------------------------------------ reduplication


def redup_distractors(r: Reduplication, rng: random.Random) -> list[str] | None:
    root = r.root
    syl = syllabify(root)
    whole = syl[0] + root  # the whole first syllable (CVC) copied
    second = syl[1][:2] if len(syl) > 1 else syl[0]
    if r.kind == "none":
        cands = [whole, syl[0] + second + root[len(syl[0]) :], f"{root}-{root}", root + syl[-1]]
    elif r.kind == "prefix":
        p = r.affix
        cands = [
            morph.apply_prefix(p, whole),
            morph.reduplicate(r.base),
            morph.apply_prefix(p, syl[0] + second + root[len(syl[0]) :]),
            morph.apply_prefix(p + p[:2], root) if len(p) > 1 else None,
        ]
    else:
        i = r.affix
        cands = [
            r.copy + r.base,
            morph.apply_infix(i, whole) if morph.onset(whole) is not None else None,
            morph.apply_infix(i, syl[0] + second + root[len(syl[0]) :]),
            morph.reduplicate(r.base),
        ]
    return choose(r.form, cands, rng, [r.base, morph.reduplicate(root) if r.kind != "none" else root + root])


def _redup_meta(r: Reduplication) -> dict:
    return {
        "word": r.form,
        "root": r.root,
        "base": r.base,
        "affix": r.affix or None,
        "copy": r.copy,
        "analysis": r.analysis(),
    }


def build_redup_apply(r: Reduplication, rng: random.Random) -> Question | None:
    if r.ki:  # nakikipaglaro: the prefix's ki is copied
        prompt = (
            f'Reduplicate the syllable "ki" of the prefix {q(r.affix + "-")} in the Filipino word '
            f"{q(r.base)}.{ANSWER}"
        )
        rest = r.base[len(r.affix) :]
        cands = [
            r.affix + morph.reduplicate(rest),
            r.affix[:2] + "kiki" + r.base[2:],
            r.base[:2] + r.base[2:4] + r.base[2:],
            r.affix + "ki" + rest,
        ]
        d = choose(r.form, cands, rng, [r.base, r.affix + rest[:2] + rest])
        return d and Question(
            prompt, r.form, d, source=r.sources(), meta=_redup_meta(r), words=(r.root, r.form)
        )
    if r.kind == "none":
        prompt = f"Reduplicate the first syllable of the Filipino root {q(r.root)}.{ANSWER}"
    else:
        prompt = (
            f"Reduplicate the first syllable of the root {q(r.root)} in the Filipino word {q(r.base)}."
            f"{ANSWER}"
        )
    d = redup_distractors(r, rng)
    return d and Question(prompt, r.form, d, source=r.sources(), meta=_redup_meta(r), words=(r.root, r.form))


def build_redup_identify(r: Reduplication, rng: random.Random) -> Question | None:
    w = r.form
    syl = syllabify(w)
    if w.count(r.copy + r.copy) != 1 and not (r.copy and w.count(r.copy) >= 2):
        return None
    others = [s for s in syl if s != r.copy]
    i = w.find(r.copy + r.root[: len(r.copy)])
    longer = w[i : i + len(r.copy) + 1] if i >= 0 else None
    cands = others[:2] + [longer, others[-1] if others else None]
    d = choose(r.copy, cands, rng, others, [r.copy[:1], w[:2], w[-2:]])
    prompt = f"Which syllable is reduplicated (repeated) in the Filipino word {q(w)}?{ANSWER}"
    return d and Question(prompt, r.copy, d, source=r.sources(), meta=_redup_meta(r), words=(r.root, w))


# -------------------------------------------------------------------------------------- multi-step


@cache
def redup_pool(kind: str) -> tuple[Reduplication, ...]:
    """Reduplications of ``kind`` whose copy is the root's first syllable (not a prefix's ki)."""
    return tuple(r for r in morph.reduplications() if r.kind == kind and not r.ki)


def build_affix_then_redup(r: Reduplication, rng: random.Random) -> Question | None:
    label = f"-{r.affix}-" if r.kind == "infix" else f"{r.affix}-"
    prompt = (
        f"Add the {r.kind} {q(label)} to the Filipino root {q(r.root)}, then reduplicate the first "
        f"syllable of the root.{ANSWER}"
    )
    d = redup_distractors(r, rng)
    if d is None:
        return None
    d = choose(r.form, [r.base, morph.reduplicate(r.root)] + d, rng)
    return d and Question(prompt, r.form, d, source=r.sources(), meta=_redup_meta(r), words=(r.root, r.form))


def build_remove_then_count(d: Derivation, rng: random.Random) -> Question | None:
    n = count_syllables(d.root)
    whole = count_syllables(d.form)
    prompt = (
        f"Remove the affix from the Filipino word {q(d.form)} and count the syllables of the root that "
        f"remains. How many syllables does the root have?{ANSWER}"
    )
    qn = _question(d, prompt, str(n), near_numbers(n, rng, lo=1, extra=[whole]))
    if qn is not None:
        qn.meta["syllables"] = n
    return qn


def keyof(x) -> str:
    return x.key


def phenomenon(x) -> tuple:
    """The morphological class of a derivation or reduplication (its affix and irregular rules;
    the kind of copy), for :func:`common.covering_order`."""
    if isinstance(x, Reduplication):
        return (x.kind, x.affix if x.ki else "", x.base.startswith("ni") and x.kind == "infix")
    return (x.affix, tuple(r for r in x.rules if r not in ("h", "hyphen")))


def all_reduplications() -> tuple[Reduplication, ...]:
    return morph.reduplications()
