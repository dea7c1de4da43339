# Results: one tidy table, arm-vs-baseline deltas (paired bootstrap), plots (a headline per
# model) and the lm-evaluation-harness layout, the tables and plots linked into
# `snakemake --report report.html`. Labels come from each scores JSON (filmorph.report).


rule report_results:
    input:
        scores=get_eval_files(EVAL_SCORES),
        predictions=get_eval_files(EVAL_PREDICTIONS),
        # the items behind the lm-eval samples files (prompts, targets, hashes)
        benchmarks=expand(BENCHMARK_FILE, bench=BENCH_FILES),
    output:
        tsv=report(
            f"{TABLES_DIR}/results.tsv",
            category="Results",
            caption="../report/results.rst",
        ),
        md=f"{TABLES_DIR}/results.md",
        deltas=report(
            f"{TABLES_DIR}/deltas.tsv",
            category="Results",
            caption="../report/deltas.rst",
        ),
        deltas_md=f"{TABLES_DIR}/deltas.md",
        headline=[
            report(p, category="Headline", caption="../report/headline.rst")
            for p in HEADLINE_PLOTS
        ],
        delta_plot=report(
            f"{PLOTS_DIR}/deltas.png",
            category="Plots",
            caption="../report/delta_plot.rst",
        ),
        bars=report(
            f"{PLOTS_DIR}/benchmarks.png",
            category="Plots",
            caption="../report/benchmarks.rst",
        ),
        levels=report(
            f"{PLOTS_DIR}/hierarchical_levels.png",
            category="Plots",
            caption="../report/levels.rst",
        ),
        heatmap=report(
            f"{PLOTS_DIR}/heatmap.png",
            category="Plots",
            caption="../report/heatmap.rst",
        ),
        lm_eval=LM_EVAL_FILES,
    log:
        "logs/report_results/report.log",
    benchmark:
        "benchmarks/report_results/report.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        samples=config["report"]["bootstrap_samples"],
        baseline=config["report"]["baseline_arm"],
        seed=config["seed"],
        code=STAGE_FINGERPRINTS["report"],
    script:
        "../workflow_scripts/report_results.py"
