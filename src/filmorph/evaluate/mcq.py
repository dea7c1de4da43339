"""MCQ scoring: the summed log-probability of each option's continuation tokens (each context
run once, its options scored on copies of its KV cache), and the argmax with ties counted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from filmorph.evaluate.batching import pad_left, run_batched
from filmorph.evaluate.encoding import McqRequest

LOGPROB_CHUNK_BYTES = 1 << 30  # float32 logits converted at a time when summing log-probs


def argmax(values: Sequence[float]) -> tuple[int, bool]:
    """Index of the maximum (the lowest such index) and whether another index ties with it."""
    best = max(range(len(values)), key=lambda i: (values[i], -i))
    tie = sum(1 for v in values if v == values[best]) > 1
    return best, tie


def _sum_logprobs(logits: Any, spans: Sequence[tuple[int, Sequence[int]]]) -> Any:
    """Per row ``r`` of ``logits`` [B, L, V]: the summed float32 log-softmax at the targets of
    ``spans[r] = (start, targets)``, read at positions ``start .. start + len(targets) - 1``.
    A float64 tensor [B] on the logits' device (no host sync); rows converted in chunks."""
    import torch

    b, length, vocab = logits.shape
    tgt = torch.zeros((b, length), dtype=torch.long)
    valid = torch.zeros((b, length), dtype=torch.bool)
    for r, (start, targets) in enumerate(spans):
        tgt[r, start : start + len(targets)] = torch.tensor(list(targets), dtype=torch.long)
        valid[r, start : start + len(targets)] = True
    tgt, valid = tgt.to(logits.device), valid.to(logits.device)
    step = max(1, LOGPROB_CHUNK_BYTES // (4 * length * vocab))
    out = []
    for i in range(0, b, step):
        lg = logits[i : i + step].float()
        lp = lg.gather(-1, tgt[i : i + step, :, None]).squeeze(-1) - torch.logsumexp(lg, dim=-1)
        out.append(torch.where(valid[i : i + step], lp.double(), 0.0).sum(-1))
    return torch.cat(out)


def _score_plain(model: Any, reqs: Sequence[McqRequest], pad_id: int, device: Any) -> list[float]:
    """One forward pass over every whole sequence (left-padded); the continuation's logits are
    the last ones (``logits_to_keep``)."""
    ids, mask, pos = pad_left([r.tokens[:-1] for r in reqs], pad_id, device)
    keep = max(len(r.tokens) - r.n_ctx for r in reqs)
    logits = model(
        input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=keep
    ).logits[:, -keep:, :]
    spans = [(keep - (len(r.tokens) - r.n_ctx), r.tokens[r.n_ctx :]) for r in reqs]
    return _sum_logprobs(logits, spans).tolist()


def _score_shared(
    model: Any,
    contexts: Sequence[tuple[int, ...]],
    groups: Sequence[list[McqRequest]],
    pad_id: int,
    device: Any,
) -> list[list[float]] | None:
    """Each context once (left-padded, KV cache kept), then every continuation of it on a copy of
    its context's cache (right-padded).  ``None`` when the model returns no reorderable cache."""
    import torch

    ids, mask, pos = pad_left(contexts, pad_id, device)
    res = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    past = getattr(res, "past_key_values", None)
    if past is None or not hasattr(past, "reorder_cache"):
        return None
    flat = [(g, r) for g, grp in enumerate(groups) for r in grp]  # one row per option
    sel = torch.tensor([g for g, _ in flat], dtype=torch.long, device=ids.device)
    # the first continuation token is predicted by the context's last position
    first = _sum_logprobs(res.logits[:, -1:, :][sel], [(0, r.tokens[r.n_ctx : r.n_ctx + 1]) for _, r in flat])
    longer = [i for i, (_, r) in enumerate(flat) if len(r.tokens) - r.n_ctx > 1]
    if longer:
        past.reorder_cache(sel[longer])
        tails = [flat[i][1].tokens[flat[i][1].n_ctx : -1] for i in longer]  # inputs after the context
        width = max(len(t) for t in tails)
        cin = torch.full((len(longer), width), pad_id, dtype=torch.long)
        cmask = torch.zeros((len(longer), width), dtype=mask.dtype)
        for row, t in enumerate(tails):
            cin[row, : len(t)] = torch.tensor(t, dtype=torch.long)
            cmask[row, : len(t)] = 1
        ctx_len = mask.sum(-1)[sel[longer]]
        res2 = model(
            input_ids=cin.to(ids.device),
            attention_mask=torch.cat([mask[sel[longer]], cmask.to(mask.device)], dim=1),
            position_ids=ctx_len[:, None] + torch.arange(width, device=ids.device)[None, :],
            past_key_values=past,
            use_cache=True,
        )
        rest = _sum_logprobs(res2.logits, [(0, flat[i][1].tokens[flat[i][1].n_ctx + 1 :]) for i in longer])
        first = first.index_add(0, torch.tensor(longer, device=first.device), rest)
    vals = iter(first.tolist())
    return [[next(vals) for _ in grp] for grp in groups]


def score_mcq(
    model: Any,
    reqs: list[McqRequest],
    *,
    pad_id: int,
    device: Any,
    batch_size: int,
    auto: bool,
    share_context: bool,
    progress: Any,
) -> tuple[list[float], int, bool]:
    """Summed continuation log-probabilities of ``reqs`` (in request order), the batch size used
    and whether contexts were shared.  Requests with equal context tokens (an item's options)
    form a group; groups are sorted by length, longest first, and batched by their sequences."""
    by_ctx: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(reqs):
        by_ctx.setdefault(tuple(r.tokens[: r.n_ctx]), []).append(i)
    ctxs = list(by_ctx)
    order = sorted(range(len(ctxs)), key=lambda g: (-max(len(reqs[i].tokens) for i in by_ctx[ctxs[g]]), g))
    weights = [len(by_ctx[ctxs[g]]) for g in order]
    out = [0.0] * len(reqs)
    shared = [share_context]

    def run(start: int, stop: int) -> None:
        gs = [ctxs[g] for g in order[start:stop]]
        idx = [by_ctx[c] for c in gs]
        if shared[0]:
            lps = _score_shared(model, gs, [[reqs[i] for i in grp] for grp in idx], pad_id, device)
            if lps is not None:
                for grp, vals in zip(idx, lps, strict=True):
                    for i, v in zip(grp, vals, strict=True):
                        out[i] = v
                return
            shared[0] = False  # the model keeps no cache: whole sequences from now on
        flat = [i for grp in idx for i in grp]
        for i, v in zip(flat, _score_plain(model, [reqs[i] for i in flat], pad_id, device), strict=True):
            out[i] = v

    used = run_batched(weights, batch_size, auto, run, progress.update)
    return out, used, shared[0]
