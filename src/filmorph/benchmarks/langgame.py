"""LangGame (after the StochasTok paper): six questions about four English candidate words listed
in the prompt; exactly one candidate is right. Words: the first 1000 alphabetic 3-10 letter words of
wordfreq's English top list.

The published distribution (its generator read for the facts; this code is ours):

- **Wording**: a question part (``Which <option>``, ``What <option>`` or ``Which of <the> <options>``
  + the type's phrase) and an options part (``<The> <options>:``, ``<The> <options> are:`` or
  ``These are <the> <options>:`` + `` [ a, b, c, d].``), in either order, then ``Answer:``;
  ``<options>`` is one of *options, choices, option words, option strings*, ``<option>`` one of
  *word, string, option, choice, option word, option string* or nothing, ``<the>`` one of *the,
  the possible, the available*. Type phrases: ``has the most letter 'x's?``, ``contains 'xy'?``,
  ``starts with 'xy'?``, ``ends with 'xy'?``, ``is the longest?``, ``is the shortest?``.
- **Substrings** of *contains / starts with / ends with* are 1-3 letters (length uniform in
  1..min(3, len(word))), taken from the gold word; no other candidate has them there.
- **most letter**: the gold has the letter at least twice, the others at most once.
- **longest**: gold of >= 7 letters, others of <= 4; **shortest**: gold of <= 3, others of >= 6
  (so length gaps are >= 3 letters).

The options are listed in the prompt in the MCQ option order.
"""

from __future__ import annotations

import random
import string
from functools import cache

from . import lexicon
from .common import Question, Task

QUESTION_TYPES = ("most_letter", "contains", "starts_with", "ends_with", "longest", "shortest")
POOL_SIZE = 1_000_000  # draws; the space of distinct questions is far larger
OPTIONS_WORDS = ("options", "choices", "option words", "option strings")
OPTION_WORDS = ("word", "", "string", "option", "choice", "option word", "option string")
THE_WORDS = ("the", "the possible", "the available")
QUESTION_HEADS = ("Which {option}", "What {option}", "Which of {the} {options}")
OPTION_HEADS = ("{the} {options}:", "{the} {options} are:", "These are {the} {options}:")
PHRASES = {
    "most_letter": "has the most letter '{x}'s?",
    "contains": "contains '{x}'?",
    "starts_with": "starts with '{x}'?",
    "ends_with": "ends with '{x}'?",
    "longest": "is the longest?",
    "shortest": "is the shortest?",
}
LONG_MIN, LONG_OTHERS_MAX = 7, 4
SHORT_MAX, SHORT_OTHERS_MIN = 3, 6


@cache
def _draws() -> range:
    return range(POOL_SIZE)


def _pick(rng: random.Random, words: list[str], k: int = 3) -> list[str] | None:
    return rng.sample(words, k) if len(words) >= k else None


def _substring(qtype: str, gold: str, rng: random.Random) -> str:
    n = rng.randint(1, min(3, len(gold)))
    if qtype == "starts_with":
        return gold[:n]
    if qtype == "ends_with":
        return gold[-n:]
    start = rng.randint(0, len(gold) - n)
    return gold[start : start + n]


def _question(qtype: str, rng: random.Random) -> tuple[str, list[str], str | None] | None:
    words = list(lexicon.english_words())
    aux = None
    if qtype == "longest":
        gold = rng.choice([w for w in words if len(w) >= LONG_MIN])
        others = _pick(rng, [w for w in words if len(w) <= LONG_OTHERS_MAX])
    elif qtype == "shortest":
        gold = rng.choice([w for w in words if len(w) <= SHORT_MAX])
        others = _pick(rng, [w for w in words if len(w) >= SHORT_OTHERS_MIN])
    elif qtype == "most_letter":
        aux = rng.choice(string.ascii_lowercase)
        golds = [w for w in words if w.count(aux) >= 2]
        if not golds:
            return None
        gold = rng.choice(golds)
        others = _pick(rng, [w for w in words if w.count(aux) <= 1])
    else:
        gold = rng.choice(words)
        aux = _substring(qtype, gold, rng)
        test = {"contains": str.__contains__, "starts_with": str.startswith, "ends_with": str.endswith}[qtype]
        others = _pick(rng, [w for w in words if w != gold and not test(w, aux)])
    if others is None:
        return None
    return gold, others, aux


def _wording(qtype: str, aux: str | None, opts: list[str], rng: random.Random) -> str:
    fill = {
        "options": rng.choice(OPTIONS_WORDS),
        "option": rng.choice(OPTION_WORDS),
        "the": rng.choice(THE_WORDS),
    }
    head = " ".join(rng.choice(QUESTION_HEADS).format(**fill).split())
    question = f"{head[0].upper()}{head[1:]} {PHRASES[qtype].format(x=aux)}"
    listing = rng.choice(OPTION_HEADS).format(**fill)
    listing = f"{listing[0].upper()}{listing[1:]} [ {', '.join(opts)}]."
    first, second = (question, listing) if rng.random() < 0.5 else (listing, question)
    return f"{first} {second}\nAnswer:"


def _builder(qtype: str):
    def build(draw: int, rng: random.Random) -> Question | None:
        got = _question(qtype, rng)
        if got is None:
            return None
        gold, others, aux = got
        opts = others[:]
        opts.insert(rng.randrange(4), gold)
        prompt = _wording(qtype, aux, opts, rng)
        meta = {"question_type": qtype, "candidates": opts}
        if aux is not None:
            meta["letter" if qtype == "most_letter" else "substring"] = aux
        return Question(
            prompt,
            gold,
            options=opts,
            source=[f"wordfreq:en:{w}" for w in opts],
            meta=meta,
            signature=f"{qtype}|{aux}|{'|'.join(sorted(opts))}",
        )

    build.__name__ = f"build_{qtype}"
    return build


TASKS: tuple[Task, ...] = tuple(
    Task(t, "langgame", _draws, _builder(t), weighted=False) for t in QUESTION_TYPES
)
