"""rule synthesize_corpus: write the deterministic synthetic corpus."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.corpus import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

p = snakemake.params
run_stage(snakemake, main, ["synthesize", "--target-mb", p.target_mb, "--seed", p.seed,
                            "--out", snakemake.output[0]])
