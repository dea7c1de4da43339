"""The path vocabulary: the names of the arms and of the numbered things in ``resources/`` and
``results/`` (corpus chunks, checkpoint steps, Megatron iterations), the path pattern of every
file and dir the rules write there (corpus, tokenizers, shards, summaries, checkpoints,
fine-tuning, benchmark files, models, evaluations, report, provenance and audit; the rules spell
none of them), and the one mapping between an evaluation's path and its labels; written once
for the rules (``rules/common.smk``, ``rules/*.smk``), the package's stages, the report and the
audit. Patterns are grouped by stage; derived ones are built from their stage's base pattern.

Patterns are ``str.format`` / Snakemake patterns whose fields are the rules' wildcard names
(``{model}``, ``{arm}``, ``{ckpt}``, ``{bench}``). An evaluation's *labels* (stored in its
scores JSON under ``labels`` by the evaluate stage) are named :data:`EVAL_LABELS`; the report
reads them from the JSON, and only the audit maps a path back to labels, to check they agree.

Standard library only: the workflow imports it before any stage runs.
"""

from __future__ import annotations

import re

__all__ = [
    "ARMS",
    "BENCHMARK_FILE",
    "EVAL_DIR",
    "EVAL_LABELS",
    "EVAL_PREDICTIONS",
    "EVAL_SCORES",
    "HEADLINE_PLOT",
    "HF_CHECKPOINT",
    "LM_EVAL_DIR",
    "LM_EVAL_RESULTS",
    "LM_EVAL_SAMPLES",
    "LM_EVAL_STAMP",
    "MODEL_DIR",
    "PLOTS_DIR",
    "REPORT_PLOTS",
    "REPORT_TABLES",
    "TABLES_DIR",
    "CHUNK_GLOB",
    "CHUNK_PATTERN",
    "ITER_RE",
    "STEP_DIGITS",
    "STEP_GLOB",
    "STEP_PATTERN",
    "STEP_RE",
    "chunk_name",
    "eval_labels",
    "eval_path",
    "eval_wildcards",
    "labels_of_eval_path",
    "lm_eval_files",
    "iter_name",
    "step_name",
    "step_of",
    "BENCHMARK_STATS",
    "BENCHMARK_SOURCE",
    "BENCHMARK_FETCH_RECORD",
    "CORPUS_SOURCE",
    "CORPUS_SYNTHETIC",
    "CORPUS_CHUNK",
    "CORPUS_COUNTS",
    "TOKENIZER_DIR",
    "SHARD_STEM",
    "SHARD_FILE",
    "SHARD_BIN",
    "SHARD_IDX",
    "SHARD_DOC_IDS",
    "SHARD_STATS",
    "ARM_SUMMARY",
    "TOKENIZATION_SUMMARY_TSV",
    "TOKENIZATION_SUMMARY_PNG",
    "CPT_RUN_DIR",
    "CPT_HF_CHECKPOINT",
    "CPT_MEGATRON_ITER",
    "TRAIN_SUMMARY",
    "MEGATRON_BASE",
    "MEGATRON_IMPORT_RECORD",
    "MEGATRON_VERIFY_RECORD",
    "MEGATRON_DOCMASK_RECORD",
    "ROUNDTRIP_HF",
    "ROUNDTRIP_VERIFY_RECORD",
    "TRAINING_SUMMARY_TSV",
    "TRAINING_CURVES_PNG",
    "FT_SOURCE_SYNTHETIC",
    "FT_SOURCE_FETCHED",
    "FT_TRAIN_DATA",
    "FT_VALIDATION_DATA",
    "FT_DATA_COUNTS",
    "FT_MODEL_DIR",
    "WHEELHOUSE_SRC",
    "WHEELHOUSE_DIR",
    "FT_RUN_DIR",
    "FT_FINAL",
    "FT_SUMMARY",
    "FT_MERGED",
    "FT_CHAT_LOSS",
    "PROVENANCE_DIR",
    "MANIFEST",
    "AUDIT_JSON",
    "AUDIT_TSV",
    "step_digits",
]

#: The tokenization arms in the study's order; each is a path component ``{arm}``.
ARMS = ("vanilla", "stochastok", "patok")

#: A step number in a checkpoint or iteration name: 7 digits.
STEP_DIGITS = r"\d{7}"
#: ``chunk_NNNN``: a corpus chunk (``resources/corpus/chunk_NNNN.jsonl``) and its shards.
CHUNK_PATTERN = r"chunk_\d{4}"
CHUNK_GLOB = "chunk_*"
#: ``step_NNNNNNN``: an HF checkpoint dir (``hf/step_NNNNNNN``) or a resumable state.
STEP_PATTERN = rf"step_{STEP_DIGITS}"
STEP_RE = re.compile(rf"^step_({STEP_DIGITS})$")
STEP_GLOB = "step_*"
#: ``iter_NNNNNNN``: a Megatron checkpoint iteration (``megatron/iter_NNNNNNN``).
ITER_RE = re.compile(rf"^iter_({STEP_DIGITS})$")


def _check_step(step: int) -> int:
    if step < 0 or step > 9_999_999:
        raise ValueError(f"step out of range: {step}")
    return step


def chunk_name(index: int) -> str:
    """``chunk_0001`` for index 0: 1-based, four digits, like the study's files."""
    return f"chunk_{index + 1:04d}"


def step_name(step: int) -> str:
    """``step_NNNNNNN`` (7 digits), the name of a checkpoint dir."""
    return f"step_{_check_step(step):07d}"


def step_digits(step: int) -> str:
    """``NNNNNNN``: a step as the 7 digits of checkpoint and iteration names."""
    return f"{_check_step(step):07d}"


def iter_name(step: int) -> str:
    """``iter_NNNNNNN`` (7 digits), the name of a Megatron checkpoint iteration."""
    return f"iter_{step_digits(step)}"


def step_of(checkpoint: str) -> int:
    """The step of a checkpoint label: ``step_NNNNNNN`` -> its number, anything else (``base``) 0."""
    m = re.fullmatch(r"step_(\d+)", checkpoint)
    return int(m.group(1)) if m else 0


# --------------------------------------------------------------------------------------------
# resources/ and results/ patterns
# --------------------------------------------------------------------------------------------

#: A benchmark file (generated or converted from a published set).
BENCHMARK_FILE = "resources/benchmarks/{bench}.jsonl"
#: A benchmark file's item statistics.
BENCHMARK_STATS = "resources/benchmarks/{bench}.stats.json"
#: A source file fetch_benchmark copies (``{name}``: benchmarks.external.<name> or
#: ``stress_lexicon``), and its fetch record.
BENCHMARK_SOURCE = "resources/benchmarks/source/{name}/{file}"
BENCHMARK_FETCH_RECORD = BENCHMARK_SOURCE + ".fetch.json"
#: A base or reference model's HF checkpoint dir (written by ``prepare_model``).
MODEL_DIR = "resources/models/{model}"
#: An HF checkpoint of continued pretraining (``{ckpt}`` is a ``step_NNNNNNN`` name).
HF_CHECKPOINT = "results/checkpoints/{model}/{arm}/hf/{ckpt}"
#: The evaluations: one scores JSON and one per-item predictions JSONL per
#: model x arm x checkpoint x benchmark file.
EVAL_DIR = "results/eval"
EVAL_SCORES = EVAL_DIR + "/{model}/{arm}/{ckpt}/{bench}.json"
EVAL_PREDICTIONS = EVAL_DIR + "/{model}/{arm}/{ckpt}/{bench}.jsonl"
#: The report: tables, plots (one headline plot per model) and the lm-evaluation-harness layout.
TABLES_DIR = "results/tables"
PLOTS_DIR = "results/plots"
REPORT_TABLES = ("results.tsv", "results.md", "deltas.tsv", "deltas.md")
REPORT_PLOTS = ("benchmarks.png", "hierarchical_levels.png", "heatmap.png", "deltas.png")
HEADLINE_PLOT = PLOTS_DIR + "/headline/{model}.png"
#: lm-evaluation-harness names its files ``results_<stamp>.json`` and
#: ``samples_<task>_<stamp>.jsonl``; ours carry this fixed stamp so reruns write the same names.
LM_EVAL_STAMP = "filmorph"
LM_EVAL_DIR = "results/lm_eval"
LM_EVAL_RESULTS = LM_EVAL_DIR + "/{model}/{arm}/{ckpt}/results_" + LM_EVAL_STAMP + ".json"
LM_EVAL_SAMPLES = LM_EVAL_DIR + "/{model}/{arm}/{ckpt}/samples_{bench}_" + LM_EVAL_STAMP + ".jsonl"

# Corpus (rules/corpus.smk)
#: The hub corpus as fetched (``corpus.source: hf``).
CORPUS_SOURCE = "resources/corpus/source.jsonl.gz"
#: The synthesized corpus (``corpus.source: synthetic``).
CORPUS_SYNTHETIC = "resources/corpus/synthetic.jsonl"
#: One corpus chunk (``{chunk}`` is a ``chunk_NNNN`` name).
CORPUS_CHUNK = "resources/corpus/{chunk}.jsonl"
#: The split's document counts.
CORPUS_COUNTS = "resources/corpus/counts.json"

# Tokenization (rules/tokenize.smk, rules/summary.smk)
#: A family's tokenizer dir (+ expansion table).
TOKENIZER_DIR = "resources/tokenizers/{family}"
#: One shard of a family x arm x chunk, without its extension; SHARD_FILE with ``{ext}``;
#: its four files (token ids, index, document ids, statistics).
SHARD_STEM = "results/shards/{family}/{arm}/{chunk}"
SHARD_FILE = SHARD_STEM + ".{ext}"
SHARD_BIN = SHARD_STEM + ".bin"
SHARD_IDX = SHARD_STEM + ".idx"
SHARD_DOC_IDS = SHARD_STEM + ".doc_ids.txt"
SHARD_STATS = SHARD_STEM + ".stats.json"
#: The per family x arm tokenization summary, and the TSV + plot across all of them.
ARM_SUMMARY = "results/tokenization/{family}/{arm}.json"
TOKENIZATION_SUMMARY_TSV = "results/tokenization/summary.tsv"
TOKENIZATION_SUMMARY_PNG = "results/tokenization/summary.png"

# Continued pretraining (rules/train.smk, rules/convert.smk, rules/export.smk)
#: A run dir of one family x arm: resumable state/, hf/ (and megatron/) checkpoints, summary.
CPT_RUN_DIR = "results/checkpoints/{family}/{arm}"
#: HF_CHECKPOINT as the training rules name it (``{family}`` for ``{model}``).
CPT_HF_CHECKPOINT = HF_CHECKPOINT.replace("{model}", "{family}")
#: A Megatron iteration of a run (``{iter}``: its 7 digits, :func:`step_digits`).
CPT_MEGATRON_ITER = CPT_RUN_DIR + "/megatron/iter_{iter}"
#: A run's training summary.
TRAIN_SUMMARY = CPT_RUN_DIR + "/train_summary.json"
#: A megatron family's imported base model, its import/verify/doc-mask records.
MEGATRON_BASE = "results/checkpoints/{family}/base/megatron"
MEGATRON_IMPORT_RECORD = MEGATRON_BASE + ".import.json"
MEGATRON_VERIFY_RECORD = MEGATRON_BASE + ".verify.json"
MEGATRON_DOCMASK_RECORD = MEGATRON_BASE + ".docmask.json"
#: The imported base model exported back to HF, and its verify record.
ROUNDTRIP_HF = "results/checkpoints/{family}/base/roundtrip_hf"
ROUNDTRIP_VERIFY_RECORD = ROUNDTRIP_HF + ".verify.json"
#: The training summary TSV and loss curves across all runs.
TRAINING_SUMMARY_TSV = "results/training/summary.tsv"
TRAINING_CURVES_PNG = "results/training/curves.png"

# Fine-tuning track (rules/finetune.smk, rules/finetune_common.smk)
#: A chat split as synthesized or fetched (``{split}``: train / validation).
FT_SOURCE_SYNTHETIC = "resources/finetune/source/synthetic_{split}.jsonl"
FT_SOURCE_FETCHED = "resources/finetune/source/fetched_{split}.jsonl"
#: The validated chat data and its counts.
FT_TRAIN_DATA = "resources/finetune/data/train.jsonl"
FT_VALIDATION_DATA = "resources/finetune/data/validation.jsonl"
FT_DATA_COUNTS = "resources/finetune/data/counts.json"
#: A hub model downloaded for fine-tuning (``{ftmodel}``: its hub dir name).
FT_MODEL_DIR = "resources/finetune/models/{ftmodel}"
#: The Mamba kernels' sources and wheels (``{key}``: filmorph.finetune.kernels' keys).
WHEELHOUSE_SRC = "resources/wheelhouse/src/{key}"
WHEELHOUSE_DIR = "resources/wheelhouse/{key}"
#: A fine-tuning run: adapter / checkpoint, summary, merged weights, chat loss before/after.
FT_RUN_DIR = "results/finetune/{run}"
FT_FINAL = FT_RUN_DIR + "/final"
FT_SUMMARY = FT_RUN_DIR + "/finetune_summary.json"
FT_MERGED = FT_RUN_DIR + "/merged"
FT_CHAT_LOSS = FT_RUN_DIR + "/chat_loss_{stage}.json"

# Provenance and audit (rules/audit.smk)
#: Per-job provenance records, their manifest, and the audit's outputs.
PROVENANCE_DIR = "results/provenance"
MANIFEST = "results/manifest.json"
AUDIT_JSON = "results/audit/audit.json"
AUDIT_TSV = "results/audit/audit.tsv"

# --------------------------------------------------------------------------------------------
# evaluation path <-> labels
# --------------------------------------------------------------------------------------------

#: The labels of one evaluation, in path order, and the wildcard each fills.
EVAL_LABELS = ("model", "arm", "checkpoint", "benchmark")
_WILDCARD_OF = {"model": "model", "arm": "arm", "checkpoint": "ckpt", "benchmark": "bench"}
_EVAL_PATH_RE = re.compile(
    r"(?:^|/)results/eval/(?P<model>[^/]+)/(?P<arm>[^/]+)/(?P<checkpoint>[^/]+)/"
    r"(?P<benchmark>[^/]+?)\.(?P<ext>json|jsonl)$"
)


def eval_labels(model: str, arm: str, checkpoint: str, benchmark: str) -> dict[str, str]:
    """The labels the evaluate stage stores in a scores JSON (``labels``)."""
    labels = {"model": model, "arm": arm, "checkpoint": checkpoint, "benchmark": benchmark}
    for k, v in labels.items():
        if not v or "/" in v:
            raise ValueError(f"evaluation label {k}={v!r}: empty or holds '/'")
    return labels


def eval_wildcards(labels: dict[str, str]) -> dict[str, str]:
    """``{model, arm, ckpt, bench}`` (the rules' wildcards) of an evaluation's labels."""
    missing = [k for k in EVAL_LABELS if not labels.get(k)]
    if missing:
        raise ValueError(f"evaluation labels lack {', '.join(missing)}: {labels}")
    return {_WILDCARD_OF[k]: labels[k] for k in EVAL_LABELS}


def eval_path(labels: dict[str, str], ext: str = "json") -> str:
    """The path (relative to the run dir) of the evaluation with these labels: ``ext``
    ``json`` (scores) or ``jsonl`` (predictions)."""
    pattern = {"json": EVAL_SCORES, "jsonl": EVAL_PREDICTIONS}.get(ext)
    if pattern is None:
        raise ValueError(f"evaluation file extension {ext!r}: expected json or jsonl")
    return pattern.format(**eval_wildcards(labels))


def labels_of_eval_path(path: str) -> dict[str, str]:
    """The labels an evaluation path spells (the inverse of :func:`eval_path`). Only for
    checking a path against the labels its JSON holds (the audit): the report reads labels
    from the JSON."""
    m = _EVAL_PATH_RE.search(str(path).replace("\\", "/"))
    if not m:
        raise ValueError(f"{path}: not a {EVAL_SCORES} (or .jsonl) path")
    return {k: m.group(k) for k in EVAL_LABELS}


def lm_eval_files(model: str, arm: str, checkpoint: str, benchmarks: list[str]) -> list[str]:
    """The lm-evaluation-harness layout files of one model x arm x checkpoint (relative to the
    run dir): the results file, then one samples file per benchmark file."""
    wcs = [eval_wildcards(eval_labels(model, arm, checkpoint, b)) for b in benchmarks]
    if not wcs:
        return []
    return [LM_EVAL_RESULTS.format(**wcs[0])] + [LM_EVAL_SAMPLES.format(**w) for w in wcs]
