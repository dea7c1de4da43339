"""Continued pretraining (CPT) of a family's base model on one arm's shards.

One interface, several engines (``train.engine`` in the config):

* ``hf`` (:mod:`filmorph.train.hf`): plain PyTorch over transformers models; CPU or GPU,
  one process or DDP. The engine of the embedded default config and of CI. Its checkpoints
  (states, transformers export): :mod:`filmorph.train.hf_checkpoint`.
* ``megatron`` (:mod:`filmorph.train.megatron`): Megatron-Bridge on GPUs, from an imported
  Megatron checkpoint (:mod:`filmorph.train.megatron.convert`: HF -> Megatron -> HF with logit checks).
* ``automodel`` (:mod:`filmorph.train.automodel`): NeMo Automodel's pretraining recipe on GPUs.

The GPU engines import their libraries lazily, so the package imports without them.

Shared parts: :mod:`~filmorph.train.config` (the ``train:`` section, validated),
:mod:`~filmorph.train.data` (megatron-core ``GPTDataset`` blend with document-boundary
semantics), :mod:`~filmorph.train.common` (run-dir layout, pre-flight check, LR schedule,
checkpoint/resume bookkeeping, metrics, FLOPs/MFU), :mod:`~filmorph.train.launch` (the
distributed launch environment, launch commands, signal handling, :class:`TrainingIncomplete`;
the fine-tuning track uses it too).

Command line: ``python -m filmorph.train --help``. Importing this package imports neither
torch nor any engine library.
"""

from filmorph.train.config import ENGINES, TrainConfig

__all__ = ["ENGINES", "TrainConfig"]
