"""The prompts of the published CUTE benchmark (Edman et al. 2024, github.com/Leukas/CUTE, MIT).

CUTE ships its items as TSV files (``data/<task>.tsv``: columns ``input1[, input2, input3],
label``; ``<task>_rand.tsv`` are the same tasks on random letter strings) and builds each prompt
at evaluation time: a task instruction, four worked examples whose answers are wrapped as
``Answer: "…"``, then ``Question:`` and the item's inputs put into the task's question pattern.
It then appends the answer cue ``Answer: "`` (after the chat template, for the instruction-tuned
models it evaluated), generates greedily, keeps what follows the last ``Answer:`` up to the next
double quote, and counts exact matches; for the word tasks it lower-cases both sides first.

This module rebuilds those prompts byte for byte (the instruction, example and question texts
are the benchmark's own; the 12-space indentation of every line after the first is part of the
published prompts, as the hub copy ``leukas/cute`` and the study's ``cute_gen.jsonl`` show). The
``_rand`` files use the prompt of their base task. No chat template is applied: the pipeline
scores base models; the answer cue is added by the converter (see
:mod:`filmorph.benchmarks.convert`).
"""

from __future__ import annotations

from dataclasses import dataclass

ANSWER_CUE = ' Answer: "'
_INDENT = " " * 12


@dataclass(frozen=True)
class CuteTask:
    """One CUTE task: the instruction line, the four worked examples (each a complete line,
    question and wrapped answer) and the question pattern (``{}`` per TSV input column)."""

    name: str
    group: str
    instruction: str
    examples: tuple[str, str, str, str]
    question: str

    @property
    def n_inputs(self) -> int:
        return self.question.count("{}")

    def prompt(self, inputs: list[str]) -> str:
        """The published prompt for one item (without the answer cue)."""
        if len(inputs) != self.n_inputs:
            raise ValueError(f"CUTE task {self.name!r} takes {self.n_inputs} inputs, got {len(inputs)}")
        lines = [self.instruction, ""]
        lines += [f"{i}. {ex}" for i, ex in enumerate(self.examples, 1)]
        lines += ["", "Question: " + self.question.format(*inputs)]
        return lines[0] + "".join(f"\n{_INDENT}{line}" for line in lines[1:])


def _task(name: str, group: str, instruction: str, question: str, *examples: str) -> CuteTask:
    assert len(examples) == 4
    return CuteTask(name, group, instruction, tuple(examples), question)  # type: ignore[arg-type]


_BASED = "based on the following examples:"
# (task, group, instruction, question pattern, four examples). Groups: CUTE's paper splits the
# tasks into composition, similarity and manipulation; the tables here group them by the unit
# they act on (character or word), as the generated CUTE-style benchmark does.
TASKS: dict[str, CuteTask] = {
    t.name: t
    for t in (
        _task(
            "spell",
            "character",
            f"Spell out the word, putting spaces between each letter, {_BASED}",
            'Spell out the word "{}".',
            'Spell out the word "alphabet". Answer: "a l p h a b e t"',
            'Spell out the word "hello". Answer: "h e l l o"',
            'Spell out the word "zebra". Answer: "z e b r a"',
            'Spell out the word "tongue". Answer: "t o n g u e"',
        ),
        _task(
            "spell_inverse",
            "character",
            f"Write the word that is spelled out, without any spaces, {_BASED}",
            'Write the word "{}".',
            'Write the word "a l p h a b e t".  Answer: "alphabet"',
            'Write the word "h e l l o". Answer: "hello"',
            'Write the word "z e b r a". Answer: "zebra"',
            'Write the word "t o n g u e". Answer: "tongue"',
        ),
        _task(
            "contains_char",
            "character",
            f"Answer whether the specified letter is in the given word, {_BASED}",
            'Is there a "{}" in "{}"?',
            'Is there a "a" in "alphabet"? Answer: "Yes"',
            'Is there a "z" in "alphabet"? Answer: "No"',
            'Is there a "u" in "hello"? Answer: "No"',
            'Is there a "o" in "hello"? Answer: "Yes"',
        ),
        _task(
            "contains_word",
            "word",
            f"Answer whether the specified word is in the given sentence (case insensitive), {_BASED}",
            'Is there a "{}" in "{}"?',
            'Is there a "the" in "The cow goes moo."? Answer: "Yes"',
            'Is there a "goat" in "The cow goes moo."? Answer: "No"',
            'Is there a "glad" in "I am very happy."? Answer: "No"',
            'Is there a "happy" in "I am very happy."? Answer: "Yes"',
        ),
        _task(
            "orth",
            "character",
            f"Select the word that is closer in Levenshtein distance to the given word {_BASED}",
            'Closer in Levenshtein distance to "{}": "{}", "{}".',
            'Closer in Levenshtein distance to "bold": "cold", "brave". Answer: "cold"',
            'Closer in Levenshtein distance to "computer": "completed", "laptop". Answer: "completed"',
            'Closer in Levenshtein distance to "happy": "glad, "apply". Answer: "apply"',
            'Closer in Levenshtein distance to "camp": "ramp", "tent". Answer: "ramp"',
        ),
        _task(
            "sem",
            "word",
            f"Select the word that is more semantically related to the given word {_BASED}",
            'More semantically related to "{}": {}, {}.',
            'More semantically related to "bold": "cold", "brave". Answer: "brave"',
            'More semantically related to "computer": "completed", "laptop". Answer: "laptop"',
            'More semantically related to "happy": "glad", "apply". Answer: "glad"',
            'More semantically related to "camp": "ramp", "tent". Answer: "tent"',
        ),
        _task(
            "ins_char",
            "character",
            "Add the specified letter after every instance of the second specified letter in a given "
            f"word, {_BASED}",
            'Add an "{}" after every "{}" in "{}".',
            'Add an "e" after every "a" in "alphabet". Answer: "aelphaebet"',
            'Add an "l" after every "l" in "hello". Answer: "hellllo"',
            'Add an "t" after every "z" in "zebra". Answer: "ztebra"',
            'Add an "f" after every "u" in "tongue". Answer: "tongufe"',
        ),
        _task(
            "ins_word",
            "word",
            "Add the specified word after every instance of the second specified word in a given "
            f"sentence, {_BASED}",
            'Add "{}" after every "{}" in "{}".',
            'Add "bad" after every "beautiful" in "it is a beautiful day". '
            'Answer: "it is a beautiful bad day"',
            'Add "hello" after every "day" in "it is a beautiful day". Answer: "it is a beautiful day hello"',
            'Add "not" after every "i" in "i think i can do it". Answer: "i not think i not can do it"',
            'Add "can" after every "can" in "i think i can do it". Answer: "i think i can can do it"',
        ),
        _task(
            "del_char",
            "character",
            f"Delete every instance of a specified letter in a given word, {_BASED}",
            'Delete every instance of "{}" in "{}".',
            'Delete every instance of "a" in "alphabet". Answer: "lphbet"',
            'Delete every instance of "l" in "hello". Answer: "heo"',
            'Delete every instance of "z" in "zebra". Answer: "ebra"',
            'Delete every instance of "u" in "tongue". Answer: "tonge"',
        ),
        _task(
            "del_word",
            "word",
            f"Delete every instance of a specified word in a given sentence, {_BASED}",
            'Delete every instance of "{}" in "{}".',
            'Delete every instance of "a" in "it is a beautiful day". Answer: "it is beautiful day"',
            'Delete every instance of "beautiful" in "it is a beautiful day". Answer: "it is a day"',
            'Delete every instance of "i" in "i think i can do it". Answer: "think can do it"',
            'Delete every instance of "can" in "i think i can do it". Answer: "i think i do it"',
        ),
        _task(
            "swap_char",
            "character",
            f"Swap the positions of two specified letters in a given word, {_BASED}",
            'Swap "{}" and "{}" in "{}".',
            'Swap "l" and "b" in "alphabet". Answer: "abphalet"',
            'Swap "h" and "e" in "hello". Answer: "ehllo"',
            'Swap "z" and "a" in "zebra". Answer: "aebrz"',
            'Swap "u" and "e" in "tongue". Answer: "tongeu"',
        ),
        _task(
            "swap_word",
            "word",
            f"Swap the positions of two specified words in a given sentence, {_BASED}",
            'Swap "{}" and "{}" in "{}".',
            'Swap "it" and "a" in "it is a beautiful day". Answer: "a is it beautiful day"',
            'Swap "it" and "beautiful" in "it is a beautiful day". Answer: "beautiful is a it day"',
            'Swap "think" and "do" in "i think i can do it". Answer: "i do i can think it"',
            'Swap "can" and "do" in "i think i can do it". Answer: "i think i do can it"',
        ),
        _task(
            "sub_char",
            "character",
            "Substitute the first specified letter with the second specified letter in a given word, "
            f"{_BASED}",
            'Substitute "{}" with "{}" in "{}".',
            'Substitute "a" with "b" in "alphabet". Answer: "blphbbet"',
            'Substitute "h" with "e" in "hello". Answer: "eello"',
            'Substitute "z" with "a" in "zebra". Answer: "aebra"',
            'Substitute "u" with "e" in "tongue". Answer: "tongee"',
        ),
        _task(
            "sub_word",
            "word",
            "Substitute the first specified word with the second specified word in a given sentence, "
            f"{_BASED}",
            'Substitute "{}" with "{}" in "{}".',
            'Substitute "it" with "a" in "it is a beautiful day". Answer: "a is a beautiful day"',
            'Substitute "it" with "beautiful" in "it is a beautiful day". '
            'Answer: "beautiful is a beautiful day"',
            'Substitute "i" with "do" in "i think i can do it". Answer: "do think do can do it"',
            'Substitute "think" with "can" in "i think i can do it". Answer: "i can i can do it"',
        ),
    )
}
# CUTE lower-cases prediction and label of these tasks before comparing (a sentence may start
# with a capital); every other task is compared as is.
CASE_INSENSITIVE_TASKS = frozenset({"contains_word", "ins_word", "del_word", "sub_word", "swap_word"})
RAND_SUFFIX = "_rand"


def base_task(name: str) -> CuteTask:
    """The task of a CUTE file stem or task name (``spell_rand`` -> ``spell``)."""
    base = name.removesuffix(RAND_SUFFIX)
    if base not in TASKS:
        raise ValueError(f"not a CUTE task: {name!r}; tasks: {', '.join(TASKS)} (and their _rand variants)")
    return TASKS[base]
