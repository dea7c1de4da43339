"""rule audit: re-check the finished run against its provenance, shards, checkpoints and config."""

import contextlib
import json
import sys
import tempfile
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.audit import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402


def audit_to_log(argv):
    """The audit with its table in the job's log (stdout joins stderr, which run_stage sends
    there); a failing audit fails the job, and Snakemake removes its outputs."""
    with contextlib.redirect_stdout(sys.stderr):
        return main(argv)


p, out = snakemake.params, snakemake.output
with tempfile.TemporaryDirectory() as tmp:
    config = Path(tmp) / "config.json"  # the job's config, schema defaults filled in
    config.write_text(json.dumps(dict(snakemake.config), default=str))
    expected = Path(tmp) / "expected.txt"  # the outputs the config implies
    expected.write_text("".join(f"{f}\n" for f in p.expected))
    run_stage(snakemake, audit_to_log, [".", "--config", config, "--expected", expected,
                                        "--sample-size", p.sample_docs,
                                        "--seed", p.seed, "--json", out.json, "--tsv", out.tsv,
                                        "--no-progress", "--all-rows"],
              provenance=False)  # the audit re-derives its outputs; it has no record
