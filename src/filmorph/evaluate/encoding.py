"""MCQ requests: prompts and options encoded the way the tokenizer does by default, split into
context and continuation tokens (lm-evaluation-harness's convention)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from filmorph.items import Item


class Encoder:
    """Encodes texts the way ``tokenizer(text)`` does by default (BOS where the tokenizer adds
    one), minus any special tokens the tokenizer appends at the end (an EOS after the context
    would break the context/continuation split)."""

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer
        probe = "a"
        with_special = tokenizer(probe)["input_ids"]
        plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
        self.n_suffix = 0
        # the special tokens around the plain encoding: prefix (kept), suffix (dropped)
        for start in range(len(with_special) - len(plain) + 1):
            if with_special[start : start + len(plain)] == plain:
                self.n_suffix = len(with_special) - start - len(plain)
                break

    def __call__(self, texts: list[str]) -> list[list[int]]:
        out = self.tok(texts)["input_ids"] if texts else []
        if self.n_suffix:
            out = [ids[: -self.n_suffix] for ids in out]
        return [list(ids) for ids in out]


def split_context(prompt: str, continuation: str) -> tuple[str, str]:
    """lm-eval's rule: trailing whitespace of the context moves to the continuation."""
    n = len(prompt) - len(prompt.rstrip())
    if n and n < len(prompt):
        return prompt[:-n], prompt[-n:] + continuation
    return prompt, continuation


@dataclass
class McqRequest:
    item: int
    option: int
    tokens: list[int]  # context + continuation
    n_ctx: int  # the continuation is tokens[n_ctx:]


def mcq_requests(items: Sequence[tuple[int, Item]], enc: Encoder) -> tuple[list[McqRequest], set[int]]:
    """The option requests of the MCQ items and the items whose context tokens change when the
    continuation is appended (tokens merging across the boundary)."""
    contexts, wholes, keys = [], [], []
    ids = dict(items)
    for idx, item in items:
        for j, opt in enumerate(item.options or []):
            ctx, cont = split_context(item.prompt, item.delimiter + opt)
            contexts.append(ctx)
            wholes.append(ctx + cont)
            keys.append((idx, j))
    unique = list(dict.fromkeys(contexts))
    encoded = dict(zip(unique, enc(unique), strict=True))
    ctx_ids, whole_ids = [encoded[c] for c in contexts], enc(wholes)
    reqs: list[McqRequest] = []
    merged: set[int] = set()
    for (idx, j), c, w in zip(keys, ctx_ids, whole_ids, strict=True):
        n_ctx = min(len(c), len(w) - 1)
        if n_ctx < 1:
            raise ValueError(
                f"item {ids[idx].id!r}: option {j} leaves no context token to "
                "condition on (the tokenizer adds no BOS and context + option is one token)"
            )
        if w[: len(c)] != c:
            merged.add(idx)
        reqs.append(McqRequest(idx, j, w, n_ctx))
    return reqs, merged
