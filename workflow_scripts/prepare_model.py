"""rule prepare_model: write a base or reference model as an HF checkpoint dir."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.models import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

argv = ["prepare", "--spec", snakemake.params.spec, "--out", snakemake.output[0]]
if snakemake.input.tokenizer:
    argv += ["--tokenizer-dir", snakemake.input.tokenizer]
run_stage(snakemake, main, argv)
