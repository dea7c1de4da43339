"""The command line: ``python -m filmorph.evaluate`` (see the package's docstring)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from filmorph.evaluate.batching import CPU_BATCH_SIZE, CUDA_START_BATCH_SIZE
from filmorph.evaluate.files import BenchmarkFileError, EvalFile, evaluate_files
from filmorph.items import BadItemError


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--label wants KEY=VALUE, got {text!r}")
    return key, value


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        bs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--batch-size wants a positive integer or 'auto', got {text!r}"
        ) from None
    if bs < 1:
        raise argparse.ArgumentTypeError("--batch-size must be >= 1")
    return bs


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"wants a positive integer, got {text!r}")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m filmorph.evaluate",
        description=(
            "Score a causal LM on benchmark files (filmorph.items schema), loading it once. MCQ: "
            "log-likelihood of "
            "delimiter+option after the prompt (lm-eval convention); acc = argmax of summed "
            "log-prob, acc_norm = argmax of log-prob per UTF-8 byte; ties go to the lowest option "
            "index and are counted. GEN: greedy decoding until a stop string; exact_match on "
            "normalized text, edit_sim. Writes per file the per-item predictions (JSONL) and the "
            "scores (JSON) atomically, as soon as the file is scored; every file is read before "
            "the model loads, so a missing or bad one fails at once, named. A rerun scores every "
            "file again."
        ),
    )
    p.add_argument("--model", required=True, help="HF checkpoint directory or Hub model id")
    p.add_argument(
        "--benchmark",
        required=True,
        type=Path,
        action="append",
        help="benchmark JSONL file (repeatable: the Nth --benchmark writes the Nth --scores and "
        "--predictions; the model is loaded once for all of them)",
    )
    p.add_argument(
        "--scores",
        required=True,
        type=Path,
        action="append",
        help="scores JSON to write (one per --benchmark)",
    )
    p.add_argument(
        "--predictions",
        required=True,
        type=Path,
        action="append",
        help="per-item predictions JSONL to write (one per --benchmark)",
    )
    p.add_argument(
        "--benchmark-label",
        metavar="KEY",
        default=None,
        help="also record each file's name (its stem) under labels[KEY], e.g. --benchmark-label benchmark",
    )
    p.add_argument(
        "--label",
        action="append",
        type=_label,
        default=[],
        metavar="KEY=VALUE",
        help="recorded in the scores JSON under 'labels' (repeatable), e.g. --label family=gemma",
    )
    p.add_argument(
        "--batch-size",
        type=_batch_size,
        default="auto",
        help=(
            "sequences per forward pass, or 'auto' (default): "
            f"{CPU_BATCH_SIZE} on CPU; on CUDA start at {CUDA_START_BATCH_SIZE['mcq']} (MCQ) / "
            f"{CUDA_START_BATCH_SIZE['gen']} (GEN) and halve on out-of-memory"
        ),
    )
    p.add_argument(
        "--max-new-tokens", type=_positive, default=32, help="GEN: most tokens generated (default 32)"
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="model dtype; auto (default): bfloat16 on CUDA, float32 otherwise",
    )
    p.add_argument(
        "--device", default="auto", help="auto (default: cuda if available, else cpu), cpu, cuda, cuda:N"
    )
    p.add_argument("--max-items", type=_positive, default=None, help="score only the first N items")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    n = len(args.benchmark)
    if not len(args.scores) == len(args.predictions) == n:
        parser.error(
            f"give one --scores and one --predictions per --benchmark: got {n} --benchmark, "
            f"{len(args.scores)} --scores, {len(args.predictions)} --predictions"
        )
    labels = dict(args.label)
    if args.benchmark_label is not None and args.benchmark_label in labels:
        parser.error(f"--label {args.benchmark_label}=... and --benchmark-label {args.benchmark_label} clash")
    files = [
        EvalFile(b, s, p, {args.benchmark_label: b.stem} if args.benchmark_label is not None else {})
        for b, s, p in zip(args.benchmark, args.scores, args.predictions, strict=True)
    ]
    try:
        evaluate_files(
            args.model,
            files,
            labels=labels,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            dtype=args.dtype,
            device=args.device,
            max_items=args.max_items,
            progress=not args.no_progress,
        )
    except (BadItemError, BenchmarkFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
