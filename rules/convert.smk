# megatron families only (families.<name>.engine, default train.engine): HF -> Megatron import of each family's base model, then a check that
# the import (and its export back to HF) reproduces the HF model's logits. The published run
# trained without loading the weights and exported with mis-sliced QKV; these two jobs fail
# on either. With document masking on (train.reset_attention_mask), verify_import also checks
# on the GPU that the engine's masking keeps packed documents apart, forward and backward
# (filmorph.train.megatron.convert verify-doc-mask), before any training job starts.

DOC_MASK_CHECK = bool(TRAIN.get("reset_attention_mask"))


if MEGATRON_FAMILIES:

    rule import_checkpoint:
        input:
            model=lambda wc: model_dir(wc.family),
            tokenizer=TOKENIZER_DIR,
        output:
            ckpt=directory(MEGATRON_BASE),
            results=MEGATRON_IMPORT_RECORD,
        log:
            "logs/import_checkpoint/{family}.log",
        benchmark:
            "benchmarks/import_checkpoint/{family}.tsv"
        wildcard_constraints:
            family=_alternatives(MEGATRON_FAMILIES),
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
            tp=MEGATRON["tensor_parallel"],
            code=STAGE_FINGERPRINTS["train"],
            provenance=provenance_shell(
                tp=MEGATRON["tensor_parallel"], code=STAGE_FINGERPRINTS["train"]
            ),
        shell:
            with_provenance(
                f"{MEGATRON_VERSIONS_ENV} {MEGATRON_PYTHONPATH} "
                "python -m filmorph.train.megatron.convert import"
                " --hf {input.model} --out {output.ckpt} --tensor-parallel {params.tp}"
                " --tokenizer-dir {input.tokenizer} --results {output.results} > {log} 2>&1"
            )

    rule verify_import:
        input:
            model=lambda wc: model_dir(wc.family),
            ckpt=MEGATRON_BASE,
            tokenizer=TOKENIZER_DIR,
        output:
            imported=MEGATRON_VERIFY_RECORD,
            roundtrip=directory(ROUNDTRIP_HF),
            exported=ROUNDTRIP_VERIFY_RECORD,
            docmask=MEGATRON_DOCMASK_RECORD,
        log:
            "logs/verify_import/{family}.log",
        benchmark:
            "benchmarks/verify_import/{family}.tsv"
        wildcard_constraints:
            family=_alternatives(MEGATRON_FAMILIES),
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
            import_tol=MEGATRON["verify_tolerance"],
            export_tol=MEGATRON["export_tolerance"],
            doc_mask_args="" if DOC_MASK_CHECK else "--mode none",
            code=STAGE_FINGERPRINTS["train"],
            provenance=provenance_shell(
                import_tol=MEGATRON["verify_tolerance"],
                export_tol=MEGATRON["export_tolerance"],
                doc_mask=DOC_MASK_CHECK,
                code=STAGE_FINGERPRINTS["train"],
            ),
        shell:
            with_provenance(
                f"(export {MEGATRON_VERSIONS_ENV} {MEGATRON_PYTHONPATH};"
                " python -m filmorph.train.megatron.convert verify --hf {input.model} --candidate {input.ckpt}"
                " --tolerance {params.import_tol} --results {output.imported} &&"
                " python -m filmorph.train.megatron.convert export --megatron {input.ckpt} --hf-base {input.model}"
                " --out {output.roundtrip} --tokenizer-dir {input.tokenizer} &&"
                " python -m filmorph.train.megatron.convert verify --hf {input.model} --candidate {output.roundtrip}"
                " --tolerance {params.export_tol} --results {output.exported} &&"
                " python -m filmorph.train.megatron.convert verify-doc-mask --hf {input.model} --candidate {input.ckpt}"
                " {params.doc_mask_args} --results {output.docmask}) > {log} 2>&1"
            )
