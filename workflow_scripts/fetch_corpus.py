"""rule fetch_corpus: stream the configured Hugging Face dataset into a local JSONL.gz."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.corpus import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

run_stage(snakemake, main, ["fetch", "--hf", snakemake.params.hf, "--out", snakemake.output[0]])
