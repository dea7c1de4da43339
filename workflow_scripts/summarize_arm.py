"""rule summarize_arm: per family x arm tokenization summary."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.summary import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

p, wc = snakemake.params, snakemake.wildcards
argv = ["arm", "--family", wc.family, "--arm", wc.arm,
        "--shard-dir", Path(snakemake.input.stats[0]).parent,
        "--corpus-dir", Path(snakemake.input.chunks[0]).parent,
        "--tokenizer-dir", snakemake.input.tokenizer,
        "--chunks", *(Path(f).name.split(".")[0] for f in snakemake.input.stats),
        "--sample", p.sample, "--seed", p.seed,
        "--out", snakemake.output[0]]
if p.affixes:
    argv += ["--affixes", p.affixes]
run_stage(snakemake, main, argv)
