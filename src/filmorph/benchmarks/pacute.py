"""PACUTE: Filipino affixation, composition, manipulation and syllabification tasks."""

from __future__ import annotations

from functools import partial

from . import affix_tasks as A
from . import pacute_more as M
from . import words as W
from .common import Task

_aff = partial(Task, group="affixation", key=A.keyof, cover=A.phenomenon)

TASKS: tuple[Task, ...] = (
    _aff(name="prefix_apply", pool=partial(A.pool, "prefix"), build=A.build_apply),
    _aff(name="prefix_identify", pool=partial(A.identifiable, "prefix"), build=A.build_identify),
    _aff(name="infix_apply", pool=partial(A.pool, "infix"), build=A.build_apply),
    _aff(name="infix_identify", pool=partial(A.identifiable, "infix"), build=A.build_identify),
    _aff(name="suffix_apply", pool=partial(A.pool, "suffix"), build=A.build_apply),
    _aff(name="suffix_identify", pool=partial(A.identifiable, "suffix"), build=A.build_identify),
    _aff(name="circumfix_apply", pool=partial(A.pool, "circumfix"), build=A.build_apply),
    _aff(name="circumfix_identify", pool=partial(A.identifiable, "circumfix"), build=A.build_identify),
    _aff(name="reduplication_apply", pool=A.all_reduplications, build=A.build_redup_apply),
    _aff(name="reduplication_identify", pool=A.all_reduplications, build=A.build_redup_identify),
    _aff(name="prefix_select", pool=partial(M.select_pool, "prefix"), build=M.build_affix_select),
    _aff(name="infix_select", pool=partial(M.select_pool, "infix"), build=M.build_affix_select),
    _aff(name="suffix_select", pool=partial(M.select_pool, "suffix"), build=M.build_affix_select),
    Task("spelling", "composition", partial(W.words_between, 3, 12), W.build_spelling),
    Task("char_count", "composition", partial(W.words_between, 4, 12), W.build_char_count),
    Task("vowel_count", "composition", partial(W.words_between, 4, 12), W.build_vowel_count),
    Task("length", "composition", partial(W.words_between, 3, 12), W.build_length),
    Task("word_formation", "composition", partial(W.words_between, 5, 14, 3), W.build_word_formation),
    Task("char_exactly", "composition", partial(W.words_between, 4, 10), M.build_char_exactly),
    Task("char_most", "composition", partial(W.words_between, 4, 10), M.build_char_most),
    Task("char_least", "composition", partial(W.words_between, 4, 10), M.build_char_least),
    Task("length_exactly", "composition", partial(W.words_between, 4, 10), M.build_length_exactly),
    Task("length_most", "composition", partial(W.words_between, 6, 10), M.build_length_most),
    Task("length_least", "composition", partial(W.words_between, 4, 6), M.build_length_least),
    Task("uppercase_exactly", "composition", partial(W.words_between, 4, 10), M.build_uppercase_exactly),
    Task("insert_char", "manipulation", partial(W.words_between, 5, 12), W.build_insert_char),
    Task("delete_char", "manipulation", partial(W.words_between, 5, 12), W.build_delete_char),
    Task("substitute_char", "manipulation", partial(W.words_between, 5, 12), W.build_substitute_char),
    Task("swap_chars", "manipulation", partial(W.words_between, 5, 12), W.build_swap_chars),
    Task("duplicate_char", "manipulation", partial(W.words_between, 4, 12), M.build_duplicate_char),
    Task("uppercase", "manipulation", partial(W.words_between, 3, 12), M.build_uppercase),
    Task("lowercase", "manipulation", partial(W.words_between, 4, 12), M.build_lowercase),
    Task("syllable_count", "syllabification", partial(W.words_between, 6, 14, 2), W.build_syllable_count),
    Task("syllable_split", "syllabification", partial(W.words_between, 5, 14, 3), W.build_syllable_split),
    Task("first_syllable", "syllabification", partial(W.words_between, 4, 14, 2), W.build_first_syllable),
    Task("last_syllable", "syllabification", partial(W.words_between, 4, 14, 2), W.build_last_syllable),
    Task("nth_syllable", "syllabification", partial(W.words_between, 6, 14, 3), W.build_nth_syllable),
)
