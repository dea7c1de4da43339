"""rule split_corpus: validate the source and split it into chunks with stable ids."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.corpus import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

p = snakemake.params
run_stage(snakemake, main, [
    "split", "--source", p.source, "--input", snakemake.input[0] if snakemake.input else "",
    "--format", p.fmt, "--text-field", p.text_field, "--id-prefix", p.id_prefix,
    "--on-bad-record", p.on_bad_record, "--num-chunks", p.num_chunks,
    "--out-dir", Path(snakemake.output.counts).parent, "--progress"])
