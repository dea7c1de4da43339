# Scoring: one model x arm x checkpoint on one benchmark file -> scores + per-item predictions.


rule evaluate:
    input:
        model=get_eval_model,
        benchmark_file="resources/benchmarks/{bench}.jsonl",
    output:
        scores="results/eval/{model}/{arm}/{ckpt}/{bench}.json",
        predictions="results/eval/{model}/{arm}/{ckpt}/{bench}.jsonl",
    log:
        "logs/evaluate/{model}/{arm}/{ckpt}/{bench}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{arm}/{ckpt}/{bench}.tsv"
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
