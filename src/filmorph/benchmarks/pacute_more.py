"""The PACUTE task families beyond the first generator: composition's selections (which word has
exactly N / the most / the least of a letter, of characters, of uppercase letters), manipulation's
duplication and case changes, and affixation in PACUTE's reverse format (which word carries the
affix). Candidates are listed in the prompt, so MCQ and GEN ask the same question (GEN answers
with the word).

Published subcategory -> task here: char_exactly / char_most / char_least -> ``char_exactly`` /
``char_most`` / ``char_least``; length_exactly / length_most / length_least -> ``length_*``;
uppercase_exactly -> ``uppercase_exactly``; duplication -> ``duplicate_char``; uppercasing /
lowercasing -> ``uppercase`` / ``lowercase``; affix_identification (which option has the prefix
X) -> ``prefix_select`` / ``infix_select`` / ``suffix_select``.
"""

from __future__ import annotations

import random
from functools import cache

from . import affix_tasks as A
from . import lexicon, morph
from .common import ANSWER, Question, choose, listed_options, listing, q
from .words import COMMON_LETTERS, word_meta, words_between

N_OTHERS = 3


def _others(word: str, rng: random.Random, ok, pool: tuple[str, ...]) -> list[str] | None:
    """Three other pool words satisfying ``ok`` (tried in a random order, deterministic in rng)."""
    start = rng.randrange(len(pool))
    out: list[str] = []
    for k in range(len(pool)):
        w = pool[(start + k * 7919) % len(pool)]
        if w != word and w not in out and ok(w):
            out.append(w)
            if len(out) == N_OTHERS:
                return out
    return None


def _select(word: str, rng: random.Random, prompt_head: str, ok, **meta) -> Question | None:
    pool = words_between(4, 10)
    others = _others(word, rng, ok, pool)
    if others is None:
        return None
    opts = listed_options(word, others, rng)
    prompt = f"{prompt_head} {listing(opts)}?{ANSWER}"
    return Question(
        prompt,
        word,
        options=opts,
        source=sorted({s for w in opts for s in lexicon.fil_sources(w)}),
        meta=word_meta(word, candidates=opts, **meta),
        words=tuple(opts),
        signature=f"{prompt_head}|{'|'.join(sorted(opts))}",
    )


# ------------------------------------------------------------------------------------ composition


def build_char_exactly(word: str, rng: random.Random) -> Question | None:
    c = rng.choice(sorted(set(word)))
    n = word.count(c)
    head = f'Which of these Filipino words contains exactly {n} "{c}"s:'
    return _select(word, rng, head, lambda w: w.count(c) != n, letter=c, count=n)


def build_char_most(word: str, rng: random.Random) -> Question | None:
    c = rng.choice(sorted(set(word)))
    n = word.count(c)
    if n < 2:
        return None
    head = f'Which of these Filipino words contains the most "{c}"s:'
    return _select(word, rng, head, lambda w: w.count(c) < n, letter=c, count=n)


def build_char_least(word: str, rng: random.Random) -> Question | None:
    c = rng.choice(sorted(set(word)))
    n = word.count(c)
    head = f'Which of these Filipino words contains the fewest "{c}"s:'
    return _select(word, rng, head, lambda w: w.count(c) > n, letter=c, count=n)


def build_length_exactly(word: str, rng: random.Random) -> Question | None:
    n = len(word)
    head = f"Which of these Filipino words has exactly {n} characters:"
    return _select(word, rng, head, lambda w: len(w) != n, length=n)


def build_length_most(word: str, rng: random.Random) -> Question | None:
    n = len(word)
    head = "Which of these Filipino words has the most characters:"
    return _select(word, rng, head, lambda w: len(w) < n, length=n)


def build_length_least(word: str, rng: random.Random) -> Question | None:
    n = len(word)
    head = "Which of these Filipino words has the fewest characters:"
    return _select(word, rng, head, lambda w: len(w) > n, length=n)


def _recase(word: str, k: int, rng: random.Random) -> str:
    """``word`` with ``k`` letters (at random places) in upper case."""
    idx = set(rng.sample(range(len(word)), k))
    return "".join(ch.upper() if i in idx else ch for i, ch in enumerate(word))


def build_uppercase_exactly(word: str, rng: random.Random) -> Question | None:
    n = rng.randint(1, min(3, len(word) - 1))
    gold = _recase(word, n, rng)
    others = []
    for w in _others(word, rng, lambda w: True, words_between(4, 10)) or []:
        counts = [k for k in range(0, min(5, len(w)) + 1) if k != n]
        others.append(_recase(w, rng.choice(counts), rng))
    if len(others) < N_OTHERS:
        return None
    opts = listed_options(gold, others, rng)
    head = f"Which of these words contains exactly {n} uppercase letters:"
    return Question(
        f"{head} {listing(opts)}?{ANSWER}",
        gold,
        options=opts,
        source=lexicon.fil_sources(word),
        meta=word_meta(word, candidates=opts, count=n),
        words=(word,),
        signature=f"{head}|{'|'.join(sorted(opts))}",
    )


# ----------------------------------------------------------------------------------- manipulation


def build_duplicate_char(word: str, rng: random.Random) -> Question | None:
    c = rng.choice(sorted(set(word)))
    gold = word.replace(c, c + c)
    first = word.replace(c, c + c, 1)
    twice = word.replace(c, c * 3)
    other = rng.choice([x for x in sorted(set(word)) if x != c] or [rng.choice(COMMON_LETTERS)])
    wrong_letter = word.replace(other, other + other)
    after = "".join(ch + (word[i + 1] if ch == c and i + 1 < len(word) else "") for i, ch in enumerate(word))
    d = choose(gold, [first, twice, wrong_letter, after], rng, [word, gold + c])
    prompt = f"Duplicate every {q(c)} once in {q(word)}.{ANSWER}"
    return d and Question(
        prompt, gold, d, source=lexicon.fil_sources(word), meta=word_meta(word, letter=c), words=(word,)
    )


def build_uppercase(word: str, rng: random.Random) -> Question | None:
    gold = word.upper()
    k = rng.randrange(len(word))
    partial = gold[:k] + word[k] + gold[k + 1 :]
    d = choose(gold, [word.capitalize(), partial, word[:-1].upper() + word[-1], word.swapcase().title()], rng)
    prompt = f"Change {q(word)} into uppercase.{ANSWER}"
    return d and Question(
        prompt, gold, d, source=lexicon.fil_sources(word), meta=word_meta(word), words=(word,)
    )


def build_lowercase(word: str, rng: random.Random) -> Question | None:
    shown = _recase(word, rng.randint(2, max(2, len(word) - 1)), rng)
    if shown == word:
        return None
    k = next(i for i, ch in enumerate(shown) if ch.isupper())
    kept = word[:k] + shown[k] + word[k + 1 :]
    d = choose(word, [kept, shown.swapcase(), word.capitalize(), shown], rng, [word.upper()])
    prompt = f"Change {q(shown)} into lowercase.{ANSWER}"
    return d and Question(
        prompt, word, d, source=lexicon.fil_sources(word), meta=word_meta(word, shown=shown), words=(word,)
    )


# ------------------------------------------------------------------------ affixation, reverse format


@cache
def _by_label() -> dict[str, tuple[morph.Derivation, ...]]:
    out: dict[str, list[morph.Derivation]] = {}
    for d in A.identifiable():
        out.setdefault(d.surface_label, []).append(d)
    return {k: tuple(v) for k, v in out.items()}


def build_affix_select(d: morph.Derivation, rng: random.Random) -> Question | None:
    """Which word carries ``d``'s affix? Distractors: words of the pools whose every backed reading
    lacks that affix and that do not show its string in its place (preferring the same kind of
    affix, as PACUTE's near misses)."""
    lab = d.surface_label
    readings = morph.backed_readings()

    def looks(w: str) -> bool:
        """Whether ``w`` shows the affix's string where the affix would be (pagkatalo for pag-,
        katumpakan for -an: a reader may take it as that affix)."""
        w = w.replace("-", "")
        if d.kind == "prefix":
            return w.startswith(d.affix[0])
        if d.kind == "suffix":
            return w.endswith(d.affix[0])
        return d.affix[0] in w[:4]

    def clean(e: morph.Derivation) -> bool:
        labs = {x for _, x, _ in readings.get(e.form, ())} | {e.surface_label, e.label}
        return lab not in labs and d.label not in labs and e.root != d.root and not looks(e.form)

    same = [e for k, v in sorted(_by_label().items()) if k != lab for e in v if e.kind == d.kind]
    other = [e for k, v in sorted(_by_label().items()) if k != lab for e in v if e.kind != d.kind]
    near = [e for e in same if clean(e)]
    far = [e for e in other if clean(e)]
    pick = rng.sample(near, min(2, len(near))) if near else []
    rest = [e for e in near + far if e not in pick]
    pick += rng.sample(rest, N_OTHERS - len(pick)) if len(rest) >= N_OTHERS - len(pick) else []
    if len(pick) < N_OTHERS:
        return None
    opts = listed_options(d.form, [e.form for e in pick], rng)
    prompt = f"Which of these Filipino words has the {d.kind} {q(lab)}: {listing(opts)}?{ANSWER}"
    meta = A._meta(d)
    meta["candidates"] = opts
    return Question(
        prompt,
        d.form,
        options=opts,
        source=d.sources(),
        meta=meta,
        words=(d.root, d.form),
        signature=f"{lab}|{'|'.join(sorted(opts))}",
    )


def select_pool(kind: str) -> tuple[morph.Derivation, ...]:
    return tuple(d for d in A.identifiable(kind) if d.kind == kind)
