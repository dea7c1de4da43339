# Config loading and validation, wildcard constraints, input functions. No rules here.
import json
import hashlib
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


def code_fingerprint(*modules):
    """sha256 of the package modules a stage runs, passed as a param: editing them reruns
    that stage's jobs (Snakemake's code trigger only sees the rule's own script)."""
    h = hashlib.sha256()
    pkg = Path(workflow.basedir) / "src" / "filmorph"
    for m in sorted(modules):
        for f in sorted((pkg / m).rglob("*.py")) if (pkg / m).is_dir() else [pkg / m]:
            h.update(f.relative_to(pkg).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


CODE = {
    "corpus": code_fingerprint("corpus.py", "io.py", "rng.py"),
    "tokenize": code_fingerprint(
        "tokenize.py",
        "tokenizers.py",
        "arms",
        "shards.py",
        "affixes.py",
        "rng.py",
        "io.py",
    ),
    "summary": code_fingerprint(
        "summary.py", "shards.py", "affixes.py", "tokenize.py", "tokenizers.py"
    ),
}


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


def arm_outputs(family, arm):
    """Shards and per-arm summary of one family x arm."""
    shards = expand(
        "results/shards/{family}/{arm}/{chunk}.{ext}",
        family=family,
        arm=arm,
        chunk=CHUNKS,
        ext=["bin", "idx", "stats.json"],
    )
    return [*shards, f"results/tokenization/{family}/{arm}.json"]


def get_arm_targets(arm):
    """Everything of one arm, for every family (empty if the arm is not enabled)."""
    if arm not in ENABLED_ARMS:
        return []
    return [f for family in FAMILIES for f in arm_outputs(family, arm)]


def get_family_targets(family):
    """Everything of one family, for every enabled arm."""
    return [f for arm in ENABLED_ARMS for f in arm_outputs(family, arm)]


def get_all_targets():
    """Every arm x family, and the cross-arm summary table and plot."""
    return [
        *(f for arm in ENABLED_ARMS for f in get_arm_targets(arm)),
        "results/tokenization/summary.tsv",
        "results/tokenization/summary.png",
    ]
