# Benchmark files (one JSONL schema, filmorph.items): generated from the lexical data the
# package ships, or imported from externally published sets.


rule make_benchmarks:
    output:
        jsonl="resources/benchmarks/{benchmark}_{fmt}.jsonl",
        stats="resources/benchmarks/{benchmark}_{fmt}.stats.json",
    log:
        "logs/make_benchmarks/{benchmark}_{fmt}.log",
    benchmark:
        "benchmarks/make_benchmarks/{benchmark}_{fmt}.tsv"
    wildcard_constraints:
        benchmark=_alternatives(GENERATED_BENCHMARKS),
        fmt=_alternatives(BENCH_FORMATS),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        items_per_task=lambda wc: config["benchmarks"]["items_per_task"][wc.benchmark],
        seed=config["benchmarks"]["seed"],
        code=CODE["benchmarks"],
    script:
        "../workflow_scripts/make_benchmarks.py"


rule import_benchmark:
    output:
        jsonl="resources/benchmarks/{name}.jsonl",
        stats="resources/benchmarks/{name}.stats.json",
    log:
        "logs/import_benchmark/{name}.log",
    benchmark:
        "benchmarks/import_benchmark/{name}.tsv"
    wildcard_constraints:
        name=_alternatives(EXTERNAL_FILES),
    # the login node: a hub id is downloaded
    localrule: True
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        spec=lambda wc: config["benchmarks"]["external"][wc.name],
        code=CODE["benchmarks"],
    script:
        "../workflow_scripts/import_benchmark.py"
