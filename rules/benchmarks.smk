# Benchmark files (one JSONL schema, filmorph.items): generated from the lexical data the
# package ships, or imported from externally published sets.


rule make_benchmarks:
    input:
        stress_lexicon=lambda wc: (
            stress_lexicon_files() if wc.benchmark == "pacute" else []
        ),
    output:
        jsonl=BENCHMARK_FILE.format(bench="{benchmark}_{fmt}"),
        stats=BENCHMARK_STATS.format(bench="{benchmark}_{fmt}"),
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
        code=STAGE_FINGERPRINTS["benchmarks"],
    script:
        "../workflow_scripts/make_benchmarks.py"


# Published sets (benchmarks.external.<name>) and the stress lexicon (benchmarks.stress_lexicon,
# name "stress_lexicon"): a local file is read where it is; a hub dataset file or an https URL is
# first copied by fetch_benchmark on the login node (sha256 recorded in <file>.fetch.json,
# checked against the entry's sha256 when given), so generation and conversion need no network.
rule fetch_benchmark:
    output:
        file=BENCHMARK_SOURCE,
        record=BENCHMARK_FETCH_RECORD,
    log:
        "logs/fetch_benchmark/{name}/{file}.log",
    benchmark:
        "benchmarks/fetch_benchmark/{name}/{file}.tsv"
    wildcard_constraints:
        name=_alternatives(FETCHED),
        file=r"(?!.*\.fetch\.json$)[^/]+",
    localrule: True  # needs internet: runs on the login node
    conda:
        "../envs/data.yaml"
    params:
        source=lambda wc: fetch_spec(wc.name, wc.file)["input"],
        sha256=lambda wc: fetch_spec(wc.name, wc.file).get("sha256") or "",
        code=STAGE_FINGERPRINTS["benchmarks"],
    script:
        "../workflow_scripts/fetch_benchmark.py"


rule import_benchmark:
    input:
        source=lambda wc: external_source(wc.name),
    output:
        jsonl=BENCHMARK_FILE.format(bench="{name}"),
        stats=BENCHMARK_STATS.format(bench="{name}"),
    log:
        "logs/import_benchmark/{name}.log",
    benchmark:
        "benchmarks/import_benchmark/{name}.tsv"
    wildcard_constraints:
        name=_alternatives(EXTERNAL_FILES),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        options=lambda wc: external_option_args(wc.name),
        code=STAGE_FINGERPRINTS["benchmarks"],
    script:
        "../workflow_scripts/import_benchmark.py"


# The published sets alone: every reference model (evaluate.reference_models) scored on every
# benchmarks.external file, and nothing else (no corpus, training or generated benchmarks).
rule published_sets:
    input:
        [
            f
            for m in REFERENCE_MODELS
            for f in eval_outputs(m, "base", "base")
            if Path(f).stem in EXTERNAL_FILES
        ],
    localrule: True
