# Results: one tidy table, arm-vs-baseline deltas (paired bootstrap) and plots, all linked
# into `snakemake --report report.html`.


rule report_results:
    input:
        get_eval_predictions(),
    output:
        tsv=report(
            "results/tables/results.tsv",
            category="Results",
            caption="../report/results.rst",
        ),
        md="results/tables/results.md",
        deltas=report(
            "results/tables/deltas.tsv",
            category="Results",
            caption="../report/deltas.rst",
        ),
        deltas_md="results/tables/deltas.md",
        bars=report(
            "results/plots/benchmarks.png",
            category="Plots",
            caption="../report/benchmarks.rst",
        ),
        levels=report(
            "results/plots/hierarchical_levels.png",
            category="Plots",
            caption="../report/levels.rst",
        ),
        heatmap=report(
            "results/plots/heatmap.png",
            category="Plots",
            caption="../report/heatmap.rst",
        ),
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
        code=CODE["report"],
    script:
        "../workflow_scripts/report_results.py"
