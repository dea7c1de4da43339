"""Code fingerprints of the workflow's stages, from each stage's import closure.

A stage is named by its entry modules (``filmorph.tokenize``, ``filmorph.train.hf`` ...). Its
closure is found by static analysis: every ``import`` / ``from ... import`` statement in the
module (at any depth: imports inside functions count), relative imports resolved, a
``from filmorph.x import y`` counting ``filmorph/x/y.py`` when ``y`` is a submodule, and the
``__init__.py`` of every package on the way (importing ``filmorph.a.b`` runs them). Package
data files (``filmorph/data/*``) that a module of the closure names in a string constant
(``"data/affixes.tsv"``, ``"embedded_corpus.jsonl"``) are part of it too.

The fingerprint is the sha256 of the closure's relative paths and bytes. rules/common.smk
passes it as a param of each stage's rules, so editing any module a stage runs reruns its
jobs (Snakemake's code trigger only sees a rule's own script). Imports by a computed name
(``importlib.import_module(f"filmorph.train.{engine}")``) are invisible to static analysis:
name such modules as entries.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PACKAGE = "filmorph"
SRC = Path(__file__).resolve().parents[1]  # the directory holding the filmorph package


def module_file(name: str, src: Path = SRC) -> Path | None:
    """The file of module `name` under `src` (a package's ``__init__.py``), or None."""
    base = src.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


@lru_cache(maxsize=1024)
def _tree(source: bytes) -> ast.AST:
    """A module's syntax tree, by its bytes (the workflow fingerprints every stage in turn)."""
    return ast.parse(source)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """Module names (in this package) a module's import statements may load."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return {m for m in out if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _data_files(tree: ast.AST, data: list[Path]) -> set[Path]:
    """Package data files a module names in a string constant."""
    consts = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
              and isinstance(n.value, str) and len(n.value) < 200}
    return {f for f in data if any(c == f.name or c.endswith("/" + f.name) for c in consts)}


def closure(entries: Iterable[str], src: Path = SRC) -> list[Path]:
    """The files (modules and named data files) the entry modules import, transitively,
    sorted. An entry that is no module of the package is an error (a renamed module must be
    renamed here too)."""
    entries = list(entries)
    missing = [e for e in entries if module_file(e, src) is None]
    if missing:
        raise ValueError(f"fingerprint: no module {', '.join(missing)} under {src}")
    data_dir = src / PACKAGE / "data"
    data = sorted(f for f in data_dir.iterdir() if f.is_file() and f.suffix != ".md") \
        if data_dir.is_dir() else []
    seen: set[str] = set()
    files: set[Path] = set()
    todo = [m for e in entries for m in (*_parents(e), e)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        f = module_file(name, src)
        if f is None:  # `from filmorph.x import func`: func is no module
            continue
        files.add(f)
        try:
            tree = _tree(f.read_bytes())
        except SyntaxError as exc:
            raise SyntaxError(f"fingerprint: {f}: {exc}") from None
        files |= _data_files(tree, data)
        for m in _imported(tree, name, f.name == "__init__.py"):
            todo.extend(p for p in (*_parents(m), m) if p not in seen)
    return sorted(files)


def fingerprint(entries: Iterable[str], src: Path = SRC) -> str:
    """sha256 (16 hex digits) of the entry modules' closure: relative paths and bytes."""
    h = hashlib.sha256()
    for f in closure(entries, src):
        h.update(f.relative_to(src).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


# the modules of each training engine (the engine is imported, or launched, by a computed name)
ENGINE_ENTRIES = {
    "hf": ["filmorph.train.hf"],
    "automodel": [
        "filmorph.train.automodel",
        "filmorph.train.automodel.runner",
        "filmorph.train.automodel.recipe",
    ],
    "megatron": [
        "filmorph.train.megatron",
        "filmorph.train.megatron.__main__",
        "filmorph.train.megatron.convert",
    ],
}


def stage_entries(engines: Iterable[str]) -> dict[str, list[str]]:
    """The entry modules of each stage of the workflow (rules/common.smk's ``STAGE_FINGERPRINTS``). The
    training engines are imported by a computed name, so the configured ones are named here."""
    unknown = sorted(set(engines) - set(ENGINE_ENTRIES))
    if unknown:
        raise ValueError(f"unknown training engine(s) {unknown}; expected {sorted(ENGINE_ENTRIES)}")
    train = ["filmorph.train.__main__", "filmorph.train.common", "filmorph.train.launch"]
    for e in sorted(set(engines)):
        train += ENGINE_ENTRIES[e]
    return {
        "corpus": ["filmorph.corpus"],
        "tokenize": ["filmorph.tokenize"],
        "summary": ["filmorph.summary"],
        "models": ["filmorph.models"],
        "benchmarks": ["filmorph.benchmarks.__main__", "filmorph.benchmarks.sources"],
        "evaluate": ["filmorph.evaluate"],
        "report": ["filmorph.report"],
        "train": train,
        "provenance": ["filmorph.provenance"],
        "audit": ["filmorph.audit"],
    }


def stage_fingerprints(engines: Iterable[str], src: Path = SRC) -> dict[str, str]:
    """Fingerprint of every stage (:func:`stage_entries`)."""
    return {stage: fingerprint(e, src) for stage, e in stage_entries(engines).items()}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m filmorph.fingerprint",
                                 description="List the import closure of entry modules and "
                                             "print its fingerprint.")
    ap.add_argument("entries", nargs="+", help="module names, e.g. filmorph.tokenize")
    args = ap.parse_args(argv)
    for f in closure(args.entries):
        print(f.relative_to(SRC).as_posix())
    print(fingerprint(args.entries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
