"""rule summarize_training: loss curves and one summary row per family x arm run."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.report import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

out = snakemake.output
run_stage(snakemake, main, ["training", *snakemake.input, "--tsv", out.tsv, "--png", out.png])
