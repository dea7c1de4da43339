# Fine-tuning track: its config, run plans and input functions (the rules: finetune.smk).
# this checkout's filmorph is on sys.path (rules/common.smk)
from filmorph.finetune.config import (
    FinetuneConfig,
    hub_dir_name,
    model_source,
    resolve_chat_template,
)
from filmorph.finetune.kernels import source_key, wheelhouse_key

FINETUNE = config["finetune"]
FT_ENABLED = bool(FINETUNE["enabled"])
FT_DATA = FINETUNE["data"]
FT_SPLITS = ["train", "validation"]
FT_KERNELS = FINETUNE["kernels"]
FT_KERNEL_VERSIONS = {
    "mamba-ssm": FT_KERNELS["mamba_ssm"],
    "causal-conv1d": FT_KERNELS["causal_conv1d"],
}
# keyed paths: other versions or another arch list are another wheelhouse, a current one is
# never rebuilt
FT_KERNEL_SRC = WHEELHOUSE_SRC.format(key=source_key(FT_KERNEL_VERSIONS))
FT_WHEELHOUSE = WHEELHOUSE_DIR.format(
    key=wheelhouse_key(FT_KERNEL_VERSIONS, FT_KERNELS["cuda_arch_list"])
)
# the GPU rules run in finetune.container when one is set (--sdm apptainer), else in the
# Automodel conda env (--sdm conda)
FT_CONDA_ENV = None if FINETUNE["container"] else "../envs/gpu/automodel.yaml"
# Slurm: partition / QoS / account of the GPU jobs (unset keys: the profile's defaults)
FT_SLURM = {
    k: v
    for k, v in {
        "slurm_partition": FINETUNE["slurm"]["partition"],
        "qos": FINETUNE["slurm"]["qos"],
        "slurm_account": FINETUNE["slurm"]["account"],
        "slurm_extra": FINETUNE["slurm"]["extra"],
    }.items()
    if v
}
# Code fingerprints (import closures, rules/common.smk's STAGE_ENTRIES say how).
FINETUNE_FINGERPRINT = fingerprint(
    [
        "filmorph.finetune.__main__",
        "filmorph.finetune.run",
        "filmorph.train.common",
        "filmorph.train.launch",
        "filmorph.train.automodel",
        "filmorph.train.automodel.runner",
        "filmorph.train.automodel.recipe",
    ]
)
CODE_CHAT_DATA = fingerprint(["filmorph.finetune.data"])


# run name -> {"cfg": FinetuneConfig, "model": model dir, "spec": the run as the job gets it}
FT_RUNS = {}
FT_DOWNLOADS = {}  # resources/finetune/models/{key} -> (hub id, revision)
for _name, _spec in FINETUNE["runs"].items():
    if _name in MODEL_SPECS:
        raise ValueError(
            f"finetune.runs.{_name}: the name of a model; pick another run name"
        )
    _spec = {"seed": config["seed"], **_spec}
    _src = model_source(_spec.get("model"), _spec["preset"])
    if _src[0] == "family":
        if _src[1] not in FAMILY_MODELS:
            raise ValueError(f"finetune.runs.{_name}: family {_src[1]!r} has no model")
        _dir = model_dir(_src[1])
    elif _src[0] == "local":
        _dir = _src[1]
    else:
        _key = hub_dir_name(_src[1], _src[2])
        FT_DOWNLOADS[_key] = (_src[1], _src[2])
        _dir = FT_MODEL_DIR.format(ftmodel=_key)
    _cfg = FinetuneConfig.from_run({**_spec, "model": _dir})
    resolve_chat_template(_cfg.chat_template)  # a bad name or missing file fails here
    FT_RUNS[_name] = {"cfg": _cfg, "model": _dir, "spec": {**_spec, "model": _dir}}
FT_LORA_RUNS = [r for r, v in FT_RUNS.items() if v["cfg"].peft]


def ft_source(split):
    """The chat file of a split as configured: synthetic, fetched from a URL, or a local path."""
    value = FT_DATA[split]
    if value == "synthetic":
        return FT_SOURCE_SYNTHETIC.format(split=split)
    if re.match(r"https?://", value):
        return FT_SOURCE_FETCHED.format(split=split)
    return value


def get_ft_model(wildcards):
    return FT_RUNS[wildcards.run]["model"]


def get_ft_wheelhouse(wildcards):
    """The Mamba kernels' wheelhouse, for presets that need them (when kernels.build is on)."""
    need = FT_RUNS[wildcards.run]["cfg"].needs_mamba_kernels
    return FT_WHEELHOUSE if need and FT_KERNELS["build"] else []


def get_ft_trust(wildcards):
    cfg = FT_RUNS[wildcards.run]["cfg"]
    return cfg.family in FINETUNE["trust_remote_code"]


def get_ft_run_spec(wildcards):
    return json.dumps(FT_RUNS[wildcards.run]["spec"], sort_keys=True)


def get_ft_loss_inputs(wildcards):
    """Base model before; after: the base + the LoRA adapter, or the fully fine-tuned model."""
    run = FT_RUNS[wildcards.run]
    if wildcards.stage == "before":
        return {"model": run["model"]}
    final = FT_FINAL.format(run=wildcards.run)
    if run["cfg"].peft:
        return {"model": run["model"], "adapter": final}
    return {"model": final}


def get_ft_eval_model(wildcards):
    """The checkpoint the benchmark rules score: the base model (ckpt base) or the fine-tuned
    one (ckpt final: the merged LoRA weights, or the fully fine-tuned checkpoint)."""
    run = FT_RUNS[wildcards.model]
    if wildcards.ckpt == "base":
        return run["model"]
    if run["cfg"].peft:
        return FT_MERGED.format(run=wildcards.model)
    return FT_FINAL.format(run=wildcards.model)


def get_finetune_targets():
    """Everything of the fine-tuning track (empty unless finetune.enabled): validated data,
    each run's adapter/checkpoint and summary, chat loss before/after, merged weights (LoRA,
    finetune.merge), benchmark scores of base and fine-tuned model (finetune.evaluate).
    """
    if not FT_ENABLED:
        return []
    out = [FT_DATA_COUNTS]
    for run, plan in FT_RUNS.items():
        out += [
            FT_FINAL.format(run=run),
            FT_SUMMARY.format(run=run),
            *(FT_CHAT_LOSS.format(run=run, stage=s) for s in ("before", "after")),
        ]
        if plan["cfg"].peft and FINETUNE["merge"]:
            out.append(FT_MERGED.format(run=run))
        if FINETUNE["evaluate"]:
            out += [
                f
                for ckpt in ("base", "final")
                for f in eval_outputs(run, "finetune", ckpt)
            ]
    return out
