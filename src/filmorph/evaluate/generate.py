"""GEN: batched greedy decoding until ``max_new_tokens``, an end-of-sequence token or one of
the item's stop strings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from filmorph.evaluate.batching import pad_left, run_batched


def truncate_at_stop(text: str, stops: Iterable[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop string after its leading whitespace, and whether
    one occurred. Leading whitespace never ends an answer: a model that starts its answer on a
    new line after ``Answer:`` is not scored as having answered nothing."""
    start = len(text) - len(text.lstrip())
    cut = min((i for i in (text.find(s, start) for s in stops if s) if i >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (
        getattr(tokenizer, "eos_token_id", None),
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
    ):
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, list | tuple):
            ids.update(int(x) for x in src)
    return ids


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    stops: list[list[str]],
    *,
    max_new_tokens: int,
    pad_id: int,
    eos: set[int],
    device: Any,
    batch_size: int,
    auto: bool,
    progress: Any,
) -> tuple[list[tuple[str, str, int]], int]:
    """Greedy continuations of ``prompts``: (text cut at the first stop string, why it ended:
    ``stop`` | ``eos`` | ``length``, new tokens) per prompt, in order; batch size used."""
    import torch

    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    out: list[tuple[str, str, int]] = [("", "length", 0)] * len(prompts)

    def run(start: int, stop: int) -> None:
        rows = order[start:stop]
        ids, mask, pos = pad_left([prompts[i] for i in rows], pad_id, device)
        gen: list[list[int]] = [[] for _ in rows]
        texts = [""] * len(rows)
        why: list[str | None] = [None] * len(rows)
        past = None
        cur_ids, cur_pos = ids, pos
        for _ in range(max_new_tokens):
            res = model(
                input_ids=cur_ids,
                attention_mask=mask,
                position_ids=cur_pos,
                past_key_values=past,
                use_cache=True,
                logits_to_keep=1,
            )
            nxt = res.logits[:, -1, :].argmax(-1)
            grew = []
            for r, tok in enumerate(nxt.tolist()):
                if why[r] is not None:
                    continue
                if tok in eos:
                    why[r] = "eos"
                else:
                    gen[r].append(tok)
                    grew.append(r)
            decoded = tokenizer.batch_decode([gen[r] for r in grew], skip_special_tokens=True) if grew else []
            for r, text in zip(grew, decoded, strict=True):
                texts[r], hit = truncate_at_stop(text, stops[rows[r]])
                if hit:
                    why[r] = "stop"
            if all(w is not None for w in why):
                break
            ones = torch.ones((len(rows), 1), dtype=mask.dtype, device=mask.device)
            mask = torch.cat([mask, ones], dim=1)
            past = getattr(res, "past_key_values", None)
            if past is not None:  # incremental decoding with the model's KV cache
                cur_ids, cur_pos = nxt[:, None], cur_pos[:, -1:] + 1
            else:  # a model without a cache sees the whole sequence again
                cur_ids = torch.cat([cur_ids, nxt[:, None]], dim=1)
                cur_pos = torch.cat([cur_pos, cur_pos[:, -1:] + 1], dim=1)
        for r, i in enumerate(rows):
            out[i] = (texts[r], why[r] or "length", len(gen[r]))

    used = run_batched([1] * len(prompts), batch_size, auto, run, progress.update)
    return out, used
