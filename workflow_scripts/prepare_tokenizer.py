"""rule prepare_tokenizer: save a family's tokenizer and its expansion table."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.tokenize import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

run_stage(snakemake, main, ["prepare", "--family", snakemake.wildcards.family,
                            "--spec", snakemake.params.spec, "--out", snakemake.output[0]])
