"""What every generator shares: questions, tasks, seeded sampling, MCQ assembly, small helpers."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ..items import Item, validate_item
from ..rng import rng_for
from . import lexicon

N_OPTIONS = 4
ANSWER = "\nAnswer:"
_TOKEN = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


@dataclass
class Question:
    """One question before it becomes an MCQ or a GEN item.

    ``prompt`` is the question ending in ``Answer:`` (few-shot examples are added by the task);
    ``distractors`` are near misses in order of preference (at least three distinct, none equal to
    ``answer``), unless ``options`` fixes the whole ordered option list (questions whose prompt
    lists the candidates). ``words`` are the item's own words, which few-shot examples must not
    contain; ``signature`` identifies the question for de-duplication (default: the pool key)."""

    prompt: str
    answer: str
    distractors: list[str] = field(default_factory=list)
    options: list[str] | None = None
    source: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    words: tuple[str, ...] = ()
    delimiter: str = " "
    signature: str | None = None


Builder = Callable[[Any, random.Random], Question | None]


@dataclass(frozen=True)
class Task:
    """A task: its pool of candidates (most frequent first), and how a candidate becomes a question.

    ``weighted``: draw candidates frequency-weighted (:func:`lexicon.weighted_order`); otherwise in
    pool order (pools of random draws, whose builder uses the item RNG). ``shots``: number of fixed
    few-shot examples put before each question (built from pool candidates with a seed-independent
    RNG and excluded from the items). ``cover``: a class of each candidate (:func:`covering_order`)."""

    name: str
    group: str
    pool: Callable[[], Sequence[Any]]
    build: Builder
    level: int | None = None
    weighted: bool = True
    shots: int = 0
    key: Callable[[Any], str] = str
    cover: Callable[[Any], Any] | None = None


def covering_order(order: Sequence[Any], cover: Callable[[Any], Any]) -> list[Any]:
    """``order`` with the first candidate of every ``cover`` class moved to the front (in order of
    appearance): every class (an irregular rule, a kind of reduplication) is asked at least once
    when a task has as many items as classes, and the rest keeps the frequency-weighted order."""
    firsts: dict[Any, int] = {}
    for i, cand in enumerate(order):
        firsts.setdefault(cover(cand), i)
    head = sorted(firsts.values())
    taken = set(head)
    return [order[i] for i in head] + [c for i, c in enumerate(order) if i not in taken]


def ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def q(text: str) -> str:
    return f'"{text}"'


def listing(options: Sequence[str]) -> str:
    return ", ".join(q(o) for o in options)


def distinct(answer: str, candidates: Iterable[str | None]) -> list[str]:
    """Candidates without repeats, empties or the answer, in order."""
    out: list[str] = []
    for c in candidates:
        if c and c != answer and c not in out:
            out.append(c)
    return out


def choose(
    answer: str,
    preferred: Iterable[str | None],
    rng: random.Random,
    *fallback: Iterable[str | None],
    k: int = N_OPTIONS - 1,
) -> list[str] | None:
    """``k`` distractors: a random ``k`` of the ``preferred`` near misses (all of them if fewer),
    topped up from each ``fallback`` list in turn; None if fewer than ``k`` exist."""
    pref = distinct(answer, preferred)
    out = rng.sample(pref, k) if len(pref) > k else pref
    for more in fallback:
        if len(out) >= k:
            break
        extra = [c for c in distinct(answer, more) if c not in out]
        out += rng.sample(extra, min(k - len(out), len(extra)))
    return out if len(out) >= k else None


def near_numbers(n: int, rng: random.Random, lo: int = 0, extra: Iterable[int] = ()) -> list[str]:
    """Three distinct numbers near ``n`` (>= ``lo``), ``extra`` ones first."""
    cands = [x for x in extra if x >= lo and x != n]
    near = [n + d for d in (-1, 1, -2, 2, 3, -3) if n + d >= lo]
    rng.shuffle(near)
    near.sort(key=lambda x: abs(x - n))
    out: list[str] = []
    for x in cands + near:
        if str(x) not in out and x != n:
            out.append(str(x))
    return out[:3]


def tokens(text: str) -> set[str]:
    """Lower-cased words of ``text`` (hyphenated words also as their parts)."""
    out: set[str] = set()
    for t in _TOKEN.findall(text.lower()):
        out.add(t)
        out.update(p for p in t.split("-") if p)
    return out


# ------------------------------------------------------------------------------------------ sampling


@cache
def _shots(bench: str, task: Task) -> tuple[list[tuple[str, Question]], set[str]]:
    """The task's fixed few-shot examples (key, question) and the words they contain."""
    if not task.shots:
        return [], set()
    pool = task.pool()
    order = lexicon.weighted_order(pool, rng_for(0, f"{bench}/shots", task.name)) if task.weighted else pool
    out: list[tuple[str, Question]] = []
    for cand in order:
        key = task.key(cand)
        qn = task.build(cand, rng_for(0, f"{bench}/shots", f"{task.name}/{key}"))
        if qn is not None:
            out.append((key, qn))
            if len(out) == task.shots:
                break
    words: set[str] = set()
    for _, qn in out:
        words |= tokens(qn.prompt) | tokens(qn.answer)
    return out, words


def shot_text(shots: list[tuple[str, Question]]) -> str:
    return "".join(f"{qn.prompt}{qn.delimiter}{qn.answer}\n\n" for _, qn in shots)


def _questions(bench: str, task: Task, seed: int) -> Iterable[tuple[str, Question]]:
    shots, shot_words = _shots(bench, task)
    shot_keys = {k for k, _ in shots}
    pool = task.pool()
    order = (
        lexicon.weighted_order(pool, rng_for(seed, f"{bench}/order", task.name)) if task.weighted else pool
    )
    if task.cover is not None:
        order = covering_order(order, task.cover)
    seen: set[str] = set()
    for cand in order:
        key = task.key(cand)
        if key in shot_keys:
            continue
        qn = task.build(cand, rng_for(seed, f"{bench}/item", f"{task.name}/{key}"))
        if qn is None:
            continue
        sig = qn.signature or key
        if sig in seen or any(w.lower() in shot_words for w in qn.words):
            continue
        seen.add(sig)
        yield key, qn


def capacity(bench: str, task: Task, seed: int = 0) -> int:
    """How many distinct items the task's data can supply."""
    return sum(1 for _ in _questions(bench, task, seed))


def make_items(bench: str, task: Task, fmt: str, n: int, seed: int) -> list[Item]:
    """``n`` items of ``task`` in format ``fmt``; ValueError if the data cannot supply them."""
    shots, _ = _shots(bench, task)
    prefix = shot_text(shots)
    items: list[Item] = []
    for key, qn in _questions(bench, task, seed):
        item_id = f"{bench}-{fmt}-{task.group}-{task.name}-{len(items):05d}"
        meta = dict(qn.meta)
        if shots:
            meta["shots"] = len(shots)
        item = Item(
            id=item_id,
            benchmark=bench,
            group=task.group,
            task=task.name,
            level=task.level,
            format=fmt,
            prompt=prefix + qn.prompt,
            answer=qn.answer,
            delimiter=qn.delimiter,
            source=list(qn.source),
            meta=meta,
        )
        if fmt == "mcq":
            if qn.options is not None:
                item.options = list(qn.options)
            else:
                opts = list(qn.distractors[: N_OPTIONS - 1])
                gold = rng_for(seed, f"{bench}/gold", f"{task.name}/{key}").randrange(len(opts) + 1)
                opts.insert(gold, qn.answer)
                item.options = opts
            item.gold = item.options.index(qn.answer)
        validate_item(item)
        items.append(item)
        if len(items) == n:
            return items
    raise ValueError(  # the pool is exhausted: len(items) is all it can supply
        f"{bench} task {task.name!r}: the lexical data supply at most {len(items)} distinct items "
        f"(asked for {n} per task)"
    )


def listed_options(answer: str, distractors: Sequence[str], rng: random.Random) -> list[str]:
    """Answer plus distractors in a random order (for questions that list their candidates)."""
    opts = list(distractors[: N_OPTIONS - 1])
    opts.insert(rng.randrange(len(opts) + 1), answer)
    return opts
