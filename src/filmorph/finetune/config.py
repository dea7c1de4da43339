"""Fine-tuning presets and their translation into NeMo Automodel's fine-tuning recipe YAML.

A run is a preset (:data:`PRESETS`) plus the keys the workflow config overrides
(``finetune.runs.<name>``), checked by :class:`FinetuneConfig`. :func:`automodel_finetune_config`
is a pure function from that to the YAML (as a dict) of Automodel's LLM fine-tuning recipe
(``nemo_automodel.recipes.llm.train_ft``, class ``TrainFinetuneRecipeForNextTokenPrediction``),
with the keys of Automodel 0.7.0 (read in its source):

* ``model``: ``NeMoAutoModelForCausalLM.from_pretrained`` with ``pretrained_model_name_or_path``
  (a local dir or a hub id), ``torch_dtype`` and an explicit ``trust_remote_code`` (true only for
  the model families the config names: Automodel would otherwise trust every ``nvidia/`` hub id);
  ``force_hf`` selects the transformers implementation (the pure-PyTorch Mamba path of NemotronH).
* ``peft``: ``nemo_automodel.components._peft.lora.PeftConfig`` (``match_all_linear``, ``dim``,
  ``alpha``, ``use_triton``; ``exclude_modules`` instead of ``match_all_linear`` where a layer
  must be left out: Automodel refuses both together). Absent for full SFT.
* ``dataset`` / ``validation_dataset``: Automodel's chat dataset
  (``nemo_automodel.components.datasets.llm.chat_dataset.ChatDataset``) over our validated
  OpenAI-messages JSONL, rendered by the tokenizer's chat template, loss on assistant turns.
* ``step_scheduler``: global/local batch, ``max_steps``, ``val_every_steps``, ``ckpt_every_steps``
  (Automodel also checkpoints the last step and on SIGTERM); ``num_epochs: null`` so that
  ``max_steps`` alone sets the length.
* ``distributed``: ``strategy: fsdp2`` over all the job's GPUs (``dp_size``), expert parallelism
  for MoE models (``ep_size``).
* ``checkpoint``: safetensors under the run dir, ``restore_from: LATEST`` (a rerun resumes);
  LoRA runs write HF PEFT adapters (``model/adapter_model.safetensors`` + ``adapter_config.json``),
  full SFT consolidated HF weights at the end (``model/consolidated/``).

Nothing here imports torch or nemo_automodel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from filmorph.train.config import deep_merge

RECIPE_MODULE = "nemo_automodel.recipes.llm.train_ft"
RECIPE_CLASS = "TrainFinetuneRecipeForNextTokenPrediction"
MODEL_TARGET = "nemo_automodel.NeMoAutoModelForCausalLM.from_pretrained"
PEFT_TARGET = "nemo_automodel.components._peft.lora.PeftConfig"
CHAT_DATASET_TARGET = "nemo_automodel.components.datasets.llm.chat_dataset.ChatDataset"
COLLATE_TARGET = "nemo_automodel.components.datasets.utils.default_collater"
LOADER_TARGET = "torchdata.stateful_dataloader.StatefulDataLoader"
LOSS_TARGET = "nemo_automodel.components.loss.masked_ce.MaskedCrossEntropy"
RNG_TARGET = "nemo_automodel.components.training.rng.StatefulRNG"
AUTOMODEL_DIR = "automodel"  # Automodel's checkpoint_dir inside the run dir
METHODS = ("lora", "full")
LR_SCHEDULES = ("constant", "cosine", "linear")

# Chat templates by name (finetune.runs.<name>.chat_template: a name here, a .jinja file or a
# template): for models whose tokenizer has none, e.g. the tiny random Llama of the default config.
CHAT_TEMPLATES = {
    # the Llama 3 instruct turn format: header, blank line, content, end of turn
    "llama3": (
        "{{- bos_token }}{%- for message in messages %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
        "+ (message['content'] or '') | trim + '<|eot_id|>' }}{%- endfor %}"
        "{%- if add_generation_prompt %}"
        "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
    ),
}


def resolve_chat_template(value: str | None) -> str | None:
    """A chat template from a name of :data:`CHAT_TEMPLATES`, a file (read) or a literal template."""
    if value is None or value == "":
        return None
    if value in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[value]
    if "{%" in value or "{{" in value:
        return value
    path = Path(value)
    if not path.is_file():
        raise ValueError(
            f"chat_template {value!r}: not a known name ({', '.join(CHAT_TEMPLATES)}), file or template"
        )
    return path.read_text(encoding="utf-8")


# The study's models and settings. gpus/mem_mb/runtime size the Slurm job (runtime in minutes).
PRESETS: dict[str, dict[str, Any]] = {
    # hybrid Mamba-Transformer MoE (NemotronH), 30B total / 3.5B active parameters, bf16. The Mamba
    # out_proj is left out of LoRA: Automodel's fused Mamba kernel reads its weight directly, so a
    # LoRA there would never train (Automodel's own Nemotron-3 recipes exclude it the same way);
    # every other linear layer is adapted. Needs the mamba-ssm / causal-conv1d kernels.
    "nemotron3_nano_lora": {
        "model": "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
        "family": "nemotron_h",
        "method": "lora",
        "match_all_linear": False,
        "exclude_modules": ["*.out_proj"],
        "gpus": 8,
        "expert_parallel": 8,
        "mem_mb": 480000,
        "runtime": 360,
        "needs_mamba_kernels": True,
    },
    "llama3_8b_lora": {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "family": "llama",
        "method": "lora",
        "gpus": 1,
        "mem_mb": 64000,
        "runtime": 180,
    },
    "llama3_8b_sft": {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "family": "llama",
        "method": "full",
        "gpus": 8,
        "mem_mb": 480000,
        "runtime": 360,
    },
}


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run: a preset with the workflow config's overrides (defaults: the study's
    settings: LoRA dim 8, alpha 32 on all linear layers with Triton kernels, global batch 8,
    local 1, lr 1e-5, 200 steps, validation every 100, checkpoints every 500)."""

    preset: str
    model: str
    family: str
    method: str = "lora"
    lora_dim: int = 8
    lora_alpha: int = 32
    use_triton: bool = True
    match_all_linear: bool = True
    exclude_modules: list[str] = field(default_factory=list)
    global_batch_size: int = 8
    local_batch_size: int = 1
    lr: float = 1.0e-5
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    min_lr: float = 0.0
    weight_decay: float = 0.0
    max_steps: int = 200
    val_every_steps: int = 100
    ckpt_every_steps: int = 500
    seq_length: int = 2048
    seed: int = 1234
    gpus: int = 1
    nodes: int = 1
    expert_parallel: int = 1
    activation_checkpointing: bool = False
    torch_dtype: str = "bfloat16"
    force_hf: bool = False
    chat_template: str | None = None
    needs_mamba_kernels: bool = False
    mem_mb: int = 64000
    runtime: int = 180
    automodel_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"finetune run ({self.preset}): {what}")

        need(self.method in METHODS, f"method must be one of {METHODS}, not {self.method!r}")
        need(self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {LR_SCHEDULES}")
        for name in (
            "lora_dim",
            "lora_alpha",
            "global_batch_size",
            "local_batch_size",
            "max_steps",
            "val_every_steps",
            "ckpt_every_steps",
            "seq_length",
            "gpus",
            "nodes",
            "expert_parallel",
            "mem_mb",
            "runtime",
        ):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"{name} must be an integer >= 1")
        need(
            self.warmup_steps >= 0 and self.warmup_steps < self.max_steps,
            "warmup_steps must be in [0, max_steps)",
        )
        need(math.isfinite(self.lr) and self.lr > 0, "lr must be > 0")
        need(0 <= self.min_lr <= self.lr, "min_lr must be in [0, lr]")
        need(self.weight_decay >= 0, "weight_decay must be >= 0")
        need(bool(self.model), "model is empty")
        need(
            self.torch_dtype in ("bfloat16", "float32", "float16"),
            "torch_dtype: bfloat16, float32 or float16",
        )
        need(
            not (self.match_all_linear and self.exclude_modules),
            "match_all_linear and exclude_modules exclude each other (Automodel refuses both)",
        )
        need(self.world_size % self.expert_parallel == 0, "expert_parallel must divide gpus x nodes")
        per_step = self.local_batch_size * self.world_size
        need(
            self.global_batch_size % per_step == 0,
            f"global_batch_size {self.global_batch_size} is not a multiple of "
            f"local_batch_size x GPUs = {per_step}",
        )

    @property
    def world_size(self) -> int:
        return self.gpus * self.nodes

    # the attributes filmorph.train.automodel.launch_command reads
    @property
    def gpus_per_node(self) -> int:
        return self.gpus

    @property
    def peft(self) -> bool:
        return self.method == "lora"

    @classmethod
    def from_run(cls, run: Mapping[str, Any]) -> FinetuneConfig:
        """A run spec (``preset`` + overrides) resolved against :data:`PRESETS`. Unknown keys
        are errors; ``model`` may be given as a plain string (hub id or local dir) here."""
        run = dict(run)
        name = run.pop("preset", None)
        if name not in PRESETS:
            raise ValueError(f"unknown finetune preset {name!r}; known: {', '.join(sorted(PRESETS))}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(run) - known)
        if unknown:
            raise ValueError(f"unknown finetune run keys: {', '.join(unknown)}")
        merged = {**PRESETS[name], **{k: v for k, v in run.items() if v is not None}}
        return cls(preset=name, **merged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resources(self) -> dict[str, int]:
        """What the Slurm job asks for: ``gpu`` (per job), ``mem_mb`` and ``runtime`` (minutes)."""
        return {"gpu": self.world_size, "mem_mb": self.mem_mb, "runtime": self.runtime}


def lr_scheduler_section(cfg: FinetuneConfig) -> dict[str, Any]:
    """Automodel's ``lr_scheduler`` (Megatron-style ``OptimizerParamScheduler``) for ``cfg``."""
    constant = cfg.lr_schedule == "constant"
    return {
        "lr_decay_style": cfg.lr_schedule,
        "lr_warmup_steps": cfg.warmup_steps,
        "lr_decay_steps": cfg.max_steps,
        "init_lr": 0.0 if cfg.warmup_steps else cfg.lr,
        "max_lr": cfg.lr,
        "min_lr": cfg.lr if constant else cfg.min_lr,
        "start_wd": cfg.weight_decay,
        "end_wd": cfg.weight_decay,
        "wd_incr_style": "constant",
    }


def automodel_finetune_config(
    cfg: FinetuneConfig,
    *,
    train_file: str | Path,
    validation_file: str | Path | None,
    run_dir: str | Path,
    model: str | Path | None = None,
    trust_remote_code_families: Sequence[str] = (),
    wandb: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The recipe YAML (as a dict) that fine-tunes ``model`` (default ``cfg.model``: a local
    checkpoint dir or a hub id) on ``train_file`` with held-out ``validation_file``.

    ``trust_remote_code`` is true only when ``cfg.family`` is one of
    ``trust_remote_code_families``. ``cfg.automodel_overrides`` are merged in last (tuning:
    attention backend, activation checkpointing, ...). Raises ``ValueError`` for paths Automodel
    would mangle (it expands ``$VARIABLES`` in YAML strings) or a chat file it would not read as
    JSONL."""
    model = str(model if model is not None else cfg.model)
    files = [str(train_file)] + ([str(validation_file)] if validation_file is not None else [])
    for p in [model, str(run_dir), *files]:
        if "$" in p:
            raise ValueError(f"Automodel expands $VARIABLES in YAML strings; rename the path {p!r}")
    for f in files:
        if not f.endswith((".jsonl", ".ndjson")):
            raise ValueError(f"{f}: Automodel's chat dataset reads JSONL only from a .jsonl file")
    world = cfg.world_size

    def chat_dataset(path: str, split: str) -> dict[str, Any]:
        ds: dict[str, Any] = {
            "_target_": CHAT_DATASET_TARGET,
            "path_or_dataset_id": path,
            "split": split,
            "seq_length": cfg.seq_length,
            "padding": "do_not_pad",
            "truncation": "longest_first",
        }
        if cfg.chat_template:
            ds["chat_template"] = resolve_chat_template(cfg.chat_template)
        return ds

    loader = {"_target_": LOADER_TARGET, "collate_fn": COLLATE_TARGET}
    model_section: dict[str, Any] = {
        "_target_": MODEL_TARGET,
        "pretrained_model_name_or_path": model,
        "torch_dtype": cfg.torch_dtype,
        "trust_remote_code": cfg.family in set(trust_remote_code_families),
    }
    if cfg.force_hf:
        model_section["force_hf"] = True
    distributed: dict[str, Any] = {
        "strategy": "fsdp2",
        "dp_size": world,
        "tp_size": 1,
        "cp_size": 1,
        "pp_size": 1,
        "sequence_parallel": False,
        "activation_checkpointing": cfg.activation_checkpointing,
    }
    if cfg.expert_parallel > 1:
        distributed["ep_size"] = cfg.expert_parallel
    out: dict[str, Any] = {
        "recipe": RECIPE_CLASS,
        "seed": cfg.seed,
        "rng": {"_target_": RNG_TARGET, "seed": cfg.seed, "ranked": True},
        "step_scheduler": {
            "global_batch_size": cfg.global_batch_size,
            "local_batch_size": cfg.local_batch_size,
            "max_steps": cfg.max_steps,
            "num_epochs": None,
            "val_every_steps": cfg.val_every_steps if validation_file is not None else None,
            "ckpt_every_steps": cfg.ckpt_every_steps,
            "save_checkpoint_every_epoch": False,
            "preemption_signal": "SIGTERM",
        },
        "dist_env": {"backend": "nccl", "timeout_minutes": 30},
        "model": model_section,
        "distributed": distributed,
        "loss_fn": {"_target_": LOSS_TARGET},
        "dataset": chat_dataset(files[0], "train"),
        "packed_sequence": {"packed_sequence_size": 0},
        "dataloader": {**loader, "shuffle": True},
        "optimizer": {
            "_target_": "torch.optim.AdamW",
            "lr": cfg.lr,
            "betas": [0.9, 0.999],
            "eps": 1.0e-8,
            "weight_decay": cfg.weight_decay,
        },
        "lr_scheduler": lr_scheduler_section(cfg),
        "checkpoint": {
            "enabled": True,
            "checkpoint_dir": str(Path(run_dir) / AUTOMODEL_DIR),
            "model_save_format": "safetensors",
            # full SFT: consolidated HF safetensors of the final step (LoRA saves adapters only)
            "save_consolidated": "final",
            "restore_from": "LATEST",
        },
    }
    if cfg.peft:
        peft: dict[str, Any] = {
            "_target_": PEFT_TARGET,
            "dim": cfg.lora_dim,
            "alpha": cfg.lora_alpha,
            "use_triton": cfg.use_triton,
            "dropout": 0.0,
        }
        if cfg.match_all_linear:
            peft["match_all_linear"] = True
        else:
            peft["exclude_modules"] = list(cfg.exclude_modules)
        out["peft"] = peft
    if validation_file is not None:
        out["validation_dataset"] = chat_dataset(files[1], "validation")
        out["validation_dataloader"] = dict(loader)
    if wandb:
        out["wandb"] = dict(wandb)
    if cfg.automodel_overrides:
        out = deep_merge(out, cfg.automodel_overrides)
    return out


def model_source(model: Any, preset: str) -> tuple[str, ...]:
    """Where a run's base model comes from, from its ``model`` config value: ``("family", name)``
    (a family's base model), ``("local", dir)`` or ``("hub", id, revision)`` (downloaded on the
    login node). ``None`` is the preset's hub model; a string is a local dir when it names an
    existing directory or starts with ``/``, ``.`` or ``~``, else a hub id."""
    if preset not in PRESETS:
        raise ValueError(f"unknown finetune preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    if model is None:
        return ("hub", PRESETS[preset]["model"], None)
    if isinstance(model, str):
        local = Path(model).expanduser().is_dir() or model.startswith(("/", ".", "~"))
        return ("local", model) if local else ("hub", model, None)
    if "family" in model:
        return ("family", model["family"])
    if model.get("source") == "local":
        return ("local", model["path"])
    if model.get("source") == "hf":
        return ("hub", model["id"], model.get("revision"))
    raise ValueError(
        f"model: expected null, a string, {{family}}, {{source: hf}} or {{source: local}}, not {model!r}"
    )


def hub_dir_name(model_id: str, revision: str | None = None) -> str:
    """``meta-llama/Llama-3.1-8B-Instruct`` -> ``meta-llama--Llama-3.1-8B-Instruct`` (+ ``--rev``)."""
    return "--".join([model_id.replace("/", "--"), *([revision] if revision else [])])
