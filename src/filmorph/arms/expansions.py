"""The StochasTok expansion table: every token → the pairs of tokens that spell it exactly.

A pair (l, r) is an expansion of token t when bytes(l) + bytes(r) == bytes(t), where
bytes() is what a token contributes to decoded text (:func:`filmorph.tokenizers.token_bytes`):
SentencePiece's ``▁`` is a space and byte-fallback pieces ``<0xNN>`` are one raw byte;
byte-level BPE strings are mapped back through the GPT-2 byte alphabet. Working on bytes
makes every expansion decode to the same text, for both tokenizer families.

When several ids spell the same bytes (``A`` and ``<0x41>`` in Gemma), the table uses one
canonical id for them: an ordinary piece before a byte-fallback piece, then the lowest id.
Special tokens (bytes None) are never split and never produced.

The table is stored in CSR form (`offsets`, `lefts`, `rights`): the pairs of token t are
``lefts[offsets[t]:offsets[t+1]]`` / ``rights[...]``. Building it is one dictionary lookup
per byte split point of the vocabulary (about 2 million for Gemma's 262k tokens).
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np


def canonical_ids(token_bytes: Sequence[bytes | None],
                  byte_fallback_ids: Sequence[int] = ()) -> dict[bytes, int]:
    """Map each distinct byte string to one id: ids that are not byte-fallback ids first (so
    ``<0x41>`` never stands for ``A``), then the lowest id."""
    fallback = set(byte_fallback_ids)
    out: dict[bytes, int] = {}
    for tid, b in enumerate(token_bytes):
        if b is None or tid in fallback:
            continue
        out.setdefault(b, tid)
    for tid in sorted(fallback):
        b = token_bytes[tid]
        if b is not None:
            out.setdefault(b, tid)
    return out


def token_blob(token_bytes: Sequence[bytes]) -> tuple[bytes, array]:
    """Every token's bytes in one blob and where each starts (int64, one more than tokens, the
    last the blob's length): how the compiled Patok loops read a vocabulary."""
    offsets = array("q", [0])
    total = 0
    for b in token_bytes:
        total += len(b)
        offsets.append(total)
    return b"".join(token_bytes), offsets


def tables_fingerprint(token_bytes: Sequence[bytes | None]) -> str:
    """sha256 over the vocabulary's byte strings: ties a saved table to its tokenizer."""
    h = hashlib.sha256()
    for b in token_bytes:
        h.update(b"\xff" if b is None else len(b).to_bytes(4, "little") + b)
    return h.hexdigest()


@dataclass
class ExpansionTable:
    """CSR table of the 2-token expansions of every token id."""

    offsets: array
    lefts: array
    rights: array
    fingerprint: str

    @property
    def vocab_size(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_pairs(self) -> int:
        return len(self.lefts)

    @cached_property
    def starts_counts(self) -> tuple[list[int], list[int]]:
        """(first pair index, number of pairs) of every token id, as lists: the arms' inner
        loops index these (a list hands back its int objects; an array makes new ones)."""
        offs = np.frombuffer(self.offsets, dtype=np.int64)
        return offs[:-1].tolist(), np.diff(offs).tolist()

    @cached_property
    def native(self):
        """The table as :class:`filmorph._native.Table` (a view of these arrays) for the C
        expansion loop, or None when the extension is not built."""
        try:
            from filmorph._native import Table
        except ImportError:  # pragma: no cover -- where the extension is not built
            return None
        return Table(self.offsets, self.lefts, self.rights)

    def pairs(self, tid: int) -> list[tuple[int, int]]:
        """All (left, right) expansions of `tid`."""
        lo, hi = self.offsets[tid], self.offsets[tid + 1]
        return list(zip(self.lefts[lo:hi], self.rights[lo:hi], strict=True))

    @classmethod
    def build(cls, token_bytes: Sequence[bytes | None],
              byte_fallback_ids: Sequence[int] = ()) -> ExpansionTable:
        """Build the table from per-id token bytes (None = special, never split)."""
        canon = canonical_ids(token_bytes, byte_fallback_ids)
        get = canon.get
        offsets = array("q", [0])
        lefts, rights = array("q"), array("q")
        for b in token_bytes:
            if b is not None and len(b) > 1:
                for j in range(1, len(b)):
                    left = get(b[:j])
                    if left is not None:
                        right = get(b[j:])
                        if right is not None:
                            lefts.append(left)
                            rights.append(right)
            offsets.append(len(lefts))
        return cls(offsets, lefts, rights, tables_fingerprint(token_bytes))

    def save(self, path: str | Path) -> None:
        """Write the table as a .npz (callers wrap this in an atomic rename)."""
        with open(path, "wb") as fh:
            np.savez(fh, offsets=np.frombuffer(self.offsets, dtype=np.int64),
                     lefts=np.frombuffer(self.lefts, dtype=np.int64),
                     rights=np.frombuffer(self.rights, dtype=np.int64),
                     fingerprint=np.array(self.fingerprint))

    @classmethod
    def load(cls, path: str | Path, expect_fingerprint: str | None = None) -> ExpansionTable:
        """Read a saved table; refuse one built for another vocabulary."""
        with np.load(path) as z:
            fp = str(z["fingerprint"])
            if expect_fingerprint is not None and fp != expect_fingerprint:
                raise ValueError(f"{path}: expansion table was built for another tokenizer "
                                 f"(fingerprint {fp[:12]}… != {expect_fingerprint[:12]}…)")
            return cls(array("q", z["offsets"].astype(np.int64).tobytes()),
                       array("q", z["lefts"].astype(np.int64).tobytes()),
                       array("q", z["rights"].astype(np.int64).tobytes()), fp)
