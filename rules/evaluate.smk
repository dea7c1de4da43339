# Scoring: one job per model x arm x checkpoint x benchmark set loads the model once and scores
# every file of the set -> per file, scores + per-item predictions (results/eval/.../{bench}.*).
# Sets (EVAL_SETS): the generated files (rule evaluate) and the published ones,
# benchmarks.external (rule evaluate_published), so `published_sets` needs no generated file.
# A job killed part-way leaves the files it finished complete, but Snakemake marks the job
# incomplete and reruns it whole (profiles: rerun-incomplete), rescoring every file of the set.
EVAL_SETS = {
    name: files
    for name, files in (("generated", GENERATED_FILES), ("published", EXTERNAL_FILES))
    if files
}


def eval_set_inputs(files):
    """The benchmark files of a set, in the order of its outputs."""
    return expand(BENCHMARK_FILE, bench=files)


def eval_set_outputs(files, pattern):
    """Per benchmark file of a set: `pattern` (EVAL_SCORES / EVAL_PREDICTIONS) with {bench}
    filled in and the job's wildcards left open."""
    return expand(pattern, bench=files, allow_missing=True)


for _set, _files in EVAL_SETS.items():

    rule:
        name:
            "evaluate" if _set == "generated" else f"evaluate_{_set}"
        input:
            model=get_eval_model,
            benchmarks=eval_set_inputs(_files),
        output:
            scores=eval_set_outputs(_files, EVAL_SCORES),
            predictions=eval_set_outputs(_files, EVAL_PREDICTIONS),
        log:
            f"logs/evaluate/{{model}}/{{arm}}/{{ckpt}}/{_set}.log",
        benchmark:
            f"benchmarks/evaluate/{{model}}/{{arm}}/{{ckpt}}/{_set}.tsv"
        # started as soon as their inputs exist: a reference model's job (the longest of a small
        # run) then overlaps the tokenization and training jobs instead of following them
        priority: 10
        conda:
            "../envs/data.yaml"
        threads: 2
        resources:
            mem_mb=lambda wc, attempt: 12000 * attempt,
            runtime=lambda wc, attempt: 120 * attempt,
        params:
            batch_size=config["evaluate"]["batch_size"],
            max_new_tokens=config["evaluate"]["max_new_tokens"],
            dtype=config["evaluate"]["dtype"],
            max_items=config["evaluate"]["max_items"] or "",
            code=STAGE_FINGERPRINTS["evaluate"],
        script:
            "../workflow_scripts/evaluate.py"
