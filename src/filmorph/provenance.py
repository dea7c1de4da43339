"""Provenance records: what made each output, from what, with which code and settings.

    python -m filmorph.provenance record --rule RULE [--wildcard K=V ...] [--params JSON] \
        [--input PATH ...] [--output PATH ...] [--log PATH] --start ISO [--root DIR]
    python -m filmorph.provenance manifest [--root results/provenance] [--out results/manifest.json]

Every workflow job leaves one JSON record (a sidecar, not a Snakemake output) at
``results/provenance/{rule}/{name}.json`` (:func:`record_path`; ``name`` joins the job's
wildcards sorted by key, ``k=v,k=v``, or is ``job`` for a rule without wildcards). A record
holds: the rule and wildcards; ``config`` (the job's params, which carry every config value
that influences the job, with the sha256 of their canonical JSON); ``seed``; ``code`` (git
commit and dirty flag of the checkout the package runs from, or ``unknown``); ``packages``
(installed versions, ``null`` when absent; read from package metadata, nothing is imported);
``inputs`` and ``outputs`` (:func:`hash_path` of each: sha256 and size of a file, or of every
file under a directory by sorted relative path plus one tree sha256); ``start``/``end`` (UTC
ISO 8601), ``seconds`` and ``host``.

Secrets never appear: no environment variable is recorded, config values under keys that name
a secret (``token``, ``hf_token``, ``api_key``, ``password``, ``secret`` ...) are replaced by
``"<redacted>"``, and any string holding the value of a secret-named environment variable
(``HF_TOKEN``, ``WANDB_API_KEY`` ...) is redacted as well (:func:`scrub`).

The manifest (:func:`build_manifest`) lists every record, sorted by rule and name, with the
record's own sha256; apart from the records' times it is deterministic.
This module never imports Snakemake: callers pass plain paths and dicts.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from filmorph.io import read_json, write_json_atomic
from filmorph.paths import MANIFEST, PROVENANCE_DIR

__all__ = [
    "PACKAGES",
    "PROVENANCE_DIR",
    "REDACTED",
    "build_manifest",
    "build_record",
    "canonical_json",
    "code_version",
    "config_subset",
    "hash_path",
    "iter_records",
    "package_versions",
    "record_path",
    "scrub",
    "sha256_file",
    "sha256_tree",
    "utc_now",
    "write_record",
]

FORMAT = 1
REDACTED = "<redacted>"

# distribution names whose versions matter for the outputs (absent ones are recorded as null)
PACKAGES = (
    "filmorph",
    "snakemake",
    "numpy",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "sentencepiece",
    "tiktoken",
    "megatron-core",
    "megatron-bridge",
    "nemo-automodel",
    "accelerate",
    "datasets",
    "wordfreq",
)

# a key names a secret when it is, or ends in, one of these words (tokenizer, max_new_tokens and
# eos_token_id do not); "secret", "password" and "credential" anywhere
_SECRET_KEY = re.compile(
    r"(^|[^a-z0-9])(token|auth|key|api_?key|access_?key|private_?key)$"
    r"|secret|passw(or)?d|credential|cookie",
    re.IGNORECASE,
)
# files of one directory hashed at once: the cores this process may use, at most 8
HASH_THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1)
_MIN_SECRET_LEN = 6  # shorter environment values are not treated as secrets (too many false hits)


def is_secret_key(key: str) -> bool:
    """Whether a config key names a secret (``HF_TOKEN``, ``api_key``, ``password``, ...)."""
    return bool(_SECRET_KEY.search(str(key)))


def _secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    vals = {v for k, v in env.items() if is_secret_key(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(vals, key=len, reverse=True)


def scrub(obj: Any, *, keys: bool = True, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of ``obj`` (JSON-like) with secrets replaced by ``"<redacted>"``: inside every
    string the value of any secret-named environment variable (read only to be removed, never
    recorded), and with ``keys`` the values of keys that name a secret (:func:`is_secret_key`;
    off for dicts keyed by file paths)."""
    secrets = _secret_env_values(environ)

    def clean(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {clean(str(k)): REDACTED if keys and is_secret_key(str(k)) and v is not None
                    else clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, str):
            for s in secrets:
                x = x.replace(s, REDACTED)
            return x
        return x

    return clean(obj)


def canonical_json(obj: Any) -> str:
    """Key-sorted, compact JSON: the bytes a config hash is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def _plain(value: Any) -> Any:
    """JSON-ready form of a param value: JSON-encoded objects/lists are decoded (so their keys
    can be scrubbed and read), paths and other objects become strings."""
    if isinstance(value, str):
        s = value.strip()
        if s[:1] in "{[":
            try:
                return json.loads(s)
            except ValueError:
                return value
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def config_subset(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"values": scrubbed values, "sha256": sha256 of their canonical JSON}``."""
    clean = scrub({str(k): _plain(v) for k, v in values.items()})
    return {"values": clean, "sha256": hashlib.sha256(canonical_json(clean).encode()).hexdigest()}


# ------------------------------------------------------------------------------------ hashing
_FILE_MEMO: dict[tuple, str] = {}


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes (memoised in this process by path, inode, size and mtime, so a
    model dir hashed by a stage and again for its provenance is read once)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _FILE_MEMO.get(key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    _FILE_MEMO[key] = digest
    return digest


# Snakemake's marker in a directory() output, written after the job: not part of the content
IGNORED_FILES = frozenset({".snakemake_timestamp"})


def tree_files(root: str | Path) -> list[str]:
    """Relative POSIX paths of every file under ``root`` (symlinks followed; Snakemake's
    ``.snakemake_timestamp`` left out), sorted."""
    root = Path(root)
    out = []
    for dirpath, _dirs, files in os.walk(root, followlinks=True):
        for f in files:
            if f not in IGNORED_FILES:
                out.append((Path(dirpath) / f).relative_to(root).as_posix())
    return sorted(out)


def tree_digest(files: Mapping[str, str]) -> str:
    """One sha256 for a directory: over ``"{sha256}  {relative path}\\n"`` lines (the format of
    ``sha256sum``), sorted by path."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{files[rel]}  {rel}\n".encode())
    return h.hexdigest()


def sha256_tree(root: str | Path) -> str:
    """:func:`tree_digest` of every file under the directory ``root``."""
    root = Path(root)
    return tree_digest({rel: sha256_file(root / rel) for rel in tree_files(root)})


def hash_path(path: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """``{"type": "file", "bytes", "sha256"}``, ``{"type": "dir", "sha256" (tree), "bytes"
    (total), "files": {relative path: {"bytes", "sha256"}}}`` or ``{"type": "missing"}``.
    ``progress`` (a tqdm bar or anything with ``update(n)``) advances by the bytes read."""
    p = Path(path)
    if p.is_dir():
        rels = tree_files(p)
        files = {}
        # hashlib releases the GIL: a checkpoint dir of many shards hashes on several cores
        with ThreadPoolExecutor(max_workers=max(1, min(HASH_THREADS, len(rels)))) as pool:
            for rel, digest in zip(rels, pool.map(lambda r: sha256_file(p / r), rels),
                                   strict=True):
                files[rel] = {"bytes": (p / rel).stat().st_size, "sha256": digest}
                if progress is not None:
                    progress.update(files[rel]["bytes"])
        return {"type": "dir", "sha256": tree_digest({k: v["sha256"] for k, v in files.items()}),
                "bytes": sum(v["bytes"] for v in files.values()), "files": files}
    if p.is_file():
        out = {"type": "file", "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        if progress is not None:
            progress.update(out["bytes"])
        return out
    return {"type": "missing"}


# --------------------------------------------------------------------------- environment facts
def utc_now() -> str:
    """The current time, UTC, ISO 8601 with microseconds (``2025-01-31T12:00:00.000000Z``)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(s: str) -> _dt.datetime:
    t = _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


def iso_utc(s: str) -> str:
    """Any ISO 8601 time (``date -u +%Y-%m-%dT%H:%M:%SZ`` in a shell rule) in :func:`utc_now`'s
    form; a time without zone is taken as UTC."""
    return _parse_time(s).astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_CODE_MEMO: dict[str, dict[str, Any]] = {}


def code_version(root: str | Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty", "source": "git"}`` of the git checkout holding ``root`` (default:
    this package's source), or ``{"commit": "unknown", "dirty": None, "source": "unknown"}``
    outside git (or without a git binary). ``dirty``: tracked changes or untracked, not ignored
    files."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent
    key = str(root)
    if key in _CODE_MEMO:
        return dict(_CODE_MEMO[key])
    unknown = {"commit": "unknown", "dirty": None, "source": "unknown"}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True, timeout=60).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain").strip())
        out = {"commit": commit, "dirty": dirty, "source": "git"}
    except (OSError, subprocess.SubprocessError):
        out = unknown
    _CODE_MEMO[key] = out
    return dict(out)


def package_versions(
    names: Iterable[str] = PACKAGES, *, paths: Iterable[str | Path] = ()
) -> dict[str, str | None]:
    """Installed version of each distribution (``null`` when absent), and ``python``.

    ``paths``: directories searched first (packages installed with ``pip --target`` for a job's
    subprocesses only, such as a fine-tuning run's Mamba kernels)."""
    from importlib.metadata import PackageNotFoundError, distributions, version

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    found: dict[str, str] = {}
    for dist in distributions(path=[str(p) for p in paths]) if paths else ():
        found.setdefault(norm(dist.metadata["Name"] or ""), dist.version)
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        if norm(name) in found:
            out[name] = found[norm(name)]
            continue
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
        except Exception:  # a broken install must not fail a job's provenance
            out[name] = None
    return out


def find_seed(values: Mapping[str, Any], default: Any = None) -> Any:
    """The job's seed: a ``seed`` param, else a ``seed`` inside a JSON-object param (e.g. the
    train config), else ``default`` (the root ``seed`` of the config)."""
    if values.get("seed") is not None:
        return _plain(values["seed"])
    for v in values.values():
        v = _plain(v)
        if isinstance(v, Mapping) and v.get("seed") is not None:
            return v["seed"]
    return default


# ------------------------------------------------------------------------------------ records
def record_name(wildcards: Mapping[str, Any]) -> str:
    """``k=v,k=v`` of the wildcards sorted by key (each part percent-quoted), ``job`` if none."""
    if not wildcards:
        return "job"
    return ",".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}"
                    for k, v in sorted(wildcards.items()))


def record_path(rule: str, wildcards: Mapping[str, Any],
                root: str | Path = PROVENANCE_DIR) -> Path:
    """``{root}/{rule}/{record_name(wildcards)}.json``."""
    return Path(root) / quote(rule, safe="") / f"{record_name(wildcards)}.json"


def _hash_all(paths: Iterable[str | Path]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in paths:
        s = str(p)
        if s and s not in out:
            out[s] = hash_path(s)
    return dict(sorted(out.items()))


def build_record(
    *,
    rule: str,
    wildcards: Mapping[str, Any],
    params: Mapping[str, Any],
    inputs: Iterable[str | Path],
    outputs: Iterable[str | Path],
    start: str,
    end: str | None = None,
    log: str | Path | None = None,
    seed: Any = None,
) -> dict[str, Any]:
    """The provenance record of one finished job (hashes every input and output now)."""
    end = end or utc_now()
    cfg = config_subset(params)
    record = {
        "format": FORMAT,
        "rule": rule,
        "wildcards": {str(k): str(v) for k, v in sorted(wildcards.items())},
        "config": {"source": "params", **cfg},
        "seed": _plain(seed),
        "code": code_version(),
        "packages": package_versions(),
        "inputs": _hash_all(inputs),
        "outputs": _hash_all(outputs),
        "log": str(log) if log else None,
        "start": start,
        "end": end,
        "seconds": round((_parse_time(end) - _parse_time(start)).total_seconds(), 3),
        "host": socket.gethostname(),
    }
    return scrub(record, keys=False)


def write_record(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write a record atomically (environment secrets scrubbed once more before the disk)."""
    write_json_atomic(path, scrub(dict(record), keys=False))
    return Path(path)


def iter_records(root: str | Path = PROVENANCE_DIR) -> list[tuple[Path, dict[str, Any]]]:
    """(path, record) of every ``*.json`` under ``root``, sorted by path. A file that is not a
    record raises ``ValueError`` naming it."""
    root = Path(root)
    out = []
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*.json")):
        if p.name.startswith("."):
            continue  # an atomic write in progress
        try:
            rec = read_json(p)
        except ValueError as exc:
            raise ValueError(f"{p}: not a provenance record ({exc})") from exc
        if not isinstance(rec, dict) or "rule" not in rec or "outputs" not in rec:
            raise ValueError(f"{p}: not a provenance record (no rule/outputs)")
        out.append((p, rec))
    return out


def build_manifest(root: str | Path = PROVENANCE_DIR, *,
                   relative_to: str | Path | None = None) -> dict[str, Any]:
    """Every record under ``root``, each with ``record`` (its path, relative to ``relative_to``
    when given), sorted by (rule, record name): deterministic apart from the records' times."""
    base = Path(relative_to) if relative_to is not None else None
    entries = []
    for path, rec in iter_records(root):
        shown = path.relative_to(base) if base is not None else path
        entries.append({"record": shown.as_posix(), **rec})
    entries.sort(key=lambda e: (e["rule"], record_name(e.get("wildcards") or {})))
    return scrub({"format": FORMAT, "records": len(entries), "jobs": entries}, keys=False)


# ----------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m filmorph.provenance", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="write the provenance record of a finished job")
    r.add_argument("--rule", required=True)
    r.add_argument("--wildcard", action="append", default=[], metavar="K=V")
    r.add_argument("--params", default="{}", help="JSON object of the job's params")
    r.add_argument("--input", nargs="*", default=[])
    r.add_argument("--output", nargs="*", default=[])
    r.add_argument("--log", default=None)
    r.add_argument("--start", required=True, help="UTC ISO time the job started")
    r.add_argument("--root", default=PROVENANCE_DIR)
    m = sub.add_parser("manifest", help="collect every record into one manifest")
    m.add_argument("--root", default=PROVENANCE_DIR)
    m.add_argument("--out", default=MANIFEST)
    args = ap.parse_args(argv)
    if args.cmd == "record":
        wildcards = {}
        for kv in args.wildcard:
            k, sep, v = kv.partition("=")
            if not sep:
                ap.error(f"--wildcard {kv!r}: expected K=V")
            wildcards[k] = v
        params = json.loads(args.params)
        start = iso_utc(args.start)
        rec = build_record(rule=args.rule, wildcards=wildcards, params=params,
                           inputs=args.input, outputs=args.output, start=start, log=args.log,
                           seed=find_seed(params))
        print(write_record(record_path(args.rule, wildcards, args.root), rec))
    else:
        manifest = build_manifest(args.root)
        write_json_atomic(args.out, manifest)
        print(f"{args.out}: {manifest['records']} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
