"""Megatron indexed-dataset shards (.bin/.idx), written with megatron-core's own builder.

One corpus document is one entry (one sequence, one document), its token ids followed by
the end-of-document id. The dtype follows megatron-core's rule (uint16 below 65,500 ids,
else int32), so NeMo, Megatron-Bridge and NeMo Automodel read the files unchanged.
Files are written under temporary names and renamed on :meth:`ShardWriter.commit`.
This module knows nothing about arms or tokenizers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def shard_dtype(vocab_size: int) -> type[np.number]:
    """megatron-core's optimal dtype for a vocabulary of `vocab_size` ids."""
    from megatron.core.datasets.indexed_dataset import DType

    return DType.optimal_dtype(vocab_size)


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
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

        self.prefix = Path(prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.vocab_size = vocab_size
        self.dtype = shard_dtype(vocab_size)
        self._tmp = self.prefix.with_name(f".{self.prefix.name}.tmp-{os.getpid()}")
        remove_stale_temp_files(self.prefix)
        self._builder = IndexedDatasetBuilder(f"{self._tmp}.bin", dtype=self.dtype)
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
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    return IndexedDataset(str(prefix), mmap=True)
