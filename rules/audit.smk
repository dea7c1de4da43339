# Provenance and audit. Every job leaves a provenance record beside its outputs
# (results/provenance/{rule}/{wildcards}.json, written by filmorph.workflow.run_stage; not
# Snakemake outputs, so they never change the DAG); `manifest` collects them and `audit`
# re-checks the finished run (python -m filmorph.audit).


rule manifest:
    input:
        get_all_targets(audit=False),
    output:
        MANIFEST,
    log:
        "logs/manifest/manifest.log",
    benchmark:
        "benchmarks/manifest/manifest.tsv"
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        code=STAGE_FINGERPRINTS["provenance"],
    script:
        "../workflow_scripts/manifest.py"


rule audit:
    input:
        manifest=MANIFEST,
    output:
        json=AUDIT_JSON,
        tsv=report(
            AUDIT_TSV,
            category="Audit",
            caption="../report/audit.rst",
        ),
    log:
        "logs/audit/audit.log",
    benchmark:
        "benchmarks/audit/audit.tsv"
    conda:
        "../envs/data.yaml"
    threads: 8  # re-hashing: the files of a checkpoint dir in parallel
    resources:
        mem_mb=8000,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        sample_docs=config["audit"]["sample_docs"],
        seed=(
            config["audit"]["seed"]
            if config["audit"]["seed"] is not None
            else config["seed"]
        ),
        # the outputs the config implies (the manifest's inputs): each must exist, recorded
        expected=get_all_targets(audit=False),
        code=STAGE_FINGERPRINTS["audit"],
    script:
        "../workflow_scripts/audit.py"
