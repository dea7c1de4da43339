"""rules evaluate / evaluate_published: score one model x arm x checkpoint on every benchmark
file of a set, loading the model once."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

import torch  # noqa: E402

from filmorph.evaluate import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

torch.set_num_threads(snakemake.threads)  # the cores this job was given, no more
wc, p, out = snakemake.wildcards, snakemake.params, snakemake.output
argv = ["--model", snakemake.input.model,
        "--label", f"model={wc.model}", "--label", f"arm={wc.arm}",
        "--label", f"checkpoint={wc.ckpt}", "--benchmark-label", "benchmark",
        "--batch-size", p.batch_size, "--max-new-tokens", p.max_new_tokens, "--dtype", p.dtype]
# the Nth benchmark file writes the Nth scores and predictions (the rule lists all three in order)
for bench, scores, preds in zip(snakemake.input.benchmarks, out.scores, out.predictions, strict=True):
    argv += ["--benchmark", bench, "--scores", scores, "--predictions", preds]
if p.max_items:
    argv += ["--max-items", p.max_items]
run_stage(snakemake, main, argv)
