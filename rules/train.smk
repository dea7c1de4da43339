# Continued pretraining of each family's base model on one arm's shards. The run dir
# results/checkpoints/{family}/{arm}/ keeps the resumable state (state/, not an output, so a
# failed or timed-out job keeps it and its retry resumes); the HF checkpoints hf/step_NNNNNNN
# and train_summary.json are the outputs. Each family trains on its engine (FAMILY_ENGINES):
# train_cpt for the hf / automodel families, train_cpt_megatron for the megatron ones (their
# iterations become hf/step_NNNNNNN through export_checkpoint); the family constraints keep
# the two rules apart.


if DIRECT_FAMILIES:

    rule train_cpt:
        input:
            shards=get_train_shards,
            model=lambda wc: model_dir(wc.family),
            tokenizer=TOKENIZER_DIR,
        output:
            ckpts=[
                directory(p)
                for p in expand(
                    CPT_HF_CHECKPOINT,
                    ckpt=[step_name(s) for s in CKPT_STEPS],
                    allow_missing=True,
                )
            ],
            summary=TRAIN_SUMMARY,
        log:
            "logs/train_cpt/{family}/{arm}.log",
        benchmark:
            "benchmarks/train_cpt/{family}/{arm}.tsv"
        wildcard_constraints:
            family=_alternatives(DIRECT_FAMILIES),
        conda:
            family_conda_env
        threads: 2
        resources:
            mem_mb=lambda wc, attempt: 16000 * attempt,
            runtime=lambda wc, attempt: 240 * attempt,
            # automodel families hold the GPUs (--resources gpu=N serializes GPU jobs locally)
            gpu=lambda wc: (
                0 if FAMILY_ENGINES[wc.family] == "hf" else TRAIN["gpus_per_node"]
            ),
        params:
            train_config=get_train_config,
            engine=get_family_engine,
            code=STAGE_FINGERPRINTS["train"],
        script:
            "../workflow_scripts/train_cpt.py"


if MEGATRON_FAMILIES:

    rule train_cpt_megatron:
        input:
            shards=get_train_shards,
            model=lambda wc: model_dir(wc.family),
            tokenizer=TOKENIZER_DIR,
            imported=MEGATRON_BASE,
            # training waits until the import reproduces the HF logits (and its export does)
            verified=ROUNDTRIP_VERIFY_RECORD,
        output:
            ckpts=[
                directory(p)
                for p in expand(
                    CPT_MEGATRON_ITER,
                    iter=[step_digits(s) for s in CKPT_STEPS],
                    allow_missing=True,
                )
            ],
            summary=TRAIN_SUMMARY,
        log:
            "logs/train_cpt/{family}/{arm}.log",
        benchmark:
            "benchmarks/train_cpt/{family}/{arm}.tsv"
        wildcard_constraints:
            family=_alternatives(MEGATRON_FAMILIES),
        conda:
            ENGINE_CONDA_ENVS["megatron"]
        container:
            MEGATRON["container"]
        threads: 8
        resources:
            mem_mb=lambda wc, attempt: 200000 * attempt,
            runtime=lambda wc, attempt: 2880 * attempt,
            gpu=TRAIN["gpus_per_node"],
        params:
            train_config=get_train_config,
            engine="megatron",
            tp=MEGATRON["tensor_parallel"],
            allow_untested_versions=MEGATRON["allow_untested_versions"],
            code=STAGE_FINGERPRINTS["train"],
        script:
            "../workflow_scripts/train_cpt.py"


rule summarize_training:
    input:
        expand(
            TRAIN_SUMMARY,
            family=TRAINED_FAMILIES,
            arm=ENABLED_ARMS,
        ),
    output:
        tsv=report(
            TRAINING_SUMMARY_TSV,
            category="Training",
            caption="../report/training.rst",
        ),
        png=report(
            TRAINING_CURVES_PNG,
            category="Training",
            caption="../report/training.rst",
        ),
    log:
        "logs/summarize_training/summary.log",
    benchmark:
        "benchmarks/summarize_training/summary.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=STAGE_FINGERPRINTS["report"],
    script:
        "../workflow_scripts/summarize_training.py"
