"""Atomic file writing: outputs appear under their final name only when complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link ``src`` to ``dst``, or copy it (with its metadata) where a link cannot be made."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def replace_path(tmp: str | Path, final: str | Path) -> None:
    """Rename `tmp` to `final`. An existing directory `final` is moved aside first and put
    back if the rename fails, so `final` is always either the old or the new version."""
    tmp, final = Path(tmp), Path(final)
    if final.is_dir() and not final.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent)) / "old"
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old, final)
            raise
        finally:
            shutil.rmtree(old.parent, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only on success.

    A killed or failing writer leaves at most a `.tmp-*` file, never a file under the
    final name. Works for files and directories.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        replace_path(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                       encoding="utf-8")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def decode_utf8(raw: bytes, display: str | Path) -> str:
    """`raw` (a whole text file) as UTF-8, a byte-order mark at its start dropped. Bytes that
    are not UTF-8 raise ValueError naming ``display:line``, the column and the byte offset."""
    bom = b"\xef\xbb\xbf"
    skip = len(bom) if raw.startswith(bom) else 0
    try:
        return raw[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = skip + exc.start
        line_start = raw.rfind(b"\n", 0, at) + 1
        lineno = raw.count(b"\n", 0, at) + 1
        detail = bad_utf8_detail(raw[at], at - line_start + 1, at, exc.reason)
        raise ValueError(f"{display}:{lineno}: {detail}") from None


def bad_utf8_detail(byte: int, column: int, offset: int, reason: str) -> str:
    """How every reader names a byte that is not UTF-8: the byte, its column in its line and
    its byte offset in the file."""
    return f"byte {byte:#04x} at column {column} (byte offset {offset} in the file) is not UTF-8: {reason}"


def log_tail(path: str | Path, *, start: int = 0, lines: int = 20) -> str:
    """The last `lines` non-blank lines written to the log `path` after byte `start` (a
    progress bar's carriage-return redraws reduced to their last state), joined by newlines."""
    with open(path, "rb") as fh:
        fh.seek(start)
        text = fh.read().decode("utf-8", errors="replace")
    out = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return "\n".join([ln for ln in out if ln.strip()][-lines:])
