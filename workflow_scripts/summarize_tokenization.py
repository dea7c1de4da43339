"""rule summarize_tokenization: every per-arm summary -> one TSV and one plot."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.summary import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

run_stage(snakemake, main, ["table", "--out-tsv", snakemake.output.tsv,
                            "--out-png", snakemake.output.png, *snakemake.input])
