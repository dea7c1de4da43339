# megatron families only (families.<name>.engine, default train.engine): each saved iteration back to an HF checkpoint the evaluation reads.


if MEGATRON_FAMILIES:

    rule export_checkpoint:
        input:
            ckpt=CPT_MEGATRON_ITER,
            model=lambda wc: model_dir(wc.family),
            tokenizer=TOKENIZER_DIR,
        output:
            hf=directory(
                expand(CPT_HF_CHECKPOINT, ckpt="step_{iter}", allow_missing=True)[0]
            ),
        log:
            "logs/export_checkpoint/{family}/{arm}/{iter}.log",
        benchmark:
            "benchmarks/export_checkpoint/{family}/{arm}/{iter}.tsv"
        wildcard_constraints:
            family=_alternatives(MEGATRON_FAMILIES),
            iter=STEP_DIGITS,
        conda:
            ENGINE_CONDA_ENVS["megatron"]
        container:
            MEGATRON["container"]
        threads: 8
        resources:
            mem_mb=lambda wc, attempt: 200000 * attempt,
            runtime=240,
            gpu=1,
        params:
            code=STAGE_FINGERPRINTS["train"],
            provenance=provenance_shell(code=STAGE_FINGERPRINTS["train"]),
        shell:
            with_provenance(
                f"{MEGATRON_VERSIONS_ENV} {MEGATRON_PYTHONPATH} "
                "python -m filmorph.train.megatron.convert export"
                " --megatron {input.ckpt} --hf-base {input.model} --out {output.hf}"
                " --tokenizer-dir {input.tokenizer} > {log} 2>&1"
            )
