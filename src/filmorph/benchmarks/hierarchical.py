"""Hierarchical: six levels, each needing the skill of the level below and one more.

0 character recognition, 1 character manipulation (find a position, then edit), 2 morpheme
decomposition (find the affix / root of a word built from a known root), 3 morpheme manipulation
(remove or replace an affix, undoing or redoing its spelling rules), 4 morpheme composition (apply an
affix to a root), 5 multi-step morphological reasoning (apply an affix then reduplicate; remove an
affix then count the root's syllables).
"""

from __future__ import annotations

from functools import partial

from . import affix_tasks as A
from . import words as W
from .common import Task


def _level(n: int, name: str, pool, build, **kw) -> Task:
    return Task(name=name, group=f"level_{n}", pool=pool, build=build, level=n, **kw)


_words = partial(W.words_between, 4, 12)
_manip = partial(W.words_between, 5, 12)

TASKS: tuple[Task, ...] = (
    _level(0, "char_at", _words, W.build_char_at),
    _level(0, "char_in_word", _words, W.build_char_in_word),
    _level(0, "char_count", _words, W.build_char_count),
    _level(1, "insert_char", _manip, W.build_insert_char),
    _level(1, "delete_char", _manip, W.build_delete_char),
    _level(1, "substitute_char", _manip, W.build_substitute_char),
    _level(1, "swap_chars", _manip, W.build_swap_chars),
    _level(2, "affix_identify", A.identifiable, A.build_identify_any, key=A.keyof, cover=A.phenomenon),
    _level(2, "root_extract", A.identifiable, A.build_root, key=A.keyof, cover=A.phenomenon),
    _level(2, "affix_type", A.identifiable, A.build_affix_type, key=A.keyof, cover=A.phenomenon),
    _level(3, "affix_remove", A.identifiable, A.build_remove, key=A.keyof, cover=A.phenomenon),
    _level(3, "affix_swap", A.swap_pool, A.build_swap, key=A.swap_key),
    _level(4, "prefix_apply", partial(A.pool, "prefix"), A.build_apply, key=A.keyof, cover=A.phenomenon),
    _level(4, "infix_apply", partial(A.pool, "infix"), A.build_apply, key=A.keyof, cover=A.phenomenon),
    _level(4, "suffix_apply", partial(A.pool, "suffix"), A.build_apply, key=A.keyof, cover=A.phenomenon),
    _level(
        4, "circumfix_apply", partial(A.pool, "circumfix"), A.build_apply, key=A.keyof, cover=A.phenomenon
    ),
    _level(
        5,
        "infix_redup",
        partial(A.redup_pool, "infix"),
        A.build_affix_then_redup,
        key=A.keyof,
        cover=A.phenomenon,
    ),
    _level(
        5,
        "prefix_redup",
        partial(A.redup_pool, "prefix"),
        A.build_affix_then_redup,
        key=A.keyof,
        cover=A.phenomenon,
    ),
    _level(5, "root_syllables", A.identifiable, A.build_remove_then_count, key=A.keyof, cover=A.phenomenon),
)
