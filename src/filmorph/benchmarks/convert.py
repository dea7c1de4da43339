"""Load published benchmark files, as distributed, into our :class:`~filmorph.items.Item`.

Sources (:mod:`.sources`): a local file, a hub dataset file ``owner/name:path/in/repo`` or an
https URL. Files: JSONL (one record per non-blank line), CUTE's TSV (a header line, then one
tab-separated row per item) or Parquet (one record per row). Schemas:

- ``pacute`` (PACUTE, CC0, and the study's affixation/composition/manipulation/syllabification
  files): ``{category, subcategory, prompts: [{text_en, text_tl, mcq_options: {correct,
  incorrect1..3}, choice1..choice4}], label, id?}``. MCQ when the prompt has ``choice1..4``:
  ``label`` is the letter A-D of the right choice, which must equal ``mcq_options.correct``.
  Otherwise GEN, ``label`` being the answer. Group = ``category``, task = ``subcategory``.
- ``hierarchical``: ``{level, category, subcategory, prompt_en, prompt_tl, options?, answer, word,
  metadata, id}``; the right option is the one equal to ``answer`` (the study scored
  ``options[0]``, which is the answer in 164 of 599 items). Group ``level_N``, task ``subcategory``.
- ``stress`` (the study's stress files): ``{category, subcategory, prompt_en, prompt_tl, context,
  word, answer | answer_en/answer_tl, options? | options_en/options_tl, ...}``.
- ``cute``: CUTE's TSV files (``input1[, input2, input3], label``; the task is the file name,
  ``<task>_rand`` included), prompts built as CUTE builds them (:mod:`.cute_published`); or
  records ``{question | prompt, answer, task_type?, id?}`` (the study's ``cute_gen.jsonl``, the hub
  copy ``leukas/cute``; without ``task_type`` the task is the file name). With
  ``cute_answer_cue`` (default), CUTE's answer cue ``Answer: "`` ends the prompt and ``"`` ends
  the answer, as in CUTE's own evaluation; without it the prompt is the record's question.
- ``langgame``: ``{question, answer, options?, id}``; ``options[0]`` is the right one; the task is
  the question template's type (``most_letter``, ``contains``, ``starts_with``, ``ends_with``,
  ``longest``, ``shortest``), read from the question sentence itself, never from the option words.
- ``addition``: ``{question, answer, options?, id}`` (``341+114=``), ``options[0]`` right.
- ``filmorph``: our own schema.
- ``auto``: the schema is detected from the first record (and said on stderr and in the stats).

A record without ``id`` gets ``<file stem>-<line, 5 digits>`` (stable: the file name and line).

Options (:class:`Options`):

- ``fmt``: None keeps each record's format; ``gen`` turns MCQ records into GEN items with the
  same answer; ``mcq`` on a record without options is a bad item.
- ``on_bad_item``: ``error`` (default) raises :class:`~filmorph.items.BadItemError` naming
  ``file:line`` and the reason; ``skip`` leaves the item out and records its line and reason.
- ``duplicate_options``: several published MCQ items list one option text twice (PACUTE,
  hierarchical, stress; 1-45 items per file). ``drop`` (default) keeps the first copy of each
  text and leaves the item in: options are scored by their text, so the copies are one option,
  and the gold text stays unambiguous (the item is then a 2- or 3-way choice; ``repaired`` in the
  stats counts them). ``skip`` treats such an item as bad (reason ``duplicate_options``).
- ``mcq_style``: ``text`` (the study's protocol: options not shown; each option's text is scored
  after the prompt) or ``lettered`` (the choices listed in the prompt as ``A. ...`` lines, then
  ``Answer:``; the options are the letters).
- ``language``: ``study`` (what the study's loaders read: PACUTE ``text_en``, hierarchical
  ``prompt_tl``, stress ``prompt_en``), ``en`` or ``tl``.

Each item's ``meta.scoring`` names its scoring profile (:mod:`filmorph.scoring`).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..io import decode_utf8
from ..items import FORMATS, BadItemError, Item, validate_item
from .cute_published import ANSWER_CUE, CASE_INSENSITIVE_TASKS, base_task

SCHEMAS = ("pacute", "hierarchical", "stress", "cute", "langgame", "addition", "filmorph")
ON_BAD_ITEM = ("error", "skip")
DUPLICATE_OPTIONS = ("drop", "skip")
MCQ_STYLES = ("text", "lettered")
LANGUAGES = ("study", "en", "tl")
LETTERS = "ABCDEFGHIJ"
CUTE_WORD_TASKS = CASE_INSENSITIVE_TASKS | {"sem"}
_STUDY_LANGUAGE = {"pacute": "en", "hierarchical": "tl", "stress": "en"}
# LangGame's six question types, from the question sentence (the option list removed first)
_LANGGAME_TEMPLATES = (
    ("most_letter", re.compile(r"\bhas the most letter '(.+?)'s\?")),
    ("contains", re.compile(r"\bcontains '(.+?)'\?")),
    ("starts_with", re.compile(r"\bstarts with '(.+?)'\?")),
    ("ends_with", re.compile(r"\bends with '(.+?)'\?")),
    ("longest", re.compile(r"\bis the longest\?")),
    ("shortest", re.compile(r"\bis the shortest\?")),
)
_OPTION_LIST = re.compile(r"\[[^\]]*\]")
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
_ADDITION = re.compile(r"\s*\d+\s*\+\s*\d+\s*=\s*")


@dataclass(frozen=True)
class Options:
    """How a file is converted (see the module docstring)."""

    schema: str = "auto"
    fmt: str | None = None
    on_bad_item: str = "error"
    duplicate_options: str = "drop"
    mcq_style: str = "text"
    language: str = "study"
    cute_answer_cue: bool = True
    cute_task: str | None = None

    def check(self) -> None:
        for key, value, allowed in (
            ("schema", self.schema, (*SCHEMAS, "auto")),
            ("format", self.fmt, (*FORMATS, None)),
            ("on_bad_item", self.on_bad_item, ON_BAD_ITEM),
            ("duplicate_options", self.duplicate_options, DUPLICATE_OPTIONS),
            ("mcq_style", self.mcq_style, MCQ_STYLES),
            ("language", self.language, LANGUAGES),
        ):
            if value not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(map(str, allowed))}; got {value!r}")
        if self.cute_task is not None:
            base_task(self.cute_task)


class Bad(ValueError):
    """A record that cannot become an item: ``reason`` (a short key counted in the stats) and
    the message."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Conversion:
    """The items of one file and the conversion statistics."""

    items: list[Item]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Ctx:
    name: str
    opts: Options
    schema: str
    stem: str  # the source's file name without extension: default ids, CUTE task
    line: int = 0
    header: list[str] | None = None

    def default_id(self) -> str:
        return f"{self.stem}-{self.line:05d}"

    def language(self) -> str:
        return _STUDY_LANGUAGE.get(self.schema, "en") if self.opts.language == "study" else self.opts.language


# ---------------------------------------------------------------------------------------- helpers


def _text(rec: dict, key: str) -> str:
    if key not in rec:
        raise Bad("missing_field", f"missing field {key!r}")
    v = rec[key]
    if not isinstance(v, str | int | float) or isinstance(v, bool):
        raise Bad("bad_field", f"field {key!r} must be a string")
    return str(v)


def _record_id(rec: dict, ctx: _Ctx) -> str:
    return _text(rec, "id") if rec.get("id") not in (None, "") else ctx.default_id()


def _split_delimiter(question: str) -> tuple[str, str]:
    """(prompt, delimiter): trailing whitespace becomes the delimiter; a prompt ending in ``:``,
    ``?`` or ``.`` gets ``" "``; anything else (``341+114=``, an opening quote) gets ``""``."""
    prompt = question.rstrip()
    trailing = question[len(prompt) :]
    if trailing:
        return prompt, trailing if trailing.strip(" ") == "" else " "
    return prompt, " " if prompt.endswith((":", "?", ".")) else ""


def _string_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(o, str | int | float) for o in value):
        raise Bad("bad_field", f"{key!r} must be a list of strings")
    return [str(o) for o in value]


@dataclass
class _Draft:
    item: Item
    options: list[str] | None = None
    gold: int | None = None


# ---------------------------------------------------------------------------------------- schemas


def _pacute(rec: dict, ctx: _Ctx) -> _Draft:
    prompts = rec.get("prompts")
    if "prompts" not in rec:
        raise Bad("missing_field", "missing field 'prompts'")
    if not isinstance(prompts, list) or not prompts or not isinstance(prompts[0], dict):
        raise Bad("bad_field", "'prompts' must be a non-empty list of objects")
    p = prompts[0]
    choices = [p.get(f"choice{i}") for i in range(1, 5)]
    mcq_opts = p.get("mcq_options")
    options: list[str] | None = None
    gold: int | None = None
    if all(c is not None for c in choices):
        options = [str(c) for c in choices]
        letter = _text(rec, "label").strip().upper()
        if letter not in ("A", "B", "C", "D"):
            raise Bad("bad_label", f"MCQ label must be a letter A-D, got {rec['label']!r}")
        gold = "ABCD".index(letter)
        if isinstance(mcq_opts, dict) and "correct" in mcq_opts and str(mcq_opts["correct"]) != options[gold]:
            raise Bad(
                "gold_mismatch",
                f"label {letter} is {options[gold]!r} but mcq_options.correct is {mcq_opts['correct']!r}",
            )
        answer = options[gold]
    elif isinstance(mcq_opts, dict) and "correct" in mcq_opts:
        options = [str(mcq_opts["correct"])] + [_text(mcq_opts, f"incorrect{i}") for i in (1, 2, 3)]
        gold, answer = 0, options[0]
    else:
        answer = _text(rec, "label")
    lang = ctx.language()
    item = Item(
        id=_record_id(rec, ctx),
        benchmark=ctx.name,
        group=_text(rec, "category"),
        task=_text(rec, "subcategory"),
        format="gen",
        prompt=_text(p, f"text_{lang}"),
        answer=answer,
        meta={
            "prompt_en": p.get("text_en"),
            "prompt_tl": p.get("text_tl"),
            "upstream_label": rec.get("label"),
        },
    )
    return _Draft(item, options, gold)


def _level(rec: dict) -> int:
    raw = _text(rec, "level").strip().lower().removeprefix("level_").removeprefix("l")
    try:
        return int(raw)
    except ValueError:
        raise Bad("bad_field", f"level must be an integer, got {rec['level']!r}") from None


def _hierarchical(rec: dict, ctx: _Ctx) -> _Draft:
    level = _level(rec)
    answer = _text(rec, "answer")
    options = rec.get("options")
    gold = None
    if options:
        options = _string_list(options, "options")
        if answer not in options:
            raise Bad("answer_not_in_options", f"answer {answer!r} is not among the options {options!r}")
        gold = options.index(answer)
    lang = ctx.language()
    prompt = rec.get(f"prompt_{lang}") or _text(rec, "prompt_en" if lang == "tl" else "prompt_tl")
    item = Item(
        id=_record_id(rec, ctx),
        benchmark=ctx.name,
        group=f"level_{level}",
        task=str(rec.get("subcategory") or _text(rec, "category")),
        level=level,
        format="gen",
        prompt=str(prompt),
        answer=answer,
        meta={
            "word": rec.get("word"),
            "category": rec.get("category"),
            "prompt_en": rec.get("prompt_en"),
            "prompt_tl": rec.get("prompt_tl"),
            "metadata": rec.get("metadata"),
        },
    )
    return _Draft(item, options or None, gold)


def _stress(rec: dict, ctx: _Ctx) -> _Draft:
    lang = ctx.language()
    answer = _text(rec, f"answer_{lang}") if f"answer_{lang}" in rec else _text(rec, "answer")
    raw_opts = rec.get(f"options_{lang}", rec.get("options"))
    options = gold = None
    if raw_opts:
        options = _string_list(raw_opts, "options")
        if answer not in options:
            raise Bad("answer_not_in_options", f"answer {answer!r} is not among the options {options!r}")
        gold = options.index(answer)
    keep = ("word", "context", "accented_form", "syllables", "stress_index", "stress_type")
    item = Item(
        id=_record_id(rec, ctx),
        benchmark=ctx.name,
        group=_text(rec, "category"),
        task=_text(rec, "subcategory"),
        format="gen",
        prompt=_text(rec, f"prompt_{lang}"),
        answer=answer,
        meta={k: rec[k] for k in keep if k in rec},
    )
    return _Draft(item, options, gold)


def _cute_task_name(rec: dict | None, ctx: _Ctx) -> str:
    if ctx.opts.cute_task:
        return ctx.opts.cute_task
    if rec is not None and rec.get("task_type"):
        return _text(rec, "task_type")
    name = _SHARD.sub("", ctx.stem)  # a hub Parquet shard: <split>-00000-of-00001
    try:
        base_task(name)
    except ValueError:
        raise Bad(
            "unknown_task",
            f"no task_type, and the file name {ctx.stem!r} is not a CUTE task (set cute_task)",
        ) from None
    return name


def _cute(rec: dict, ctx: _Ctx) -> _Draft:
    meta: dict[str, Any] = {}
    if ctx.header is None:
        question = (
            _text(rec, "prompt") if "prompt" in rec and "question" not in rec else _text(rec, "question")
        )
        answer = _text(rec, "answer")
    task = _cute_task_name(rec, ctx)
    try:
        base = base_task(task).name
    except ValueError as e:
        raise Bad("unknown_task", str(e)) from None
    if ctx.header is not None:  # a TSV row: CUTE's prompt construction
        inputs = [_text(rec, c) for c in ctx.header if c != "label"]
        question = base_task(task).prompt(inputs)
        answer = _text(rec, "label")
        meta["inputs"] = inputs
    cue = ctx.opts.cute_answer_cue and not question.rstrip().endswith(("Answer:", 'Answer: "'))
    if cue:
        prompt, delim, stop = question + ANSWER_CUE, "", ['"', "\n"]
    else:
        prompt, delim = _split_delimiter(question)
        stop = ["\n"]
    meta.update(answer_cue=cue, cute_task=base)
    item = Item(
        id=_record_id(rec, ctx),
        benchmark=ctx.name,
        group="word" if base in CUTE_WORD_TASKS else "character",
        task=task,
        format="gen",
        prompt=prompt,
        answer=answer,
        delimiter=delim,
        stop=stop,
        meta=meta,
    )
    return _Draft(item)


def _options_first(rec: dict, ctx: _Ctx, group: str, task: str, meta: dict[str, Any]) -> _Draft:
    raw_answer = _text(rec, "answer")
    prompt, delim = _split_delimiter(_text(rec, "question"))
    if raw_answer[:1] == " " and delim == "":
        delim = " "
    answer = raw_answer.strip()
    options = rec.get("options")
    if options:
        options = [o.strip() for o in _string_list(options, "options")]
        if options[0] != answer:
            raise Bad("gold_mismatch", f"options[0] is {options[0]!r}, not the answer {answer!r}")
    item = Item(
        id=_record_id(rec, ctx),
        benchmark=ctx.name,
        group=group,
        task=task,
        format="gen",
        prompt=prompt,
        answer=answer,
        delimiter=delim,
        meta=meta,
    )
    return _Draft(item, options or None, 0 if options else None)


def langgame_task(question: str) -> tuple[str, str | None]:
    """(question type, its quoted target or None) of a LangGame question, from the question
    sentence with the option list taken out; Bad if no template or more than one matches."""
    sentence = _OPTION_LIST.sub("[]", question)
    hits = [(t, m) for t, rx in _LANGGAME_TEMPLATES if (m := rx.search(sentence))]
    if len(hits) != 1:
        raise Bad("unknown_template", f"question matches {len(hits)} LangGame templates: {question[:80]!r}")
    t, m = hits[0]
    return t, (m.group(1) if m.groups() else None)


def _langgame(rec: dict, ctx: _Ctx) -> _Draft:
    task, target = langgame_task(_text(rec, "question"))
    return _options_first(rec, ctx, "langgame", task, {"target": target})


def _addition(rec: dict, ctx: _Ctx) -> _Draft:
    if not _ADDITION.fullmatch(_text(rec, "question")):
        raise Bad("bad_field", f"not an addition question: {rec['question']!r}")
    return _options_first(rec, ctx, "addition", "multi_digit_addition", {})


def _filmorph(rec: dict, ctx: _Ctx) -> _Draft:
    item = Item.from_json(rec)
    item.benchmark = ctx.name
    if item.format == "mcq":
        return _Draft(item, list(item.options or []), item.gold)
    return _Draft(item)


_CONVERTERS: dict[str, Callable[[dict, _Ctx], _Draft]] = {
    "pacute": _pacute,
    "hierarchical": _hierarchical,
    "stress": _stress,
    "cute": _cute,
    "langgame": _langgame,
    "addition": _addition,
    "filmorph": _filmorph,
}


def detect_schema(rec: dict, *, tsv: bool = False) -> str:
    """The schema of a record (``tsv``: a CUTE TSV row); ValueError if none fits."""
    keys = set(rec)
    if tsv:
        if "label" in keys and "input1" in keys:
            return "cute"
    elif "prompts" in keys:
        return "pacute"
    elif {"benchmark", "format", "prompt"} <= keys:
        return "filmorph"
    elif "level" in keys and keys & {"prompt_en", "prompt_tl"}:
        return "hierarchical"
    elif "context" in keys and keys & {"prompt_en", "prompt_tl"}:
        return "stress"
    elif "task_type" in keys or ("prompt" in keys and "answer" in keys):
        return "cute"
    elif {"question", "answer"} <= keys:
        return "addition" if _ADDITION.fullmatch(str(rec["question"])) else "langgame"
    raise ValueError(f"no schema fits a record with fields {sorted(keys)}")


# ------------------------------------------------------------------------------------ post-processing


def _dedupe(options: list[str], gold: int) -> tuple[list[str], int, int]:
    """Options with each text once (first copy kept), the gold text's new index, copies dropped."""
    out = list(dict.fromkeys(options))
    return out, out.index(options[gold]), len(options) - len(out)


def lettered(item: Item) -> Item:
    """The MCQ ``item`` with its choices listed in the prompt (``A. …`` lines, then ``Answer:``)
    and the letters as options; the texts stay in ``meta.choices``."""
    opts = list(item.options or [])
    base = item.prompt.rstrip()
    if base.endswith("Answer:"):
        base = base[: -len("Answer:")].rstrip()
    letters = list(LETTERS[: len(opts)])
    prompt = base + "\n" + "\n".join(f"{L}. {o}" for L, o in zip(letters, opts, strict=True)) + "\nAnswer:"
    meta = dict(item.meta, choices=opts, mcq_style="lettered")
    return replace(
        item, prompt=prompt, options=letters, answer=letters[item.gold or 0], delimiter=" ", meta=meta
    )


def _finish(d: _Draft, ctx: _Ctx, repaired: Counter) -> Item:
    item, opts = d.item, ctx.opts
    target = opts.fmt or ("mcq" if d.options else "gen")
    if target == "mcq":
        if not d.options or d.gold is None:
            raise Bad("no_options", "the record has no options, so it cannot be an MCQ item")
        options, gold = d.options, d.gold
        if len(set(options)) != len(options):
            if opts.duplicate_options == "skip":
                raise Bad("duplicate_options", f"MCQ options must be distinct: {options!r}")
            options, gold, dropped = _dedupe(options, gold)
            if len(options) < 2:
                raise Bad("too_few_options", f"fewer than 2 distinct options: {d.options!r}")
            item.meta = dict(item.meta, options_published=list(d.options), duplicates_dropped=dropped)
            repaired["duplicate_options_dropped"] += 1
        item.format, item.options, item.gold, item.answer = "mcq", options, gold, options[gold]
        if opts.mcq_style == "lettered":
            item = lettered(item)
    else:
        item.format, item.options, item.gold = "gen", None, None
    if ctx.schema != "filmorph":
        item.meta = dict(item.meta, scoring=ctx.schema)
    return item


# ---------------------------------------------------------------------------------------- records


def _records(path: Path, display: str) -> Iterator[tuple[int, Any, list[str] | None]]:
    """(line, record or a Bad, TSV header or None) per data record of ``path``."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), 1):
            yield i, row, None
        return
    with path.open("rb") as fh:
        raw = fh.read()
    try:
        text = decode_utf8(raw, display)  # a byte-order mark is not data
    except ValueError as e:
        raise BadItemError(str(e)) from None
    lines = text.split("\n")
    if suffix in (".tsv", ".tab"):
        header = None
        for lineno, line in enumerate(lines, 1):
            line = line.rstrip("\r")
            if not line.strip():
                continue
            cells = line.split("\t")
            if header is None:
                header = cells
                continue
            if len(cells) != len(header):
                yield lineno, Bad("bad_row", f"{len(cells)} columns, the header has {len(header)}"), header
            else:
                yield lineno, dict(zip(header, cells, strict=True)), header
        return
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            yield lineno, Bad("invalid_json", f"invalid JSON ({e.msg})"), None
            continue
        yield lineno, rec if isinstance(rec, dict) else Bad("not_an_object", "not a JSON object"), None


def convert_file(
    path: str | Path,
    name: str,
    opts: Options = Options(),
    *,
    display: str | None = None,
    source_name: str | None = None,
) -> Conversion:
    """Convert one local file (``display`` names it in errors, ``source_name`` gives the file name
    for default ids and CUTE tasks; both default to ``path``). Raises BadItemError on the first
    bad item under ``on_bad_item: error``."""
    opts.check()
    if not name:
        raise ValueError("name must be non-empty")
    path = Path(path)
    display = display or str(path)
    stem = Path(source_name or path.name).name.split(".")[0]
    schema = opts.schema
    detected = False
    ctx = _Ctx(name=name, opts=opts, schema=schema, stem=stem)
    items: list[Item] = []
    seen: set[str] = set()
    skipped: Counter = Counter()
    skipped_lines: list[dict[str, Any]] = []
    repaired: Counter = Counter()
    items_in = 0
    for lineno, rec, header in _records(path, display):
        items_in += 1
        ctx.line, ctx.header = lineno, header
        try:
            if isinstance(rec, Bad):
                raise rec
            if schema == "auto":
                try:
                    schema = detect_schema(rec, tsv=header is not None)
                except ValueError as e:
                    raise BadItemError(f"{display}:{lineno}: cannot detect the schema: {e}") from None
                detected = True
                ctx.schema = schema
                print(f"{display}: schema detected: {schema}", file=sys.stderr)
            try:
                item = _finish(_CONVERTERS[schema](rec, ctx), ctx, repaired)
            except KeyError as e:
                raise Bad("missing_field", f"missing field {e.args[0]!r}") from None
            except Bad:
                raise
            except (ValueError, TypeError, AttributeError, IndexError) as e:
                raise Bad("invalid_item", str(e)) from None
            try:
                validate_item(item)
            except ValueError as e:
                raise Bad("invalid_item", str(e)) from None
            if item.id in seen:
                raise Bad("duplicate_id", f"duplicate id {item.id!r}")
        except Bad as e:
            if opts.on_bad_item == "error":
                raise BadItemError(f"{display}:{lineno}: {e}") from None
            skipped[e.reason] += 1
            skipped_lines.append({"line": lineno, "reason": e.reason, "message": str(e)})
            continue
        seen.add(item.id)
        items.append(item)
    if schema == "auto":
        raise BadItemError(f"{display}: no records, so no schema to detect")
    stats = {
        "schema": schema,
        "schema_detected": detected,
        "items_in": items_in,
        "items_out": len(items),
        "skipped": dict(sorted(skipped.items())),
        "skipped_lines": skipped_lines,
        "repaired": dict(sorted(repaired.items())),
        "on_bad_item": opts.on_bad_item,
        "duplicate_options": opts.duplicate_options,
        "mcq_style": opts.mcq_style,
        "language": opts.language,
    }
    assert items_in == len(items) + sum(skipped.values())
    return Conversion(items, stats)


def convert_source(source: str, name: str, opts: Options = Options()) -> Conversion:
    """Convert a local file, hub dataset file or URL (downloaded to a temporary directory);
    the stats add ``source``, ``source_sha256`` and, for a fetched file, ``fetched``."""
    from . import sources  # not at import time: ``python -m filmorph.benchmarks.sources`` runs it

    with sources.temp_dir() as tmp:
        path, fetched = sources.local_copy(source, tmp)
        conv = convert_file(path, name, opts, display=source, source_name=sources.basename(source))
        conv.stats.update(source=source, source_sha256=sources.sha256_file(path), fetched=fetched)
    return conv


def convert(
    path_or_hub_id: str, schema: str, name: str, fmt: str | None = None, **options: Any
) -> list[Item]:
    """The items of a published file (see the module docstring); ``options`` are the fields of
    :class:`Options` (``on_bad_item``, ``duplicate_options``, ...)."""
    return convert_source(path_or_hub_id, name, Options(schema=schema, fmt=fmt, **options)).items
