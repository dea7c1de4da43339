"""Multi-digit addition: a 3-digit number plus a number of up to 3 digits, as in the published
set (a = n // 1000, b = n % 1000 for n drawn from [100000, 1000000)); the prompt is ``"341+114="``
and the answer follows it directly (empty delimiter)."""

from __future__ import annotations

import random

from .common import Question, Task

LOW, HIGH = 100_000, 1_000_000


def _swapped_digits(s: int, rng: random.Random) -> int | None:
    digits = str(s)
    pos = [
        i for i in range(len(digits) - 1) if digits[i] != digits[i + 1] and not (i == 0 and digits[1] == "0")
    ]
    if not pos:
        return None
    i = rng.choice(pos)
    return int(digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :])


def distractors(s: int, rng: random.Random) -> list[str]:
    """Three distinct non-negative near misses of the sum ``s``: off by 1-20, two adjacent digits
    swapped, off by 10, off by 100 (three of these kinds, in random order)."""
    kinds = ["small", "swap", "ten", "hundred"]
    rng.shuffle(kinds)
    out: list[int] = []
    for kind in kinds:
        if len(out) == 3:
            break
        if kind == "small":
            x = s + rng.choice([-1, 1]) * rng.randint(1, 20)
        elif kind == "swap":
            x = _swapped_digits(s, rng)
        elif kind == "ten":
            x = s + rng.choice([-10, 10])
        else:
            x = s + rng.choice([-100, 100])
        if x is not None and x >= 0 and x != s and x not in out:
            out.append(x)
    while len(out) < 3:
        x = s + rng.choice([-1, 1]) * rng.randint(1, 20)
        if x >= 0 and x != s and x not in out:
            out.append(x)
    return [str(x) for x in out]


def build(draw: int, rng: random.Random) -> Question:
    n = rng.randrange(LOW, HIGH)
    a, b = divmod(n, 1000)
    s = a + b
    return Question(
        f"{a}+{b}=",
        str(s),
        distractors(s, rng),
        delimiter="",
        source=[],
        meta={"a": a, "b": b},
        signature=f"{a}+{b}",
    )


TASKS: tuple[Task, ...] = (Task("three_digit", "addition", lambda: range(HIGH - LOW), build, weighted=False),)
