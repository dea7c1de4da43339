"""One model answers a list of items: MCQ and GEN requests built, batched, scored, one
prediction record per item."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from filmorph import scoring
from filmorph.evaluate.batching import model_device, resolve_batch_size
from filmorph.evaluate.encoding import Encoder, mcq_requests
from filmorph.evaluate.generate import eos_ids, generate
from filmorph.evaluate.mcq import argmax, score_mcq
from filmorph.items import Item


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled or total == 0:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="seq", file=sys.stderr, dynamic_ncols=True)


def _base_record(item: Item) -> dict[str, Any]:
    return {
        "id": item.id,
        "benchmark": item.benchmark,
        "group": item.group,
        "task": item.task,
        "level": item.level,
        "format": item.format,
        "answer": item.answer,
        "gold": item.gold,
        "pred": None,
        "correct": None,
        "correct_norm": None,
        "options": None,
        "logprobs": None,
        "option_bytes": None,
        "option_tokens": None,
        "tie": None,
        "tie_norm": None,
        "pred_norm": None,
        "boundary_merge": None,
        "generated": None,
        "stop_reason": None,
        "new_tokens": None,
        "exact_match": None,
        "exact_match_strict": None,
        "edit_sim": None,
        **dict.fromkeys(scoring.GEN_FIELDS),
    }


def score(
    model: Any,
    tokenizer: Any,
    items: Sequence[Item],
    *,
    batch_size: int | str = "auto",
    max_new_tokens: int = 32,
    device: Any = None,
    progress: bool = False,
    share_context: bool = True,
    stats: dict[str, Any] | None = None,
    progress_label: str = "",
) -> list[dict[str, Any]]:
    """Answer ``items`` with ``model`` (an HF causal LM in eval mode) and return one prediction
    dict per item, in item order.

    Every record has ``id``, ``benchmark``, ``group``, ``task``, ``level``, ``format``,
    ``answer`` and ``correct``.  MCQ records add ``gold``, ``pred`` (option index by summed
    log-prob), ``pred_norm`` (by log-prob per byte), ``correct`` / ``correct_norm``, ``tie`` /
    ``tie_norm``, ``options``, ``logprobs``, ``option_bytes``, ``option_tokens`` and
    ``boundary_merge`` (the context's last tokens merged with the continuation).  GEN records
    add ``generated`` (the text cut at the first stop string), ``stop_reason``, ``new_tokens``
    and :func:`filmorph.scoring.score_gen`'s fields (``pred`` = ``extracted``, the answer read
    out of it; ``exact_match``, ``exact_match_strict``, ``edit_sim``, ``contains_match``,
    ``prefix_match``, ``scoring``); ``correct`` is ``exact_match``.  Fields of the other format
    are ``None``.

    ``batch_size``: sequences per forward pass, or ``"auto"`` (CPU: :data:`CPU_BATCH_SIZE`;
    CUDA: start at :data:`CUDA_START_BATCH_SIZE` and halve on out-of-memory).  ``device``: where
    inputs go (default: the model's).  ``share_context``: run each MCQ context once and score
    its options on copies of its KV cache (falls back to whole sequences for a model that
    returns no cache); the log-probs equal the whole-sequence ones up to float rounding.
    ``stats``, when given, receives the batch sizes used, request counts and seconds per format.
    ``progress_label`` prefixes the progress bars' names (``"<label> mcq"``), e.g. the file.
    """
    import torch

    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    device = torch.device(device) if device is not None else model_device(model)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    enc = Encoder(tokenizer)
    records = [_base_record(it) for it in items]
    mcq = [(i, it) for i, it in enumerate(items) if it.format == "mcq"]
    gen = [(i, it) for i, it in enumerate(items) if it.format == "gen"]
    st: dict[str, Any] = {"mcq_items": len(mcq), "gen_items": len(gen)}

    with torch.inference_mode():
        if mcq:
            t0 = time.perf_counter()
            bs, auto = resolve_batch_size(batch_size, device, "mcq")
            reqs, merged = mcq_requests(mcq, enc)
            bar = _progress(len(reqs), f"{progress_label} mcq".strip(), progress)
            try:
                lps, used, shared = score_mcq(
                    model,
                    reqs,
                    pad_id=pad_id,
                    device=device,
                    batch_size=bs,
                    auto=auto,
                    share_context=share_context,
                    progress=bar,
                )
            finally:
                bar.close()
            per_item: dict[int, list[tuple[float, int]]] = {}
            for r, lp in zip(reqs, lps, strict=True):
                per_item.setdefault(r.item, []).append((lp, len(r.tokens) - r.n_ctx))
            for idx, item in mcq:
                opts = list(item.options or [])
                lp = [x[0] for x in per_item[idx]]
                nbytes = [len((item.delimiter + o).encode("utf-8")) for o in opts]
                pred, tie = argmax(lp)
                pred_n, tie_n = argmax([v / b for v, b in zip(lp, nbytes, strict=True)])
                records[idx].update(
                    pred=pred,
                    pred_norm=pred_n,
                    correct=pred == item.gold,
                    correct_norm=pred_n == item.gold,
                    tie=tie,
                    tie_norm=tie_n,
                    options=opts,
                    logprobs=lp,
                    option_bytes=nbytes,
                    option_tokens=[x[1] for x in per_item[idx]],
                    boundary_merge=idx in merged,
                )
            st.update(
                mcq_sequences=len(reqs),
                mcq_contexts=len({tuple(r.tokens[: r.n_ctx]) for r in reqs}),
                mcq_shared_context=shared,
                mcq_batch_size=used,
                mcq_seconds=time.perf_counter() - t0,
            )
        if gen:
            t0 = time.perf_counter()
            bs, auto = resolve_batch_size(batch_size, device, "gen")
            prompts = enc([it.prompt for _, it in gen])
            bar = _progress(len(prompts), f"{progress_label} gen".strip(), progress)
            try:
                outs, used = generate(
                    model,
                    tokenizer,
                    prompts,
                    [list(it.stop) for _, it in gen],
                    max_new_tokens=max_new_tokens,
                    pad_id=pad_id,
                    eos=eos_ids(model, tokenizer),
                    device=device,
                    batch_size=bs,
                    auto=auto,
                    progress=bar,
                )
            finally:
                bar.close()
            for (idx, item), (text, why, n_new) in zip(gen, outs, strict=True):
                records[idx].update(
                    generated=text, stop_reason=why, new_tokens=n_new, **scoring.score_gen(item, text)
                )
            st.update(gen_prompts=len(prompts), gen_batch_size=used, gen_seconds=time.perf_counter() - t0)
    if stats is not None:
        stats.update(st)
    return records
