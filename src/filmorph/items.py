"""The one JSONL schema every benchmark file uses, MCQ and GEN alike.

One item per line, a JSON object with these fields (schema version 1):

=============  ========  ==================================================================
field          type      meaning
=============  ========  ==================================================================
``id``         str       unique within the file, e.g. ``pacute-affixation-mcq-00017``
``benchmark``  str       ``pacute`` | ``hierarchical`` | ``cute`` | ``langgame`` |
                         ``addition`` | the name of an external set
``group``      str       coarse category for tables (PACUTE: ``affixation``,
                         ``composition``, ``manipulation``, ``syllabification``; CUTE:
                         ``character`` / ``word``; hierarchical: ``level_N``; ...)
``task``       str       fine task, e.g. ``prefix_apply``, ``spell_inverse``
``level``      int|null  hierarchical level 0-5 (null for other benchmarks)
``format``     str       ``mcq`` or ``gen``
``prompt``     str       the whole context the model sees (few-shot examples included),
                         without the trailing delimiter
``delimiter``  str       put between prompt and answer/option (default ``" "``)
``options``    list      MCQ: >= 2 distinct strings; GEN: absent or null
``gold``       int       MCQ: index of the right option; GEN: absent or null
``answer``     str       the right answer text (MCQ: ``options[gold]``)
``stop``       list      GEN: strings that end the generation (default ``["\\n"]``)
``source``     list      ids of the lexical data the item was made from, e.g.
                         ``tglstemmer:kumain``, ``wordfreq:fil:bahay``, ``affix:prefix:mag``
``meta``       object    free-form details (word, root, affix, ...)
=============  ========  ==================================================================

MCQ items are scored by the log-likelihood of ``delimiter + option`` after ``prompt``.
GEN items are answered by greedy generation after ``prompt`` up to the first ``stop`` string;
the output (cut at the first stop string after its leading whitespace) is compared with
``answer`` after stripping surrounding whitespace.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import atomic_path, decode_utf8

SCHEMA_VERSION = 1
FORMATS = ("mcq", "gen")


class BadItemError(ValueError):
    """A benchmark line that does not follow the schema; the message names file and line."""


@dataclass
class Item:
    """One benchmark item (see the module docstring for the fields)."""

    id: str
    benchmark: str
    group: str
    task: str
    format: str
    prompt: str
    answer: str
    level: int | None = None
    options: list[str] | None = None
    gold: int | None = None
    delimiter: str = " "
    stop: list[str] = field(default_factory=lambda: ["\n"])
    source: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "benchmark": self.benchmark,
            "group": self.group,
            "task": self.task,
            "level": self.level,
            "format": self.format,
            "prompt": self.prompt,
            "delimiter": self.delimiter,
            "answer": self.answer,
            "source": list(self.source),
            "meta": dict(self.meta),
        }
        if self.format == "mcq":
            d["options"] = list(self.options or [])
            d["gold"] = self.gold
        else:
            d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Item:
        item = cls(
            id=d["id"],
            benchmark=d["benchmark"],
            group=d.get("group") or d["benchmark"],
            task=d["task"],
            format=d["format"],
            prompt=d["prompt"],
            answer=d["answer"],
            level=d.get("level"),
            options=d.get("options"),
            gold=d.get("gold"),
            delimiter=d.get("delimiter", " "),
            stop=d.get("stop") or ["\n"],
            source=d.get("source") or [],
            meta=d.get("meta") or {},
        )
        validate_item(item)
        return item


def validate_item(item: Item) -> None:
    """Raise ValueError if ``item`` breaks the schema."""
    for name in ("id", "benchmark", "group", "task", "prompt", "answer", "delimiter"):
        if not isinstance(getattr(item, name), str):
            raise ValueError(f"field {name!r} must be a string")
    if not item.id or not item.prompt:
        raise ValueError("id and prompt must be non-empty")
    if item.format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {item.format!r}")
    if item.level is not None and (not isinstance(item.level, int) or isinstance(item.level, bool)):
        raise ValueError("level must be an integer or null")
    if item.format == "mcq":
        opts = item.options
        if not isinstance(opts, list) or len(opts) < 2 or not all(isinstance(o, str) for o in opts):
            raise ValueError("an MCQ item needs a list of >= 2 string options")
        if len(set(opts)) != len(opts):
            raise ValueError(f"MCQ options must be distinct: {opts!r}")
        if not isinstance(item.gold, int) or isinstance(item.gold, bool) or not 0 <= item.gold < len(opts):
            raise ValueError(f"gold must index options (0..{len(opts) - 1}), got {item.gold!r}")
        if opts[item.gold] != item.answer:
            raise ValueError("answer must equal options[gold]")
    else:
        if item.options is not None or item.gold is not None:
            raise ValueError("a GEN item has no options or gold")
        if not item.answer:
            raise ValueError("a GEN item needs a non-empty answer")
        if not isinstance(item.stop, list) or not all(isinstance(s, str) and s for s in item.stop):
            raise ValueError("stop must be a list of non-empty strings")
    if not isinstance(item.source, list) or not all(isinstance(s, str) for s in item.source):
        raise ValueError("source must be a list of strings")
    if not isinstance(item.meta, dict):
        raise ValueError("meta must be an object")


def iter_items(path: str | Path) -> Iterator[Item]:
    """Items of a benchmark JSONL file; a bad line raises BadItemError naming file:line (bytes
    that are not UTF-8: also the byte offset). A byte-order mark at the start is dropped."""
    path = Path(path)
    seen: set[str] = set()
    try:
        text = decode_utf8(path.read_bytes(), path)
    except ValueError as e:
        raise BadItemError(str(e)) from None
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            item = Item.from_json(d)
        except KeyError as e:
            raise BadItemError(f"{path}:{lineno}: missing field {e.args[0]!r}") from None
        except (ValueError, TypeError) as e:
            raise BadItemError(f"{path}:{lineno}: {e}") from None
        if item.id in seen:
            raise BadItemError(f"{path}:{lineno}: duplicate id {item.id!r}")
        seen.add(item.id)
        yield item


def read_items(path: str | Path) -> list[Item]:
    """All items of a benchmark file (see :func:`iter_items`)."""
    return list(iter_items(path))


def write_items(path: str | Path, items: Iterable[Item]) -> int:
    """Validate and write ``items`` as JSONL atomically; return how many were written."""
    n = 0
    ids: set[str] = set()
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for item in items:
            validate_item(item)
            if item.id in ids:
                raise ValueError(f"duplicate id {item.id!r}")
            ids.add(item.id)
            fh.write(json.dumps(item.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def shuffled_options(item: Item, rng: random.Random) -> Item:
    """A copy of MCQ ``item`` with its options permuted by ``rng`` and ``gold`` moved along."""
    if item.format != "mcq":
        raise ValueError("only MCQ items have options")
    order = list(range(len(item.options or [])))
    rng.shuffle(order)
    opts = [item.options[i] for i in order]  # type: ignore[index]
    d = item.to_json()
    d.update(options=opts, gold=order.index(item.gold))
    return Item.from_json(d)
