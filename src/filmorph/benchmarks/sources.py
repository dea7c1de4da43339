"""Where a published benchmark file comes from: a local path, a hub dataset file or an https URL.

    python -m filmorph.benchmarks.sources fetch --source SOURCE --out FILE [--sha256 HEX]

* a local path is read where it is;
* ``owner/name:path/in/repo`` (optionally ``hf://``/``datasets/`` in front) is a file of a
  Hugging Face *dataset* repository, downloaded with ``huggingface_hub.hf_hub_download``
  (``HF_TOKEN`` from the environment only);
* ``http(s)://...`` is downloaded as is.

``fetch`` copies a hub or URL source to ``FILE`` atomically and writes ``FILE.fetch.json``
(source, url, bytes, sha256); with ``--sha256`` a different download is an error. The workflow
runs it on the login node (rule ``fetch_benchmark``), so the conversion itself needs no network.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ..io import atomic_path, write_json_atomic

_HUB_ID = re.compile(r"(?:hf://)?(?:datasets/)?([\w.-]+/[\w.-]+):(.+)")
_URL = re.compile(r"https?://", re.IGNORECASE)


def is_url(source: str) -> bool:
    return bool(_URL.match(source))


def hub_id(source: str) -> tuple[str, str] | None:
    """(repo, path) of a hub dataset file id, or None."""
    m = _HUB_ID.fullmatch(source)
    return (m[1], m[2]) if m and not is_url(source) else None


def kind(source: str) -> str:
    """``url``, ``hub`` or ``local`` (a source that is none of them is taken as a local path)."""
    if is_url(source):
        return "url"
    if not Path(source).exists() and hub_id(source):
        return "hub"
    return "local"


def basename(source: str) -> str:
    """The file name a source carries (its last path component; URL query dropped)."""
    if is_url(source):
        return Path(urllib.parse.urlparse(source).path).name or "download"
    h = hub_id(source)
    return Path(h[1] if h and kind(source) == "hub" else source).name


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download_url(url: str, out: Path, timeout: float = 120.0) -> None:
    with atomic_path(out) as tmp, urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:
        shutil.copyfileobj(resp, fh, 1 << 20)


def _download_hub(repo: str, path: str) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(
        hf_hub_download(repo_id=repo, filename=path, repo_type="dataset", token=os.environ.get("HF_TOKEN"))
    )


def fetch(source: str, out: str | Path, sha256: str | None = None) -> dict[str, Any]:
    """Copy a hub or URL ``source`` to ``out`` (atomically) and write ``out.fetch.json``; returns
    that record. ValueError if ``sha256`` is given and the download differs."""
    out = Path(out)
    k = kind(source)
    if k == "url":
        _download_url(source, out)
        url = source
    elif k == "hub":
        repo, path = hub_id(source)  # type: ignore[misc]
        src = _download_hub(repo, path)
        with atomic_path(out) as tmp:
            shutil.copyfile(src, tmp)
        url = f"https://huggingface.co/datasets/{repo}/resolve/main/{path}"
    else:
        raise ValueError(f"{source}: a local file needs no fetching")
    digest = sha256_file(out)
    if sha256 and digest != sha256.lower():
        out.unlink()
        raise ValueError(f"{source}: sha256 {digest} differs from the configured {sha256}")
    record = {"source": source, "kind": k, "url": url, "bytes": out.stat().st_size, "sha256": digest}
    write_json_atomic(fetch_record_path(out), record)
    return record


def fetch_record_path(path: str | Path) -> Path:
    return Path(str(path) + ".fetch.json")


def local_copy(source: str, tmpdir: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """A local file holding ``source`` (fetched into ``tmpdir`` for a hub or URL source) and its
    fetch record (None for a local file; a fetched file's ``.fetch.json`` beside it is read)."""
    if kind(source) == "local":
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"{source}: no such file (nor a hub id 'owner/name:path' or an https URL)"
            )
        rec = fetch_record_path(path)
        return path, json.loads(rec.read_text(encoding="utf-8")) if rec.is_file() else None
    out = Path(tmpdir) / basename(source)
    return out, fetch(source, out)


def temp_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="filmorph-bench-")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m filmorph.benchmarks.sources",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download a hub or URL source to a local file (+ .fetch.json)")
    f.add_argument("--source", required=True, help="owner/name:path/in/repo or an http(s) URL")
    f.add_argument("--out", required=True, help="the local copy to write")
    f.add_argument("--sha256", default=None, help="expected sha256 of the download (optional)")
    a = p.parse_args(argv)
    print(json.dumps(fetch(a.source, a.out, a.sha256)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
