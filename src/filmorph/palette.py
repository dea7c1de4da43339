"""The arms' colours: one home, so an arm has the same colour in every plot (the report's
headline, bars, level curves and deltas, the tokenization summary, the training curves).

The three arm types and ``base`` (a model before training) have fixed colours; any other
(named) arm gets one of :data:`EXTRA` chosen by the sha256 of its name, so it keeps its colour
whatever other arms a run has and in every run.
"""

from __future__ import annotations

import hashlib

__all__ = ["ARM_COLORS", "EXTRA", "arm_color", "arm_order"]

#: Fixed colours (colour-blind-safe Okabe-Ito hues) of ``base`` and the three arm types.
ARM_COLORS = {
    "base": "#7f7f7f",
    "vanilla": "#0072b2",
    "stochastok": "#e69f00",
    "patok": "#009e73",
}
#: Colours for named arms (none of them is one of :data:`ARM_COLORS`).
EXTRA = ("#cc79a7", "#d55e00", "#56b4e9", "#8c564b", "#9467bd", "#bcbd22", "#17becf", "#000000")


def arm_color(arm: str) -> str:
    """The colour of ``arm`` (lower-case hex): fixed for the arm types, stable for named arms."""
    if arm in ARM_COLORS:
        return ARM_COLORS[arm]
    digest = hashlib.sha256(arm.encode("utf-8")).digest()
    return EXTRA[int.from_bytes(digest[:4], "big") % len(EXTRA)]


def arm_order(arms) -> list[str]:
    """``arms`` in plotting order: ``base``, the arm types in the study's order, then named
    arms by name."""
    fixed = list(ARM_COLORS)
    return sorted(set(arms), key=lambda a: (fixed.index(a) if a in fixed else len(fixed), a))
