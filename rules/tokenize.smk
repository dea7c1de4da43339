# Tokenization: one tokenizer (+ expansion table) per family, one shard per family x arm x chunk.


rule prepare_tokenizer:
    output:
        directory(TOKENIZER_DIR),
    log:
        "logs/prepare_tokenizer/{family}.log",
    benchmark:
        "benchmarks/prepare_tokenizer/{family}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        spec=get_tokenizer_spec,
        code=STAGE_FINGERPRINTS["tokenize"],
    script:
        "../workflow_scripts/prepare_tokenizer.py"


rule tokenize_chunk:
    input:
        chunk=CORPUS_CHUNK,
        tokenizer=TOKENIZER_DIR,
    output:
        bin=SHARD_BIN,
        idx=SHARD_IDX,
        doc_ids=SHARD_DOC_IDS,
        stats=SHARD_STATS,
    log:
        "logs/tokenize_chunk/{family}/{arm}/{chunk}.log",
    benchmark:
        "benchmarks/tokenize_chunk/{family}/{arm}/{chunk}.tsv"
    conda:
        "../envs/data.yaml"
    threads: config["tokenize"]["workers"]
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        arm_params=get_arm_params,
        seed=config["seed"],
        affixes=config["patok_affixes"] or "",
        batch_size=config["tokenize"]["batch_size"],
        code=STAGE_FINGERPRINTS["tokenize"],
    script:
        "../workflow_scripts/tokenize_chunk.py"
