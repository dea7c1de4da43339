"""A token sequence stored in blocks, for positional edits in O(log n + block) time.

The published Patok rewrites windows of the *current* sequence one after another (a window
may cover tokens an earlier window produced), which a plain list does in O(n) per edit and
O(n²) per document. :class:`BlockSeq` keeps the ids in blocks of about `block` ids with a
Fenwick tree over the block lengths, so locating position i, reading a short window and
replacing it cost O(log(n / block) + block).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class BlockSeq:
    """Ids in blocks; `len`, `window(st, k)`, `replace(st, k, new)`, `to_list()`."""

    def __init__(self, ids: Sequence[int], block: int = 256):
        if block < 1:
            raise ValueError("block must be >= 1")
        ids = list(ids)
        self.blocks: list[list[int]] = [ids[i:i + block] for i in range(0, len(ids), block)] or [[]]
        self.n = len(ids)
        self.nb = len(self.blocks)
        self.tree = [0] * (self.nb + 1)
        for i, b in enumerate(self.blocks):
            self._add(i, len(b))
        top = 1
        while top * 2 <= self.nb:
            top *= 2
        self._top = top

    def __len__(self) -> int:
        return self.n

    def _add(self, i: int, d: int) -> None:
        i += 1
        tree, nb = self.tree, self.nb
        while i <= nb:
            tree[i] += d
            i += i & -i

    def locate(self, pos: int) -> tuple[int, int]:
        """(block index, offset in it) of position `pos` (0 <= pos < len)."""
        idx, rem, step, tree, nb = 0, pos, self._top, self.tree, self.nb
        while step:
            j = idx + step
            if j <= nb and tree[j] <= rem:
                idx = j
                rem -= tree[j]
            step >>= 1
        return idx, rem

    def window(self, st: int, k: int) -> list[int]:
        """The ids at positions [st, st + k)."""
        if self.nb == 1:
            return self.blocks[0][st:st + k]
        b, off = self.locate(st)
        out = self.blocks[b][off:off + k]
        while len(out) < k:
            b += 1
            out.extend(self.blocks[b][:k - len(out)])
        return out

    def replace(self, st: int, k: int, new: Iterable[int]) -> None:
        """Replace the ids at [st, st + k) by `new`."""
        if self.nb == 1:  # one block: a list (the Fenwick tree is not consulted)
            blk = self.blocks[0]
            before = len(blk)
            blk[st:st + k] = new
            self.n += len(blk) - before
            return
        new = list(new)
        b, off = self.locate(st) if st < self.n else (self.nb - 1, len(self.blocks[-1]))
        first = self.blocks[b]
        take = min(k, len(first) - off)
        first[off:off + take] = new
        self._add(b, len(new) - take)
        left = k - take
        while left:
            b += 1
            blk = self.blocks[b]
            t = min(left, len(blk))
            del blk[:t]
            self._add(b, -t)
            left -= t
        self.n += len(new) - k

    def to_list(self) -> list[int]:
        out: list[int] = []
        for b in self.blocks:
            out.extend(b)
        return out
