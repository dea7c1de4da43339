"""Word pools and the character/syllable question builders shared by PACUTE, hierarchical and CUTE."""

from __future__ import annotations

import itertools
import random
import re
import string
from functools import cache

from ..syllabify import count_syllables, syllabify
from . import lexicon, morph
from .common import ANSWER, Question, choose, distinct, listed_options, listing, near_numbers, ordinal, q

LETTERS = string.ascii_lowercase
VOWEL_LETTERS = "aeiou"
#: Letters of native words (the abakada), most distractor letters come from these.
COMMON_LETTERS = "abdeghiklmnoprstuwy"


@cache
def words_between(lo: int, hi: int, min_syllables: int = 1) -> tuple[str, ...]:
    """Vocabulary words of ``lo``-``hi`` letters with at least ``min_syllables``, most frequent first."""
    return tuple(
        w for w in lexicon.vocabulary() if lo <= len(w) <= hi and count_syllables(w) >= min_syllables
    )


def word_meta(word: str, **extra) -> dict:
    return {"word": word, **extra}


# ------------------------------------------------------------------------------ string near misses


def swap_adjacent(w: str, i: int) -> str:
    return w[:i] + w[i + 1] + w[i] + w[i + 2 :]


def misspellings(w: str, rng: random.Random) -> list[str]:
    """Near misses of ``w``: one adjacent transposition, one deletion, one doubled letter, one
    substituted letter (each at a random place), in random order."""
    out = []
    pos = [i for i in range(len(w) - 1) if w[i] != w[i + 1]]
    if pos:
        out.append(swap_adjacent(w, rng.choice(pos)))
    i = rng.randrange(len(w))
    out.append(w[:i] + w[i + 1 :])
    i = rng.randrange(len(w))
    out.append(w[:i] + w[i] + w[i:])
    i = rng.randrange(len(w))
    out.append(w[:i] + rng.choice([c for c in COMMON_LETTERS if c != w[i]]) + w[i + 1 :])
    rng.shuffle(out)
    return distinct(w, out)


def spell(w: str) -> str:
    return " ".join(w)


# --------------------------------------------------------------------------------- composition


def build_spelling(word: str, rng: random.Random) -> Question | None:
    prompt = f"Spell out the Filipino word {q(word)}, with a space between consecutive characters.{ANSWER}"
    d = choose(spell(word), [spell(m) for m in misspellings(word, rng)], rng)
    return d and Question(
        prompt, spell(word), d, source=lexicon.fil_sources(word), meta=word_meta(word), words=(word,)
    )


def build_spell_inverse(word: str, rng: random.Random) -> Question | None:
    prompt = f"Which word is spelled out by the characters {q(spell(word))}?{ANSWER}"
    d = choose(word, misspellings(word, rng), rng)
    return d and Question(
        prompt, word, d, source=lexicon.fil_sources(word), meta=word_meta(word), words=(word,)
    )


def build_char_count(word: str, rng: random.Random) -> Question | None:
    letters = sorted(set(word))
    weights = [word.count(c) for c in letters]
    c = rng.choices(letters, weights)[0]
    n = word.count(c)
    prompt = f"How many times does the letter {q(c)} appear in the Filipino word {q(word)}?{ANSWER}"
    return Question(
        prompt,
        str(n),
        near_numbers(n, rng, lo=1),
        source=lexicon.fil_sources(word),
        meta=word_meta(word, letter=c),
        words=(word,),
    )


def build_vowel_count(word: str, rng: random.Random) -> Question | None:
    n = sum(word.count(v) for v in VOWEL_LETTERS)
    prompt = f"How many vowels (a, e, i, o, u) does the Filipino word {q(word)} have?{ANSWER}"
    return Question(
        prompt,
        str(n),
        near_numbers(n, rng, lo=1),
        source=lexicon.fil_sources(word),
        meta=word_meta(word),
        words=(word,),
    )


def build_length(word: str, rng: random.Random) -> Question | None:
    n = len(word)
    prompt = f"How many characters does the Filipino word {q(word)} have?{ANSWER}"
    return Question(
        prompt,
        str(n),
        near_numbers(n, rng, lo=2),
        source=lexicon.fil_sources(word),
        meta=word_meta(word),
        words=(word,),
    )


def build_word_formation(word: str, rng: random.Random) -> Question | None:
    syl = syllabify(word)
    if not 3 <= len(syl) <= 5 or len(set(syl)) < len(syl):
        return None
    perms = set(itertools.permutations(syl))  # all orders (at most 120): none may spell a word
    if any("".join(p) != word and morph.plausible_word("".join(p)) for p in perms):
        return None  # another order spells a word too (mahaba / mabaha = ma- + baha)
    shown = [p for p in sorted(perms) if list(p) != syl]
    if not shown:
        return None
    pieces = list(rng.choice(shown))
    # near misses: one swap of adjacent syllables of the word, then other orders
    swaps = ["".join(syl[:i] + [syl[i + 1], syl[i]] + syl[i + 2 :]) for i in range(len(syl) - 1)]
    others = ["".join(p) for p in sorted(perms)]
    d = choose(word, swaps, rng, others)
    if d is None:
        return None
    prompt = (
        f"Put the syllables {', '.join(q(p) for p in pieces)} in the right order to form a Filipino "
        f"word.{ANSWER}"
    )
    return Question(
        prompt, word, d, source=lexicon.fil_sources(word), meta=word_meta(word, pieces=pieces), words=(word,)
    )


# -------------------------------------------------------------------------- positional manipulation


def _other_letter(rng: random.Random, avoid: str) -> str:
    return rng.choice([c for c in COMMON_LETTERS if c not in avoid])


def build_insert_char(word: str, rng: random.Random) -> Question | None:
    k = rng.randrange(1, len(word))  # insert after the k-th character
    c = _other_letter(rng, word[k - 1] + word[k])
    ans = word[:k] + c + word[k:]
    cands = [
        word[: k - 1] + c + word[k - 1 :],
        word[: k + 1] + c + word[k + 1 :],
        word[: k - 1] + c + word[k:],
        word[:k] + c + word[k + 1 :],
    ]
    d = choose(ans, cands, rng, [c + word, word + c])
    prompt = f"Insert the letter {q(c)} after the {ordinal(k)} character of the word {q(word)}.{ANSWER}"
    return d and Question(
        prompt,
        ans,
        d,
        source=lexicon.fil_sources(word),
        meta=word_meta(word, position=k, letter=c),
        words=(word,),
    )


def build_delete_char(word: str, rng: random.Random) -> Question | None:
    ks = [k for k in range(1, len(word) + 1) if word[k - 1] not in (word[k - 2 : k - 1] + word[k : k + 1])]
    if not ks:
        return None
    k = rng.choice(ks)
    ans = word[: k - 1] + word[k:]
    c = word[k - 1]
    cands = [
        word[: k - 2] + word[k - 1 :] if k > 1 else None,
        word[:k] + word[k + 1 :],
        word.replace(c, "") if word.count(c) > 1 else None,
    ]
    d = choose(
        ans,
        cands,
        rng,
        [
            word[: k - 1] + word[k + 1 :],
            word[: k - 3] + word[k - 2 :] if k > 2 else None,
            word[1:],
            word[:-1],
        ],
    )
    prompt = f"Delete the {ordinal(k)} character of the word {q(word)}.{ANSWER}"
    return d and Question(
        prompt, ans, d, source=lexicon.fil_sources(word), meta=word_meta(word, position=k), words=(word,)
    )


def build_substitute_char(word: str, rng: random.Random) -> Question | None:
    k = rng.randrange(1, len(word) + 1)
    old = word[k - 1]
    c = _other_letter(rng, old + word[k - 2 : k - 1] + word[k : k + 1])
    ans = word[: k - 1] + c + word[k:]

    def sub(i: int) -> str | None:
        return word[: i - 1] + c + word[i:] if 1 <= i <= len(word) else None

    cands = [
        sub(k - 1),
        sub(k + 1),
        word.replace(old, c) if word.count(old) > 1 else None,
        word[:k] + c + word[k:],
    ]
    d = choose(ans, cands, rng, [sub(k - 2), sub(k + 2), c + word[1:]])
    prompt = f"Replace the {ordinal(k)} character of the word {q(word)} with the letter {q(c)}.{ANSWER}"
    return d and Question(
        prompt,
        ans,
        d,
        source=lexicon.fil_sources(word),
        meta=word_meta(word, position=k, letter=c),
        words=(word,),
    )


def _swap(w: str, i: int, j: int) -> str | None:
    if not (0 <= i < len(w) and 0 <= j < len(w)) or i == j or w[i] == w[j]:
        return None
    i, j = min(i, j), max(i, j)
    return w[:i] + w[j] + w[i + 1 : j] + w[i] + w[j + 1 :]


def build_swap_chars(word: str, rng: random.Random) -> Question | None:
    pairs = [
        (i, j) for i in range(len(word)) for j in range(i + 1, min(len(word), i + 4)) if word[i] != word[j]
    ]
    if not pairs:
        return None
    i, j = rng.choice(pairs)
    ans = _swap(word, i, j)
    assert ans is not None
    cands = [
        _swap(word, i - 1, j - 1),
        _swap(word, i + 1, j + 1),
        _swap(word, i, j + 1),
        _swap(word, i, j - 1),
        _swap(word, i - 1, j),
        _swap(word, i + 1, j),
    ]
    d = choose(ans, cands, rng, [word[:i] + word[i : j + 1][::-1] + word[j + 1 :]])
    prompt = f"Swap the {ordinal(i + 1)} and the {ordinal(j + 1)} characters of the word {q(word)}.{ANSWER}"
    return d and Question(
        prompt,
        ans,
        d,
        source=lexicon.fil_sources(word),
        meta=word_meta(word, positions=[i + 1, j + 1]),
        words=(word,),
    )


# ---------------------------------------------------------------------------------- syllables


def boundary_variants(word: str) -> list[list[str]]:
    """Syllable splits of ``word`` with one boundary moved by one character, two syllables merged, or
    ``ng`` read as two consonants."""
    syl = syllabify(word)
    out: list[list[str]] = []
    alt = syllabify(word, ng_digraph=False)
    if alt != syl:
        out.append(alt)
    cuts = [0]
    for s in syl:
        cuts.append(cuts[-1] + len(s))
    for b in range(1, len(cuts) - 1):
        for delta in (-1, 1):
            c = cuts[:]
            c[b] += delta
            if all(x < y for x, y in zip(c, c[1:], strict=False)):
                out.append([word[x:y] for x, y in zip(c, c[1:], strict=False)])
        out.append(
            [word[x:y] for x, y in zip(cuts[:b] + cuts[b + 1 :], cuts[1:b] + cuts[b + 1 :], strict=False)]
        )
    return [v for v in out if v != syl]


def _has_vowel(s: str) -> bool:
    return any(c in VOWEL_LETTERS for c in s)


def plausible_splits(word: str) -> tuple[list[list[str]], list[list[str]]]:
    """:func:`boundary_variants` split into (every syllable has a vowel, the others)."""
    good, bad = [], []
    for v in boundary_variants(word):
        (good if all(_has_vowel(s) for s in v) else bad).append(v)
    return good, bad


def build_syllable_count(word: str, rng: random.Random) -> Question | None:
    n = count_syllables(word)
    prompt = f"How many syllables does the Filipino word {q(word)} have?{ANSWER}"
    return Question(
        prompt,
        str(n),
        near_numbers(n, rng, lo=1),
        source=lexicon.fil_sources(word),
        meta=word_meta(word, syllables=syllabify(word)),
        words=(word,),
    )


_DISPUTED = re.compile(r"[aeiou](?:[bdgklmnprst][yw]|[bdgkpt][lr]|ts)[aeiou]")


def disputed_split(word: str) -> bool:
    """Whether a syllable boundary of ``word`` is disputed between usages: a consonant + glide or
    obstruent + liquid or ``ts`` between vowels (*relasyon*: las-yon / la-syon; *problema*:
    prob-le-ma / pro-ble-ma). Such words are not asked where the boundary matters."""
    return _DISPUTED.search(word) is not None


def build_syllable_split(word: str, rng: random.Random) -> Question | None:
    if disputed_split(word):
        return None
    syl = syllabify(word)
    ans = "-".join(syl)
    good, bad = plausible_splits(word)
    d = choose(ans, ["-".join(v) for v in good], rng, ["-".join(v) for v in bad])
    prompt = f"Split the Filipino word {q(word)} into its syllables, separated by hyphens.{ANSWER}"
    return d and Question(
        prompt, ans, d, source=lexicon.fil_sources(word), meta=word_meta(word, syllables=syl), words=(word,)
    )


def _nth_syllable(word: str, n: int, rng: random.Random, what: str) -> Question | None:
    if disputed_split(word):
        return None
    syl = syllabify(word)
    ans = syl[n]
    good, bad = plausible_splits(word)
    near = [v[n] for v in good if len(v) == len(syl)]
    others = [s for i, s in enumerate(syl) if i != n]
    d = choose(ans, near + others[:2], rng, others, [v[n] for v in bad if len(v) == len(syl)])
    prompt = f"What is the {what} syllable of the Filipino word {q(word)}?{ANSWER}"
    return d and Question(
        prompt,
        ans,
        d,
        source=lexicon.fil_sources(word),
        meta=word_meta(word, syllables=syl, index=n + 1),
        words=(word,),
    )


def build_first_syllable(word: str, rng: random.Random) -> Question | None:
    return _nth_syllable(word, 0, rng, "first")


def build_last_syllable(word: str, rng: random.Random) -> Question | None:
    return _nth_syllable(word, len(syllabify(word)) - 1, rng, "last")


def build_nth_syllable(word: str, rng: random.Random) -> Question | None:
    n_syl = count_syllables(word)
    if n_syl < 3:
        return None
    n = rng.randrange(1, n_syl - 1)
    return _nth_syllable(word, n, rng, ordinal(n + 1))


# ------------------------------------------------------------------------- character recognition


def build_char_at(word: str, rng: random.Random) -> Question | None:
    k = rng.randrange(1, len(word) + 1)
    ans = word[k - 1]
    near = [word[k - 2] if k > 1 else None, word[k] if k < len(word) else None]
    d = choose(ans, near, rng, list(dict.fromkeys(word)), list(COMMON_LETTERS))
    prompt = f"What is the {ordinal(k)} character of the Filipino word {q(word)}?{ANSWER}"
    return d and Question(
        prompt, ans, d, source=lexicon.fil_sources(word), meta=word_meta(word, position=k), words=(word,)
    )


def build_char_in_word(word: str, rng: random.Random) -> Question | None:
    """Which of four listed letters occurs in the word (exactly one does)."""
    present = sorted(set(word))
    absent = [c for c in COMMON_LETTERS if c not in word]
    if len(absent) < 3:
        return None
    ans = rng.choice(present)
    d = rng.sample(absent, 3)
    opts = listed_options(ans, d, rng)
    prompt = f"Which of the letters {listing(opts)} occurs in the Filipino word {q(word)}?{ANSWER}"
    return Question(
        prompt, ans, d, options=opts, source=lexicon.fil_sources(word), meta=word_meta(word), words=(word,)
    )
