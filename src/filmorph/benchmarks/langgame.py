"""LangGame (after the StochasTok paper): six questions about four English candidate words listed
in the prompt; exactly one candidate is right. Words: the first 1000 alphabetic 3-10 letter words of
wordfreq's English top list."""

from __future__ import annotations

import random
from functools import cache

from . import lexicon
from .common import ANSWER, Question, Task

QUESTION_TYPES = ("most_letter", "contains", "starts_with", "ends_with", "longest", "shortest")
POOL_SIZE = 1_000_000  # draws; the space of distinct questions is far larger


@cache
def _draws() -> range:
    return range(POOL_SIZE)


def _pick(rng: random.Random, words: list[str], k: int = 3) -> list[str] | None:
    return rng.sample(words, k) if len(words) >= k else None


def _question(qtype: str, rng: random.Random) -> tuple[str, str, list[str], dict] | None:
    words = list(lexicon.english_words())
    gold = rng.choice(words)
    rest = [w for w in words if w != gold]
    param: dict = {}
    if qtype == "starts_with":
        c = gold[0]
        others, text = _pick(rng, [w for w in rest if w[0] != c]), f"starts with the letter {c!r}"
        param["letter"] = c
    elif qtype == "ends_with":
        c = gold[-1]
        others, text = _pick(rng, [w for w in rest if w[-1] != c]), f"ends with the letter {c!r}"
        param["letter"] = c
    elif qtype == "contains":
        c = rng.choice(sorted(set(gold)))
        others, text = _pick(rng, [w for w in rest if c not in w]), f"contains the letter {c!r}"
        param["letter"] = c
    elif qtype == "most_letter":
        c = rng.choice(sorted(set(gold)))
        n = gold.count(c)
        # prefer rivals that also contain the letter, so that looking for the letter is not enough
        rivals = [w for w in rest if 0 < w.count(c) < n]
        lesser = [w for w in rest if w.count(c) < n]
        k = min(len(rivals), rng.randint(0, 3))
        others = rng.sample(rivals, k) if k else []
        more = _pick(rng, [w for w in lesser if w not in others], 3 - k)
        others = None if more is None else others + more
        text = f"has the most occurrences of the letter {c!r}"
        param["letter"] = c
    elif qtype == "longest":
        others, text = _pick(rng, [w for w in rest if len(w) < len(gold)]), "is the longest"
    else:
        others, text = _pick(rng, [w for w in rest if len(w) > len(gold)]), "is the shortest"
    if others is None:
        return None
    return gold, text, others, param


def _builder(qtype: str):
    def build(draw: int, rng: random.Random) -> Question | None:
        got = _question(qtype, rng)
        if got is None:
            return None
        gold, text, others, param = got
        opts = others[:]
        opts.insert(rng.randrange(4), gold)
        prompt = f"Which word {text}? The available options are: [{', '.join(opts)}].{ANSWER}"
        return Question(
            prompt,
            gold,
            options=opts,
            source=[f"wordfreq:en:{w}" for w in opts],
            meta={"question_type": qtype, "candidates": opts, **param},
            signature=f"{text}|{'|'.join(sorted(opts))}",
        )

    build.__name__ = f"build_{qtype}"
    return build


TASKS: tuple[Task, ...] = tuple(
    Task(t, "langgame", _draws, _builder(t), weighted=False) for t in QUESTION_TYPES
)
