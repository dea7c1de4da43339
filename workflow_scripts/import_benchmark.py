"""rule import_benchmark: convert an externally published benchmark file to our schema."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.benchmarks.__main__ import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

spec = snakemake.params.spec
argv = ["convert", "--input", spec["input"], "--schema", spec["schema"],
        "--name", snakemake.wildcards.name, "--out", snakemake.output.jsonl]
if spec.get("format"):
    argv += ["--format", spec["format"]]
run_stage(snakemake, main, argv)
