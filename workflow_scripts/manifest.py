"""rule manifest: every job's provenance record in one file."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.provenance import PROVENANCE_DIR, main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

# no record of its own: its inputs are every result (hashing them again would cost as much as
# the audit), and its content is the records
run_stage(snakemake, main, ["manifest", "--root", PROVENANCE_DIR, "--out", snakemake.output[0]],
          provenance=False)
