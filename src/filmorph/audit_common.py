"""What the audit's check modules share: the table row, the check names and small formatting
helpers (:mod:`filmorph.audit` runs the checks)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from filmorph.paths import MANIFEST

__all__ = ["CHECKS", "MANIFEST", "SELF_RULES", "Row", "listed", "progress_bar", "short_hash"]

CHECKS = ("records", "complete", "manifest", "hash", "lineage", "inputs", "shard",
          "retokenize", "config", "checkpoint", "evaluation")
SELF_RULES = frozenset({"audit"})  # their records are not audited
MAX_LISTED = 8


@dataclass(frozen=True)
class Row:
    """One line of the audit table."""

    check: str
    subject: str
    status: str  # "pass" | "fail"
    detail: str


def short_hash(h: Any) -> str:
    """The first 12 characters of a hash, for messages (``none`` when there is none)."""
    return f"{str(h)[:12]}…" if h else "none"


def listed(items: Sequence[str]) -> str:
    """The first :data:`MAX_LISTED` items, comma-separated, and how many more there are."""
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def progress_bar(total: int | None, desc: str, enabled: bool, unit: str = "it"):
    """A tqdm bar on stderr (disabled unless ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", disable=not enabled,
                file=sys.stderr, leave=False)
