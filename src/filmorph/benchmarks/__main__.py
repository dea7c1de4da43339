"""Command line of the benchmark generators.

``make`` generates one benchmark in one format; ``convert`` reads a published file in an upstream
schema; ``check`` lists items of a file whose analysis no dictionary backs or whose MCQ distractor
is also a right answer (see filmorph.benchmarks.check). ``make`` and ``convert`` write OUT
(JSONL, schema of filmorph.items) atomically and, beside it, OUT with
``.jsonl`` replaced by ``.stats.json`` (counts per task, group, level and gold position, the
number of distinct source words, the seed and the arguments).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..io import write_json_atomic
from ..items import FORMATS, Item, write_items
from . import BENCHMARKS, SCHEMAS, convert, generate

_NOT_WORDS = ("affix:", "embedded_corpus:", "semantic_groups:")


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


def _write(items: list[Item], out: str, args: dict[str, Any]) -> None:
    write_items(out, items)
    write_json_atomic(stats_path(out), stats(items, **args))
    print(f"{out}: {len(items)} items", file=sys.stderr)


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
    cv = sub.add_parser("convert", help="convert a published file in an upstream schema to our schema")
    cv.add_argument(
        "--input", required=True, help="a local JSONL file, or a hub dataset file 'owner/name:path'"
    )
    cv.add_argument("--schema", required=True, choices=SCHEMAS)
    cv.add_argument("--name", required=True, help="benchmark name given to the converted items")
    cv.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="force a format (gen turns MCQ records into GEN); default: each record's own",
    )
    cv.add_argument(
        "--out", required=True, help="output .jsonl; the stats go to the same name with .stats.json"
    )
    _add_check_parser(sub)
    a = parser.parse_args(argv)
    if a.command == "check":
        return _run_check(a)
    if a.command == "make":
        items = generate(a.benchmark, a.format, a.items_per_task, a.seed)
        _write(
            items,
            a.out,
            {
                "command": "make",
                "benchmark": a.benchmark,
                "format": a.format,
                "items_per_task": a.items_per_task,
                "seed": a.seed,
            },
        )
    else:
        items = convert(a.input, a.schema, a.name, a.format)
        _write(
            items,
            a.out,
            {"command": "convert", "input": a.input, "schema": a.schema, "name": a.name, "format": a.format},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
