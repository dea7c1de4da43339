"""Progress bars on stderr (tqdm, imported only when a bar is shown) for the stages' commands."""

from __future__ import annotations

from typing import Any

__all__ = ["NoBar", "progress_bar"]


class NoBar:
    """What :func:`progress_bar` returns when no bar is shown: it takes updates and does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, desc: str, enabled: bool, *, unit: str = "doc") -> Any:
    """A tqdm bar over ``total`` units (``None``: unknown), or a :class:`NoBar` when not
    ``enabled``. Redrawn at most every 2 s."""
    if not enabled:
        return NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, mininterval=2.0, smoothing=0.1)
