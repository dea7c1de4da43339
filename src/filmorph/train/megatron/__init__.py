"""The ``megatron`` engine: continued pretraining with Megatron-Bridge (Megatron-core layers,
Transformer Engine kernels) on GPUs.

Three steps, each its own process (a process builds one model family: megatron-core sets
``NVTE_*`` attention variables for the first model and asserts when a second wants others):

1. :func:`filmorph.train.megatron.convert.import_checkpoint` writes the family's HF base model as a Megatron
   ``torch_dist`` checkpoint, and :func:`filmorph.train.megatron.convert.verify` proves the weights arrived
   (logits on a fixed batch equal the HF model's within a tolerance);
2. :func:`train` (this module) continues pretraining it on one arm's shards;
3. :func:`filmorph.train.megatron.convert.export_checkpoint` turns each saved iteration into an HF checkpoint.

What :func:`train` does, in order: the shared pre-flight check
(:func:`filmorph.train.common.preflight`: shards, model and tokenizer belong together),
``train_config.json``, :func:`megatron_settings` (a pure translation of the
:class:`~filmorph.train.config.TrainConfig` into every value Megatron-Bridge's
``ConfigContainer`` needs), :func:`build_config_container` (the provider comes from
``AutoBridge.from_hf_pretrained(model_dir).to_megatron_provider(load_weights=False)``; the
weights come from the imported checkpoint through ``checkpoint.pretrained_checkpoint``), then
``megatron.bridge.training.pretrain.pretrain`` with this module's forward step, and a
metrics callback that appends to ``metrics.jsonl``.

Run dir (the layout of :mod:`filmorph.train.common`)::

    train_config.json        resolved config, shard/model/tokenizer identities, megatron settings
    metrics.jsonl            step, loss, lr, grad_norm, tokens, tokens_per_s, mfu, val_loss, ...
    megatron/iter_NNNNNNN/   Megatron checkpoints (torch_dist, with optimizer state), every
                             checkpoint_interval steps and the last; all kept
    megatron/latest_checkpointed_iteration.txt
    data_cache/              megatron-core dataset index cache
    hf/step_NNNNNNN/         written by the export rule
                             (:func:`filmorph.train.megatron.convert.export_checkpoint`)
    train_summary.json       at the end

Semantics shared with the other engines: blend of every shard prefix weighted by its token
count; position ids restart after each EOD (``reset_position_ids``); the loss is masked where
the input token is EOD (``eod_mask_loss``); and with ``reset_attention_mask`` attention stays
inside each document. Megatron-Bridge's stock forward step does not do the last one (its
dataset config skips the dataset's attention mask and Transformer Engine's causal kernels
ignore one), so :class:`DocumentForwardStep` packs each micro-batch into Transformer Engine's
``thd`` layout with one sequence per document (:func:`document_cu_seqlens`).

Resume: the save dir doubles as the load dir, so rerunning the same command continues from
the newest checkpoint (weights, optimizer, scheduler, data position, RNG); the first run
starts from ``pretrained_checkpoint`` (weights only). SIGTERM (e.g. Slurm's warning signal)
saves a checkpoint and stops; :func:`train` then raises :class:`TrainingIncomplete` so the
job fails and its rerun resumes.

Nothing here imports megatron.bridge, megatron.core or transformer_engine at module level:
the package imports on a CPU machine without them. Entry points must sit under
``if __name__ == "__main__":`` (checkpoint saving starts worker processes by spawn).
"""

from filmorph.train.launch import TrainingIncomplete
from filmorph.train.megatron.engine import (
    build_config_container,
    check_document_masking,
    document_masking_mode,
    main,
    train,
)
from filmorph.train.megatron.metrics import MetricsRecorder, hf_flops_per_token
from filmorph.train.megatron.settings import (
    CHECKPOINT_SUBDIR,
    DOCUMENT_MASKING_MODES,
    ENGINE,
    ENGINE_PACKAGES,
    MASK_MODEL_TYPES,
    MEGATRON_PACKAGES,
    RUNTIME_ENV,
    THD_REFUSED_MODEL_TYPES,
    TRACKER_FILE,
    DocumentForwardStep,
    MissingEngineError,
    avoid_gemma2_flex_attention,
    checkpoint_iterations,
    document_cu_seqlens,
    flash_attn_available,
    latest_iteration,
    masked_softmax_fusion_available,
    megatron_iter_dir,
    megatron_settings,
    require_engine,
    usable_attention_backend,
)

__all__ = [
    "CHECKPOINT_SUBDIR",
    "DOCUMENT_MASKING_MODES",
    "ENGINE",
    "ENGINE_PACKAGES",
    "MASK_MODEL_TYPES",
    "MEGATRON_PACKAGES",
    "RUNTIME_ENV",
    "THD_REFUSED_MODEL_TYPES",
    "TRACKER_FILE",
    "DocumentForwardStep",
    "MetricsRecorder",
    "MissingEngineError",
    "TrainingIncomplete",
    "avoid_gemma2_flex_attention",
    "build_config_container",
    "check_document_masking",
    "checkpoint_iterations",
    "document_cu_seqlens",
    "document_masking_mode",
    "flash_attn_available",
    "hf_flops_per_token",
    "latest_iteration",
    "main",
    "masked_softmax_fusion_available",
    "megatron_iter_dir",
    "megatron_settings",
    "require_engine",
    "train",
    "usable_attention_backend",
]
