"""Command line of the benchmark generators.

``make`` generates one benchmark in one format; ``convert`` reads a published file as distributed
(schemas and options: filmorph.benchmarks.convert); ``check`` lists items of a file whose analysis
no dictionary backs or whose MCQ distractor is also a right answer (see filmorph.benchmarks.check).
``make`` and ``convert`` write OUT (JSONL, schema of filmorph.items) atomically and, beside it, OUT
with ``.jsonl`` replaced by ``.stats.json`` (counts per task, group, level and gold position, the
number of distinct source words, the seed and the arguments; ``make`` adds skipped_tasks (task ->
why it was not generated: PACUTE's stress tasks without ``--stress-lexicon``) and the stress
lexicon's files (name, sha256, entries); ``convert`` adds items_in, items_out,
skipped (reason -> count), skipped_lines, repaired, schema and source_sha256, with
items_in == items_out + sum(skipped)).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..io import write_json_atomic
from ..items import FORMATS, BadItemError, Item, write_items
from . import BENCHMARKS, SCHEMAS, generate, skipped_tasks
from .convert import DUPLICATE_OPTIONS, LANGUAGES, MCQ_STYLES, ON_BAD_ITEM, Options, convert_source

_NOT_WORDS = ("affix:", "embedded_corpus:", "semantic_groups:")
_CV_ARGS = ("schema", "format", "on_bad_item", "duplicate_options", "mcq_style", "language", "cute_task")


def stats_path(out: str | Path) -> Path:
    """``x.jsonl`` -> ``x.stats.json`` (any other name gets ``.stats.json`` appended)."""
    s = str(out)
    return Path(s[: -len(".jsonl")] + ".stats.json" if s.endswith(".jsonl") else s + ".stats.json")


def stats(items: list[Item], **args: Any) -> dict[str, Any]:
    """Counts of ``items`` per task, group, level, format and gold position, and the number of
    distinct source words (the word of each source id, affix/corpus/semantic-group ids aside)."""
    sources = {s for it in items for s in it.source}
    words = {s.rsplit(":", 1)[-1] for s in sources if not s.startswith(_NOT_WORDS)}
    return {
        "items": len(items),
        "per_task": dict(Counter(it.task for it in items)),
        "per_group": dict(Counter(it.group for it in items)),
        "per_level": {
            str(k): v for k, v in Counter(it.level for it in items if it.level is not None).items()
        },
        "per_format": dict(Counter(it.format for it in items)),
        "gold_positions": {
            str(k): v for k, v in Counter(it.gold for it in items if it.format == "mcq").items()
        },
        "distinct_source_words": len(words),
        "distinct_sources": len(sources),
        "seed": args.get("seed"),
        "args": args,
    }


def _add_check_parser(sub) -> None:
    ck = sub.add_parser(
        "check",
        help="list items whose analysis no dictionary backs and MCQ items with a second right answer",
    )
    ck.add_argument("file", help="a benchmark .jsonl (schema of filmorph.items)")
    ck.add_argument("--json", default=None, help="also write the full report to this JSON file")
    ck.add_argument("--strict", action="store_true", help="exit 1 when anything is listed")


def _run_check(a: argparse.Namespace) -> int:
    from ..items import read_items
    from .check import check

    report = check(list(read_items(a.file)))
    for kind in ("undictionaried", "double_answers"):
        for x in report[kind]:
            print(f"{kind}\t{x['id']}\t{x['task']}\t{x['why']}")
    print(
        f"{a.file}: {report['items']} items, {report['with_analysis']} with an analysis, "
        f"{len(report['undictionaried'])} undictionaried, {len(report['double_answers'])} double answers",
        file=sys.stderr,
    )
    if a.json:
        write_json_atomic(a.json, report)
    return 1 if a.strict and (report["undictionaried"] or report["double_answers"]) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m filmorph.benchmarks",
        description=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="generate a benchmark file (JSONL, plus a .stats.json beside it)")
    mk.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    mk.add_argument("--format", required=True, choices=FORMATS, help="mcq (4 options) or gen (free answer)")
    mk.add_argument("--items-per-task", required=True, type=int, help="exactly this many items per task")
    mk.add_argument("--seed", required=True, type=int, help="the output is a pure function of the arguments")
    mk.add_argument(
        "--out", required=True, help="output .jsonl; the stats go to the same name with .stats.json"
    )
    mk.add_argument(
        "--stress-lexicon",
        nargs="+",
        default=[],
        metavar="FILE",
        help="pacute: stress-marked lexicon files (UP Diksiyonaryong Filipino JSONL: word, part_of_speech, "
        "etymology per line) for the stress and diacritic tasks; without them those tasks are skipped "
        "(listed under skipped_tasks in the stats)",
    )
    cv = sub.add_parser("convert", help="convert a published benchmark file to our schema")
    cv.add_argument(
        "--input",
        required=True,
        help="a local file (JSONL, CUTE TSV, Parquet), a hub dataset file 'owner/name:path', or an https URL",
    )
    cv.add_argument(
        "--schema",
        default="auto",
        choices=(*SCHEMAS, "auto"),
        help="upstream schema (default: auto, detected)",
    )
    cv.add_argument("--name", required=True, help="benchmark name given to the converted items")
    cv.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="force a format (gen turns MCQ records into GEN); default: each record's own",
    )
    cv.add_argument(
        "--on-bad-item",
        choices=ON_BAD_ITEM,
        default="error",
        help="error (default): stop at the first bad item, naming file:line and the reason; "
        "skip: leave it out and record its line and reason in the stats",
    )
    cv.add_argument(
        "--duplicate-options",
        choices=DUPLICATE_OPTIONS,
        default="drop",
        help="an MCQ item listing one option text twice: drop the copy (default; the gold text stays "
        "unambiguous) or treat the item as bad",
    )
    cv.add_argument(
        "--mcq-style",
        choices=MCQ_STYLES,
        default="text",
        help="text (default, the study's protocol: options not shown, each option's text scored) or "
        "lettered (choices listed in the prompt, the letters scored)",
    )
    cv.add_argument(
        "--language",
        choices=LANGUAGES,
        default="study",
        help="prompt language: study (default: what the study read: PACUTE en, hierarchical tl, stress en), "
        "en or tl",
    )
    cv.add_argument(
        "--no-cute-answer-cue",
        action="store_true",
        help="CUTE: keep the record's question as the prompt (the study's cute_gen) instead of ending it "
        "with CUTE's answer cue 'Answer: \"'",
    )
    cv.add_argument("--cute-task", default=None, help="CUTE: the task of a file whose name is not <task>.tsv")
    cv.add_argument(
        "--out",
        required=True,
        help="output .jsonl; the stats (items_in/out, skips by reason and line, source sha256) go beside it",
    )
    _add_check_parser(sub)
    a = parser.parse_args(argv)
    if a.command == "check":
        return _run_check(a)
    if a.command == "make":
        lex = a.stress_lexicon if a.benchmark == "pacute" else []
        try:
            items = generate(a.benchmark, a.format, a.items_per_task, a.seed, lex)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        args = {
            "command": "make",
            "benchmark": a.benchmark,
            "format": a.format,
            "items_per_task": a.items_per_task,
            "seed": a.seed,
        }
        write_items(a.out, items)
        extra: dict[str, Any] = {"skipped_tasks": skipped_tasks(a.benchmark, lex)}
        if lex:
            from .stress import load

            extra["stress_lexicon"] = load(tuple(lex)).files
        write_json_atomic(stats_path(a.out), {**stats(items, **args), **extra})
        print(f"{a.out}: {len(items)} items", file=sys.stderr)
    else:
        opts = Options(
            schema=a.schema,
            fmt=a.format,
            on_bad_item=a.on_bad_item,
            duplicate_options=a.duplicate_options,
            mcq_style=a.mcq_style,
            language=a.language,
            cute_answer_cue=not a.no_cute_answer_cue,
            cute_task=a.cute_task,
        )
        try:
            conv = convert_source(a.input, a.name, opts)
        except (BadItemError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        args = {
            "command": "convert",
            "input": a.input,
            "name": a.name,
            **{k: getattr(a, k) for k in _CV_ARGS},
        }
        write_items(a.out, conv.items)
        write_json_atomic(stats_path(a.out), {**stats(conv.items, **args), **conv.stats})
        s = conv.stats
        print(
            f"{a.out}: schema {s['schema']}, {s['items_in']} in, {s['items_out']} out, "
            f"skipped {s['skipped']}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
