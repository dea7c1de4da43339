"""Benchmark generators: PACUTE, hierarchical, CUTE, LangGame and multi-digit addition.

Every item follows the schema of :mod:`filmorph.items`. ``generate(benchmark, fmt, n, seed)``
gives exactly ``n`` items per task, MCQ (4 options, gold at a seeded random position) or GEN (free
answer, ``stop=["\\n"]``); every random choice comes from ``filmorph.rng.rng_for(seed, purpose,
key)`` with a key naming the task and the pool entry, so output is a pure function of the
arguments, and the MCQ and GEN files of one seed ask the same questions. ``convert`` reads files
published in the upstream schemas (see :mod:`filmorph.benchmarks.convert`).

The generators are described in their modules: :mod:`.pacute` (with :mod:`.pacute_more`),
:mod:`.hierarchical`, :mod:`.cute`, :mod:`.langgame`, :mod:`.addition`; the lexical data in
:mod:`.lexicon`, the Tagalog dictionary that backs every affix analysis in :mod:`.dictionary`, the
affixation rules (regular and irregular) in :mod:`.morph`, and the ``check`` of a generated file
(analyses no dictionary backs, distractors that are also right) in :mod:`.check`. PACUTE's stress
and diacritic tasks (:mod:`.stress`) need a stress-marked lexicon (``stress_lexicon``: UPDF JSONL
files); without one they are skipped (:func:`skipped_tasks` says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from ..items import FORMATS, Item
from .common import Task, capacity, make_items
from .convert import SCHEMAS, convert

BENCHMARKS = ("pacute", "hierarchical", "cute", "langgame", "addition")

__all__ = ["BENCHMARKS", "SCHEMAS", "convert", "generate", "max_items_per_task", "skipped_tasks", "tasks"]


@cache
def _tasks(benchmark: str) -> tuple[Task, ...]:
    if benchmark == "pacute":
        from .pacute import TASKS
    elif benchmark == "hierarchical":
        from .hierarchical import TASKS
    elif benchmark == "cute":
        from .cute import TASKS
    elif benchmark == "langgame":
        from .langgame import TASKS
    elif benchmark == "addition":
        from .addition import TASKS
    else:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    return TASKS


def _all_tasks(benchmark: str, stress_lexicon: Sequence[str] = ()) -> tuple[Task, ...]:
    """The tasks of ``benchmark``; PACUTE's stress tasks when ``stress_lexicon`` names files."""
    base = _tasks(benchmark)
    if benchmark != "pacute":
        return base
    from .stress import tasks_for

    return base + tasks_for(tuple(str(p) for p in stress_lexicon))


def tasks(benchmark: str, stress_lexicon: Sequence[str] = ()) -> list[str]:
    """The task names of ``benchmark``, in their stable order (PACUTE's stress tasks only with a
    ``stress_lexicon``)."""
    return [t.name for t in _all_tasks(benchmark, stress_lexicon)]


def skipped_tasks(benchmark: str, stress_lexicon: Sequence[str] = ()) -> dict[str, str]:
    """{task: why it is not generated} (PACUTE's stress tasks without a stress lexicon)."""
    if benchmark != "pacute":
        return {}
    from .stress import skipped

    return skipped(list(stress_lexicon))


def generate(
    benchmark: str, fmt: str, items_per_task: int, seed: int, stress_lexicon: Sequence[str] = ()
) -> list[Item]:
    """``items_per_task`` items of every task of ``benchmark`` in format ``fmt`` (``mcq`` or ``gen``).

    Deterministic in its arguments; ValueError if the lexical data cannot supply that many
    distinct items for a task (the message names the task and the maximum). ``stress_lexicon``:
    UPDF JSONL files for PACUTE's stress and diacritic tasks (none: those tasks are skipped)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if not isinstance(items_per_task, int) or items_per_task < 1:
        raise ValueError(f"items_per_task must be a positive integer, got {items_per_task!r}")
    out: list[Item] = []
    for task in _all_tasks(benchmark, stress_lexicon):
        out += make_items(benchmark, task, fmt, items_per_task, int(seed))
    return out


def max_items_per_task(benchmark: str, seed: int = 0, stress_lexicon: Sequence[str] = ()) -> dict[str, int]:
    """{task: how many distinct items the data supply} (slow for langgame and addition, whose
    pools are random draws: there it counts distinct questions among the draws)."""
    return {t.name: capacity(benchmark, t, seed) for t in _all_tasks(benchmark, stress_lexicon)}
