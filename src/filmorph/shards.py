"""Megatron indexed-dataset shards (.bin/.idx), written with megatron-core's own builder.

One corpus document is one entry (one sequence, one document), its token ids followed by
the end-of-document id. The dtype follows megatron-core's rule (uint16 below 65,500 ids,
else int32), so NeMo, Megatron-Bridge and NeMo Automodel read the files unchanged.
Files are written under temporary names and renamed on :meth:`ShardWriter.commit`.
This module knows nothing about arms or tokenizers.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _indexed_dataset():
    """megatron-core's ``indexed_dataset`` module. Importing it imports ``megatron.core`` whole,
    whose optimizer and FSDP modules warn that Transformer Engine and Apex are missing (and, in
    0.19, a docstring's invalid escape): about training kernels, not these files, so those
    warnings stay out of every tokenize job's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Transformer Engine and Apex are not installed")
        warnings.filterwarnings("ignore", category=SyntaxWarning)
        from megatron.core.datasets import indexed_dataset

    return indexed_dataset


def shard_dtype(vocab_size: int) -> type[np.number]:
    """megatron-core's optimal dtype for a vocabulary of `vocab_size` ids."""
    return _indexed_dataset().DType.optimal_dtype(vocab_size)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid < 2**31  # exists, owned by another user
    return True


def remove_stale_temp_files(prefix: str | Path) -> list[Path]:
    """Delete the hidden ``.NAME.tmp-PID.{bin,idx}`` files a killed writer of ``prefix`` left
    behind (PID no longer running on this host); returns what was removed."""
    prefix = Path(prefix)
    removed = []
    for f in prefix.parent.glob(f".{prefix.name}.tmp-*"):
        pid = f.name[len(f".{prefix.name}.tmp-") :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


class ShardWriter:
    """Write documents to `<prefix>.bin`/`<prefix>.idx`, visible only after commit()."""

    def __init__(self, prefix: str | Path, vocab_size: int):
        self.prefix = Path(prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.vocab_size = vocab_size
        self.dtype = shard_dtype(vocab_size)
        self._tmp = self.prefix.with_name(f".{self.prefix.name}.tmp-{os.getpid()}")
        remove_stale_temp_files(self.prefix)
        self._builder = _indexed_dataset().IndexedDatasetBuilder(f"{self._tmp}.bin", dtype=self.dtype)
        self.documents = 0
        self.tokens = 0
        self._done = False

    def add(self, ids: Sequence[int] | np.ndarray) -> None:
        """Append one document (ids already end with the EOD id)."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size == 0:
            raise ValueError("empty document")
        if arr.min() < 0 or arr.max() >= self.vocab_size:
            raise ValueError(f"token id out of range [0, {self.vocab_size})")
        self._builder.add_document(arr.astype(self.dtype, copy=False), [arr.size])
        self.documents += 1
        self.tokens += int(arr.size)

    def commit(self) -> None:
        """Finish the index and move both files to their final names."""
        self._builder.finalize(f"{self._tmp}.idx")
        os.replace(f"{self._tmp}.bin", f"{self.prefix}.bin")
        os.replace(f"{self._tmp}.idx", f"{self.prefix}.idx")
        self._done = True

    def abort(self) -> None:
        """Remove the temporary files (after an error). Needs no disk space: on a full disk
        closing the data file fails to flush its buffer, and the files are removed anyway."""
        try:
            self._builder.data_file.close()
        except OSError:
            pass  # e.g. ENOSPC flushing the buffer; the file goes below (its fd is closed)
        finally:
            for ext in (".bin", ".idx"):
                Path(f"{self._tmp}{ext}").unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._done:
            self.commit()
        elif exc_type is not None:
            self.abort()


def read_shard(prefix: str | Path):
    """Open a shard with megatron-core's stock reader (`IndexedDataset`)."""
    return _indexed_dataset().IndexedDataset(str(prefix), mmap=True)


# ---------------------------------------------------------------------------- checking a shard
_IDX_HEADER = b"MMIDIDX\x00\x00"
_IDX_FIXED = 34  # header 9 + version 8 + dtype code 1 + sequence count 8 + document count 8


def _dtype_from_code(code: int) -> np.dtype:
    return np.dtype(_indexed_dataset().DType.dtype_from_code(code))


def check_shard(prefix: str | Path, *, stats: Mapping[str, Any] | None = None) -> list[str]:
    """Structural problems of the shard ``prefix.{idx,bin}`` (empty when sound), each naming the
    file: megatron-core's index layout (header, version, dtype code, counts, then int32 lengths,
    int64 pointers, int64 document indices) must fill the ``.idx`` exactly, the pointers must
    follow from the lengths, the ``.bin`` must be exactly as long as the lengths say, and, with
    the tokenize stage's ``stats`` (``eod_id``, ``tokenizer.vocab_size``, ``documents_out``,
    ``tokens_written``, ``dtype``), every entry ends with the EOD id and every id is in the
    vocabulary. ``prefix.doc_ids.txt`` must have one line per entry."""
    prefix = Path(prefix)
    idx, bin_ = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    problems = [f"{p}: missing" for p in (idx, bin_) if not p.is_file()]
    if problems:
        return problems
    raw = idx.read_bytes()
    if len(raw) < _IDX_FIXED:
        return [f"{idx}: {len(raw)} bytes, shorter than the {_IDX_FIXED}-byte index header"]
    if raw[:9] != _IDX_HEADER:
        return [f"{idx}: bad magic {raw[:9]!r} (not a megatron-core index)"]
    (version,) = struct.unpack_from("<Q", raw, 9)
    (code,) = struct.unpack_from("<B", raw, 17)
    n_seq, n_doc = struct.unpack_from("<QQ", raw, 18)
    if version != 1:
        return [f"{idx}: index version {version}, expected 1"]
    try:
        dtype = _dtype_from_code(code)
    except (KeyError, ValueError):
        return [f"{idx}: unknown dtype code {code}"]
    expected = _IDX_FIXED + 12 * n_seq + 8 * n_doc
    if len(raw) != expected:
        return [f"{idx}: {len(raw)} bytes, expected {expected} for {n_seq} sequences and "
                f"{n_doc} document indices ({'truncated' if len(raw) < expected else 'extra bytes'})"]
    lengths = np.frombuffer(raw, dtype=np.int32, count=n_seq, offset=_IDX_FIXED).astype(np.int64)
    pointers = np.frombuffer(raw, dtype=np.int64, count=n_seq, offset=_IDX_FIXED + 4 * n_seq)
    docs = np.frombuffer(raw, dtype=np.int64, count=n_doc, offset=_IDX_FIXED + 12 * n_seq)
    size = dtype.itemsize
    if n_seq and (lengths <= 0).any():
        problems.append(f"{idx}: {int((lengths <= 0).sum())} entries with length <= 0")
    want = np.concatenate([[0], np.cumsum(lengths)[:-1]]) * size if n_seq else lengths
    if not np.array_equal(pointers, want):
        bad = int(np.flatnonzero(pointers != want)[0])
        problems.append(f"{idx}: sequence pointer {bad} is {int(pointers[bad])}, the lengths say "
                        f"{int(want[bad])}")
    if n_doc < 1 or docs[0] != 0 or docs[-1] != n_seq or (np.diff(docs) < 0).any():
        problems.append(f"{idx}: document indices do not run from 0 to {n_seq}")
    tokens = int(lengths.sum())
    bin_bytes = bin_.stat().st_size
    if bin_bytes != tokens * size:
        problems.append(f"{bin_}: {bin_bytes} bytes, the index expects {tokens * size} "
                        f"({tokens} {dtype.name} tokens)")
    stats = dict(stats or {})
    if not problems and n_seq:
        data = np.memmap(bin_, dtype=dtype, mode="r")
        eod = stats.get("eod_id")
        if eod is not None:
            ends = data[pointers // size + lengths - 1]
            if (ends != eod).any():
                bad = int(np.flatnonzero(ends != eod)[0])
                problems.append(f"{bin_}: entry {bad} ends with id {int(ends[bad])}, not the EOD "
                                f"id {eod}")
        vocab = (stats.get("tokenizer") or {}).get("vocab_size")
        if vocab is not None:
            lo, hi = int(data.min()), int(data.max())
            if lo < 0 or hi >= int(vocab):
                problems.append(f"{bin_}: token ids in [{lo}, {hi}], outside the vocabulary "
                                f"[0, {vocab})")
        del data
    if stats:
        if stats.get("dtype") not in (None, dtype.name):
            problems.append(f"{idx}: dtype {dtype.name}, stats.json says {stats['dtype']}")
        if stats.get("documents_out") not in (None, n_seq):
            problems.append(f"{idx}: {n_seq} entries, stats.json says {stats['documents_out']}")
        if stats.get("tokens_written") not in (None, tokens):
            problems.append(f"{idx}: {tokens} tokens, stats.json says {stats['tokens_written']}")
    ids = Path(f"{prefix}.doc_ids.txt")
    if not ids.is_file():
        problems.append(f"{ids}: missing")
    else:
        n_ids = len(ids.read_text(encoding="utf-8").splitlines())
        if n_ids != n_seq:
            problems.append(f"{ids}: {n_ids} document ids for {n_seq} shard entries")
    return problems
