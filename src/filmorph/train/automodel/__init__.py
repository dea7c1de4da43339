"""The ``automodel`` engine: continued pretraining with NVIDIA NeMo Automodel (FSDP2, HF-native).

Automodel trains the HF checkpoint itself (no import/export step) through its recipe
``TrainFinetuneRecipeForNextTokenPrediction`` (``nemo_automodel.recipes.llm.train_ft``),
started by ``torchrun`` with one process per GPU. This package (:mod:`~filmorph.train.automodel.recipe`:
names, samples, the recipe YAML, the launch command; :mod:`~filmorph.train.automodel.runner`:
outputs and the run)

* translates a :class:`~filmorph.train.config.TrainConfig` into that recipe's YAML
  (:func:`automodel_config`, a pure function),
* builds the launch command (:func:`launch_command`: ``torchrun`` on one node, one
  ``torchrun`` per node under ``srun`` with node rank and rendezvous from Slurm); the job
  itself starts ``python -m filmorph.train`` ONCE per node (:func:`launcher_argv`),
* runs it (:func:`run`, also reachable as :func:`train` through ``python -m filmorph.train``)
  and maps Automodel's outputs to the run-dir layout of :mod:`filmorph.train.common`:
  ``hf/step_NNNNNNN/`` (consolidated safetensors + config + the family's tokenizer files,
  byte for byte), ``metrics.jsonl``, ``train_config.json``, ``train_summary.json``.

What of our semantics Automodel 0.7.0 supports, and how (checked against its source):

* Data: Automodel ships a copy of megatron-core's ``GPTDataset``/``BlendedDataset``
  (``MegatronPretraining``), used here over ALL shard prefixes, weighted by token count, with
  our ``seq_length``/``split``/``seed``. Its ``MegatronPretraining`` hard-codes
  ``reset_position_ids``/``reset_attention_mask``/``eod_mask_loss`` to False (and builds its
  masks with an EOD id of -10000), so document boundaries are NOT handled by Automodel
  itself. This engine therefore wraps Automodel's dataset (:class:`DocumentPretrainingConfig`,
  a dataset ``_target_`` Automodel accepts): each sample's ``position_ids`` restart after every
  EOD (``reset_position_ids``) and labels whose *input* token is EOD become -100, which
  Automodel's ``MaskedCrossEntropy`` ignores (``eod_mask_loss``; the EOD itself is still
  predicted, megatron-core's semantics).
* Attention: document-boundary attention (``reset_attention_mask``) comes from the restarted
  position ids with no attention mask and ``use_cache=False`` (added to every batch by
  :func:`collate_documents`): transformers' ``create_causal_mask`` (used by Automodel's own
  Llama and by the HF Gemma classes) then builds block-diagonal causal masks (sliding windows
  honoured). With the cache on, transformers silently skips this, hence ``use_cache=False``.
  Position resets without mask resets (or the reverse) cannot be expressed this way and are
  refused. The attention implementation is then ``flex_attention`` (block-sparse masks), or
  ``sdpa`` for heads wider than 128 (:func:`document_attention`): with SDPA the mask is a dense
  ``B×1×T×T`` boolean and SDPA loses its flash kernel (one H100, seq 2048: Llama 3.2 1B shape
  40.2 % MFU with flex, 36.0 % with SDPA; Gemma 3 1B shape, head_dim 256: 14.0 % / 16.4 %).
* Loss: token-weighted mean over the global batch (Automodel divides the summed CE by the
  global count of non-ignored labels), as in the other engines.
* Optimizer: ``torch.optim.AdamW`` with our betas/eps/weight decay; norms and biases get no
  weight decay (a ``param_group_overrides`` entry with ``wd_mult: 0``), as in the hf engine.
* LR: Automodel's Megatron-style ``OptimizerParamScheduler``; its parameters are chosen so
  that update ``k`` (0-based) uses exactly :func:`filmorph.train.common.lr_at` ``(cfg, k)``
  (linear warmup, then cosine/linear/constant to ``min_lr``) whenever ``warmup_steps >= 1``
  (:func:`lr_scheduler_config`; with no warmup the decay is one update late).
* Precision: with >= 2 ranks, fp32 master weights (the model is loaded in float32) and FSDP2
  mixed precision computing in bf16 with fp32 gradient reduction (``precision: bf16``) or fp32
  throughout. Automodel applies FSDP2 (and its mixed-precision policy) only with >= 2 ranks and
  its LLM recipe has no autocast, so a bf16 run on ONE GPU loads the weights in bf16 (weights
  and Adam moments in bf16; fp32 weights there would compute in fp32, ~10x slower).
* Checkpoints: every ``checkpoint_interval`` and the last step Automodel writes a resumable
  DCP checkpoint ``automodel/epoch_E_step_S/`` (model, optimizer, LR scheduler, data loader,
  RNG; ``S`` is the 0-based index of the last update, i.e. our step - 1) and, with
  ``save_consolidated: every``, consolidated HF safetensors under ``model/consolidated/``.
  Those are hard-linked into ``hf/step_NNNNNNN/`` as soon as they are complete, so Automodel
  may prune old resumable states (``KEEP_RECENT_STATES``). The weights are saved as stored
  (float32 with >= 2 ranks, bf16 on one GPU).
* Resume: rerunning the same command resumes from the newest complete checkpoint
  (``checkpoint.restore_from: LATEST``; an interrupted save carries a ``.incomplete`` marker
  and is skipped); model, optimizer, LR schedule, data position and RNG are restored (on the
  H100 the resumed update reproduced the killed run's loss and gradient norm bit for bit).
  SIGTERM (forwarded by :func:`run` to the ranks) makes Automodel write a checkpoint and stop;
  :class:`TrainingIncomplete` then tells the caller to rerun.
* Validation: ``eval_iters`` global batches of the valid split every ``eval_interval`` steps;
  at the last step too only when ``checkpoint_interval`` is a multiple of ``eval_interval``
  (Automodel validates on checkpoint steps or on none of them).
* Metrics: Automodel's ``training.jsonl``/``validation.jsonl`` (buffered, 100 lines) merged
  with its per-step log lines, re-expressed per our step with our MFU
  (:func:`filmorph.train.common.flops_per_token`).

Nothing here imports torch, transformers or nemo_automodel at module import time.
"""

from filmorph.train.automodel.recipe import (
    AUTOMODEL_DIR,
    AUTOMODEL_RECIPE,
    CHILD_ENV,
    COLLATE_TARGET,
    CONFIG_YAML,
    DATASET_TARGET,
    TRAIN_META,
    DocumentPretrainingConfig,
    DocumentSamples,
    automodel_config,
    check_launch,
    clear_automodel_run,
    collate_documents,
    document_attention,
    document_inputs,
    launch_command,
    launcher_argv,
    lr_scheduler_config,
    wandb_section,
    write_config_yaml,
)
from filmorph.train.automodel.runner import (
    INCOMPLETE_MARKER,
    automodel_checkpoints,
    build_metrics,
    enable_cache,
    export_checkpoints,
    lr_schedule_error,
    parse_automodel_metrics,
    run,
    train,
)
from filmorph.train.launch import TrainingIncomplete, node_rank

__all__ = [
    "AUTOMODEL_DIR",
    "CHILD_ENV",
    "AUTOMODEL_RECIPE",
    "COLLATE_TARGET",
    "CONFIG_YAML",
    "DATASET_TARGET",
    "INCOMPLETE_MARKER",
    "TRAIN_META",
    "DocumentPretrainingConfig",
    "DocumentSamples",
    "TrainingIncomplete",
    "automodel_checkpoints",
    "automodel_config",
    "build_metrics",
    "check_launch",
    "clear_automodel_run",
    "collate_documents",
    "document_attention",
    "document_inputs",
    "enable_cache",
    "export_checkpoints",
    "launch_command",
    "launcher_argv",
    "lr_schedule_error",
    "lr_scheduler_config",
    "node_rank",
    "parse_automodel_metrics",
    "run",
    "train",
    "wandb_section",
    "write_config_yaml",
]
