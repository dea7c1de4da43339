# Base models as HF checkpoint dirs: each family's CPT base model and the reference models.


rule prepare_model:
    input:
        tokenizer=get_model_tokenizer,
    output:
        directory(MODEL_DIR),
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "benchmarks/prepare_model/{model}.tsv"
    # the login node: `hf` sources download from the hub (compute nodes may be offline)
    localrule: True
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=120,
    params:
        spec=get_model_spec,
        code=STAGE_FINGERPRINTS["models"],
    script:
        "../workflow_scripts/prepare_model.py"
