"""rule import_benchmark: convert a published benchmark file (local, or fetched) to our schema."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.benchmarks.__main__ import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

argv = ["convert", "--input", snakemake.input.source, "--name", snakemake.wildcards.name,
        "--out", snakemake.output.jsonl, *snakemake.params.options]
run_stage(snakemake, main, argv)
