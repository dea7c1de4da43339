# Tokenization summary: per family x arm JSON, then one TSV + plot across all of them.


rule summarize_arm:
    input:
        stats=lambda wc: expand(
            SHARD_STATS,
            family=wc.family,
            arm=wc.arm,
            chunk=CHUNKS,
        ),
        shards=lambda wc: expand(
            SHARD_FILE,
            family=wc.family,
            arm=wc.arm,
            chunk=CHUNKS,
            ext=["bin", "idx", "doc_ids.txt"],
        ),
        chunks=expand(CORPUS_CHUNK, chunk=CHUNKS),
        tokenizer=TOKENIZER_DIR,
    output:
        ARM_SUMMARY,
    log:
        "logs/summarize_arm/{family}/{arm}.log",
    benchmark:
        "benchmarks/summarize_arm/{family}/{arm}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        sample=config["summary"]["sample_documents"],
        seed=config["seed"],
        affixes=config["patok_affixes"] or "",
        code=STAGE_FINGERPRINTS["summary"],
    script:
        "../workflow_scripts/summarize_arm.py"


rule summarize_tokenization:
    input:
        expand(
            ARM_SUMMARY,
            family=FAMILIES,
            arm=ENABLED_ARMS,
        ),
    output:
        tsv=report(
            TOKENIZATION_SUMMARY_TSV,
            category="Tokenization",
            caption="../report/tokenization.rst",
        ),
        png=report(
            TOKENIZATION_SUMMARY_PNG,
            category="Tokenization",
            caption="../report/tokenization.rst",
        ),
    log:
        "logs/summarize_tokenization/summary.log",
    benchmark:
        "benchmarks/summarize_tokenization/summary.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=STAGE_FINGERPRINTS["summary"],
    script:
        "../workflow_scripts/summarize_tokenization.py"
