"""The ``automodel`` engine's recipe: the run's names and Automodel's, the document semantics of
the samples it trains on (:class:`DocumentPretrainingConfig`, :func:`collate_documents`), the
pure translation of a :class:`~filmorph.train.config.TrainConfig` into Automodel's recipe YAML
(:func:`automodel_config`) and the launch command (:func:`launch_command`).

Nothing here imports torch, transformers or nemo_automodel at module import time.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from filmorph.io import atomic_path
from filmorph.models import attn_logit_softcap
from filmorph.tokenizers import HF_TOKENIZER_FILES
from filmorph.train.common import (
    RunLayout,
    wandb_run_id,
)
from filmorph.train.config import TrainConfig, deep_merge
from filmorph.train.launch import (
    detect_dist_env,
    first_host,
    per_node_argv,
)

ENGINE = "automodel"
AUTOMODEL_RECIPE = "nemo_automodel.recipes.llm.train_ft"
MODEL_TARGET = "nemo_automodel.NeMoAutoModelForCausalLM.from_pretrained"
LOSS_TARGET = "nemo_automodel.components.loss.masked_ce.MaskedCrossEntropy"
# the recipe's _target_s: the package, which exports both
DATASET_TARGET = f"{__package__}.DocumentPretrainingConfig"
COLLATE_TARGET = f"{__package__}.collate_documents"
AUTOMODEL_DIR = "automodel"  # Automodel's checkpoint_dir inside the run dir
CONFIG_YAML = "automodel.yaml"
TRAIN_META = "filmorph_train_meta.json"
IGNORE_INDEX = -100
# parameters without weight decay (norm weights and biases: every 1-D parameter of the
# Llama and Gemma families), matched by re.search on the parameter name
NO_DECAY_PATTERN = r"(norm\.weight|\.bias)$"
# resumable Automodel states kept on disk (HF checkpoints are all kept, in hf/)
KEEP_RECENT_STATES = 2
TOKENIZER_FILES = (*HF_TOKENIZER_FILES, "tokenizer_meta.json")  # + the family meta
# attention implementation with document masks, measured on one H100 at seq 2048 through run():
# Llama 3.2 1B shape (head_dim 64) flex_attention 48.4k tokens/s = 40.2 % MFU, sdpa with the dense mask
# 43.3k = 36.0 %; Gemma 3 1B shape (head_dim 256) flex 20.8k = 14.0 %, sdpa 24.4k = 16.4 %
DOCUMENT_ATTENTION = "flex_attention"
FLEX_MAX_HEAD_DIM = 128
# torchrun/Automodel environment: quiet tokenizers, unbuffered logs
CHILD_ENV = {"TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


# ============================================================================ data semantics
def document_inputs(
    tokens: Any, labels: Any, *, eod_id: int, reset_position_ids: bool, eod_mask_loss: bool
) -> dict[str, Any]:
    """Model inputs of one sample (1-D ``tokens``/``labels``, ``labels[i] = tokens[i + 1]``).

    ``position_ids`` (only with ``reset_position_ids``) restart at 0 after every EOD; with
    ``eod_mask_loss`` the label of every position whose *input* token is EOD becomes
    :data:`IGNORE_INDEX` (the next document's first token is not predicted from the previous
    document; the EOD itself still is). ``labels`` already -100 stay so."""
    import torch

    tokens = torch.as_tensor(tokens, dtype=torch.long)
    labels = torch.as_tensor(labels, dtype=torch.long).clone()
    out: dict[str, Any] = {"input_ids": tokens, "labels": labels}
    is_eod = tokens == int(eod_id)
    if eod_mask_loss:
        labels[is_eod] = IGNORE_INDEX
    if reset_position_ids:
        n = tokens.shape[0]
        idx = torch.arange(n, dtype=torch.long)
        starts = torch.zeros(n, dtype=torch.bool)
        starts[1:] = is_eod[:-1]
        start_of = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), dim=0).values
        out["position_ids"] = idx - start_of
    return out


def collate_documents(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack samples of :func:`document_inputs` into a batch and add ``use_cache=False`` (the
    model must not build a KV cache: transformers only derives per-document attention from
    restarted position ids when there is none)."""
    import torch

    keys = items[0].keys()
    batch: dict[str, Any] = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in keys}
    batch["use_cache"] = False
    return batch


class _EodTokenizer:
    """What Automodel's GPTDataset reads from a tokenizer: pad and eos ids and a name.

    ``pad_token_id`` is -1, an id no shard holds (real pad ids, e.g. Llama 3's 128004, are
    ordinary corpus tokens that Automodel would otherwise blank out); ``eos_token_id`` is the
    shards' EOD id."""

    def __init__(self, eod_id: int):
        self.pad_token_id = -1
        self.eos_token_id = int(eod_id)
        self.name_or_path = f"filmorph-eod-{int(eod_id)}"


class DocumentSamples:
    """Map-style dataset over an Automodel Megatron dataset that yields
    :func:`document_inputs` samples; at most ``limit`` samples."""

    def __init__(
        self, dataset: Any, limit: int | None, *, eod_id: int, reset_position_ids: bool, eod_mask_loss: bool
    ):
        self.dataset = dataset
        self.limit = len(dataset) if limit is None else min(int(limit), len(dataset))
        self.eod_id = int(eod_id)
        self.reset_position_ids = bool(reset_position_ids)
        self.eod_mask_loss = bool(eod_mask_loss)

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if not 0 <= idx < self.limit:
            raise IndexError(idx)
        item = self.dataset[idx]
        labels = item["labels"].clone()
        labels[item["loss_mask"] == 0] = IGNORE_INDEX  # padding at the end of the data
        return document_inputs(
            item["input_ids"],
            labels,
            eod_id=self.eod_id,
            reset_position_ids=self.reset_position_ids,
            eod_mask_loss=self.eod_mask_loss,
        )


@dataclass
class DocumentPretrainingConfig:
    """Dataset ``_target_`` for Automodel's recipe: its ``MegatronPretraining`` over the blend
    ``paths`` (weights: ``weights``), one split (``split_name``: ``train`` or ``validation``)
    of ``num_samples`` samples (default ``max_steps × global batch``), wrapped in
    :class:`DocumentSamples`. The class attributes are the capabilities Automodel's loader
    checks (build on every rank, give the training schedule)."""

    builds_on_all_ranks: ClassVar[bool] = True
    accepts_tokenizer: ClassVar[bool] = True
    requires_training_schedule: ClassVar[bool] = True

    paths: list[str]
    eod_id: int
    weights: list[float] | None = None
    seq_length: int = 2048
    seed: int = 1234
    split: str = "99,1,0"
    split_name: str = "train"
    num_samples: int | None = None
    reset_position_ids: bool = True
    eod_mask_loss: bool = True
    index_mapping_dir: str | None = None
    num_dataset_builder_threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.split, (list, tuple)):  # Automodel's YAML loader reads "99,1,0" as a tuple
            self.split = ",".join(str(x) for x in self.split)
        if self.split_name not in ("train", "validation"):
            raise ValueError(f"split_name must be train or validation, not {self.split_name!r}")
        if self.weights is not None and len(self.weights) != len(self.paths):
            raise ValueError(f"{len(self.weights)} weights for {len(self.paths)} paths")

    def blend(self) -> list[str]:
        """``paths`` as Megatron's zipped ``[weight, prefix, ...]`` list (plain list without weights)."""
        if self.weights is None or len(self.paths) == 1:
            return [str(p) for p in self.paths]
        return [x for w, p in zip(self.weights, self.paths, strict=True) for x in (repr(float(w)), str(p))]

    def build(self, *, tokenizer: Any = None, training_schedule: Any = None) -> DocumentSamples:
        """Build the split (Automodel's builder; every rank takes part) and wrap it."""
        from nemo_automodel.components.datasets.llm.megatron_dataset import MegatronPretraining

        local = getattr(training_schedule, "local_batch_size", 1)
        gbs = getattr(training_schedule, "global_batch_size", 1)
        max_steps = getattr(training_schedule, "max_steps", None)
        n = self.num_samples
        if n is None:
            if max_steps is None:
                raise ValueError("num_samples or the schedule's max_steps is needed")
            n = int(max_steps) * int(gbs)
        train = self.split_name == "train"
        mp = MegatronPretraining(
            paths=self.blend(),
            seq_length=self.seq_length,
            tokenizer=_EodTokenizer(self.eod_id),
            micro_batch_size=local,
            global_batch_size=gbs,
            create_attention_mask=False,
            seed=self.seed,
            split=self.split,
            index_mapping_dir=self.index_mapping_dir,
            num_dataset_builder_threads=self.num_dataset_builder_threads,
            num_train_samples=n if train else None,
            num_val_samples=None if train else n,
            trainer_max_steps=max_steps,
            trainer_val_check_interval=getattr(training_schedule, "val_check_interval", None) or 1000,
            splits_to_build=self.split_name,
            **self.extra,
        )
        mp.build()
        ds = mp.get_dataset(self.split_name)
        if len(ds) < n:
            raise RuntimeError(f"Automodel built {len(ds)} {self.split_name} samples, {n} needed")
        return DocumentSamples(
            ds,
            n,
            eod_id=self.eod_id,
            reset_position_ids=self.reset_position_ids,
            eod_mask_loss=self.eod_mask_loss,
        )


# ============================================================================ config translation
def lr_scheduler_config(cfg: TrainConfig) -> dict[str, Any]:
    """The ``lr_scheduler:`` section (Automodel's Megatron-style ``OptimizerParamScheduler``).

    That scheduler gives update ``n`` (0-based; it steps after each update) the rate
    ``init + (max - init) · n / W'`` while ``n <= W'`` and then decays over
    ``(n - W') / (D - W')``. With ``init = lr / W``, ``W' = W - 1`` and ``D = max_steps - 1``
    this is exactly :func:`~filmorph.train.common.lr_at` for ``W = warmup_steps >= 1``."""
    w, m = cfg.warmup_steps, cfg.max_steps
    if w >= 1:
        init_lr, warm = cfg.lr / w, w - 1
        decay = max(m - 1, warm + 1)
    else:  # no warmup: the decay starts one update earlier than lr_at's
        init_lr, warm, decay = cfg.lr, 0, max(m, 1)
    return {
        "lr_decay_style": cfg.lr_schedule,
        "lr_warmup_steps": warm,
        "lr_decay_steps": decay,
        "init_lr": init_lr,
        "max_lr": cfg.lr,
        "min_lr": cfg.min_lr if cfg.lr_schedule != "constant" else cfg.lr,
        "start_wd": cfg.weight_decay,
        "end_wd": cfg.weight_decay,
        "wd_incr_style": "constant",
        "use_checkpoint_opt_param_scheduler": True,
    }


def automodel_config(
    cfg: TrainConfig,
    *,
    model_dir: str | Path,
    shard_prefixes: Sequence[str | Path],
    run_dir: str | Path,
    world_size: int,
    eod_id: int,
    shard_weights: Sequence[float] | None = None,
    wandb: Mapping[str, Any] | None = None,
    attn_implementation: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Automodel recipe YAML (as a dict) that trains ``cfg`` on all ``shard_prefixes``.

    ``world_size`` data-parallel ranks (FSDP2); ``eod_id`` the shards' EOD id;
    ``shard_weights`` the blend weights (token counts; ``None``: equal). ``wandb``: the
    ``wandb:`` section (project/name/...; never a key) or ``None``. ``attn_implementation``:
    the attention used with document masks (default ``flex_attention``; see
    :func:`document_attention`); without document masks, ``None`` keeps Automodel's default.
    ``overrides`` are merged into the result last (tuning: attention backend, loss, compile,
    ...); they may not switch off what the document semantics need. Raises ``ValueError`` for
    batch sizes that do not divide, document semantics Automodel cannot realise, or paths it
    would mangle."""
    cfg.grad_accum_steps(world_size)  # raises ValueError; Automodel derives it from global / (local × world)
    prefixes = [str(p) for p in shard_prefixes]
    if not prefixes:
        raise ValueError("no shard prefixes given")
    if len(set(prefixes)) != len(prefixes):
        raise ValueError(f"shard prefixes repeat: {prefixes}")
    if cfg.reset_position_ids != cfg.reset_attention_mask:
        raise ValueError(
            "the automodel engine separates documents through restarted position ids (transformers "
            "derives the per-document attention mask from them): reset_position_ids and "
            f"reset_attention_mask must be equal, not {cfg.reset_position_ids} / {cfg.reset_attention_mask}"
        )
    for p in [*prefixes, str(model_dir), str(run_dir)]:
        if "$" in p:
            raise ValueError(f"Automodel expands $VARIABLES in YAML strings; rename the path {p!r}")
    weights = None
    if shard_weights is not None:
        weights = [float(w) for w in shard_weights]
        if len(weights) != len(prefixes) or any(not math.isfinite(w) or w <= 0 for w in weights):
            raise ValueError(f"shard_weights must be {len(prefixes)} positive numbers, not {weights}")
        if len(weights) == 1:
            weights = None
    layout = RunLayout(run_dir)
    bf16 = cfg.precision == "bf16"
    evaluate = cfg.eval_enabled
    dataset = {
        "_target_": DATASET_TARGET,
        "paths": prefixes,
        "weights": weights,
        "eod_id": int(eod_id),
        "seq_length": cfg.seq_length,
        "seed": cfg.seed,
        "split": cfg.split,
        "split_name": "train",
        "num_samples": cfg.max_steps * cfg.global_batch_size,
        "reset_position_ids": cfg.reset_position_ids,
        "eod_mask_loss": cfg.eod_mask_loss,
        "index_mapping_dir": str(layout.data_cache),
    }
    loader = {"collate_fn": COLLATE_TARGET, "num_workers": cfg.num_workers, "pin_memory": True}
    out: dict[str, Any] = {
        "seed": cfg.seed,
        "step_scheduler": {
            "global_batch_size": cfg.global_batch_size,
            "local_batch_size": cfg.micro_batch_size,
            "max_steps": cfg.max_steps,
            "num_epochs": 1,
            "ckpt_every_steps": cfg.checkpoint_interval,
            "save_checkpoint_every_epoch": False,
            "val_every_steps": cfg.eval_interval if evaluate else None,
            "validate_on_checkpoint": bool(evaluate and cfg.checkpoint_interval % cfg.eval_interval == 0),
            "log_remote_every_steps": cfg.log_interval,
            "preemption_signal": "SIGTERM",
        },
        "dist_env": {"backend": "nccl", "timeout_minutes": 30},
        "model": {
            "_target_": MODEL_TARGET,
            "pretrained_model_name_or_path": str(model_dir),
            # fp32 master weights, FSDP2 computing in mp_policy.param_dtype; Automodel applies FSDP2
            # (and so its mixed precision) only with >= 2 ranks and its LLM recipe has no autocast:
            # on one GPU a bf16 run stores weights and Adam moments in bf16
            "torch_dtype": "bfloat16" if bf16 and world_size == 1 else "float32",
        },
        "distributed": {
            "strategy": "fsdp2",
            "dp_size": world_size,
            "dp_replicate_size": 1,
            "tp_size": 1,
            "cp_size": 1,
            "pp_size": 1,
            "sequence_parallel": False,
            "activation_checkpointing": False,
            "mp_policy": {
                "param_dtype": "bfloat16" if bf16 else "float32",
                "reduce_dtype": "float32",
                "output_dtype": None,
            },
        },
        "loss_fn": {"_target_": LOSS_TARGET},
        "clip_grad_norm": {"max_norm": cfg.grad_clip if cfg.grad_clip > 0 else math.inf},
        "optimizer": {
            "_target_": "torch.optim.AdamW",
            "lr": cfg.lr,
            "betas": [cfg.adam_beta1, cfg.adam_beta2],
            "eps": cfg.adam_eps,
            "weight_decay": cfg.weight_decay,
            "param_group_overrides": [{"pattern": NO_DECAY_PATTERN, "wd_mult": 0.0}],
        },
        "lr_scheduler": lr_scheduler_config(cfg),
        "dataset": dataset,
        "dataloader": dict(loader),
        "checkpoint": {
            "enabled": True,
            "checkpoint_dir": str(layout.root / AUTOMODEL_DIR),
            "model_save_format": "safetensors",
            "save_consolidated": "every",
            "restore_from": "LATEST",
            "max_recent_checkpoints": KEEP_RECENT_STATES,
        },
    }
    if cfg.reset_attention_mask:
        # transformers builds the per-document masks from the restarted position ids: block-sparse
        # for FlexAttention, a dense B x 1 x T x T mask for SDPA (which then loses its flash kernel)
        out["model"]["attn_implementation"] = attn_implementation or DOCUMENT_ATTENTION
    elif attn_implementation:  # without document masks: Automodel's default unless one is named
        out["model"]["attn_implementation"] = attn_implementation
    if evaluate:
        out["validation_dataset"] = {
            **dataset,
            "split_name": "validation",
            "num_samples": cfg.eval_iters * cfg.global_batch_size,
        }
        out["validation_dataloader"] = {**loader, "num_workers": 0}
    if wandb:
        out["wandb"] = dict(wandb)
    if overrides:
        out = deep_merge(out, overrides)
        if cfg.reset_attention_mask and out.get("distributed", {}).get("patch_is_packed_sequence"):
            raise ValueError("overrides: patch_is_packed_sequence switches off per-document attention")
        if out["dataset"].get("_target_") != DATASET_TARGET:
            raise ValueError("overrides may not replace the dataset target (document semantics)")
    return out


def document_attention(model_config: Mapping[str, Any]) -> str:
    """The attention implementation for per-document masks given the model's ``config.json``:
    ``flex_attention`` (block-sparse masks) unless the heads are wider than 128 (Gemma 3: 256),
    where FlexAttention's kernel was slower than SDPA with the dense mask; always
    ``flex_attention`` for a model that soft-caps its attention logits (Gemma 2), whose cap SDPA
    would drop (:func:`filmorph.models.attention_for`)."""
    if attn_logit_softcap(model_config) is not None:
        return "flex_attention"
    text = model_config.get("text_config") or model_config
    heads = int(text.get("num_attention_heads") or 1)
    head_dim = text.get("head_dim") or int(text.get("hidden_size") or 0) // max(heads, 1)
    return "sdpa" if head_dim and int(head_dim) > FLEX_MAX_HEAD_DIM else DOCUMENT_ATTENTION


def write_config_yaml(config: Mapping[str, Any], path: str | Path) -> Path:
    """Write the recipe dict as YAML, atomically."""
    import yaml

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(plain_data(config), sort_keys=False), encoding="utf-8")
    return path


def plain_data(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): plain_data(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain_data(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def wandb_section(run_dir: Path, name: str) -> dict[str, Any] | None:
    """The recipe's ``wandb:`` section when ``WANDB_API_KEY`` is set (the key stays in the
    environment): run ``name``, a run id from ``run_dir`` (a rerun resumes the same W&B run)."""
    if not os.environ.get("WANDB_API_KEY"):
        return None
    run_id = wandb_run_id(run_dir)
    return {
        "project": os.environ.get("WANDB_PROJECT", "filmorph"),
        "name": name,
        "id": run_id,
        "resume": "allow",
        "dir": str(run_dir),
    }


# ============================================================================ launch
def launch_command(
    cfg: TrainConfig,
    config_path: str | Path,
    *,
    python: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """``torchrun`` starting Automodel's recipe with ``gpus_per_node`` processes on this node.

    One node: ``--standalone``. Several nodes: one such command per node, started by
    ``srun --ntasks-per-node=1`` (not one per GPU); node rank from ``SLURM_NODEID``,
    rendezvous at ``MASTER_ADDR``/``MASTER_PORT`` or the first host of the job's node list and
    a port derived from the job id. Raises ``ValueError`` when several nodes are asked for
    outside Slurm or Slurm's node count differs."""
    env = os.environ if environ is None else environ
    py = python or sys.executable
    cmd = [py, "-m", "torch.distributed.run", f"--nproc-per-node={cfg.gpus_per_node}"]
    if cfg.nodes == 1:
        cmd += ["--standalone", "--nnodes=1"]
    else:
        if "SLURM_NODEID" not in env:
            raise ValueError(
                f"train.nodes is {cfg.nodes}: start one launcher per node under Slurm "
                "(srun --ntasks-per-node=1 ...), which sets SLURM_NODEID"
            )
        nnodes = env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
        if nnodes and int(nnodes) != cfg.nodes:
            raise ValueError(f"train.nodes is {cfg.nodes} but Slurm gives {nnodes} nodes")
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "localhost"
        job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or "0"
        addr = env.get("MASTER_ADDR") or first_host(nodelist)
        port = env.get("MASTER_PORT") or str(20000 + int(re.sub(r"\D", "", job) or 0) % 20000)
        cmd += [
            f"--nnodes={cfg.nodes}",
            f"--node-rank={int(env['SLURM_NODEID'])}",
            f"--master-addr={addr}",
            f"--master-port={port}",
        ]
    return [*cmd, "-m", AUTOMODEL_RECIPE, "--config", str(config_path)]


def launcher_argv(cfg: TrainConfig, module_args: Sequence[str], python: str | None = None) -> list[str]:
    """How a job starts ``python -m filmorph.train MODULE_ARGS`` for this engine: ONE process per
    node (it starts torchrun with ``gpus_per_node`` ranks itself): plain on one node,
    ``srun --ntasks-per-node=1`` on several (not :func:`filmorph.train.launch.launch_argv`,
    which starts one process per GPU)."""
    return per_node_argv("filmorph.train", module_args, nodes=cfg.nodes, python=python)


def check_launch(cfg: TrainConfig, environ: Mapping[str, str] | None = None) -> None:
    """Refuse to run as one of several ranks (torchrun, or srun with a task per GPU): the engine
    is started once per node and launches its ranks itself."""
    env = detect_dist_env(environ)
    if env.launcher == "torchrun" or (env.launcher == "slurm" and env.world_size != cfg.nodes):
        raise ValueError(
            f"the automodel engine starts torchrun itself: start python -m filmorph.train once per node "
            f"(filmorph.train.automodel.launcher_argv), not as one of {env.world_size} {env.launcher} ranks"
        )


def clear_automodel_run(layout: RunLayout) -> None:
    """Remove Automodel's checkpoints, its YAML and logs from a run dir (a restarted run)."""
    shutil.rmtree(layout.root / AUTOMODEL_DIR, ignore_errors=True)
    (layout.root / CONFIG_YAML).unlink(missing_ok=True)
    for log in layout.root.glob("automodel_node*.log"):
        log.unlink()
