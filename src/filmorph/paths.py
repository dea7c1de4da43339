"""The path vocabulary: the names of the arms and of the numbered things in ``resources/`` and
``results/`` (corpus chunks, checkpoint steps, Megatron iterations), written once for the rules
(``rules/common.smk``), the package's stages, the report and the audit.

Standard library only: the workflow imports it before any stage runs.
"""

from __future__ import annotations

import re

__all__ = [
    "ARMS",
    "CHUNK_GLOB",
    "CHUNK_PATTERN",
    "ITER_RE",
    "STEP_DIGITS",
    "STEP_GLOB",
    "STEP_PATTERN",
    "STEP_RE",
    "chunk_name",
    "iter_name",
    "step_name",
    "step_of",
]

#: The tokenization arms in the study's order; each is a path component ``{arm}``.
ARMS = ("vanilla", "stochastok", "patok")

#: A step number in a checkpoint or iteration name: 7 digits.
STEP_DIGITS = r"\d{7}"
#: ``chunk_NNNN``: a corpus chunk (``resources/corpus/chunk_NNNN.jsonl``) and its shards.
CHUNK_PATTERN = r"chunk_\d{4}"
CHUNK_GLOB = "chunk_*"
#: ``step_NNNNNNN``: an HF checkpoint dir (``hf/step_NNNNNNN``) or a resumable state.
STEP_PATTERN = rf"step_{STEP_DIGITS}"
STEP_RE = re.compile(rf"^step_({STEP_DIGITS})$")
STEP_GLOB = "step_*"
#: ``iter_NNNNNNN``: a Megatron checkpoint iteration (``megatron/iter_NNNNNNN``).
ITER_RE = re.compile(rf"^iter_({STEP_DIGITS})$")


def _check_step(step: int) -> int:
    if step < 0 or step > 9_999_999:
        raise ValueError(f"step out of range: {step}")
    return step


def chunk_name(index: int) -> str:
    """``chunk_0001`` for index 0: 1-based, four digits, like the study's files."""
    return f"chunk_{index + 1:04d}"


def step_name(step: int) -> str:
    """``step_NNNNNNN`` (7 digits), the name of a checkpoint dir."""
    return f"step_{_check_step(step):07d}"


def iter_name(step: int) -> str:
    """``iter_NNNNNNN`` (7 digits), the name of a Megatron checkpoint iteration."""
    return f"iter_{_check_step(step):07d}"


def step_of(checkpoint: str) -> int:
    """The step of a checkpoint label: ``step_NNNNNNN`` -> its number, anything else (``base``) 0."""
    m = re.fullmatch(r"step_(\d+)", checkpoint)
    return int(m.group(1)) if m else 0
