"""Audit a finished run: can its results be trusted?

    python -m filmorph.audit RUN_DIR [--config CONFIG] [--expected FILE] \
        [--sample-size N --seed S] [--json OUT] [--tsv OUT] [--no-progress] [--all-rows]

RUN_DIR is the Snakemake working directory (it holds ``resources/`` and ``results/``). Every
check adds rows ``(check, subject, status, detail)``, status ``pass`` or ``fail``:

``records``     every file under ``results/provenance/`` is a readable provenance record.
``manifest``    ``results/manifest.json`` holds exactly the records (apart from the ``manifest``
                job's own, written after it).
``hash``        every output a record names is re-hashed (sha256; every file of a directory);
                a changed, missing or new file is named.
``complete``    (``--expected`` only) every output the config implies (the file lists them: the
                rule passes the targets of ``all`` before the manifest) exists and is (or lies
                in) an output some provenance record names; each one missing is named.
``lineage``     every input of a job that another job produced has the sha256 its producer
                recorded (the job consumed what is on record).
``inputs``      every input any job recorded still exists with the sha256 the job read, else
                that job is named stale (e.g. ``report_results`` after an evaluation's scores
                were deleted: the rows of results.tsv from them are no longer backed).
``shard``       each ``results/shards/{family}/{arm}/chunk_NNNN``: the ``.idx`` header, its size
                for the sequence count, sequence pointers and document indices, the ``.bin`` size
                the index implies, EOD ids at every document end, token ids within the
                vocabulary, ``doc_ids.txt`` lines and ``stats.json`` counts.
``retokenize``  a seeded sample of corpus documents is re-tokenized for every family x arm
                with :func:`filmorph.tokenize.tokenize_documents` (the stage's own code, the
                arm's parameters and per-document seeds) and compared id for id with the shard
                entries of those document ids.
``config``      (``--config`` only) each shard's recorded arm parameters and seed, and each
                training run's config, are the config's.
``checkpoint``  each training run ``results/checkpoints/{family}/{arm}/``: ``train_config.json``
                names exactly that arm's shards, of that arm, unchanged (``.idx`` sha256), made
                with the family's tokenizer (``tokenizer.json`` sha256, vocab size, EOD id), and
                its HF checkpoints and ``train_summary.json`` say the same; each checkpoint's
                embedding has at least the tokenizer's vocab rows.
``evaluation``  each ``results/eval/**/*.json`` names an existing model dir and benchmark file
                whose sha256 (``model_sha256``, ``benchmark_sha256``) are what was scored, and a
                trained checkpoint's path matches its labels.

Arm parameters and seed for re-tokenization come from ``--config`` when given (the sample
size and seed then default to its ``audit:`` section), else from each shard's ``stats.json``.
Records of the ``audit`` rule itself are not audited (the audit rewrites its outputs). The
table (every failing row, then a count per check; ``--all-rows`` for every row) goes to
stdout; ``--json``/``--tsv`` write all rows. Exit status 1 when any row fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from filmorph.io import atomic_path, read_json, write_json_atomic
from filmorph.paths import CHUNK_GLOB, STEP_GLOB
from filmorph.provenance import (
    PROVENANCE_DIR,
    hash_path,
    record_name,
    sha256_file,
    sha256_tree,
)
from filmorph.shards import check_shard

__all__ = ["CHECKS", "Auditor", "Row", "check_shard", "main", "run_audit"]

CHECKS = ("records", "complete", "manifest", "hash", "lineage", "inputs", "shard",
          "retokenize", "config", "checkpoint", "evaluation")
MANIFEST = "results/manifest.json"
SELF_RULES = frozenset({"audit"})  # their records are not audited
_MAX_LISTED = 8


@dataclass(frozen=True)
class Row:
    """One line of the audit table."""

    check: str
    subject: str
    status: str  # "pass" | "fail"
    detail: str


def _short(h: Any) -> str:
    return f"{str(h)[:12]}…" if h else "none"


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def _bar(total: int | None, desc: str, enabled: bool, unit: str = "it"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", disable=not enabled,
                file=sys.stderr, leave=False)


# ------------------------------------------------------------------------------------ config
def _fill_defaults(schema: Mapping[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """Fill JSON-schema ``default``s into ``obj`` (nested objects too), as Snakemake does."""
    for key, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, Mapping):
            continue
        if key not in obj and "default" in sub:
            obj[key] = json.loads(json.dumps(sub["default"]))
        if isinstance(obj.get(key), dict) and sub.get("properties"):
            _fill_defaults(sub, obj[key])
    return obj


def load_config(path: str | Path) -> dict[str, Any]:
    """A workflow config (YAML or JSON), with the defaults of ``schema.yaml`` beside it."""
    import yaml

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    # JSON as JSON: PyYAML would read a number like 1e-05 as a string
    cfg = (json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)) or {}
    schema = path.parent / "schema.yaml"
    if schema.is_file():
        _fill_defaults(yaml.safe_load(schema.read_text(encoding="utf-8")), cfg)
    return cfg


# ------------------------------------------------------------------------------------ auditor
class Auditor:
    """Runs the checks on one run dir and collects the rows (see the module docstring)."""

    def __init__(self, run_dir: str | Path, *, config: Mapping[str, Any] | None = None,
                 sample_size: int = 20, seed: int = 0, progress: bool = True,
                 expected: Sequence[str] | None = None):
        self.run = Path(run_dir).absolute()
        self.config = dict(config) if config is not None else None
        self.sample_size = int(sample_size)
        self.seed = int(seed)
        self.progress = progress
        self.rows: list[Row] = []
        self.records: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}  # path -> recorded hash (newest record)
        self.now: dict[str, dict[str, Any]] = {}  # path -> its hash now (hashed once)
        self.expected = list(expected) if expected is not None else None
        self.sample: list[tuple[str, int, str, str]] = []  # (chunk stem, line, doc id, text)

    # -------------------------------------------------------------- helpers
    def add(self, check: str, subject: str, ok: bool, detail: str) -> None:
        self.rows.append(Row(check, subject, "pass" if ok else "fail", detail))

    def path(self, p: str | Path) -> Path:
        """A recorded path (relative to the run dir, or absolute) on this machine."""
        p = Path(p)
        return p if p.is_absolute() else self.run / p

    def rel(self, p: Path) -> str:
        try:
            return p.relative_to(self.run).as_posix()
        except ValueError:
            return str(p)

    def _read_json(self, check: str, path: Path) -> dict[str, Any] | None:
        try:
            return read_json(path)
        except (OSError, ValueError) as exc:
            self.add(check, self.rel(path), False, f"unreadable: {exc}")
            return None

    def shard_dirs(self) -> list[tuple[str, str, Path]]:
        root = self.run / "results/shards"
        if not root.is_dir():
            return []
        return [(fam.name, arm.name, arm) for fam in sorted(root.iterdir()) if fam.is_dir()
                for arm in sorted(fam.iterdir()) if arm.is_dir()]

    @staticmethod
    def prefixes(shard_dir: Path) -> list[Path]:
        names = set()
        for p in shard_dir.iterdir():
            if p.name.startswith("."):
                continue
            for ext in (".bin", ".idx", ".doc_ids.txt", ".stats.json"):
                if p.name.endswith(ext):
                    names.add(p.name[: -len(ext)])
        return [shard_dir / n for n in sorted(names)]

    # -------------------------------------------------------------- records, manifest
    def check_records(self) -> None:
        root = self.run / PROVENANCE_DIR
        files = sorted(p for p in root.rglob("*.json") if not p.name.startswith(".")) \
            if root.is_dir() else []
        bad = 0
        for p in files:
            rec = self._read_json("records", p)
            if rec is None:
                bad += 1
                continue
            if not isinstance(rec, dict) or not {"rule", "inputs", "outputs"} <= rec.keys():
                self.add("records", self.rel(p), False, "not a provenance record (no rule, "
                         "inputs or outputs)")
                bad += 1
                continue
            if rec["rule"] in SELF_RULES:
                continue
            self.records[(rec["rule"], record_name(rec.get("wildcards") or {}))] = (p, rec)
        if not self.records:
            self.add("records", PROVENANCE_DIR, False,
                     "no provenance records (a run made before provenance, or not a run dir)")
        elif not bad:
            self.add("records", PROVENANCE_DIR, True, f"{len(self.records)} job records")
        for (_rule, _name), (_p, rec) in sorted(self.records.items(),
                                                  key=lambda kv: kv[1][1].get("end") or ""):
            for path, h in rec["outputs"].items():
                self.outputs[path] = h  # the newest record of a path wins
        if self.records:
            self._check_coverage()

    def _check_coverage(self) -> None:
        """Every shard file, training run output and evaluation result lies in (or is) an
        output some record names."""
        found: list[Path] = []
        for pattern in ("results/shards/*/*/*", "results/checkpoints/*/*/train_summary.json",
                        "results/checkpoints/*/*/hf/step_*", "results/eval/**/*.json*"):
            found += [p for p in self.run.glob(pattern) if not p.name.startswith(".")]
        recorded = {Path(self.rel(self.path(p))) for p in self.outputs}
        missing = []
        for p in sorted(found):
            rel = Path(self.rel(p))
            if not any(a in recorded for a in (rel, *rel.parents)):
                missing.append(rel.as_posix())
        self.add("records", "coverage", not missing,
                 f"outputs no record names: {_listed(missing)}" if missing
                 else f"{len(found)} shard, checkpoint and evaluation outputs all recorded")

    def check_manifest(self) -> None:
        path = self.run / MANIFEST
        if not path.is_file():
            self.add("manifest", MANIFEST, False, "missing (snakemake manifest builds it)")
            return
        man = self._read_json("manifest", path)
        if man is None:
            return
        listed = {}
        for e in man.get("jobs") or []:
            listed[(e.get("rule"), record_name(e.get("wildcards") or {}))] = {
                k: v for k, v in e.items() if k != "record"}
        problems = []
        for key, (p, rec) in sorted(self.records.items()):
            if key[0] == "manifest":
                continue  # written after the manifest: it cannot hold itself
            if key not in listed:
                problems.append(f"{self.rel(p)} not in the manifest")
            elif listed[key] != rec:
                problems.append(f"{self.rel(p)} differs from its manifest entry")
        for key in sorted(set(listed) - set(self.records)):
            if key[0] not in SELF_RULES:
                problems.append(f"manifest entry {key[0]}/{key[1]} has no record")
        self.add("manifest", MANIFEST, not problems,
                 _listed(problems) if problems else f"{len(listed)} records, all match")

    # -------------------------------------------------------------- re-hash, lineage
    def check_hashes(self) -> None:
        total = sum(int(h.get("bytes") or 0) for h in self.outputs.values())
        with _bar(total, "re-hash", self.progress, unit="B") as bar:
            for path in sorted(self.outputs):
                self.now[path] = hash_path(self.path(path), progress=bar)
                self._compare(path, self.outputs[path], self.now[path])

    def _compare(self, path: str, was: Mapping[str, Any], now: Mapping[str, Any]) -> None:
        kind = was.get("type")
        if kind == "missing":
            self.add("hash", path, False, "the job recorded this output as missing")
        elif now.get("type") == "missing":
            self.add("hash", path, False, f"missing (recorded sha256 {_short(was.get('sha256'))})")
        elif kind != now.get("type"):
            self.add("hash", path, False, f"recorded as a {kind}, now a {now.get('type')}")
        elif now.get("sha256") == was.get("sha256"):
            n = len(was.get("files") or {}) if kind == "dir" else 1
            self.add("hash", path, True, f"sha256 {_short(was.get('sha256'))} ({n} file"
                     f"{'s' if n != 1 else ''})")
        elif kind == "file":
            self.add("hash", path, False,
                     f"changed: recorded sha256 {_short(was.get('sha256'))} ({was.get('bytes')} "
                     f"bytes), now {_short(now.get('sha256'))} ({now.get('bytes')} bytes)")
        else:
            a, b = was.get("files") or {}, now.get("files") or {}
            changed = [f"{path}/{f}" for f in sorted(set(a) & set(b))
                       if a[f].get("sha256") != b[f].get("sha256")]
            parts = [f"changed: {_listed(changed)}" if changed else "",
                     f"missing: {_listed([f'{path}/{f}' for f in sorted(set(a) - set(b))])}"
                     if set(a) - set(b) else "",
                     f"new: {_listed([f'{path}/{f}' for f in sorted(set(b) - set(a))])}"
                     if set(b) - set(a) else ""]
            self.add("hash", path, False, "; ".join(x for x in parts if x))

    def check_lineage(self) -> None:
        for (rule, name), (_p, rec) in sorted(self.records.items()):
            n, stale = 0, []
            for path, h in sorted(rec["inputs"].items()):
                made = self.outputs.get(path)
                if made is None:
                    continue  # not made by a recorded job (the corpus source, a local model)
                n += 1
                if h.get("sha256") != made.get("sha256"):
                    stale.append(f"{path} (read {_short(h.get('sha256'))}, producer recorded "
                                 f"{_short(made.get('sha256'))})")
            if n:
                self.add("lineage", f"{rule}/{name}", not stale,
                         f"inputs differ from what their jobs made: {_listed(stale)}" if stale
                         else f"{n} inputs as their producers recorded")

    def check_inputs(self) -> None:
        """Every input a job recorded is still there with the sha256 it read; a job whose
        input is gone or changed is named stale (its outputs no longer follow from what is on
        disk)."""
        for (rule, name), (_p, rec) in sorted(self.records.items()):
            stale = []
            for path, h in sorted(rec["inputs"].items()):
                if path not in self.now:
                    self.now[path] = hash_path(self.path(path))
                now = self.now[path]
                if h.get("type") == "missing":
                    continue  # recorded as missing when read (an optional input)
                if now.get("type") == "missing":
                    stale.append(f"{path} is gone")
                elif now.get("sha256") != h.get("sha256"):
                    stale.append(f"{path} changed (read {_short(h.get('sha256'))}, now "
                                 f"{_short(now.get('sha256'))})")
            if rec["inputs"]:
                self.add("inputs", f"{rule}/{name}", not stale,
                         f"stale: {_listed(stale)}; rerun the job (snakemake reruns it once "
                         "the input is rebuilt)" if stale
                         else f"{len(rec['inputs'])} inputs as the job read them")

    def check_complete(self) -> None:
        """Every expected output exists and a record names it (or a directory holding it)."""
        if self.expected is None:
            return
        recorded = {Path(self.rel(self.path(p))) for p, h in self.outputs.items()
                    if h.get("type") != "missing"}
        missing, unrecorded = [], []
        for path in sorted(set(self.expected)):
            rel = Path(self.rel(self.path(path)))
            if not self.path(path).exists():
                missing.append(rel.as_posix())
            elif not any(a in recorded for a in (rel, *rel.parents)):
                unrecorded.append(rel.as_posix())
        for path in missing:
            self.add("complete", path, False, "missing: the config implies it (rebuild it "
                     "with snakemake)")
        for path in unrecorded:
            self.add("complete", path, False, "exists, but no provenance record names it")
        if not missing and not unrecorded:
            self.add("complete", "expected outputs", True,
                     f"{len(set(self.expected))} outputs the config implies, all present and "
                     "recorded")

    # -------------------------------------------------------------- shards
    def check_shards(self) -> None:
        for family, arm, d in self.shard_dirs():
            for prefix in self.prefixes(d):
                stats_path = Path(f"{prefix}.stats.json")
                stats = None
                if stats_path.is_file():
                    stats = self._read_json("shard", stats_path)
                problems = check_shard(prefix, stats=stats)
                if stats is None:
                    problems.append(f"{stats_path}: missing or unreadable")
                problems = [p.replace(str(self.run) + "/", "") for p in problems]
                self.add("shard", self.rel(prefix), not problems,
                         "; ".join(problems) if problems else
                         f"{(stats or {}).get('documents_out')} entries, "
                         f"{(stats or {}).get('tokens_written')} tokens, sizes and EODs consistent")
            if self.config is not None:
                self._check_shard_config(family, arm, d)

    def _check_shard_config(self, family: str, arm: str, d: Path) -> None:
        cfg = self.config or {}
        want_params = (cfg.get("arms") or {}).get(arm)
        if arm not in (cfg.get("arms") or {}):
            self.add("config", f"{family}/{arm}", False, f"arm {arm} is not in the config")
            return
        want = {"arm_params": dict(want_params or {}), "seed": cfg.get("seed")}
        problems = []
        for prefix in self.prefixes(d):
            stats_path = Path(f"{prefix}.stats.json")
            if not stats_path.is_file():
                continue
            stats = read_json(stats_path)
            for key, value in want.items():
                if stats.get(key) != value:
                    problems.append(f"{self.rel(stats_path)}: {key} {stats.get(key)!r}, the "
                                    f"config says {value!r}")
        self.add("config", f"{family}/{arm}", not problems,
                 _listed(problems) if problems else "shards made with the config's arm "
                 "parameters and seed")

    # -------------------------------------------------------------- re-tokenization
    def sample_documents(self) -> list[tuple[str, int, str, str]]:
        """(chunk stem, line index, doc id, text) of ``sample_size`` corpus documents chosen by
        ``seed`` over all chunks (the same documents for every family x arm)."""
        from filmorph.rng import rng_for

        corpus = self.run / "resources/corpus"
        chunks = sorted(corpus.glob(f"{CHUNK_GLOB}.jsonl")) if corpus.is_dir() else []
        counts_file = corpus / "counts.json"
        counts = None
        if counts_file.is_file():
            counts = read_json(counts_file).get("chunk_documents")
        if not counts or len(counts) != len(chunks):
            counts = []
            for c in chunks:
                with open(c, "rb") as fh:
                    counts.append(sum(block.count(b"\n") for block in iter(
                        lambda fh=fh: fh.read(1 << 20), b"")))
        total = sum(counts)
        picks = sorted(rng_for(self.seed, "audit", "sample").sample(
            range(total), min(self.sample_size, total)))
        wanted: dict[int, set[int]] = defaultdict(set)
        start = 0
        for k, n in enumerate(counts):
            for g in picks:
                if start <= g < start + n:
                    wanted[k].add(g - start)
            start += n
        out = []
        for k, lines in sorted(wanted.items()):
            last = max(lines)
            with open(chunks[k], encoding="utf-8") as fh:
                for i, line in enumerate(fh):
                    if i in lines:
                        try:
                            obj = json.loads(line)
                            out.append((chunks[k].stem, i, obj["id"], obj["text"]))
                        except (ValueError, KeyError, TypeError) as exc:
                            raise ValueError(f"{chunks[k]}:{i + 1}: malformed chunk line "
                                             f"({exc})") from exc
                    if i >= last:
                        break
        return out

    def _affix_path(self) -> str | None:
        if self.config is not None:
            p = self.config.get("patok_affixes")
            return str(self.path(p)) if p else None
        for (rule, _n), (_p, rec) in sorted(self.records.items()):
            if rule == "tokenize_chunk":  # every arm's job records the config's patok_affixes
                p = ((rec.get("config") or {}).get("values") or {}).get("affixes")
                return str(self.path(p)) if p else None
        return None

    def _arm_settings(self, arm: str, stats: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        if self.config is not None:
            return dict((self.config.get("arms") or {}).get(arm) or {}), int(self.config["seed"])
        return dict(stats.get("arm_params") or {}), int(stats["seed"])

    def check_retokenize(self) -> None:
        from filmorph.shards import read_shard
        from filmorph.tokenize import tokenize_documents

        dirs = self.shard_dirs()
        if not dirs:
            self.add("retokenize", "results/shards", False, "no shards")
            return
        try:
            self.sample = self.sample_documents()
        except (OSError, ValueError) as exc:
            self.add("retokenize", "resources/corpus", False, f"cannot sample documents: {exc}")
            return
        if not self.sample:
            self.add("retokenize", "resources/corpus", False, "no corpus documents to sample")
            return
        affixes = self._affix_path()
        with _bar(len(self.sample) * len(dirs), "re-tokenize", self.progress, "doc") as bar:
            for family, arm, d in dirs:
                problems = self._retokenize_one(family, arm, d, affixes, read_shard,
                                                tokenize_documents)
                bar.update(len(self.sample))
                self.add("retokenize", f"{family}/{arm}", not problems,
                         _listed(problems) if problems else
                         f"{len(self.sample)} sampled documents re-tokenized to the shards' ids")

    def _retokenize_one(self, family, arm, d, affixes, read_shard, tokenize_documents) -> list[str]:
        tok_dir = self.run / "resources/tokenizers" / family
        if not (tok_dir / "tokenizer_meta.json").is_file():
            return [f"{self.rel(tok_dir)}: no prepared tokenizer"]
        problems: list[str] = []
        groups: dict[str, list[tuple[str, int, str, str, int]]] = defaultdict(list)
        settings: dict[str, tuple[dict[str, Any], int]] = {}
        for chunk, line, doc_id, text in self.sample:
            prefix = d / chunk
            try:
                stats = read_json(f"{prefix}.stats.json")
                ids = Path(f"{prefix}.doc_ids.txt").read_text(encoding="utf-8").split()
            except (OSError, ValueError) as exc:
                problems.append(f"{self.rel(prefix)}: cannot read ({exc})")
                continue
            try:
                entry = ids.index(doc_id)
            except ValueError:
                problems.append(f"{doc_id}: not in {self.rel(prefix)}.doc_ids.txt")
                continue
            params, seed = self._arm_settings(arm, stats)
            key = json.dumps([params, seed], sort_keys=True)
            settings[key] = (params, seed)
            groups[key].append((chunk, line, doc_id, text, entry))
        for key, docs in sorted(groups.items()):
            params, seed = settings[key]
            try:
                fresh = tokenize_documents([(doc_id, text) for _c, _l, doc_id, text, _e in docs],
                                           tok_dir, arm, params, seed, affix_path=affixes)
            except Exception as exc:  # a broken tokenizer dir or arm config: named, not raised
                problems.append(f"{family}/{arm}: re-tokenization failed ({exc})")
                continue
            by_chunk: dict[str, Any] = {}
            for (chunk, _line, doc_id, _text, entry), want in zip(docs, fresh, strict=True):
                prefix = d / chunk
                try:
                    if chunk not in by_chunk:
                        by_chunk[chunk] = read_shard(prefix)
                    have = np.asarray(by_chunk[chunk][entry], dtype=np.int64)
                except Exception as exc:  # a corrupt shard megatron-core cannot read
                    problems.append(f"{doc_id}: cannot read entry {entry} of "
                                    f"{self.rel(prefix)}.bin/.idx ({type(exc).__name__}: {exc})")
                    continue
                if not np.array_equal(have, want):
                    n = min(len(have), len(want))
                    diff = np.flatnonzero(have[:n] != want[:n])
                    at = int(diff[0]) if diff.size else n
                    what = (f"token {at}: shard {int(have[at])}, re-tokenized {int(want[at])}"
                            if diff.size else f"length: shard {len(have)}, re-tokenized {len(want)}")
                    problems.append(f"{doc_id} ({self.rel(prefix)}.bin entry {entry}) differs at "
                                    f"{what}")
        return problems

    # -------------------------------------------------------------- checkpoints
    def check_checkpoints(self) -> None:
        root = self.run / "results/checkpoints"
        if not root.is_dir():
            return
        for fam in sorted(p for p in root.iterdir() if p.is_dir()):
            for run in sorted(p for p in fam.iterdir() if p.is_dir() and p.name != "base"):
                if (run / "train_config.json").is_file() or (run / "train_summary.json").is_file() \
                        or (run / "hf").is_dir():
                    problems = self._checkpoint_problems(fam.name, run.name, run)
                    self.add("checkpoint", self.rel(run), not problems,
                             _listed(problems) if problems else
                             "trained on this arm's shards, unchanged, with the family's tokenizer")
                    if self.config is not None and not problems:
                        self._check_train_config(run)

    def _checkpoint_problems(self, family: str, arm: str, run: Path) -> list[str]:
        from filmorph.train.common import RunLayout

        layout = RunLayout(run)
        if not layout.train_config.is_file():
            return [f"{self.rel(layout.train_config)}: missing"]
        try:
            rec = read_json(layout.train_config)
        except ValueError as exc:
            return [f"{self.rel(layout.train_config)}: unreadable ({exc})"]
        problems: list[str] = []
        tc = self.rel(layout.train_config)
        tok = dict(rec.get("tokenizer") or {})
        # the family's prepared tokenizer
        tok_dir = self.run / "resources/tokenizers" / family
        if (tok_dir / "tokenizer.json").is_file():
            sha = sha256_file(tok_dir / "tokenizer.json")
            if tok.get("tokenizer_json_sha256") != sha:
                problems.append(f"{tc}: tokenizer sha256 {_short(tok.get('tokenizer_json_sha256'))}"
                                f", {self.rel(tok_dir)}/tokenizer.json is {_short(sha)}")
            meta = read_json(tok_dir / "tokenizer_meta.json")
            for key in ("vocab_size", "eos_id"):
                if tok.get(key) != meta.get(key):
                    problems.append(f"{tc}: tokenizer {key} {tok.get(key)}, "
                                    f"{self.rel(tok_dir)} has {meta.get(key)}")
        else:
            problems.append(f"{self.rel(tok_dir)}/tokenizer.json: missing")
        if tok.get("family") not in (None, family):
            problems.append(f"{tc}: tokenizer family {tok.get('family')}, run dir of {family}")
        # the shards it names: exactly this arm's, unchanged, from the same tokenizer
        shard_dir = self.run / "results/shards" / family / arm
        have = sorted(self.rel(p) for p in self.prefixes(shard_dir)) if shard_dir.is_dir() else []
        named = sorted(str(s.get("prefix")) for s in rec.get("shards") or [])
        if [self.rel(self.path(p)) for p in named] != have:
            problems.append(f"{tc}: trained on {_listed(named)}; {family}/{arm} has "
                            f"{_listed(have) or 'no shards'}")
        for s in rec.get("shards") or []:
            prefix = self.path(str(s.get("prefix")))
            if s.get("arm") != arm:
                problems.append(f"{tc}: shard {s.get('prefix')} recorded as arm {s.get('arm')}, "
                                f"run dir of arm {arm}")
            if s.get("tokenizer") != tok:
                problems.append(f"{tc}: shard {s.get('prefix')} tokenizer differs from the run's")
            stats_path = Path(f"{prefix}.stats.json")
            if stats_path.is_file():
                stats = read_json(stats_path)
                if stats.get("arm") != arm:
                    problems.append(f"{self.rel(stats_path)}: arm {stats.get('arm')}, run dir of "
                                    f"arm {arm}")
                if stats.get("tokenizer") != tok:
                    problems.append(f"{self.rel(stats_path)}: tokenizer "
                                    f"{_short((stats.get('tokenizer') or {}).get('tokenizer_json_sha256'))}"
                                    f" / vocab {(stats.get('tokenizer') or {}).get('vocab_size')}, "
                                    f"the run recorded {_short(tok.get('tokenizer_json_sha256'))} / "
                                    f"vocab {tok.get('vocab_size')}")
            idx = Path(f"{prefix}.idx")
            if not idx.is_file():
                problems.append(f"{self.rel(idx)}: missing")
            elif s.get("idx_sha256") != sha256_file(idx):
                problems.append(f"{self.rel(idx)}: changed since training (sha256 "
                                f"{_short(sha256_file(idx))}, trained on {_short(s.get('idx_sha256'))})")
        # checkpoints and summary say the same
        hf = sorted(layout.hf_root.glob(STEP_GLOB)) if layout.hf_root.is_dir() else []
        if not hf:
            problems.append(f"{self.rel(layout.hf_root)}: no checkpoints")
        for ckpt in hf:
            meta_path = ckpt / "filmorph_train_meta.json"
            if meta_path.is_file():
                meta = read_json(meta_path)
                if meta.get("tokenizer") not in (None, tok):
                    problems.append(f"{self.rel(meta_path)}: tokenizer differs from {tc}")
                if meta.get("shard_prefixes") not in (None, rec.get("shard_prefixes")):
                    problems.append(f"{self.rel(meta_path)}: shard prefixes differ from {tc}")
            cfg_path = ckpt / "config.json"
            if cfg_path.is_file():
                cfg = read_json(cfg_path)
                rows = cfg.get("vocab_size") or (cfg.get("text_config") or {}).get("vocab_size")
                if rows is not None and tok.get("vocab_size") is not None \
                        and int(rows) < int(tok["vocab_size"]):
                    problems.append(f"{self.rel(cfg_path)}: vocab_size {rows} < the tokenizer's "
                                    f"{tok['vocab_size']}")
            else:
                problems.append(f"{self.rel(cfg_path)}: missing")
        if layout.summary.is_file():
            summ = read_json(layout.summary)
            if summ.get("tokenizer") not in (None, tok):
                problems.append(f"{self.rel(layout.summary)}: tokenizer differs from {tc}")
            named_summary = [s.get("prefix") for s in summ.get("shards") or []]
            if named_summary and named_summary != [s.get("prefix") for s in rec.get("shards") or []]:
                problems.append(f"{self.rel(layout.summary)}: shards differ from {tc}")
        return problems

    def _check_train_config(self, run: Path) -> None:
        from filmorph.config_checks import family_engines, train_settings
        from filmorph.train.config import TrainConfig

        cfg = self.config or {}
        want = train_settings({"seed": None, **cfg})
        # the family's engine (families.<name>.engine, default train.engine)
        engine = family_engines(cfg).get(run.parent.name)
        if engine is not None:
            want["engine"] = engine
        rec = read_json(run / "train_config.json")
        try:
            a = TrainConfig.from_dict(want).semantic_dict()
            b = TrainConfig.from_dict(rec["config"]).semantic_dict()
        except (KeyError, TypeError, ValueError) as exc:
            self.add("config", self.rel(run), False, f"cannot compare train configs: {exc}")
            return
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        self.add("config", self.rel(run), not diff,
                 f"trained with other {', '.join(diff)} than the config" if diff
                 else "trained with the config's train settings")

    # -------------------------------------------------------------- evaluation
    def check_evaluations(self) -> None:
        root = self.run / "results/eval"
        files = sorted(p for p in root.rglob("*.json") if not p.name.startswith(".")) \
            if root.is_dir() else []
        trees: dict[str, str] = {}
        for path in files:
            scores = self._read_json("evaluation", path)
            if scores is None:
                continue
            problems: list[str] = []
            model = scores.get("model")
            labels = scores.get("labels") or {}
            if not model:
                problems.append("names no model")
            else:
                mdir = self.path(model)
                if not mdir.is_dir():
                    problems.append(f"model {model}: missing")
                elif not scores.get("model_sha256"):
                    problems.append("records no model_sha256 (scored before it was recorded)")
                else:
                    key = str(mdir.resolve())
                    if key not in trees:
                        trees[key] = sha256_tree(mdir)
                    if trees[key] != scores["model_sha256"]:
                        problems.append(f"model {model}: sha256 now {_short(trees[key])}, scored "
                                        f"{_short(scores['model_sha256'])}")
                ckpt = labels.get("checkpoint")
                if labels.get("arm") not in (None, "base") and ckpt not in (None, "base"):
                    want = f"results/checkpoints/{labels.get('model')}/{labels['arm']}/hf/{ckpt}"
                    if self.rel(self.path(model)) != want:
                        problems.append(f"model {model} is not the checkpoint its labels name "
                                        f"({want})")
            bench = scores.get("benchmark_file")
            if not bench:
                problems.append("names no benchmark file")
            elif not self.path(bench).is_file():
                problems.append(f"benchmark {bench}: missing")
            elif sha256_file(self.path(bench)) != scores.get("benchmark_sha256"):
                problems.append(f"benchmark {bench}: sha256 now "
                                f"{_short(sha256_file(self.path(bench)))}, scored "
                                f"{_short(scores.get('benchmark_sha256'))}")
            self.add("evaluation", self.rel(path), not problems,
                     "; ".join(problems) if problems else
                     "model and benchmark exist with the sha256 that was scored")

    # -------------------------------------------------------------- all
    def run_all(self) -> list[Row]:
        self.check_records()
        self.check_complete()
        self.check_manifest()
        self.check_hashes()
        self.check_lineage()
        self.check_inputs()
        self.check_shards()
        self.check_retokenize()
        self.check_checkpoints()
        self.check_evaluations()
        return self.rows


def run_audit(run_dir: str | Path, *, config: Mapping[str, Any] | None = None,
              sample_size: int = 20, seed: int = 0, progress: bool = False,
              expected: Sequence[str] | None = None) -> dict[str, Any]:
    """Audit ``run_dir``; the report as written by ``--json`` (``ok``, ``summary``, ``rows``).
    ``expected``: the outputs the config implies (the ``complete`` check)."""
    t0 = time.perf_counter()
    auditor = Auditor(run_dir, config=config, sample_size=sample_size, seed=seed,
                      progress=progress, expected=expected)
    rows = auditor.run_all()
    summary = {c: {"pass": sum(r.check == c and r.status == "pass" for r in rows),
                   "fail": sum(r.check == c and r.status == "fail" for r in rows)}
               for c in CHECKS if any(r.check == c for r in rows)}
    return {
        "run_dir": str(Path(run_dir).resolve()),
        "ok": all(r.status == "pass" for r in rows),
        "summary": summary,
        "sample": {"size": sample_size, "seed": seed,
                   "documents": [doc_id for _c, _l, doc_id, _t in auditor.sample]},
        "config_checked": config is not None,
        "seconds": round(time.perf_counter() - t0, 3),
        "rows": [asdict(r) for r in rows],
    }


def _tsv_field(s: str) -> str:
    return str(s).replace("\t", " ").replace("\n", " ")


def write_tsv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """The rows as TSV (check, subject, status, detail), atomically."""
    lines = ["check\tsubject\tstatus\tdetail"]
    lines += ["\t".join(_tsv_field(r[k]) for k in ("check", "subject", "status", "detail"))
              for r in rows]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def format_table(report: Mapping[str, Any], *, all_rows: bool = False, width: int = 110) -> str:
    """The failing rows (every row with ``all_rows``), then one line per check."""
    rows = [r for r in report["rows"] if all_rows or r["status"] == "fail"]
    out = []
    if rows:
        w_check = max(len("check"), *(len(r["check"]) for r in rows))
        w_subj = min(60, max(len("subject"), *(len(r["subject"]) for r in rows)))
        out.append(f"{'check':<{w_check}}  {'subject':<{w_subj}}  status  detail")
        for r in rows:
            detail = r["detail"] if r["status"] == "fail" else r["detail"][:width]
            out.append(f"{r['check']:<{w_check}}  {r['subject']:<{w_subj}}  "
                       f"{r['status'].upper():<6}  {detail}")
        out.append("")
    out.append(f"{'check':<12} {'pass':>6} {'fail':>6}")
    for check, c in report["summary"].items():
        out.append(f"{check:<12} {c['pass']:>6} {c['fail']:>6}")
    failed = sum(c["fail"] for c in report["summary"].values())
    total = sum(c["pass"] + c["fail"] for c in report["summary"].values())
    out.append(f"audit {'PASSED' if report['ok'] else 'FAILED'}: {total - failed} of {total} rows "
               f"pass ({report['run_dir']})")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m filmorph.audit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", metavar="RUN_DIR", help="the workflow's working directory")
    ap.add_argument("--config", default=None,
                    help="the run's config (YAML/JSON): arm parameters, seed and audit defaults "
                         "are taken from it and checked against the shards and training runs")
    ap.add_argument("--sample-size", type=int, default=None,
                    help="documents to re-tokenize (default: audit.sample_docs, else 20)")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the document sample (default: audit.seed, else the config "
                         "seed, else 0)")
    ap.add_argument("--expected", default=None, metavar="FILE",
                    help="a file listing, one a line, the outputs the config implies "
                         "(relative to RUN_DIR): each must exist with a provenance record")
    ap.add_argument("--json", default=None, help="write the report as JSON here")
    ap.add_argument("--tsv", default=None, help="write the rows as TSV here")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--all-rows", action="store_true", help="print passing rows too")
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        ap.error(f"RUN_DIR {run_dir} is not a directory")
    config = load_config(args.config) if args.config else None
    audit_cfg = (config or {}).get("audit") or {}
    size = args.sample_size if args.sample_size is not None else audit_cfg.get("sample_docs", 20)
    seed = args.seed
    if seed is None:
        seed = audit_cfg.get("seed")
    if seed is None:
        seed = (config or {}).get("seed", 0)
    if size < 1:
        ap.error("--sample-size must be at least 1")
    expected = None
    if args.expected:
        expected = [line.strip() for line in
                    Path(args.expected).read_text(encoding="utf-8").splitlines() if line.strip()]
    report = run_audit(run_dir, config=config, sample_size=size, seed=seed,
                       progress=not args.no_progress, expected=expected)
    if args.json:
        write_json_atomic(args.json, report)
    if args.tsv:
        write_tsv(args.tsv, report["rows"])
    print(format_table(report, all_rows=args.all_rows))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
