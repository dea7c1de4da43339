"""rule tokenize_chunk: one chunk x one arm x one family -> one Megatron shard."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.tokenize import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

p = snakemake.params
argv = ["chunk", "--chunk", snakemake.input.chunk, "--tokenizer-dir", snakemake.input.tokenizer,
        "--arm", snakemake.wildcards.arm, "--arm-params", p.arm_params, "--seed", p.seed,
        "--workers", snakemake.threads, "--batch-size", p.batch_size,
        "--out-prefix", snakemake.output.bin[: -len(".bin")], "--progress"]
if p.affixes:
    argv += ["--affixes", p.affixes]
run_stage(snakemake, main, argv)
