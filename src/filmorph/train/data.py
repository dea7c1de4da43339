"""Training data: megatron-core's ``GPTDataset``/``BlendedDataset`` over a blend of shards.

The blend is every chunk shard of one family × arm, weighted by its token count (so a chunk
contributes in proportion to its size, as one concatenated corpus would). Each shard's
documents are divided by ``split`` into train / valid / test exactly as megatron-core does
(the same documents the ``megatron`` engine holds out), and samples are ``seq_length + 1``
token windows over the shuffled documents (``seed``). Every sample carries:

* ``tokens`` / ``labels`` (``labels[i] = tokens[i + 1]``),
* ``position_ids`` restarting at 0 after each EOD (``reset_position_ids``),
* ``loss_mask``: 0 where the *input* token is EOD (``eod_mask_loss``), i.e. the prediction
  of the next document's first token from the previous document is not trained; the EOD
  itself is still predicted (megatron-core's semantics, shared by all engines),
* attention limited to the current document (``reset_attention_mask``): tokens after an EOD
  never attend to it or anything before it. The ``hf`` engine realises this from the
  restarted position ids (transformers' packed-sequence masks), so no ``T × T`` mask is
  materialised here.

megatron-core's builder needs a ``torch.distributed`` process group; when none is initialised
a single-rank gloo group is created for the build and destroyed afterwards. The index cache
(megatron's ``path_to_cache``) lives in the run dir; it is marked complete after a build and
wiped when a build was interrupted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filmorph.io import write_json_atomic
from filmorph.train.config import TrainConfig, parse_split

__all__ = [
    "Blend",
    "TrainData",
    "blend_of",
    "build_datasets",
    "rank_sample_indices",
    "split_document_counts",
]

CACHE_MARKER = "filmorph_cache_complete.json"


@dataclass(frozen=True)
class Blend:
    """Shard prefixes with their document and token counts (from the ``.idx`` files)."""

    prefixes: tuple[str, ...]
    documents: tuple[int, ...]
    tokens: tuple[int, ...]

    @property
    def weights(self) -> list[float]:
        """Blend weights: token counts."""
        return [float(t) for t in self.tokens]


def blend_of(prefixes: Sequence[str | Path]) -> Blend:
    """:class:`Blend` of the shards at ``prefixes`` (order kept)."""
    from filmorph.shards import read_shard

    docs, toks = [], []
    for p in prefixes:
        ds = read_shard(p)
        docs.append(int(len(ds)))
        toks.append(int(ds.sequence_lengths.sum(dtype="int64")))
    return Blend(tuple(str(p) for p in prefixes), tuple(docs), tuple(toks))


def split_document_counts(num_documents: int, split: str) -> tuple[int, int, int]:
    """Documents of one shard that megatron-core puts in train / valid / test for ``split``
    (its rounding: split boundaries at ``round(cumulative fraction × documents)``)."""
    fractions = parse_split(split)
    bounds = [0.0]
    for f in fractions:
        bounds.append(bounds[-1] + f)
    bounds[-1] = 1.0
    idx = [int(round(b * float(num_documents))) for b in bounds]
    return idx[1] - idx[0], idx[2] - idx[1], idx[3] - idx[2]


class _Tokenizer:
    """The two facts GPTDataset needs from a tokenizer: the EOD id and the vocab size.

    ``pad`` is -1, an id no shard holds: megatron-core masks the loss of labels equal to the
    pad id, and the real pad ids (Gemma 0, Llama 3 128004) are ordinary tokens in a corpus."""

    def __init__(self, eod: int, vocab_size: int):
        self.eod = int(eod)
        self.vocab_size = int(vocab_size)
        self.pad = -1
        self.unique_identifiers = {"class": "filmorph", "eod": self.eod, "vocab_size": self.vocab_size}


@contextmanager
def _process_group() -> Iterator[None]:
    """A usable torch.distributed default group: the caller's, or a single-rank gloo one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        yield
        return
    tmp = tempfile.mkdtemp(prefix="filmorph-pg-")
    try:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _megatron():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex.*")
        from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    return BlendedMegatronDatasetBuilder, GPTDataset, GPTDatasetConfig


class Samples:
    """A map-style dataset of ``{tokens, labels, loss_mask, position_ids}`` tensors (int64,
    int64, float32, int64; length ``seq_length``) over a megatron-core dataset."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.dataset[idx]
        return {k: item[k] for k in ("tokens", "labels", "loss_mask", "position_ids")}


@dataclass
class TrainData:
    """The built datasets: ``train`` (``train_samples`` samples at least) and ``valid``
    (``None`` when evaluation is off)."""

    train: Samples
    valid: Samples | None
    blend: Blend
    cache_dir: Path
    train_samples: int
    valid_samples: int


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def build_datasets(
    prefixes: Sequence[str | Path],
    cfg: TrainConfig,
    *,
    eod_id: int,
    vocab_size: int,
    cache_dir: str | Path,
    train_samples: int | None = None,
    valid_samples: int | None = None,
) -> TrainData:
    """Build the train (and valid) datasets over the blend of ``prefixes``.

    ``train_samples`` defaults to ``max_steps × global_batch_size``, ``valid_samples`` to
    ``eval_iters × global_batch_size`` (0 when evaluation is off). Raises ``ValueError`` when
    a shard has no documents in a split that is needed (megatron-core would loop forever).
    Call it on every rank of a distributed run (rank 0 builds the index cache first).
    """
    blend = blend_of(prefixes)
    train_samples = cfg.max_steps * cfg.global_batch_size if train_samples is None else int(train_samples)
    if valid_samples is None:
        valid_samples = cfg.eval_iters * cfg.global_batch_size if cfg.eval_enabled else 0
    need_valid = valid_samples > 0
    fractions = cfg.split_fractions
    for p, n in zip(blend.prefixes, blend.documents, strict=True):
        counts = split_document_counts(n, cfg.split)
        for name, frac, count in zip(("train", "valid", "test"), fractions, counts, strict=True):
            if frac > 0 and count == 0:
                raise ValueError(
                    f"shard {p} has {n} documents: split {cfg.split!r} leaves none for {name}; "
                    "use fewer, larger chunks or give that part more weight"
                )
    # Without evaluation the valid documents stay held out (the same training documents as
    # with it) but no valid dataset is built.
    split = cfg.split
    cache_dir = Path(cache_dir)
    marker = cache_dir / CACHE_MARKER
    if _rank() == 0:
        if cache_dir.exists() and not marker.is_file():
            shutil.rmtree(cache_dir)  # an interrupted build may have left partial .npy files
        cache_dir.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
    _barrier()

    Builder, GPTDataset, GPTDatasetConfig = _megatron()
    mcfg = GPTDatasetConfig(
        random_seed=cfg.seed,
        sequence_length=cfg.seq_length,
        blend=(list(blend.prefixes), blend.weights),
        split=split,
        tokenizer=_Tokenizer(eod_id, vocab_size),
        reset_position_ids=cfg.reset_position_ids,
        reset_attention_mask=cfg.reset_attention_mask,
        eod_mask_loss=cfg.eod_mask_loss,
        create_attention_mask=False,
        path_to_cache=str(cache_dir),
    )
    sizes = [train_samples, valid_samples if need_valid else 0, 0]
    with _process_group():
        train, valid, _ = Builder(GPTDataset, sizes, lambda: True, mcfg).build()
    _barrier()
    if _rank() == 0:
        files = sorted(p.name for p in cache_dir.iterdir() if p.name != CACHE_MARKER)
        write_json_atomic(marker, {"files": files, "pid": os.getpid()})
    if len(train) < train_samples:
        raise RuntimeError(f"megatron-core built {len(train)} train samples, {train_samples} needed")
    return TrainData(
        train=Samples(train),
        valid=Samples(valid) if need_valid and valid is not None else None,
        blend=blend,
        cache_dir=cache_dir,
        train_samples=train_samples,
        valid_samples=valid_samples if need_valid else 0,
    )


def rank_sample_indices(step: int, global_batch_size: int, rank: int = 0, world_size: int = 1) -> range:
    """Sample indices rank ``rank`` trains on in (0-based) ``step``: the global batch of step
    ``s`` is samples ``[s·G, (s+1)·G)``, cut into ``world_size`` contiguous slices. The data
    position is therefore a pure function of the step (resuming needs no loader state)."""
    if global_batch_size % world_size:
        raise ValueError(f"global batch {global_batch_size} not divisible by {world_size} ranks")
    per = global_batch_size // world_size
    start = step * global_batch_size + rank * per
    return range(start, start + per)


class StepSampler:
    """Yields the sample indices of steps ``[start_step, end_step)`` for one rank, in order."""

    def __init__(
        self, start_step: int, end_step: int, global_batch_size: int, rank: int = 0, world_size: int = 1
    ):
        self.start_step, self.end_step = start_step, end_step
        self.global_batch_size, self.rank, self.world_size = global_batch_size, rank, world_size

    def __iter__(self) -> Iterator[int]:
        for s in range(self.start_step, self.end_step):
            yield from rank_sample_indices(s, self.global_batch_size, self.rank, self.world_size)

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step) * (self.global_batch_size // self.world_size)
