# Config loading and validation, wildcard constraints, input functions. No rules here.
import json
import os
import subprocess
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../config/schema.yaml")

ARMS = ["vanilla", "stochastok", "patok"]
FAMILIES = list(config["families"])
ENABLED_ARMS = [a for a in ARMS if a in config["arms"]]
NUM_CHUNKS = int(config["corpus"]["num_chunks"])
CHUNKS = [f"chunk_{i + 1:04d}" for i in range(NUM_CHUNKS)]


wildcard_constraints:
    family="|".join(FAMILIES),
    arm="|".join(ARMS),
    chunk=r"chunk_\d{4}",


def code_version():
    """The package's git commit (+dirty), passed as a param so code changes rerun jobs."""
    try:
        rev = subprocess.run(
            ["git", "-C", workflow.basedir, "describe", "--always", "--dirty"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "unknown"
    return rev


def corpus_source_file():
    """The local file split_corpus reads (fetched / synthesized files come from rules)."""
    c = config["corpus"]
    if c["source"] == "hf":
        return "resources/corpus/source.jsonl.gz"
    if c["source"] == "synthetic":
        return "resources/corpus/synthetic.jsonl"
    if c["source"] == "local":
        return c["path"]
    return []  # embedded: shipped inside the package


def get_tokenizer_spec(wildcards):
    return json.dumps(config["families"][wildcards.family]["tokenizer"], sort_keys=True)


def get_arm_params(wildcards):
    return json.dumps(config["arms"][wildcards.arm] or {}, sort_keys=True)


def shard_files(family, arm):
    return expand(
        "results/shards/{family}/{arm}/{chunk}.{ext}",
        family=family, arm=arm, chunk=CHUNKS, ext=["bin", "idx", "stats.json"],
    )


def get_arm_targets(arm):
    if arm not in ENABLED_ARMS:
        return []
    return [
        f
        for family in FAMILIES
        for f in shard_files(family, arm) + [f"results/tokenization/{family}/{arm}.json"]
    ]


def get_family_targets(family):
    return [
        f
        for arm in ENABLED_ARMS
        for f in shard_files(family, arm) + [f"results/tokenization/{family}/{arm}.json"]
    ]


def get_all_targets():
    return [t for arm in ENABLED_ARMS for t in get_arm_targets(arm)] + [
        "results/tokenization/summary.tsv",
        "results/tokenization/summary.png",
    ]


# Jobs import filmorph from this checkout (also inside --sdm conda envs and Slurm jobs,
# which re-read this file), so no install step is needed on compute nodes.
_SRC = str(Path(workflow.basedir) / "src")
if _SRC not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (_SRC, os.environ.get("PYTHONPATH", "")) if p
    )
CODE_VERSION = code_version()
