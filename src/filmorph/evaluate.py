"""Benchmark scoring: a causal LM answers the items of one benchmark file (:mod:`filmorph.items`).

    python -m filmorph.evaluate --model DIR_OR_HUB_ID --benchmark FILE.jsonl \
        --scores OUT.json --predictions OUT.jsonl [--label family=gemma ...] \
        [--batch-size auto] [--max-new-tokens 32] [--dtype auto] [--device auto] [--max-items N]

**MCQ** items follow lm-evaluation-harness's log-likelihood convention.  Context = ``prompt``,
continuation = ``delimiter + option``; whitespace at the end of the context moves to the
continuation; the context and context + continuation are each encoded the way the tokenizer
does by default (Gemma adds ``<bos>``, SmolLM2 adds nothing); the continuation tokens are the
tail of the whole encoding after as many tokens as the context encoding has.  An option's score
is the summed log-probability of its continuation tokens.  Metrics:

* ``acc``: the option with the highest summed log-probability is the gold one;
* ``acc_norm``: the same after dividing each score by the continuation's length in UTF-8
  **bytes** (``delimiter + option``).  This is lm-eval's ``acc_bytes`` for choices that carry
  their delimiter; lm-eval's own ``acc_norm`` divides by the option's length in characters.

Ties go to the lowest option index, never to the gold option (the published scorer counted
every tie as correct), and are counted (``tie`` / ``tie_norm`` per item, ``ties`` per table).

**GEN** items: greedy decoding after ``prompt`` (no delimiter), batched with left padding, until
``max_new_tokens``, an end-of-sequence token or one of the item's ``stop`` strings; the decoded
new tokens are cut at the first stop string after their leading whitespace (a newline before
the answer does not end it).  The answer is extracted and compared per benchmark as
:mod:`filmorph.scoring` writes down (``exact_match``, ``exact_match_strict``, ``edit_sim``, the
study's ``contains_match`` and ``prefix_match``); the generated benchmarks compare
:func:`normalize_answer` of prediction and answer (NFC, casefold, whitespace collapsed, trailing
periods and surrounding whitespace stripped).

Requests are sorted by length and batched; padding is on the left with explicit position ids,
so scores do not depend on the batch size beyond float rounding, and predictions come back in
item order.  The batch size counts sequences (an MCQ item with four options is four sequences).
An MCQ context is run once and its options are scored on copies of its KV cache (the same
log-probs as whole sequences up to float rounding; 2.5x faster on CPU, 1.4x on an H100 for the
generated benchmarks); a model that returns no cache gets whole sequences.

Checked against lm-evaluation-harness 0.4.13 (``HFLM``, the task :func:`export_lm_eval_task`
writes): on 200 generated MCQ items with SmolLM2-135M every item's ``acc`` and ``acc_norm``
(= lm-eval ``acc_bytes``) agreed, option log-probs within 2.1e-4, in 39 s against 113 s.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filmorph import scoring
from filmorph.io import atomic_path, write_json_atomic
from filmorph.items import BadItemError, Item, read_items
from filmorph.provenance import package_versions, sha256_file

if TYPE_CHECKING:  # torch / transformers are imported lazily: importing them costs seconds
    import torch

__all__ = [
    "ACC_NORM_DEFINITION",
    "CPU_BATCH_SIZE",
    "CUDA_START_BATCH_SIZE",
    "edit_similarity",
    "evaluate_file",
    "export_lm_eval_task",
    "levenshtein",
    "main",
    "normalize_answer",
    "resolve_device",
    "resolve_dtype",
    "score",
    "summarize",
    "truncate_at_stop",
]

ACC_NORM_DEFINITION = "argmax of summed log-prob / UTF-8 byte length of delimiter+option"
CPU_BATCH_SIZE = 16
CUDA_START_BATCH_SIZE = {"mcq": 512, "gen": 256}
VERSIONED_PACKAGES = ("filmorph", "torch", "transformers", "tokenizers", "numpy")


# --------------------------------------------------------------------------------------------
# string metrics
# --------------------------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """NFC, casefold, whitespace runs collapsed to one space, trailing periods and surrounding
    whitespace stripped: ``"  S  i la. "`` -> ``"s i la"``."""
    s = unicodedata.normalize("NFC", text)
    s = unicodedata.normalize("NFC", s.casefold())  # casefold can decompose (e.g. "İ")
    s = " ".join(s.split())
    return s.rstrip(".").rstrip()


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of code points) between a and b."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def edit_similarity(a: str, b: str) -> float:
    """``1 - levenshtein(a, b) / max(len(a), len(b))`` (1.0 for two empty strings)."""
    n = max(len(a), len(b))
    return 1.0 if n == 0 else 1.0 - levenshtein(a, b) / n


def truncate_at_stop(text: str, stops: Iterable[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop string after its leading whitespace, and whether
    one occurred. Leading whitespace never ends an answer: a model that starts its answer on a
    new line after ``Answer:`` is not scored as having answered nothing."""
    start = len(text) - len(text.lstrip())
    cut = min((i for i in (text.find(s, start) for s in stops if s) if i >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)


def _argmax(values: Sequence[float]) -> tuple[int, bool]:
    """Index of the maximum (the lowest such index) and whether another index ties with it."""
    best = max(range(len(values)), key=lambda i: (values[i], -i))
    tie = sum(1 for v in values if v == values[best]) > 1
    return best, tie


# --------------------------------------------------------------------------------------------
# tokenization
# --------------------------------------------------------------------------------------------


class _Encoder:
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


def _split_context(prompt: str, continuation: str) -> tuple[str, str]:
    """lm-eval's rule: trailing whitespace of the context moves to the continuation."""
    n = len(prompt) - len(prompt.rstrip())
    if n and n < len(prompt):
        return prompt[:-n], prompt[-n:] + continuation
    return prompt, continuation


@dataclass
class _McqRequest:
    item: int
    option: int
    tokens: list[int]  # context + continuation
    n_ctx: int  # the continuation is tokens[n_ctx:]


def _mcq_requests(items: Sequence[tuple[int, Item]], enc: _Encoder) -> tuple[list[_McqRequest], set[int]]:
    """The option requests of the MCQ items and the items whose context tokens change when the
    continuation is appended (tokens merging across the boundary)."""
    contexts, wholes, keys = [], [], []
    ids = dict(items)
    for idx, item in items:
        for j, opt in enumerate(item.options or []):
            ctx, cont = _split_context(item.prompt, item.delimiter + opt)
            contexts.append(ctx)
            wholes.append(ctx + cont)
            keys.append((idx, j))
    unique = list(dict.fromkeys(contexts))
    encoded = dict(zip(unique, enc(unique), strict=True))
    ctx_ids, whole_ids = [encoded[c] for c in contexts], enc(wholes)
    reqs: list[_McqRequest] = []
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
        reqs.append(_McqRequest(idx, j, w, n_ctx))
    return reqs, merged


# --------------------------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------------------------


def _model_device(model: Any) -> torch.device:
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _pad_left(seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any, Any]:
    """Left-padded ``input_ids``, ``attention_mask`` and ``position_ids`` (0 at each row's first
    real token, so padding shifts nothing)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if s:
            ids[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[r, width - len(s) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc)
    )


def _run_batched(
    weights: Sequence[int],
    batch_size: int,
    auto: bool,
    run: Callable[[int, int], None],
    on_progress: Callable[[int], None],
) -> int:
    """Call ``run(start, stop)`` over consecutive units whose ``weights`` (sequences) sum to at
    most ``batch_size`` (at least one unit per call); with ``auto``, halve the batch size and
    retry on out-of-memory.  Returns the batch size that was in use at the end."""
    import torch

    start = 0
    while start < len(weights):
        stop, total = start, 0
        while stop < len(weights) and (stop == start or total + weights[stop] <= batch_size):
            total += weights[stop]
            stop += 1
        oom = False
        try:
            run(start, stop)
        except Exception as exc:  # only out-of-memory is handled; the rest is re-raised
            if not (auto and batch_size > 1 and _is_oom(exc)):
                raise
            oom = True
        if oom:  # outside the except block, so the failed batch's tensors are freed
            batch_size //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        on_progress(total)
        start = stop
    return batch_size


def _resolve_batch_size(batch_size: int | str, device: Any, fmt: str) -> tuple[int, bool]:
    if batch_size == "auto":
        if getattr(device, "type", str(device)) == "cuda":
            return CUDA_START_BATCH_SIZE[fmt], True
        return CPU_BATCH_SIZE, False
    bs = int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1 or 'auto', got {batch_size!r}")
    return bs, False


# --------------------------------------------------------------------------------------------
# MCQ
# --------------------------------------------------------------------------------------------


LOGPROB_CHUNK_BYTES = 1 << 30  # float32 logits converted at a time when summing log-probs


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


def _score_plain(model: Any, reqs: Sequence[_McqRequest], pad_id: int, device: Any) -> list[float]:
    """One forward pass over every whole sequence (left-padded); the continuation's logits are
    the last ones (``logits_to_keep``)."""
    ids, mask, pos = _pad_left([r.tokens[:-1] for r in reqs], pad_id, device)
    keep = max(len(r.tokens) - r.n_ctx for r in reqs)
    logits = model(
        input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=keep
    ).logits[:, -keep:, :]
    spans = [(keep - (len(r.tokens) - r.n_ctx), r.tokens[r.n_ctx :]) for r in reqs]
    return _sum_logprobs(logits, spans).tolist()


def _score_shared(
    model: Any,
    contexts: Sequence[tuple[int, ...]],
    groups: Sequence[list[_McqRequest]],
    pad_id: int,
    device: Any,
) -> list[list[float]] | None:
    """Each context once (left-padded, KV cache kept), then every continuation of it on a copy of
    its context's cache (right-padded).  ``None`` when the model returns no reorderable cache."""
    import torch

    ids, mask, pos = _pad_left(contexts, pad_id, device)
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


def _score_mcq(
    model: Any,
    reqs: list[_McqRequest],
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

    used = _run_batched(weights, batch_size, auto, run, progress.update)
    return out, used, shared[0]


# --------------------------------------------------------------------------------------------
# GEN
# --------------------------------------------------------------------------------------------


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
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


def _generate(
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
        ids, mask, pos = _pad_left([prompts[i] for i in rows], pad_id, device)
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

    used = _run_batched([1] * len(prompts), batch_size, auto, run, progress.update)
    return out, used


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


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
    device = torch.device(device) if device is not None else _model_device(model)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    enc = _Encoder(tokenizer)
    records = [_base_record(it) for it in items]
    mcq = [(i, it) for i, it in enumerate(items) if it.format == "mcq"]
    gen = [(i, it) for i, it in enumerate(items) if it.format == "gen"]
    st: dict[str, Any] = {"mcq_items": len(mcq), "gen_items": len(gen)}

    with torch.inference_mode():
        if mcq:
            t0 = time.perf_counter()
            bs, auto = _resolve_batch_size(batch_size, device, "mcq")
            reqs, merged = _mcq_requests(mcq, enc)
            bar = _progress(len(reqs), f"{progress_label} mcq".strip(), progress)
            try:
                lps, used, shared = _score_mcq(
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
                pred, tie = _argmax(lp)
                pred_n, tie_n = _argmax([v / b for v, b in zip(lp, nbytes, strict=True)])
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
            bs, auto = _resolve_batch_size(batch_size, device, "gen")
            prompts = enc([it.prompt for _, it in gen])
            bar = _progress(len(prompts), f"{progress_label} gen".strip(), progress)
            try:
                outs, used = _generate(
                    model,
                    tokenizer,
                    prompts,
                    [list(it.stop) for _, it in gen],
                    max_new_tokens=max_new_tokens,
                    pad_id=pad_id,
                    eos=_eos_ids(model, tokenizer),
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


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _stderr(p: float, n: int) -> float | None:
    return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None


def _metrics(preds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(preds)}
    mcq = [p for p in preds if p["format"] == "mcq"]
    gen = [p for p in preds if p["format"] == "gen"]
    if mcq:
        acc = _mean([float(p["correct"]) for p in mcq])
        acc_norm = _mean([float(p["correct_norm"]) for p in mcq])
        out["mcq"] = {
            "n": len(mcq),
            "acc": acc,
            "acc_stderr": _stderr(acc, len(mcq)),
            "acc_norm": acc_norm,
            "acc_norm_stderr": _stderr(acc_norm, len(mcq)),
            "chance": _mean([1.0 / len(p["options"]) for p in mcq]),
            "ties": sum(bool(p["tie"]) for p in mcq),
            "ties_norm": sum(bool(p["tie_norm"]) for p in mcq),
        }
    if gen:
        em = _mean([float(p["exact_match"]) for p in gen])
        out["gen"] = {
            "n": len(gen),
            "exact_match": em,
            "exact_match_stderr": _stderr(em, len(gen)),
            "exact_match_strict": _mean([float(p["exact_match_strict"]) for p in gen]),
            "edit_sim": _mean([float(p["edit_sim"]) for p in gen]),
            **scoring.gen_summary(gen),
            "stopped": sum(p["stop_reason"] == "stop" for p in gen),
            "eos": sum(p["stop_reason"] == "eos" for p in gen),
            "truncated": sum(p["stop_reason"] == "length" for p in gen),
        }
    return out


def summarize(preds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Metrics of :func:`score`'s predictions: ``overall``, ``by_group`` (key
    ``benchmark/group``), ``by_task`` (``benchmark/group/task``) and ``by_level``
    (``benchmark/level_N``, items with a level only).  Each entry has ``n`` and, for the formats
    present, ``mcq`` {``n``, ``acc``, ``acc_norm`` (+ ``_stderr``), ``chance``, ``ties``,
    ``ties_norm``} and ``gen`` {``n``, ``exact_match`` (+ ``_stderr``), ``exact_match_strict``,
    ``edit_sim``, ``stopped``, ``eos``, ``truncated``}; grouped entries also carry their keys."""
    rows = [dict(p) for p in preds]
    out: dict[str, Any] = {"n": len(rows), "acc_norm_definition": ACC_NORM_DEFINITION}
    out["overall"] = _metrics(rows)
    for name, fields in (
        ("by_group", ("benchmark", "group")),
        ("by_task", ("benchmark", "group", "task")),
        ("by_level", ("benchmark", "level")),
    ):
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for p in rows:
            if name == "by_level" and p["level"] is None:
                continue
            groups.setdefault(tuple(p[f] for f in fields), []).append(p)
        table = {}
        for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
            label = "/".join(
                f"level_{x}" if f == "level" else str(x) for f, x in zip(fields, key, strict=True)
            )
            table[label] = {**dict(zip(fields, key, strict=True)), **_metrics(groups[key])}
        out[name] = table
    return out


# --------------------------------------------------------------------------------------------
# files and command line
# --------------------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """``"auto"`` -> ``"bfloat16"`` on CUDA, ``"float32"`` elsewhere; anything else as given."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


class BenchmarkFileError(ValueError):
    """A benchmark file that cannot be scored (missing, unreadable, or an output clash); the
    message names it."""


@dataclass(frozen=True)
class EvalFile:
    """One benchmark file of an evaluation and the two files its results go to: the scores JSON
    and the per-item predictions JSONL; ``labels`` are this file's own (added to the common
    ones)."""

    benchmark: Path
    scores: Path
    predictions: Path
    labels: Mapping[str, str] = field(default_factory=dict)


def read_benchmarks(files: Sequence[EvalFile], max_items: int | None = None) -> list[list[Item]]:
    """The items of every file (the first ``max_items`` of each), all read before any model is
    loaded: a missing or bad file fails at once, named (``file:line`` for a bad item). Two files
    writing the same output are refused."""
    outs: dict[Path, Path] = {}
    for f in files:
        for out in (f.scores, f.predictions):
            key = Path(out).resolve()
            if key in outs:
                raise BenchmarkFileError(f"{out} is the output of both {outs[key]} and {f.benchmark}")
            outs[key] = Path(f.benchmark)
    loaded = []
    for f in files:
        try:
            items = read_items(f.benchmark)
        except OSError as exc:
            raise BenchmarkFileError(f"benchmark file {f.benchmark}: {exc.strerror or exc}") from None
        loaded.append(items[:max_items] if max_items is not None else items)
    return loaded


def evaluate_files(
    model_path: str | Path,
    files: Sequence[EvalFile],
    *,
    labels: Mapping[str, str] | None = None,
    batch_size: int | str = "auto",
    max_new_tokens: int = 32,
    dtype: str = "auto",
    device: str = "auto",
    max_items: int | None = None,
    progress: bool = True,
    log: Any = None,
) -> list[dict[str, Any]]:
    """Load the model once and score every benchmark file of ``files`` with it, in order. Per
    file, write the predictions (JSONL, one record of :func:`score` per line, item order) and the
    scores (JSON: :func:`summarize` plus labels (``labels`` and the file's own), model, model
    dir sha256 (:func:`filmorph.provenance.sha256_tree`), benchmark sha256, items, dtype,
    device, batch sizes, the model's load seconds (one load for all the files), seconds, items/s,
    versions), both atomically and as soon as that file is scored; a one-line summary of each
    goes to ``log`` (stderr by default). Every file is read first (:func:`read_benchmarks`).
    A run that stops part-way leaves the files scored before complete and the others absent
    (or as they were). Returns the scores, in order."""
    from filmorph.models import load_causal_lm
    from filmorph.provenance import sha256_tree

    log = sys.stderr if log is None else log
    all_items = read_benchmarks(files, max_items)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    t0 = time.perf_counter()
    model, tok = load_causal_lm(model_path, dtype=dtype, device=device)
    load_s = time.perf_counter() - t0
    meta_file = Path(model_path) / "filmorph_model_meta.json"
    common: dict[str, Any] = {
        "model": str(model_path),
        # what the audit checks the model dir against (filmorph.provenance.sha256_tree)
        "model_sha256": sha256_tree(model_path) if Path(model_path).is_dir() else None,
        "model_meta": json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else None,
        "model_params": sum(p.numel() for p in model.parameters()),
    }
    versions = package_versions(VERSIONED_PACKAGES)
    results = []
    for f, items in zip(files, all_items, strict=True):
        benchmark = Path(f.benchmark)
        stats: dict[str, Any] = {}
        t0 = time.perf_counter()
        preds = score(
            model,
            tok,
            items,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            device=device,
            progress=progress,
            stats=stats,
            progress_label=benchmark.stem,
        )
        secs = time.perf_counter() - t0
        scores: dict[str, Any] = {
            "labels": {**(labels or {}), **f.labels},
            **common,
            "benchmark_file": str(benchmark),
            "benchmark_sha256": sha256_file(benchmark),
            "n_items": len(items),
            "max_items": max_items,
            "dtype": dtype,
            "device": device,
            "batch_size": batch_size,
            "batch_size_used": {k: stats.get(f"{k}_batch_size") for k in ("mcq", "gen")},
            "max_new_tokens": max_new_tokens,
            "load_seconds": round(load_s, 3),
            "seconds": round(secs, 3),
            "items_per_s": round(len(items) / secs, 3) if secs > 0 else None,
            "stats": stats,
            "versions": versions,
            **summarize(preds),
        }
        with atomic_path(f.predictions) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for p in preds:
                fh.write(json.dumps(p, ensure_ascii=False) + "\n")
        write_json_atomic(f.scores, scores)
        print(f"{benchmark}: {summary_line(scores)}", file=log)
        results.append(scores)
    return results


def evaluate_file(
    model_path: str | Path,
    benchmark: str | Path,
    scores_path: str | Path,
    predictions_path: str | Path,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`evaluate_files` for one benchmark file (same keyword arguments); its scores."""
    one = EvalFile(Path(benchmark), Path(scores_path), Path(predictions_path))
    return evaluate_files(model_path, [one], **kwargs)[0]


def summary_line(scores: Mapping[str, Any]) -> str:
    """``"10 items, acc 0.500 acc_norm 0.600, 12.3 items/s"``: the headline of a scores dict."""
    o = scores["overall"]
    parts = [f"{scores['n_items']} items"]
    if "mcq" in o:
        parts.append(f"acc {o['mcq']['acc']:.3f} acc_norm {o['mcq']['acc_norm']:.3f}")
    if "gen" in o:
        parts.append(f"exact_match {o['gen']['exact_match']:.3f} edit_sim {o['gen']['edit_sim']:.3f}")
    parts.append(f"{scores['items_per_s']} items/s")
    return ", ".join(parts)


def export_lm_eval_task(items_path: str | Path, out_dir: str | Path, *, task: str | None = None) -> Path:
    """Write the MCQ items of a benchmark file as an lm-evaluation-harness task: ``out_dir``
    gets ``TASK.jsonl`` (``prompt``, ``choices`` = ``delimiter + option``, ``gold``, ids) and
    ``TASK.yaml`` (``output_type: multiple_choice``, ``target_delimiter: ""``, metrics ``acc``,
    ``acc_norm`` (per character) and ``acc_bytes`` (per byte, our ``acc_norm``)).  Run it with
    ``lm_eval --include_path OUT_DIR --tasks TASK``.  ``task`` defaults to
    ``filmorph_<file stem>``.  The YAML names the data file by absolute path.  Returns the YAML
    path.  GEN items are not exported (lm-eval's stop strings are per task, ours per item)."""
    items_path = Path(items_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = task or "filmorph_" + "".join(c if c.isalnum() else "_" for c in items_path.stem)
    data = out_dir / f"{task}.jsonl"
    n = 0
    with atomic_path(data) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for it in read_items(items_path):
            if it.format != "mcq":
                continue
            row = {
                "id": it.id,
                "benchmark": it.benchmark,
                "group": it.group,
                "task": it.task,
                "level": it.level,
                "prompt": it.prompt,
                "choices": [it.delimiter + o for o in it.options or []],
                "gold": it.gold,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    if n == 0:
        data.unlink()
        raise ValueError(f"{items_path} has no MCQ items")
    yaml_text = "\n".join(
        [
            f"task: {task}",
            "dataset_path: json",
            "dataset_kwargs:",
            "  data_files:",
            f"    test: {json.dumps(str(data.resolve()))}",
            "test_split: test",
            "output_type: multiple_choice",
            "doc_to_text: prompt",
            "doc_to_choice: choices",
            "doc_to_target: gold",
            'target_delimiter: ""',
            "metric_list:",
            "  - metric: acc",
            "  - metric: acc_norm",
            "  - metric: acc_bytes",
            "metadata:",
            "  version: 1.0",
            "",
        ]
    )
    yaml_path = out_dir / f"{task}.yaml"
    with atomic_path(yaml_path) as tmp:
        tmp.write_text(yaml_text, encoding="utf-8")
    return yaml_path


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--label wants KEY=VALUE, got {text!r}")
    return key, value


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        bs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--batch-size wants a positive integer or 'auto', got {text!r}"
        ) from None
    if bs < 1:
        raise argparse.ArgumentTypeError("--batch-size must be >= 1")
    return bs


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"wants a positive integer, got {text!r}")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m filmorph.evaluate",
        description=(
            "Score a causal LM on one benchmark file (filmorph.items schema). MCQ: log-likelihood of "
            "delimiter+option after the prompt (lm-eval convention); acc = argmax of summed "
            "log-prob, acc_norm = argmax of log-prob per UTF-8 byte; ties go to the lowest option "
            "index and are counted. GEN: greedy decoding until a stop string; exact_match on "
            "normalized text, edit_sim. Writes per-item predictions (JSONL) and scores (JSON) "
            "atomically."
        ),
    )
    p.add_argument("--model", required=True, help="HF checkpoint directory or Hub model id")
    p.add_argument(
        "--benchmark",
        required=True,
        type=Path,
        action="append",
        help="benchmark JSONL file (repeatable: the Nth --benchmark writes the Nth --scores and "
        "--predictions; the model is loaded once for all of them)",
    )
    p.add_argument(
        "--scores",
        required=True,
        type=Path,
        action="append",
        help="scores JSON to write (one per --benchmark)",
    )
    p.add_argument(
        "--predictions",
        required=True,
        type=Path,
        action="append",
        help="per-item predictions JSONL to write (one per --benchmark)",
    )
    p.add_argument(
        "--benchmark-label",
        metavar="KEY",
        default=None,
        help="also record each file's name (its stem) under labels[KEY], e.g. --benchmark-label benchmark",
    )
    p.add_argument(
        "--label",
        action="append",
        type=_label,
        default=[],
        metavar="KEY=VALUE",
        help="recorded in the scores JSON under 'labels' (repeatable), e.g. --label family=gemma",
    )
    p.add_argument(
        "--batch-size",
        type=_batch_size,
        default="auto",
        help=(
            "sequences per forward pass, or 'auto' (default): "
            f"{CPU_BATCH_SIZE} on CPU; on CUDA start at {CUDA_START_BATCH_SIZE['mcq']} (MCQ) / "
            f"{CUDA_START_BATCH_SIZE['gen']} (GEN) and halve on out-of-memory"
        ),
    )
    p.add_argument(
        "--max-new-tokens", type=_positive, default=32, help="GEN: most tokens generated (default 32)"
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="model dtype; auto (default): bfloat16 on CUDA, float32 otherwise",
    )
    p.add_argument(
        "--device", default="auto", help="auto (default: cuda if available, else cpu), cpu, cuda, cuda:N"
    )
    p.add_argument("--max-items", type=_positive, default=None, help="score only the first N items")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    n = len(args.benchmark)
    if not len(args.scores) == len(args.predictions) == n:
        parser.error(
            f"give one --scores and one --predictions per --benchmark: got {n} --benchmark, "
            f"{len(args.scores)} --scores, {len(args.predictions)} --predictions"
        )
    labels = dict(args.label)
    if args.benchmark_label is not None and args.benchmark_label in labels:
        parser.error(f"--label {args.benchmark_label}=... and --benchmark-label {args.benchmark_label} clash")
    files = [
        EvalFile(b, s, p, {args.benchmark_label: b.stem} if args.benchmark_label is not None else {})
        for b, s, p in zip(args.benchmark, args.scores, args.predictions, strict=True)
    ]
    try:
        evaluate_files(
            args.model,
            files,
            labels=labels,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            dtype=args.dtype,
            device=args.device,
            max_items=args.max_items,
            progress=not args.no_progress,
        )
    except (BadItemError, BenchmarkFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
