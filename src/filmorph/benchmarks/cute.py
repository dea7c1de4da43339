"""CUTE-style tasks on Filipino: character-level tasks on words, word-level tasks on sentences of the
embedded corpus, orthographic and semantic similarity. Each prompt starts with four fixed worked
examples (the same for every item of a task and every seed), made from pool entries that are then
excluded, and no item's own words occur in them."""

from __future__ import annotations

import random
from collections import defaultdict
from functools import cache, partial

from ..scoring import levenshtein
from . import lexicon
from . import words as W
from .common import ANSWER, Question, Task, choose, listed_options, listing, q

SHOTS = 4


# ------------------------------------------------------------------------------------------ words


@cache
def _char_words() -> tuple[str, ...]:
    return W.words_between(4, 10)


def _src(word: str) -> list[str]:
    return lexicon.fil_sources(word)


def build_ins_char(word: str, rng: random.Random) -> Question | None:
    c = rng.choice(sorted(set(word)))
    x = rng.choice([ch for ch in W.COMMON_LETTERS if ch not in word])
    ans = word.replace(c, c + x)
    first = word.replace(c, c + x, 1)
    other = rng.choice([ch for ch in sorted(set(word)) if ch != c] or [word[0]])
    cands = [
        word.replace(c, x + c),
        first if first != ans else None,
        word.replace(other, other + x),
        (word[::-1].replace(c, c + x, 1))[::-1],
    ]
    d = choose(ans, cands, rng, [word + x, x + word])
    prompt = f"Add the letter {q(x)} after every {q(c)} in the word {q(word)}.{ANSWER}"
    return d and Question(
        prompt, ans, d, source=_src(word), meta={"word": word, "after": c, "insert": x}, words=(word,)
    )


def build_del_char(word: str, rng: random.Random) -> Question | None:
    letters = sorted(set(word))
    c = rng.choices(letters, [word.count(ch) ** 2 for ch in letters])[0]
    ans = word.replace(c, "")
    if not ans:
        return None
    other = rng.choice([ch for ch in letters if ch != c] or [c])
    last = word.rfind(c)
    cands = [
        word.replace(c, "", 1),
        word[:last] + word[last + 1 :],
        word.replace(other, ""),
        word[: word.find(c) + 1] + word[word.find(c) + 1 :].replace(c, ""),
    ]
    d = choose(ans, cands, rng, [ans[:-1], ans + word[-1]])
    prompt = f"Delete every {q(c)} from the word {q(word)}.{ANSWER}"
    return d and Question(prompt, ans, d, source=_src(word), meta={"word": word, "delete": c}, words=(word,))


def build_sub_char(word: str, rng: random.Random) -> Question | None:
    letters = sorted(set(word))
    c = rng.choices(letters, [word.count(ch) ** 2 for ch in letters])[0]
    x = rng.choice([ch for ch in W.COMMON_LETTERS if ch not in word])
    ans = word.replace(c, x)
    other = rng.choice([ch for ch in letters if ch != c] or [c])
    last = word.rfind(c)
    cands = [
        word.replace(c, x, 1),
        word[:last] + x + word[last + 1 :],
        word.replace(other, x),
        word.replace(c, c + x),
    ]
    d = choose(ans, cands, rng, [word.replace(c, x + c)])
    prompt = f"Replace every {q(c)} with {q(x)} in the word {q(word)}.{ANSWER}"
    return d and Question(
        prompt, ans, d, source=_src(word), meta={"word": word, "replace": c, "with": x}, words=(word,)
    )


def build_swap_char(word: str, rng: random.Random) -> Question | None:
    once = [c for c in sorted(set(word)) if word.count(c) == 1]
    pairs = [(a, b) for a in once for b in once if word.index(a) < word.index(b)]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    i, j = word.index(a), word.index(b)
    ans = word[:i] + b + word[i + 1 : j] + a + word[j + 1 :]

    def swap(x: int, y: int) -> str | None:
        if not (0 <= x < len(word) and 0 <= y < len(word)) or x == y:
            return None
        x, y = min(x, y), max(x, y)
        return word[:x] + word[y] + word[x + 1 : y] + word[x] + word[y + 1 :]

    moved = word[:i] + word[i + 1 : j + 1] + a + word[j + 1 :]
    cands = [swap(i, i + 1), swap(j - 1, j), moved, swap(i + 1, j), swap(i, j - 1)]
    d = choose(ans, cands, rng, [word[:i] + word[i : j + 1][::-1] + word[j + 1 :]])
    prompt = f"Swap the letters {q(a)} and {q(b)} in the word {q(word)}.{ANSWER}"
    return d and Question(
        prompt, ans, d, source=_src(word), meta={"word": word, "swap": [a, b]}, words=(word,)
    )


def build_spell(word: str, rng: random.Random) -> Question | None:
    prompt = f"Spell out the word {q(word)}, putting a space between consecutive characters.{ANSWER}"
    d = choose(W.spell(word), [W.spell(m) for m in W.misspellings(word, rng)], rng)
    return d and Question(prompt, W.spell(word), d, source=_src(word), meta={"word": word}, words=(word,))


def build_spell_inverse(word: str, rng: random.Random) -> Question | None:
    prompt = f"Write the word that is spelled out as {q(W.spell(word))}, without spaces.{ANSWER}"
    d = choose(word, W.misspellings(word, rng), rng)
    return d and Question(prompt, word, d, source=_src(word), meta={"word": word}, words=(word,))


def build_contains_char(word: str, rng: random.Random) -> Question | None:
    present = sorted(set(word))
    absent = [c for c in W.COMMON_LETTERS if c not in word]
    if len(absent) < 3:
        return None
    ans = rng.choice(present)
    opts = listed_options(ans, rng.sample(absent, 3), rng)
    prompt = f"Which of the letters {listing(opts)} is in the word {q(word)}?{ANSWER}"
    return Question(prompt, ans, options=opts, source=_src(word), meta={"word": word}, words=(word,))


# ---------------------------------------------------------------------------------- orthography


@cache
def _orth_vocab() -> tuple[str, ...]:
    return W.words_between(3, 11)


@cache
def _deletion_index() -> dict[str, tuple[str, ...]]:
    idx: dict[str, list[str]] = defaultdict(list)
    for w in _orth_vocab():
        idx[w].append(w)
        for i in range(len(w)):
            idx[w[:i] + w[i + 1 :]].append(w)
    return {k: tuple(v) for k, v in idx.items()}


def neighbours(word: str) -> list[str]:
    """Vocabulary words at Levenshtein distance 1 from ``word``, most frequent first."""
    idx = _deletion_index()
    cands: set[str] = set()
    for v in [word] + [word[:i] + word[i + 1 :] for i in range(len(word))]:
        cands.update(idx.get(v, ()))
    rank = {w: r for r, w in enumerate(_orth_vocab())}
    return sorted((c for c in cands if c != word and levenshtein(c, word) == 1), key=rank.__getitem__)


@cache
def _by_first_and_length() -> dict[tuple[str, int], tuple[str, ...]]:
    out: dict[tuple[str, int], list[str]] = defaultdict(list)
    for w in _orth_vocab():
        out[(w[0], len(w))].append(w)
    return {k: tuple(v) for k, v in out.items()}


@cache
def _orth_targets() -> tuple[str, ...]:
    return tuple(w for w in W.words_between(4, 9) if neighbours(w))


def build_orth(word: str, rng: random.Random) -> Question | None:
    near = neighbours(word)
    ans = rng.choice(near[:5])
    buckets = _by_first_and_length()
    pool = [w for n in (len(word) - 1, len(word), len(word) + 1) for w in buckets.get((word[0], n), ())]
    pool = [w for w in pool if w not in (word, ans)]
    rng.shuffle(pool)
    by_dist: dict[int, list[str]] = defaultdict(list)
    for w in pool[:150]:
        dist = levenshtein(w, word)
        if dist >= 2:
            by_dist[dist].append(w)
    d = choose(ans, by_dist[2], rng, by_dist[3], by_dist[4])
    if d is None:
        return None
    opts = listed_options(ans, d, rng)
    prompt = f"Which of the words {listing(opts)} is closest in spelling to {q(word)}?{ANSWER}"
    return Question(
        prompt,
        ans,
        options=opts,
        source=_src(word) + [f"wordfreq:fil:{o}" for o in opts],
        meta={"word": word, "distances": [levenshtein(o, word) for o in opts]},
        words=(word, ans),
    )


# ------------------------------------------------------------------------------------- semantics


@cache
def _sem_pool() -> tuple[lexicon.SemanticWord, ...]:
    rows = lexicon.semantic_groups()
    return tuple(sorted(rows, key=lambda r: (-lexicon.fil_zipf(r.word), r.word)))


def build_sem(row: lexicon.SemanticWord, rng: random.Random) -> Question | None:
    rows = lexicon.semantic_groups()
    same = [r.word for r in rows if r.group == row.group and r.word != row.word]
    if not same:
        return None
    ans = rng.choice(same)
    others = [r for r in rows if r.domain != row.domain]
    others.sort(key=lambda r: (levenshtein(r.word, row.word), r.word))
    picked: list[str] = []
    groups: set[str] = set()
    close = others[:12]
    rng.shuffle(close)
    for r in close + others[12:]:
        if r.group not in groups:
            picked.append(r.word)
            groups.add(r.group)
        if len(picked) == 3:
            break
    opts = listed_options(ans, picked, rng)
    prompt = f"Which of the words {listing(opts)} is closest in meaning to {q(row.word)}?{ANSWER}"
    return Question(
        prompt,
        ans,
        options=opts,
        source=[f"semantic_groups:{o}" for o in [row.word] + opts],
        meta={"word": row.word, "group": row.group},
        words=(row.word, ans),
    )


def _sem_key(row: lexicon.SemanticWord) -> str:
    return row.word


# ------------------------------------------------------------------------------------- sentences


def _sentences() -> tuple[lexicon.Sentence, ...]:
    return lexicon.sentences()


def _sent_key(s: lexicon.Sentence) -> str:
    return s.id


def _targets(s: lexicon.Sentence, once: bool = False) -> list[str]:
    """Words of the sentence usable as targets: lower case, >= 3 letters, no other-case twin."""
    toks = s.words
    out = []
    for t in dict.fromkeys(toks):
        if t != t.lower() or len(t) < 3 or any(u.lower() == t and u != t for u in toks):
            continue
        if once and toks.count(t) != 1:
            continue
        out.append(t)
    return out


def _join(toks: list[str]) -> str:
    return " ".join(toks)


def _new_word(s: lexicon.Sentence, rng: random.Random) -> str:
    present = {t.lower() for t in s.words}
    cands = [w for w in lexicon.roots()[:600] if w not in present]
    return rng.choice(cands)


def _sent_src(s: lexicon.Sentence, *ws: str) -> list[str]:
    return [s.id] + [f"wordfreq:fil:{w}" for w in ws if w in lexicon.fil_freq()]


def build_contains_word(s: lexicon.Sentence, rng: random.Random) -> Question | None:
    targets = _targets(s)
    if not targets:
        return None
    ans = rng.choice(targets)
    present = {t.lower() for t in s.words}
    near = [n for t in targets for n in neighbours(t) if n not in present]
    fallback = [w for w in W.words_between(3, 10)[:1500] if w not in present]
    d = choose(ans, near, rng, fallback)
    if d is None:
        return None
    opts = listed_options(ans, d, rng)
    prompt = f"Which of the words {listing(opts)} is in the sentence {q(s.text)}?{ANSWER}"
    return Question(
        prompt,
        ans,
        options=opts,
        source=_sent_src(s, *opts),
        meta={"sentence": s.text, "word": ans},
        words=(ans,),
    )


def build_ins_word(s: lexicon.Sentence, rng: random.Random) -> Question | None:
    targets = _targets(s)
    if not targets:
        return None
    x = rng.choice(targets)
    y = _new_word(s, rng)
    toks = s.words
    ans = _join([u for t in toks for u in ([t, y] if t == x else [t])])
    before = _join([u for t in toks for u in ([y, t] if t == x else [t])])
    i = toks.index(x)
    after_next = _join(toks[: i + 2] + [y] + toks[i + 2 :]) if i + 1 < len(toks) else None
    first_only = _join(toks[: i + 1] + [y] + toks[i + 1 :])
    cands = [before, after_next, first_only, _join(toks + [y])]
    d = choose(ans, cands, rng, [_join([y] + toks)])
    prompt = f"Add the word {q(y)} after every {q(x)} in the sentence {q(s.text)}.{ANSWER}"
    return d and Question(
        prompt,
        ans,
        d,
        source=_sent_src(s, x, y),
        meta={"sentence": s.text, "word": x, "insert": y},
        words=(x, y),
    )


def build_del_word(s: lexicon.Sentence, rng: random.Random) -> Question | None:
    targets = [t for t in _targets(s) if len(s.words) > s.words.count(t) + 1]
    if not targets:
        return None
    x = rng.choice(targets)
    toks = s.words
    ans = _join([t for t in toks if t != x])
    i = toks.index(x)
    cands = [
        _join(toks[:i] + toks[i + 1 :]),
        _join(toks[: i + 1] + toks[i + 2 :]) if i + 1 < len(toks) else None,
        _join(toks[: i - 1] + toks[i:]) if i > 0 else None,
        _join([t for t in toks if t != x][:-1]),
    ]
    d = choose(ans, cands, rng, [_join(toks[:i] + toks[i + 2 :]), _join(toks[1:]) if i else None])
    prompt = f"Delete every {q(x)} from the sentence {q(s.text)}.{ANSWER}"
    return d and Question(
        prompt, ans, d, source=_sent_src(s, x), meta={"sentence": s.text, "word": x}, words=(x,)
    )


def build_sub_word(s: lexicon.Sentence, rng: random.Random) -> Question | None:
    targets = _targets(s)
    if not targets:
        return None
    x = rng.choice(targets)
    y = _new_word(s, rng)
    toks = s.words
    ans = _join([y if t == x else t for t in toks])
    i = toks.index(x)
    cands = [
        _join(toks[: i + 1] + [y] + toks[i + 1 :]),
        _join(toks[: i + 1] + [y] + toks[i + 2 :]) if i + 1 < len(toks) else None,
        _join(toks[: i - 1] + [y] + toks[i:]) if i > 0 else None,
        _join(toks[:i] + [y] + toks[i + 1 :]),
    ]
    d = choose(ans, cands, rng, [_join([y] + toks)])
    prompt = f"Replace every {q(x)} with {q(y)} in the sentence {q(s.text)}.{ANSWER}"
    return d and Question(
        prompt,
        ans,
        d,
        source=_sent_src(s, x, y),
        meta={"sentence": s.text, "word": x, "replacement": y},
        words=(x, y),
    )


def build_swap_word(s: lexicon.Sentence, rng: random.Random) -> Question | None:
    once = _targets(s, once=True)
    toks = s.words
    pairs = [(a, b) for a in once for b in once if toks.index(a) < toks.index(b)]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    i, j = toks.index(a), toks.index(b)

    def swap(x: int, y: int) -> str | None:
        if not (0 <= x < len(toks) and 0 <= y < len(toks)) or x == y:
            return None
        t = toks[:]
        t[x], t[y] = t[y], t[x]
        return _join(t)

    ans = swap(i, j)
    assert ans is not None
    moved = _join(toks[:i] + toks[i + 1 : j + 1] + [a] + toks[j + 1 :])
    cands = [swap(i, i + 1), swap(j - 1, j), moved, swap(i, j + 1), swap(i - 1, j)]
    d = choose(ans, cands, rng, [_join(toks[:i] + toks[i : j + 1][::-1] + toks[j + 1 :])])
    prompt = f"Swap the words {q(a)} and {q(b)} in the sentence {q(s.text)}.{ANSWER}"
    return d and Question(
        prompt, ans, d, source=_sent_src(s, a, b), meta={"sentence": s.text, "swap": [a, b]}, words=(a, b)
    )


_ch = partial(Task, group="character", pool=_char_words, shots=SHOTS)
_wd = partial(Task, group="word", pool=_sentences, key=_sent_key, shots=SHOTS)

TASKS: tuple[Task, ...] = (
    _ch(name="spell", build=build_spell),
    _ch(name="spell_inverse", build=build_spell_inverse),
    _ch(name="contains_char", build=build_contains_char),
    _wd(name="contains_word", build=build_contains_word),
    _ch(name="orth", pool=_orth_targets, build=build_orth),
    Task("sem", "word", _sem_pool, build_sem, key=_sem_key, shots=SHOTS),
    _ch(name="ins_char", build=build_ins_char),
    _wd(name="ins_word", build=build_ins_word),
    _ch(name="del_char", build=build_del_char),
    _wd(name="del_word", build=build_del_word),
    _ch(name="sub_char", build=build_sub_char),
    _wd(name="sub_word", build=build_sub_word),
    _ch(name="swap_char", build=build_swap_char),
    _wd(name="swap_word", build=build_swap_word),
)
