"""rule make_benchmarks: generate one benchmark file (one benchmark, one format)."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.benchmarks.__main__ import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

wc, p = snakemake.wildcards, snakemake.params
argv = ["make", "--benchmark", wc.benchmark, "--format", wc.fmt, "--items-per-task", p.items_per_task,
        "--seed", p.seed, "--out", snakemake.output.jsonl]
if snakemake.input.stress_lexicon:
    argv += ["--stress-lexicon", *snakemake.input.stress_lexicon]
run_stage(snakemake, main, argv)
