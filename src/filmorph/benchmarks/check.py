"""``python -m filmorph.benchmarks check FILE``: what a linguist would check first in a
benchmark file.

- **undictionaried**: items that rest on a morphological analysis (``meta.analysis``: root,
  affixes, rules, dictionary entry) that the dictionary does not back when looked up again
  (:func:`dictionary.backing`); for files without analyses (older generators), affix items whose
  ``meta.word`` the dictionary does not back as built on ``meta.root``;
- **double answers**: MCQ items where a distractor is also a right answer: an affix application
  whose distractor is another dictionary-backed realisation of the same affix on the same root;
  an affix identification whose distractor label is another backed reading of the word; a
  reverse identification (which word has the affix) whose distractor word also has it; a root
  question whose distractor is another backed root of the word; a syllable-ordering question
  whose distractor is also a Filipino word (:func:`morph.plausible_word`); a stress question
  (``meta.stress``: the headword, its analysis and every reading of its plain spelling in the
  lexicon) whose distractor another reading gives, or whose gold its own headword does not give
  when analysed again (:func:`stress.analyse`, listed as undictionaried); a diacritic selection
  whose distractor has the asked count of the marked letter.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..items import Item
from . import dictionary, morph, stress

APPLY_TASKS = ("prefix_apply", "infix_apply", "suffix_apply", "circumfix_apply")
IDENTIFY_TASKS = (
    "prefix_identify",
    "infix_identify",
    "suffix_identify",
    "circumfix_identify",
    "affix_identify",
)
ROOT_TASKS = ("root_extract", "affix_remove")
SELECT_TASKS = ("prefix_select", "infix_select", "suffix_select")
STRESS_TASKS = ("stress_identify", "stress_classify", "stress_place")


def stress_answer(task: str, word: str) -> str | None:
    """The answer a stress task gives for the marked ``word`` (None: no class, so no answer)."""
    a = stress.analyse(word)
    if a is None:
        return None
    if task == "stress_identify":
        from .common import ordinal

        return ordinal(a.stress_index + 1)
    if task == "stress_classify":
        return a.stress_class
    return a.word


def undictionaried(it: Item) -> str | None:
    """Why the item's analysis is not backed, or None."""
    if it.task in STRESS_TASKS and "stress" in it.meta:
        word = it.meta["stress"]["word"]
        got = stress_answer(it.task, word)
        if got != it.answer:
            return f"the headword {word!r} gives {got!r}, not the gold {it.answer!r}"
        return None
    a = it.meta.get("analysis")
    if a is None:  # an older file: the analysis is word = affix + root of meta, if it has them
        m = it.meta
        if not {"root", "affix", "word"} <= set(m):
            return None
        if dictionary.backing(m["word"], m["root"]) is None:
            return f"no analysis, and the dictionary does not back {m['word']} = {m['affix']} + {m['root']}"
        return None
    if not a.get("dictionary"):
        return "analysis without a dictionary entry"
    root, form = a["root"], a["form"]
    target = "ma" + root if "stacked" in a.get("rules", ()) else form
    if dictionary.backing(target, root) is None:
        return f"the dictionary does not back {form} = {' + '.join(a.get('affixes', []))} + {root}"
    return None


def double_answer(it: Item) -> str | None:
    """The distractor that is also a right answer (with why), or None."""
    if it.format != "mcq" or not it.options:
        return None
    wrong = [o for i, o in enumerate(it.options) if i != it.gold]
    m = it.meta
    if it.task in STRESS_TASKS and "stress" in m:  # needs no dictionary: the item has its readings
        for r in m["stress"].get("readings", ()):
            got = stress_answer(it.task, r)
            if got in wrong:
                return f"the reading {r!r} of {m['word']!r} gives the distractor {got!r}"
        return None
    if it.task == "diacritic_exactly" and {"letter", "count"} <= set(m):
        for o in wrong:
            if o.count(m["letter"]) == m["count"]:
                return f"{o!r} also has {m['count']} {m['letter']!r}"
        return None
    if it.task in stress.TASK_NAMES:  # count and normalization: one right string by construction
        return None
    readings = morph.backed_readings()
    if it.task in APPLY_TASKS and "root" in m:
        spec = (m.get("affix_type") or it.task.split("_")[0], m["affix"], m["root"])
        for o in wrong:
            if spec in readings.get(o, ()):
                return f"{o!r} is also {m['affix']} + {m['root']} in the dictionary"
    elif it.task in IDENTIFY_TASKS and "word" in m:
        labels = {lab for _, lab, _ in readings.get(m["word"], ())}
        for o in wrong:
            if o in labels:
                return f"{m['word']!r} also reads as {o} in the dictionary"
    elif it.task in SELECT_TASKS and "surface_affix" in m:
        for o in wrong:
            if {m["surface_affix"], m["affix"]} & {lab for _, lab, _ in readings.get(o, ())}:
                return f"{o!r} also has {m['surface_affix']} in the dictionary"
    elif it.task in ROOT_TASKS and "word" in m:
        roots = {r for _, _, r in readings.get(m["word"], ())}
        for o in wrong:
            if o in roots:
                return f"{m['word']!r} also has the root {o!r} in the dictionary"
    elif it.task == "word_formation":
        for o in wrong:
            if morph.plausible_word(o):
                return f"{o!r} is also a Filipino word"
    return None


def check(items: list[Item]) -> dict[str, Any]:
    """{"items", "with_analysis", "undictionaried": [...], "double_answers": [...], per-task counts}."""
    undict, double = [], []
    for it in items:
        why = undictionaried(it)
        if why:
            undict.append({"id": it.id, "task": it.task, "why": why})
        why = double_answer(it)
        if why:
            double.append({"id": it.id, "task": it.task, "why": why})
    return {
        "items": len(items),
        "with_analysis": sum(1 for it in items if "analysis" in it.meta),
        "undictionaried": undict,
        "double_answers": double,
        "undictionaried_per_task": dict(Counter(x["task"] for x in undict)),
        "double_answers_per_task": dict(Counter(x["task"] for x in double)),
    }
