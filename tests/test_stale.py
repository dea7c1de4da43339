"""Nothing stale is served (issue 18, cases 3, 9, 11): code fingerprints follow each stage's
imports, stages read only the files their rule lists, a changed setting or input file reruns
its jobs, and the audit names what is missing or changed.

Fast: fingerprints of a copy of the package, direct calls, and `snakemake -n` dry runs.
"""

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO
from test_failfast import tiny_tok  # noqa: F401  (fixture)

from filmorph import corpus as C
from filmorph import fingerprint as FP

SRC = REPO / "src"


# ----------------------------------------------------------------------------- case 11
@pytest.fixture(scope="module")
def pkg_copy(tmp_path_factory):
    """A copy of the package's sources (no caches) to edit."""
    root = tmp_path_factory.mktemp("src")
    shutil.copytree(SRC / "filmorph", root / "filmorph",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def _touch(path: Path):
    data = path.read_bytes()
    path.write_bytes(data + b"\n# edited\n")
    return data


STAGES = {  # entries as rules/common.smk names them (the hf engine)
    "tokenize": ["filmorph.tokenize"],
    "summary": ["filmorph.summary"],
    "train": ["filmorph.train.__main__", "filmorph.train.common", "filmorph.train.hf"],
    "evaluate": ["filmorph.evaluate"],
}


def test_closure_holds_the_modules_the_issue_found_missing():
    """The drift seen in issue 18: each of these is imported by the stage (at module level or
    inside a function) and was missing from the hand list."""
    names = {stage: {f.relative_to(SRC).as_posix() for f in FP.closure(e)}
             for stage, e in STAGES.items()}
    assert "filmorph/corpus.py" in names["tokenize"]
    assert {"filmorph/rng.py", "filmorph/tokenizers.py"} <= names["train"]
    assert {"filmorph/corpus.py", "filmorph/arms/__init__.py", "filmorph/rng.py",
            "filmorph/io.py", "filmorph/data/morph_gold.tsv"} <= names["summary"]
    assert "filmorph/tokenizers.py" in names["evaluate"]
    assert "filmorph/evaluate.py" not in names["tokenize"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_imported_module_changes_the_fingerprint_and_no_other_does(pkg_copy, stage):
    entries = STAGES[stage]
    inside = FP.closure(entries, pkg_copy)
    all_files = sorted(f for f in (pkg_copy / "filmorph").rglob("*")
                       if f.is_file() and (f.suffix == ".py" or f.parent.name == "data")
                       and f.suffix != ".md")
    outside = [f for f in all_files if f not in inside]
    assert inside and outside
    before = FP.fingerprint(entries, pkg_copy)
    unchanged = []
    for f in inside:
        old = _touch(f)
        if FP.fingerprint(entries, pkg_copy) == before:
            unchanged.append(f.name)
        f.write_bytes(old)
    assert unchanged == []
    olds = {f: _touch(f) for f in outside}  # every other file at once
    try:
        assert FP.fingerprint(entries, pkg_copy) == before
    finally:
        for f, old in olds.items():
            f.write_bytes(old)


def test_relative_and_submodule_imports_are_followed(tmp_path):
    """`from . import x`, `from .. import y`, `from filmorph.p import sub` (sub a module) and
    `import filmorph.a.b` (its package __init__ too) are all in the closure; a name imported
    from a module is not taken for a module."""
    pkg = tmp_path / "filmorph"
    files = {
        "__init__.py": "",
        "entry.py": "from filmorph.p import sub, helper\nimport filmorph.a.b\n"
                    "def f():\n    from .q import r\n",
        "p/__init__.py": "def helper(): pass\n",
        "p/sub.py": "from . import sibling\nfrom .. import top\n",
        "p/sibling.py": "",
        "top.py": "X = 'data/table.tsv'\n",
        "a/__init__.py": "", "a/b.py": "",
        "q/__init__.py": "", "q/r.py": "",
        "lonely.py": "", "data/table.tsv": "x\n", "data/other.tsv": "y\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    got = {f.relative_to(pkg).as_posix() for f in FP.closure(["filmorph.entry"], tmp_path)}
    assert got == set(files) - {"lonely.py", "data/other.tsv"}
    with pytest.raises(ValueError, match="filmorph.nosuch"):
        FP.closure(["filmorph.nosuch"], tmp_path)


def test_workflow_code_params_are_the_closure_fingerprints():
    """rules/common.smk holds no hand list: its CODE comes from filmorph.fingerprint."""
    text = (REPO / "rules/common.smk").read_text()
    assert "code_fingerprint(" not in text
    assert "CODE = {stage: fingerprint(entries)" in text


def test_summarize_arm_counts_only_the_chunks_it_is_given(tiny_tok, tmp_path):  # noqa: F811
    """A chunk file left in the shard dir by an earlier run with more chunks is no input and
    is not counted."""
    from filmorph.summary import summarize_arm
    from filmorph.tokenize import tokenize_chunk

    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps({"text": f"Kumain na ako ng kanin {i}."}) + "\n"
                           for i in range(12)), encoding="utf-8")
    C.split_corpus(src, tmp_path / "corpus3", 3, id_prefix="t")
    shards = tmp_path / "shards"
    for i in (1, 2, 3):
        tokenize_chunk(tmp_path / "corpus3" / f"chunk_000{i}.jsonl", tiny_tok, "vanilla", {}, 1,
                       shards / f"chunk_000{i}", workers=1)
    args = ("tiny", "vanilla", shards, tmp_path / "corpus3", tiny_tok, 5, 1)
    two = summarize_arm(*args, chunks=["chunk_0001", "chunk_0002"])
    three = summarize_arm(*args, chunks=["chunk_0001", "chunk_0002", "chunk_0003"])
    assert two["chunks"] == 2 and three["chunks"] == 3
    assert two["documents_in"] < three["documents_in"] == 12
    with pytest.raises(FileNotFoundError, match="chunk_0009.stats.json"):
        summarize_arm(*args, chunks=["chunk_0001", "chunk_0009"])
