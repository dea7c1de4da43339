# Corpus: fetch (hub) or synthesize a source, then validate and split it into chunks.


rule fetch_corpus:
    output:
        CORPUS_SOURCE,
    log:
        "logs/fetch_corpus/fetch.log",
    benchmark:
        "benchmarks/fetch_corpus/fetch.tsv"
    localrule: True  # needs internet: runs on the login node, not a compute node
    conda:
        "../envs/data.yaml"
    params:
        hf=json.dumps(config["corpus"]["hf"], sort_keys=True),
    script:
        "../workflow_scripts/fetch_corpus.py"


rule synthesize_corpus:
    output:
        CORPUS_SYNTHETIC,
    log:
        "logs/synthesize_corpus/synthesize.log",
    benchmark:
        "benchmarks/synthesize_corpus/synthesize.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        target_mb=config["corpus"]["synthetic"]["target_mb"],
        seed=config["corpus"]["synthetic"]["seed"],
        code=STAGE_FINGERPRINTS["corpus"],
    script:
        "../workflow_scripts/synthesize_corpus.py"


rule split_corpus:
    input:
        corpus_source_file(),
    output:
        chunks=expand(CORPUS_CHUNK, chunk=CHUNKS),
        counts=CORPUS_COUNTS,
    log:
        "logs/split_corpus/split.log",
    benchmark:
        "benchmarks/split_corpus/split.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        source=config["corpus"]["source"],
        fmt=config["corpus"]["format"],
        text_field=config["corpus"]["text_field"],
        id_prefix=config["corpus"]["id_prefix"],
        on_bad_record=config["corpus"]["on_bad_record"],
        num_chunks=NUM_CHUNKS,
        code=STAGE_FINGERPRINTS["corpus"],
    script:
        "../workflow_scripts/split_corpus.py"
