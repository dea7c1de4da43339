# Tokenization: one tokenizer (+ expansion table) per family, one shard per family x arm x chunk.


rule prepare_tokenizer:
    output:
        directory("resources/tokenizers/{family}"),
    log:
        "logs/prepare_tokenizer/{family}.log",
    benchmark:
        "benchmarks/prepare_tokenizer/{family}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        spec=get_tokenizer_spec,
        code=CODE_VERSION,
    resources:
        mem_mb=6000,
        runtime=30,
    shell:
        "python -m filmorph.tokenize prepare --family {wildcards.family}"
        " --spec {params.spec:q} --out {output} 2> {log}"


rule tokenize_chunk:
    input:
        chunk="resources/corpus/{chunk}.jsonl",
        tokenizer="resources/tokenizers/{family}",
    output:
        bin="results/shards/{family}/{arm}/{chunk}.bin",
        idx="results/shards/{family}/{arm}/{chunk}.idx",
        doc_ids="results/shards/{family}/{arm}/{chunk}.doc_ids.txt",
        stats="results/shards/{family}/{arm}/{chunk}.stats.json",
    log:
        "logs/tokenize_chunk/{family}/{arm}/{chunk}.log",
    benchmark:
        "benchmarks/tokenize_chunk/{family}/{arm}/{chunk}.tsv"
    conda:
        "../envs/data.yaml"
    threads: config["tokenize"]["workers"]
    params:
        arm_params=get_arm_params,
        seed=config["seed"],
        affixes=config["patok_affixes"] or "",
        batch_size=config["tokenize"]["batch_size"],
        prefix=subpath(output.bin, strip_suffix=".bin"),
        code=CODE_VERSION,
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    shell:
        "python -m filmorph.tokenize chunk --chunk {input.chunk} --tokenizer-dir {input.tokenizer}"
        " --arm {wildcards.arm} --arm-params {params.arm_params:q} --seed {params.seed}"
        " --affixes '{params.affixes}' --workers {threads} --batch-size {params.batch_size}"
        " --out-prefix {params.prefix} --progress 2> {log}"
