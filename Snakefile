# filmorph: does morphology-aware tokenization during continued pretraining help an LLM
# understand Filipino morphology? One DAG for 3 arms x 2 tokenizer families.
#
# Paths:  resources/corpus/chunk_NNNN.jsonl            corpus chunks ({"id", "text"})
#         resources/tokenizers/{family}/               HF tokenizer + expansion table
#         results/shards/{family}/{arm}/chunk_NNNN.*   Megatron .bin/.idx + stats
#         results/tokenization/                        per-arm summaries, summary.tsv/.png
#         resources/models/{model}/                    base / reference HF checkpoints
#         results/checkpoints/{family}/{arm}/          CPT run: hf/step_NNNNNNN, metrics, state
#         resources/benchmarks/{bench}.jsonl           benchmark items (one schema)
#         results/eval/{model}/{arm}/{checkpoint}/     scores + per-item predictions
#         results/tables/, results/plots/              results table, deltas, plots
#         logs/{rule}/..., benchmarks/{rule}/...
from snakemake.utils import min_version

min_version("9.0")


# The default config, unless --configfile names another: a --configfile replaces it whole (no
# key-by-key merge, which could not drop e.g. reference models the default lists).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/corpus.smk"
include: "rules/tokenize.smk"
include: "rules/summary.smk"
include: "rules/models.smk"
include: "rules/convert.smk"
include: "rules/train.smk"
include: "rules/export.smk"
include: "rules/benchmarks.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/audit.smk"
include: "rules/finetune.smk"


rule all:
    default_target: True
    input:
        get_all_targets(),
    localrule: True


# One target per arm (arm_vanilla, arm_stochastok, arm_patok; arm_<name> per other named
# arm): that arm for every family, touching nothing of the other arms; one per family
# (family_gemma, family_llama, ...).
for _arm in TARGET_ARMS:

    rule:
        name:
            f"arm_{_arm}"
        input:
            get_arm_targets(_arm),
        localrule: True


for _family in FAMILIES:

    rule:
        name:
            f"family_{_family}"
        input:
            get_family_targets(_family),
        localrule: True


# The fine-tuning track (rules/finetune.smk): empty unless finetune.enabled.
rule finetune:
    input:
        get_finetune_targets(),
    localrule: True
