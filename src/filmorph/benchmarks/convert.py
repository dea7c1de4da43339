"""Load benchmark files published in the upstream JSONL schemas into our :class:`~filmorph.items.Item`.

Schemas (one JSON object per line):

- ``pacute``: ``{category, subcategory, prompts: [{text_en, text_tl, mcq_options: {correct,
  incorrect1..3}, choice1..choice4}], label, id}``. MCQ when the prompt has ``choice1..4``: ``label``
  is the letter (A-D) of the right choice. Otherwise GEN: ``label`` is the answer. The prompt is
  ``text_en``.
- ``hierarchical``: ``{level, category, subcategory, prompt_en, prompt_tl, options, answer, word,
  metadata, id}``; the right option is the one equal to ``answer`` (not ``options[0]``).
- ``cute``: ``{question, answer, task_type, id}`` (GEN only).
- ``langgame``, ``addition``: ``{question, answer, options?, id}``; ``options[0]`` is the right one;
  answers may carry a leading space (it becomes the delimiter).
- ``filmorph``: our own schema.

``fmt`` (``mcq``/``gen``/None) picks the format: None keeps each record's own; ``gen`` turns an MCQ
record into a GEN item with the same answer; ``mcq`` on a record without options is an error. A bad
line raises :class:`~filmorph.items.BadItemError` naming ``file:line``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..items import FORMATS, BadItemError, Item, validate_item

SCHEMAS = ("pacute", "hierarchical", "cute", "langgame", "addition", "filmorph")
CUTE_WORD_TASKS = frozenset({"contains_word", "sem", "ins_word", "del_word", "sub_word", "swap_word"})
_HUB_ID = re.compile(r"(?:hf://)?(?:datasets/)?([\w.-]+/[\w.-]+):(.+)")
_LANGGAME_TYPES = (
    ("most", "most_letter"),
    ("contain", "contains"),
    ("start", "starts_with"),
    ("end", "ends_with"),
    ("longest", "longest"),
    ("shortest", "shortest"),
)


def resolve(path_or_hub_id: str) -> Path:
    """A local file, or ``owner/name:path/in/repo`` of a hub dataset (downloaded with
    ``huggingface_hub.hf_hub_download``; ``HF_TOKEN`` is read from the environment only)."""
    path = Path(path_or_hub_id)
    if path.is_file():
        return path
    m = _HUB_ID.fullmatch(str(path_or_hub_id))
    if not m:
        raise FileNotFoundError(f"{path_or_hub_id}: no such file, and not a hub id 'owner/name:path/in/repo'")
    from huggingface_hub import hf_hub_download

    return Path(
        hf_hub_download(repo_id=m[1], filename=m[2], repo_type="dataset", token=os.environ.get("HF_TOKEN"))
    )


def _split_delimiter(question: str) -> tuple[str, str]:
    """(prompt, delimiter): trailing whitespace becomes the delimiter; a prompt ending in ``:``,
    ``?`` or ``.`` gets ``" "``; anything else (``341+114=``, an opening quote) gets ``""``."""
    prompt = question.rstrip()
    trailing = question[len(prompt) :]
    if trailing:
        return prompt, trailing if trailing.strip(" ") == "" else " "
    return prompt, " " if prompt.endswith((":", "?", ".")) else ""


def _finish(item: Item, options: list[str] | None, gold: int | None, fmt: str | None) -> Item:
    target = fmt or ("mcq" if options else "gen")
    if target == "mcq":
        if not options or gold is None:
            raise ValueError("the record has no options, so it cannot be an MCQ item")
        item.format, item.options, item.gold = "mcq", options, gold
        item.answer = options[gold]
    else:
        item.format, item.options, item.gold = "gen", None, None
    return item


def _text(rec: dict, key: str) -> str:
    v = rec[key]
    if not isinstance(v, str | int | float) or isinstance(v, bool):
        raise ValueError(f"field {key!r} must be a string")
    return str(v)


def _pacute(rec: dict, name: str, fmt: str | None) -> Item:
    prompts = rec["prompts"]
    if not isinstance(prompts, list) or not prompts or not isinstance(prompts[0], dict):
        raise ValueError("'prompts' must be a non-empty list of objects")
    p = prompts[0]
    choices = [p.get(f"choice{i}") for i in range(1, 5)]
    mcq_opts = p.get("mcq_options")
    options: list[str] | None = None
    gold: int | None = None
    if all(c is not None for c in choices):
        options = [str(c) for c in choices]
        letter = str(rec["label"]).strip().upper()
        if letter not in ("A", "B", "C", "D"):
            raise ValueError(f"MCQ label must be a letter A-D, got {rec['label']!r}")
        gold = "ABCD".index(letter)
        if isinstance(mcq_opts, dict) and "correct" in mcq_opts and str(mcq_opts["correct"]) != options[gold]:
            raise ValueError(
                f"label {letter} is {options[gold]!r} but mcq_options.correct is {mcq_opts['correct']!r}"
            )
        answer = options[gold]
    elif isinstance(mcq_opts, dict) and "correct" in mcq_opts:
        options = [str(mcq_opts["correct"])] + [str(mcq_opts[f"incorrect{i}"]) for i in (1, 2, 3)]
        gold, answer = 0, options[0]
    else:
        answer = _text(rec, "label")
    item = Item(
        id=_text(rec, "id"),
        benchmark=name,
        group=_text(rec, "category"),
        task=_text(rec, "subcategory"),
        format="gen",
        prompt=_text(p, "text_en"),
        answer=answer,
        meta={"prompt_tl": p.get("text_tl"), "upstream_label": rec.get("label")},
    )
    return _finish(item, options, gold, fmt)


def _hierarchical(rec: dict, name: str, fmt: str | None) -> Item:
    level = int(str(rec["level"]).strip().lower().removeprefix("level_").removeprefix("l"))
    answer = _text(rec, "answer")
    options = rec.get("options")
    gold = None
    if options:
        if not isinstance(options, list):
            raise ValueError("'options' must be a list")
        options = [str(o) for o in options]
        if answer not in options:
            raise ValueError(f"answer {answer!r} is not among the options {options!r}")
        gold = options.index(answer)
    prompt = rec.get("prompt_en") or _text(rec, "prompt_tl")
    item = Item(
        id=_text(rec, "id"),
        benchmark=name,
        group=f"level_{level}",
        task=str(rec.get("subcategory") or _text(rec, "category")),
        level=level,
        format="gen",
        prompt=str(prompt),
        answer=answer,
        meta={
            "word": rec.get("word"),
            "category": rec.get("category"),
            "prompt_tl": rec.get("prompt_tl"),
            "metadata": rec.get("metadata"),
        },
    )
    return _finish(item, options or None, gold, fmt)


def _cute(rec: dict, name: str, fmt: str | None) -> Item:
    if fmt == "mcq":
        raise ValueError("CUTE records have no options, so they cannot be MCQ items")
    prompt, delim = _split_delimiter(_text(rec, "question"))
    task = _text(rec, "task_type")
    return Item(
        id=_text(rec, "id"),
        benchmark=name,
        group="word" if task in CUTE_WORD_TASKS else "character",
        task=task,
        format="gen",
        prompt=prompt,
        answer=_text(rec, "answer"),
        delimiter=delim,
    )


def _options_first(rec: dict, name: str, fmt: str | None, group: str, task: str) -> Item:
    raw_answer = _text(rec, "answer")
    prompt, delim = _split_delimiter(_text(rec, "question"))
    if raw_answer[:1] == " " and delim == "":
        delim = " "
    answer = raw_answer.strip()
    options = rec.get("options")
    if options:
        if not isinstance(options, list):
            raise ValueError("'options' must be a list")
        options = [str(o).strip() for o in options]
        if options[0] != answer:
            raise ValueError(f"options[0] is {options[0]!r}, not the answer {answer!r}")
    item = Item(
        id=_text(rec, "id"),
        benchmark=name,
        group=group,
        task=task,
        format="gen",
        prompt=prompt,
        answer=answer,
        delimiter=delim,
    )
    return _finish(item, options or None, 0 if options else None, fmt)


def _langgame(rec: dict, name: str, fmt: str | None) -> Item:
    question = _text(rec, "question").lower()
    task = next((t for word, t in _LANGGAME_TYPES if word in question), "langgame")
    return _options_first(rec, name, fmt, "langgame", task)


def _addition(rec: dict, name: str, fmt: str | None) -> Item:
    return _options_first(rec, name, fmt, "addition", "addition")


def _filmorph(rec: dict, name: str, fmt: str | None) -> Item:
    item = Item.from_json(rec)
    item.benchmark = name
    if fmt is None or fmt == item.format:
        return item
    if fmt == "gen":
        item.options = item.gold = None
        item.format = "gen"
        return item
    raise ValueError("a GEN item cannot become an MCQ item")


_CONVERTERS: dict[str, Callable[[dict, str, str | None], Item]] = {
    "pacute": _pacute,
    "hierarchical": _hierarchical,
    "cute": _cute,
    "langgame": _langgame,
    "addition": _addition,
    "filmorph": _filmorph,
}


def convert(path_or_hub_id: str, schema: str, name: str, fmt: str | None = None) -> list[Item]:
    """Items of an externally published benchmark file in ``schema`` (see the module docstring),
    with ``benchmark = name``; ``fmt`` None keeps each record's format."""
    if schema not in _CONVERTERS:
        raise ValueError(f"unknown schema {schema!r}; choose from {', '.join(SCHEMAS)}")
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS} or None, got {fmt!r}")
    if not name:
        raise ValueError("name must be non-empty")
    path = resolve(path_or_hub_id)
    conv = _CONVERTERS[schema]
    items: list[Item] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec: Any = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
                item = conv(rec, name, fmt)
                validate_item(item)
            except KeyError as e:
                raise BadItemError(f"{path}:{lineno}: missing field {e.args[0]!r}") from None
            except (ValueError, TypeError, AttributeError, IndexError) as e:
                raise BadItemError(f"{path}:{lineno}: {e}") from None
            if item.id in seen:
                raise BadItemError(f"{path}:{lineno}: duplicate id {item.id!r}")
            seen.add(item.id)
            items.append(item)
    return items
