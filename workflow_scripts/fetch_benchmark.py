"""rule fetch_benchmark: copy a hub dataset file or an https URL to a local file (login node)."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.benchmarks.sources import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

argv = ["fetch", "--source", snakemake.params.source, "--out", snakemake.output.file]
if snakemake.params.sha256:
    argv += ["--sha256", snakemake.params.sha256]
run_stage(snakemake, main, argv)
