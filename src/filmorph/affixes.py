"""The Filipino affix inventory (``filmorph/data/affixes.tsv``, documented in data/README.md)."""

from __future__ import annotations

import csv
from importlib.resources import files
from pathlib import Path

KINDS = ("prefix", "infix", "suffix")


def default_affix_path() -> Path:
    """The inventory shipped with the package."""
    return Path(str(files("filmorph").joinpath("data/affixes.tsv")))


def load_affixes(path: str | Path | None = None) -> dict[str, list[str]]:
    """{"prefix": [...], "infix": [...], "suffix": [...]} from a TSV with `affix` and `type`
    columns; raises naming the file and line on a malformed row."""
    path = Path(path) if path else default_affix_path()
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if not reader.fieldnames or not {"affix", "type"} <= set(reader.fieldnames):
            raise ValueError(f"{path}:1: header must have 'affix' and 'type' columns")
        for lineno, row in enumerate(reader, start=2):
            affix, kind = (row.get("affix") or "").strip().lower(), (row.get("type") or "").strip()
            if not affix or kind not in KINDS or "-" in affix:
                raise ValueError(f"{path}:{lineno}: bad affix row {row!r}")
            if affix not in out[kind]:
                out[kind].append(affix)
    return out
