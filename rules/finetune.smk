# Fine-tuning track (target `finetune`): chat data -> validation -> NeMo Automodel LoRA / full
# SFT on GPUs (Mamba kernels from an offline wheelhouse for Nemotron-H presets) -> HF PEFT
# adapter (+ merged weights) -> held-out chat loss before/after -> the benchmark rules.
#
# Paths:  resources/finetune/source/, resources/finetune/data/{train,validation}.jsonl + counts
#         resources/finetune/models/{hub id}/       hub base models (login node)
#         resources/wheelhouse/src/{versions}/      kernel sdists + sources.json (login node)
#         resources/wheelhouse/{versions}_{archs}/  kernel wheels + wheels.json (GPU node)
#         results/finetune/{run}/                   run dir: final/, merged/, chat_loss_*.json
#         results/eval/{run}/finetune/{base,final}/ benchmark scores


include: "finetune_common.smk"


wildcard_constraints:
    run=_alternatives(FT_RUNS),
    split=_alternatives(FT_SPLITS),
    stage="before|after",
    ftmodel=_alternatives(FT_DOWNLOADS),


rule synthesize_chat_data:
    output:
        FT_SOURCE_SYNTHETIC,
    log:
        "logs/synthesize_chat_data/{split}.log",
    benchmark:
        "benchmarks/synthesize_chat_data/{split}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        n=lambda wc: FT_DATA["synthetic"][wc.split],
        seed=lambda wc: FT_DATA["synthetic"]["seed"] + FT_SPLITS.index(wc.split),
        code=CODE_CHAT_DATA,
    script:
        "../workflow_scripts/finetune.py"


rule fetch_chat_data:
    output:
        FT_SOURCE_FETCHED,
    log:
        "logs/fetch_chat_data/{split}.log",
    benchmark:
        "benchmarks/fetch_chat_data/{split}.tsv"
    localrule: True  # needs internet: runs on the login node
    conda:
        "../envs/data.yaml"
    params:
        url=lambda wc: FT_DATA[wc.split],
        code=CODE_CHAT_DATA,
    script:
        "../workflow_scripts/finetune.py"


# Before any GPU is asked for: every line checked (errors name file:line), counts written, the
# valid lines copied (finetune.data.on_bad_record: skip leaves bad ones out and counts them).
rule validate_chat_data:
    input:
        train=ft_source("train"),
        validation=ft_source("validation"),
    output:
        train=FT_TRAIN_DATA,
        validation=FT_VALIDATION_DATA,
        counts=FT_DATA_COUNTS,
    log:
        "logs/validate_chat_data/validate.log",
    benchmark:
        "benchmarks/validate_chat_data/validate.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        on_bad_record=FT_DATA["on_bad_record"],
        code=CODE_CHAT_DATA,
    script:
        "../workflow_scripts/finetune.py"


rule download_finetune_model:
    output:
        directory(FT_MODEL_DIR),
    log:
        "logs/download_finetune_model/{ftmodel}.log",
    benchmark:
        "benchmarks/download_finetune_model/{ftmodel}.tsv"
    localrule: True  # the login node: downloads from the hub (HF_TOKEN from the environment)
    conda:
        "../envs/data.yaml"
    params:
        id=lambda wc: FT_DOWNLOADS[wc.ftmodel][0],
        revision=lambda wc: FT_DOWNLOADS[wc.ftmodel][1] or "",
        code=FINETUNE_FINGERPRINT,
    script:
        "../workflow_scripts/finetune.py"


# The offline wheelhouse of the Mamba kernels: sdists on the login node, wheels on a GPU node.
rule download_kernel_sources:
    output:
        directory(FT_KERNEL_SRC),
    log:
        "logs/download_kernel_sources/download.log",
    benchmark:
        "benchmarks/download_kernel_sources/download.tsv"
    localrule: True  # needs internet (PyPI)
    conda:
        "../envs/data.yaml"
    params:
        mamba_ssm=FT_KERNELS["mamba_ssm"],
        causal_conv1d=FT_KERNELS["causal_conv1d"],
        code=FINETUNE_FINGERPRINT,
    script:
        "../workflow_scripts/finetune.py"


rule build_kernel_wheels:
    input:
        FT_KERNEL_SRC,
    output:
        directory(FT_WHEELHOUSE),
    log:
        "logs/build_kernel_wheels/build.log",
    benchmark:
        "benchmarks/build_kernel_wheels/build.tsv"
    conda:
        FT_CONDA_ENV
    container:
        FINETUNE["container"]
    envmodules:
        *FT_KERNELS["envmodules"],
    threads: FT_KERNELS["max_jobs"]
    resources:
        **FT_SLURM,
        gpu=1,
        mem_mb=64000,
        runtime=180,
    params:
        arch_list=FT_KERNELS["cuda_arch_list"],
        code=FINETUNE_FINGERPRINT,
    script:
        "../workflow_scripts/finetune.py"


# One fine-tuning run. results/finetune/{run}/ keeps Automodel's resumable checkpoints (not
# outputs: a job killed at its time limit keeps them and its retry resumes).
rule finetune_model:
    input:
        train=FT_TRAIN_DATA,
        validation=FT_VALIDATION_DATA,
        counts=FT_DATA_COUNTS,
        model=get_ft_model,
        wheelhouse=get_ft_wheelhouse,
    output:
        final=directory(FT_FINAL),
        summary=FT_SUMMARY,
    log:
        "logs/finetune_model/{run}.log",
    benchmark:
        "benchmarks/finetune_model/{run}.tsv"
    conda:
        FT_CONDA_ENV
    container:
        FINETUNE["container"]
    threads: lambda wc: FINETUNE["threads_per_gpu"] * FT_RUNS[wc.run]["cfg"].gpus
    resources:
        **FT_SLURM,
        gpu=lambda wc: FT_RUNS[wc.run]["cfg"].world_size,
        mem_mb=lambda wc, attempt: FT_RUNS[wc.run]["cfg"].mem_mb,
        runtime=lambda wc, attempt: FT_RUNS[wc.run]["cfg"].runtime * attempt,
    params:
        run=get_ft_run_spec,
        trust_remote_code=get_ft_trust,
        code=FINETUNE_FINGERPRINT,
    script:
        "../workflow_scripts/finetune_model.py"


rule merge_adapter:
    input:
        model=get_ft_model,
        adapter=FT_FINAL,
    output:
        directory(FT_MERGED),
    log:
        "logs/merge_adapter/{run}.log",
    benchmark:
        "benchmarks/merge_adapter/{run}.tsv"
    wildcard_constraints:
        run=_alternatives(FT_LORA_RUNS),
    conda:
        FT_CONDA_ENV
    container:
        FINETUNE["container"]
    resources:
        **FT_SLURM,
        mem_mb=lambda wc: FT_RUNS[wc.run]["cfg"].mem_mb,
        runtime=120,
    params:
        dtype=lambda wc: FT_RUNS[wc.run]["cfg"].torch_dtype,
        trust_remote_code=get_ft_trust,
        code=FINETUNE_FINGERPRINT,
    script:
        "../workflow_scripts/finetune.py"


# Held-out chat loss (mean assistant-token NLL on the validation file), before and after.
rule chat_loss:
    input:
        unpack(get_ft_loss_inputs),
        data=FT_VALIDATION_DATA,
    output:
        FT_CHAT_LOSS,
    log:
        "logs/chat_loss/{run}/{stage}.log",
    benchmark:
        "benchmarks/chat_loss/{run}/{stage}.tsv"
    conda:
        FT_CONDA_ENV
    container:
        FINETUNE["container"]
    threads: 4
    resources:
        **FT_SLURM,
        gpu=FINETUNE["loss"]["gpus"],
        mem_mb=lambda wc: FT_RUNS[wc.run]["cfg"].mem_mb,
        runtime=FINETUNE["loss"]["runtime"],
    params:
        max_length=lambda wc: FT_RUNS[wc.run]["cfg"].seq_length,
        max_conversations=FINETUNE["loss"]["max_conversations"] or "",
        chat_template=lambda wc: FT_RUNS[wc.run]["cfg"].chat_template or "",
        trust_remote_code=get_ft_trust,
        code=FINETUNE_FINGERPRINT,
    script:
        "../workflow_scripts/finetune.py"


# The benchmark rules score the base model (checkpoint "base") and the fine-tuned one
# ("final") of every run: the evaluate rules themselves (one per benchmark set), with the
# model as input.
if "generated" in EVAL_SETS:

    use rule evaluate as evaluate_finetuned with:
        input:
            model=get_ft_eval_model,
            benchmarks=eval_set_inputs(EVAL_SETS["generated"]),
        wildcard_constraints:
            model=_alternatives(FT_RUNS),
            arm="finetune",
            ckpt="base|final",


if "published" in EVAL_SETS:

    use rule evaluate_published as evaluate_finetuned_published with:
        input:
            model=get_ft_eval_model,
            benchmarks=eval_set_inputs(EVAL_SETS["published"]),
        wildcard_constraints:
            model=_alternatives(FT_RUNS),
            arm="finetune",
            ckpt="base|final",
