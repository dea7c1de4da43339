"""String metrics of GEN answers and the summaries of a file's predictions (overall, per
group, task and level)."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from filmorph import scoring
from filmorph.scoring import levenshtein

ACC_NORM_DEFINITION = "argmax of summed log-prob / UTF-8 byte length of delimiter+option"


def normalize_answer(text: str) -> str:
    """NFC, casefold, whitespace runs collapsed to one space, trailing periods and surrounding
    whitespace stripped: ``"  S  i la. "`` -> ``"s i la"``."""
    s = unicodedata.normalize("NFC", text)
    s = unicodedata.normalize("NFC", s.casefold())  # casefold can decompose (e.g. "İ")
    s = " ".join(s.split())
    return s.rstrip(".").rstrip()


def edit_similarity(a: str, b: str) -> float:
    """``1 - levenshtein(a, b) / max(len(a), len(b))`` (1.0 for two empty strings)."""
    n = max(len(a), len(b))
    return 1.0 if n == 0 else 1.0 - levenshtein(a, b) / n


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _stderr(p: float, n: int) -> float | None:
    return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None


def _metrics(preds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(preds)}
    mcq = [p for p in preds if p["format"] == "mcq"]
    gen = [p for p in preds if p["format"] == "gen"]
    if mcq:
        acc = _mean([float(p["correct"]) for p in mcq])
        acc_norm = _mean([float(p["correct_norm"]) for p in mcq])
        out["mcq"] = {
            "n": len(mcq),
            "acc": acc,
            "acc_stderr": _stderr(acc, len(mcq)),
            "acc_norm": acc_norm,
            "acc_norm_stderr": _stderr(acc_norm, len(mcq)),
            "chance": _mean([1.0 / len(p["options"]) for p in mcq]),
            "ties": sum(bool(p["tie"]) for p in mcq),
            "ties_norm": sum(bool(p["tie_norm"]) for p in mcq),
        }
    if gen:
        em = _mean([float(p["exact_match"]) for p in gen])
        out["gen"] = {
            "n": len(gen),
            "exact_match": em,
            "exact_match_stderr": _stderr(em, len(gen)),
            "exact_match_strict": _mean([float(p["exact_match_strict"]) for p in gen]),
            "edit_sim": _mean([float(p["edit_sim"]) for p in gen]),
            **scoring.gen_summary(gen),
            "stopped": sum(p["stop_reason"] == "stop" for p in gen),
            "eos": sum(p["stop_reason"] == "eos" for p in gen),
            "truncated": sum(p["stop_reason"] == "length" for p in gen),
        }
    return out


def summarize(preds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Metrics of :func:`score`'s predictions: ``overall``, ``by_group`` (key
    ``benchmark/group``), ``by_task`` (``benchmark/group/task``) and ``by_level``
    (``benchmark/level_N``, items with a level only).  Each entry has ``n`` and, for the formats
    present, ``mcq`` {``n``, ``acc``, ``acc_norm`` (+ ``_stderr``), ``chance``, ``ties``,
    ``ties_norm``} and ``gen`` {``n``, ``exact_match`` (+ ``_stderr``), ``exact_match_strict``,
    ``edit_sim``, ``stopped``, ``eos``, ``truncated``}; grouped entries also carry their keys."""
    rows = [dict(p) for p in preds]
    out: dict[str, Any] = {"n": len(rows), "acc_norm_definition": ACC_NORM_DEFINITION}
    out["overall"] = _metrics(rows)
    for name, fields in (
        ("by_group", ("benchmark", "group")),
        ("by_task", ("benchmark", "group", "task")),
        ("by_level", ("benchmark", "level")),
    ):
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for p in rows:
            if name == "by_level" and p["level"] is None:
                continue
            groups.setdefault(tuple(p[f] for f in fields), []).append(p)
        table = {}
        for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
            label = "/".join(
                f"level_{x}" if f == "level" else str(x) for f, x in zip(fields, key, strict=True)
            )
            table[label] = {**dict(zip(fields, key, strict=True)), **_metrics(groups[key])}
        out[name] = table
    return out
