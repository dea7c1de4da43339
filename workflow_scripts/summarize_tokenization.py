"""Snakemake `script:` entry for rule summarize_tokenization: all per-arm summaries → TSV + PNG."""

import sys

from filmorph.io import read_json
from filmorph.summary import write_table

snakemake = globals()["snakemake"]  # injected by Snakemake
with open(snakemake.log[0], "w") as log:
    sys.stderr = log
    write_table([read_json(p) for p in snakemake.input], snakemake.output.tsv,
                snakemake.output.png)
