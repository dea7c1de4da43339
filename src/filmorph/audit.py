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
``evaluation``  each ``results/eval/**/*.json`` carries labels that name its own path
                (:func:`filmorph.paths.eval_path`), names an existing model dir and benchmark
                file whose sha256 (``model_sha256``, ``benchmark_sha256``) are what was scored,
                and a trained checkpoint's path matches its labels.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from filmorph.audit_artifacts import ArtifactChecks
from filmorph.audit_common import CHECKS, MANIFEST, SELF_RULES, Row
from filmorph.audit_provenance import ProvenanceChecks
from filmorph.io import atomic_path, read_json, write_json_atomic
from filmorph.shards import check_shard

__all__ = ["CHECKS", "MANIFEST", "SELF_RULES", "Auditor", "Row", "check_shard", "load_config",
           "main", "run_audit"]


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
class Auditor(ProvenanceChecks, ArtifactChecks):
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
