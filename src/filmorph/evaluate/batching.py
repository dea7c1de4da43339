"""Batching: left padding with position ids, batches by sequence count, the batch size
(``auto``: fixed on CPU, halved on CUDA out-of-memory)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily: importing it costs seconds
    import torch

CPU_BATCH_SIZE = 16
CUDA_START_BATCH_SIZE = {"mcq": 512, "gen": 256}


def model_device(model: Any) -> torch.device:
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any, Any]:
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


def is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc)
    )


def run_batched(
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
            if not (auto and batch_size > 1 and is_oom(exc)):
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


def resolve_batch_size(batch_size: int | str, device: Any, fmt: str) -> tuple[int, bool]:
    if batch_size == "auto":
        if getattr(device, "type", str(device)) == "cuda":
            return CUDA_START_BATCH_SIZE[fmt], True
        return CPU_BATCH_SIZE, False
    bs = int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1 or 'auto', got {batch_size!r}")
    return bs, False
