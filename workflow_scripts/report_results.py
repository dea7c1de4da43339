"""rule report_results: tidy results table, paired-bootstrap deltas, plots, lm-eval layout."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.report import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

p, out = snakemake.params, snakemake.output
run_stage(snakemake, main, [*snakemake.input.scores, "--out-dir", Path(out.tsv).parent,
                            "--plot-dir", Path(out.bars).parent, "--lm-eval-root", ".",
                            "--bootstrap-samples", p.samples, "--seed", p.seed,
                            "--baseline", p.baseline])
