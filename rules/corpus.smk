# Corpus: fetch (hub) or synthesize a source, then validate and split it into chunks.


rule fetch_corpus:
    output:
        "resources/corpus/source.jsonl.gz",
    log:
        "logs/fetch_corpus/fetch.log",
    benchmark:
        "benchmarks/fetch_corpus/fetch.tsv"
    localrule: True  # needs internet: runs on the login node, not a compute node
    conda:
        "../envs/data.yaml"
    params:
        hf=json.dumps(config["corpus"]["hf"], sort_keys=True),
    shell:
        "python -m filmorph.corpus fetch --hf {params.hf:q} --out {output} 2> {log}"


rule synthesize_corpus:
    output:
        "resources/corpus/synthetic.jsonl",
    log:
        "logs/synthesize_corpus/synthesize.log",
    benchmark:
        "benchmarks/synthesize_corpus/synthesize.tsv"
    conda:
        "../envs/data.yaml"
    params:
        target_mb=config["corpus"]["synthetic"]["target_mb"],
        seed=config["corpus"]["synthetic"]["seed"],
        code=CODE_VERSION,
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m filmorph.corpus synthesize --target-mb {params.target_mb}"
        " --seed {params.seed} --out {output} 2> {log}"


rule split_corpus:
    input:
        corpus_source_file(),
    output:
        chunks=expand("resources/corpus/{chunk}.jsonl", chunk=CHUNKS),
        counts="resources/corpus/counts.json",
    log:
        "logs/split_corpus/split.log",
    benchmark:
        "benchmarks/split_corpus/split.tsv"
    conda:
        "../envs/data.yaml"
    params:
        source=config["corpus"]["source"],
        fmt=config["corpus"]["format"],
        text_field=config["corpus"]["text_field"],
        id_prefix=config["corpus"]["id_prefix"],
        on_bad_record=config["corpus"]["on_bad_record"],
        num_chunks=NUM_CHUNKS,
        code=CODE_VERSION,
    resources:
        mem_mb=2000,
        runtime=120,
    shell:
        "python -m filmorph.corpus split --input {input:q} --source {params.source}"
        " --format {params.fmt} --text-field {params.text_field}"
        " --id-prefix {params.id_prefix} --on-bad-record {params.on_bad_record}"
        " --num-chunks {params.num_chunks} --out-dir resources/corpus --progress 2> {log}"
