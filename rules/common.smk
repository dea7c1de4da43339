# Config loading and validation, wildcard constraints, input functions. No rules here.
import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

# this checkout's filmorph (the modules imported by the rules need only the standard library)
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from filmorph.arms import arm_names
from filmorph.config_checks import (
    check_config,
    family_engines,
    refuse_credentials,
    train_settings,
)
from filmorph.paths import (
    ARMS,
    ARM_SUMMARY,
    AUDIT_JSON,
    AUDIT_TSV,
    BENCHMARK_FETCH_RECORD,
    BENCHMARK_FILE,
    BENCHMARK_SOURCE,
    BENCHMARK_STATS,
    CHUNK_PATTERN,
    CORPUS_CHUNK,
    CORPUS_COUNTS,
    CORPUS_SOURCE,
    CORPUS_SYNTHETIC,
    CPT_HF_CHECKPOINT,
    CPT_MEGATRON_ITER,
    EVAL_PREDICTIONS,
    EVAL_SCORES,
    FT_CHAT_LOSS,
    FT_DATA_COUNTS,
    FT_FINAL,
    FT_MERGED,
    FT_MODEL_DIR,
    FT_SOURCE_FETCHED,
    FT_SOURCE_SYNTHETIC,
    FT_SUMMARY,
    FT_TRAIN_DATA,
    FT_VALIDATION_DATA,
    HEADLINE_PLOT,
    HF_CHECKPOINT,
    MANIFEST,
    MEGATRON_BASE,
    MEGATRON_DOCMASK_RECORD,
    MEGATRON_IMPORT_RECORD,
    MEGATRON_VERIFY_RECORD,
    MODEL_DIR,
    PLOTS_DIR,
    REPORT_PLOTS,
    REPORT_TABLES,
    ROUNDTRIP_HF,
    ROUNDTRIP_VERIFY_RECORD,
    SHARD_BIN,
    SHARD_DOC_IDS,
    SHARD_FILE,
    SHARD_IDX,
    SHARD_STATS,
    STEP_DIGITS,
    STEP_PATTERN,
    TABLES_DIR,
    TOKENIZATION_SUMMARY_PNG,
    TOKENIZATION_SUMMARY_TSV,
    TOKENIZER_DIR,
    TRAINING_CURVES_PNG,
    TRAINING_SUMMARY_TSV,
    TRAIN_SUMMARY,
    WHEELHOUSE_DIR,
    WHEELHOUSE_SRC,
    chunk_name,
    lm_eval_files,
    step_digits,
    step_name,
)
from filmorph.fingerprint import fingerprint, stage_fingerprints

refuse_credentials(config)  # before the schema: its messages quote values
validate(config, schema="../config/schema.yaml")
check_config(config)  # cross-field checks, naming the key

FAMILIES = list(config["families"])
ENABLED_ARMS = arm_names(config["arms"])  # named instances (filmorph.arms.resolve_arm)
# every arm with a target: the three arm types (arm_vanilla, ... even when disabled) and the named arms
TARGET_ARMS = list(dict.fromkeys([*ARMS, *ENABLED_ARMS]))
NUM_CHUNKS = int(config["corpus"]["num_chunks"])
CHUNKS = [chunk_name(i) for i in range(NUM_CHUNKS)]


# Models: each family's base model (families.<f>.model) and the reference models scored as
# they are (evaluate.reference_models); both live under resources/models/{model}.
FAMILY_MODELS = {f: s["model"] for f, s in config["families"].items() if s.get("model")}
REFERENCE_MODELS = dict(config["evaluate"]["reference_models"])
if set(FAMILY_MODELS) & set(REFERENCE_MODELS):
    raise ValueError(
        f"evaluate.reference_models may not reuse a family name: {sorted(set(FAMILY_MODELS) & set(REFERENCE_MODELS))}"
    )
MODEL_SPECS = {**FAMILY_MODELS, **REFERENCE_MODELS}

# Benchmark files resources/benchmarks/{bench}.jsonl: generated ({benchmark}_{format}) and
# external (benchmarks.external.<name>).
GENERATED_BENCHMARKS = list(config["benchmarks"]["items_per_task"])
BENCH_FORMATS = list(config["benchmarks"]["formats"])
GENERATED_FILES = [f"{b}_{f}" for b in GENERATED_BENCHMARKS for f in BENCH_FORMATS]
EXTERNAL_FILES = list(config["benchmarks"]["external"])
if set(GENERATED_FILES) & set(EXTERNAL_FILES):
    raise ValueError(
        f"benchmarks.external names clash with generated files: {sorted(set(GENERATED_FILES) & set(EXTERNAL_FILES))}"
    )
BENCH_FILES = GENERATED_FILES + EXTERNAL_FILES

from filmorph.benchmarks import sources as _bench_sources


def local_source(name, src):
    """Where source ``src`` (of benchmarks.external.<name> or the stress lexicon) is read: a local
    file where it is, a hub or URL source where fetch_benchmark copies it."""
    if _bench_sources.kind(src) == "local":
        return src
    return BENCHMARK_SOURCE.format(name=name, file=_bench_sources.basename(src))


def external_source(name):
    """The local file benchmarks.external.<name> is converted from."""
    return local_source(name, config["benchmarks"]["external"][name]["input"])


# PACUTE's stress lexicon (benchmarks.stress_lexicon): local files are read where they are; URL
# and hub sources are fetched by fetch_benchmark under the name "stress_lexicon".
STRESS_LEXICON = list(config["benchmarks"].get("stress_lexicon") or [])
if "stress_lexicon" in EXTERNAL_FILES:
    raise ValueError(
        "benchmarks.external may not use the name 'stress_lexicon' (the stress lexicon's fetch folder)"
    )
_stress_names = [_bench_sources.basename(e["input"]) for e in STRESS_LEXICON]
if len(set(_stress_names)) != len(_stress_names):
    raise ValueError(
        f"benchmarks.stress_lexicon: file names must differ, got {_stress_names}"
    )
FETCHED = EXTERNAL_FILES + (["stress_lexicon"] if STRESS_LEXICON else [])


def stress_lexicon_files():
    """The local files of benchmarks.stress_lexicon, in order."""
    return [local_source("stress_lexicon", e["input"]) for e in STRESS_LEXICON]


def fetch_spec(name, file):
    """{input, sha256} of the file fetch_benchmark copies to resources/benchmarks/source/<name>/<file>."""
    if name == "stress_lexicon":
        for e in STRESS_LEXICON:
            if _bench_sources.basename(e["input"]) == file:
                return e
        raise ValueError(f"benchmarks.stress_lexicon has no source named {file!r}")
    return config["benchmarks"]["external"][name]


def external_option_args(name):
    """The convert options of benchmarks.external.<name>, as command-line arguments."""
    spec = config["benchmarks"]["external"][name]
    on_bad = spec.get("on_bad_item") or config["benchmarks"]["on_bad_item"]
    args = ["--schema", spec.get("schema") or "auto", "--on-bad-item", on_bad]
    for key in ("format", "duplicate_options", "mcq_style", "language", "cute_task"):
        if spec.get(key):
            args += [f"--{key.replace('_', '-')}", spec[key]]
    if spec.get("cute_answer_cue") is False:
        args.append("--no-cute-answer-cue")
    return args


# Continued pretraining: checkpoints every checkpoint_interval and at max_steps. Each family
# trains on its own engine (families.<name>.engine, default train.engine).
TRAIN = config["train"]
MEGATRON = TRAIN["megatron"]
FAMILY_ENGINES = family_engines(config)
# The conda env (--sdm conda) of each engine's rules, relative to rules/. The megatron rules
# run in train.megatron.container when one is set (--sdm apptainer), with no conda env: with
# both directives Snakemake would build the env inside the container.
ENGINE_CONDA_ENVS = {
    "hf": "../envs/data.yaml",
    "automodel": "../envs/gpu/automodel.yaml",
    "megatron": None if MEGATRON["container"] else "../envs/gpu/megatron.yaml",
}


# train.megatron.allow_untested_versions, as the environment variable the megatron engine's
# version check reads (filmorph.train.versions), prefixed to the megatron shell commands
from filmorph.train.versions import ALLOW_ENV as _ALLOW_UNTESTED_ENV

MEGATRON_VERSIONS_ENV = (
    f"{_ALLOW_UNTESTED_ENV}={int(bool(MEGATRON['allow_untested_versions']))}"
)
# the megatron shell rules' PYTHONPATH: this checkout's src, then Megatron-Bridge's own packages
# where a machine without conda keeps them apart ($FILMORPH_ENGINE_PATH_MEGATRON; see
# filmorph.train.launch.ENGINE_PATH_ENV), then the caller's
MEGATRON_PYTHONPATH = (
    "PYTHONPATH={workflow.basedir}/src:"
    "${{FILMORPH_ENGINE_PATH_MEGATRON:+$FILMORPH_ENGINE_PATH_MEGATRON:}}$PYTHONPATH"
)


def family_conda_env(wildcards):
    """The conda env of the family's engine (a `conda:` function of the family wildcard)."""
    return ENGINE_CONDA_ENVS[FAMILY_ENGINES[wildcards.family]]


CKPT_STEPS = sorted(
    {
        *range(
            TRAIN["checkpoint_interval"],
            TRAIN["max_steps"] + 1,
            TRAIN["checkpoint_interval"],
        ),
        TRAIN["max_steps"],
    }
)
EVAL_STEPS = (
    CKPT_STEPS if config["evaluate"]["checkpoints"] == "all" else CKPT_STEPS[-1:]
)
TRAINED_FAMILIES = [f for f in FAMILIES if f in FAMILY_MODELS]
# megatron families: import + verify before training, export of every saved iteration after
MEGATRON_FAMILIES = [f for f in TRAINED_FAMILIES if FAMILY_ENGINES[f] == "megatron"]
# hf / automodel families: training writes the HF checkpoints itself
DIRECT_FAMILIES = [f for f in TRAINED_FAMILIES if FAMILY_ENGINES[f] != "megatron"]


def _alternatives(names):
    """A regex matching exactly these names (never matching anything if there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


# {family}: a tokenizer family; {model}: the name of a model that is evaluated, i.e. a family
# (its base model and its CPT checkpoints) or a reference model (the fine-tuning track's
# evaluate_finetuned narrows it to its run names); {arm}: a named arm, or "base".
wildcard_constraints:
    family=_alternatives(FAMILIES),
    arm=_alternatives([*TARGET_ARMS, "base"]),
    chunk=CHUNK_PATTERN,
    model=_alternatives(MODEL_SPECS),
    ckpt=f"base|{STEP_PATTERN}",
    bench=_alternatives(BENCH_FILES),


# Code fingerprints, passed as a param of each stage's rules: editing any module a stage
# imports (its import closure, filmorph.fingerprint) reruns that stage's jobs.
STAGE_FINGERPRINTS = stage_fingerprints(sorted(set(FAMILY_ENGINES.values())))


def provenance_shell(**params):
    """A params function for shell jobs (those that do not go through run_stage): the
    arguments of `python -m filmorph.provenance record` besides inputs and outputs, i.e. the
    job's wildcards and `params` (the params repeated: a params function cannot see them).
    """

    def args(wildcards):
        wc = [f"--wildcard={k}={v}" for k, v in sorted(wildcards.items())]
        return " ".join(
            shlex.quote(a)
            for a in [*wc, "--params", json.dumps(params, sort_keys=True)]
        )

    return args


def with_provenance(cmd):
    """The shell command `cmd`, then (when it succeeds) the job's provenance record; needs
    `params.provenance` (provenance_shell) and a log. `cmd` writes only to the log: when
    either fails, the log's last 40 lines are copied to stderr (the console), as run_stage
    does for the Python stages."""
    return "".join(
        [
            "start=$(date -u +%Y-%m-%dT%H:%M:%SZ); {{ ",
            cmd,
            " && PYTHONPATH={workflow.basedir}/src:$PYTHONPATH python -m filmorph.provenance",
            " record --rule {rule} {params.provenance} --input {input} --output {output}",
            ' --log {log} --start "$start" >> {log} 2>&1; }}',
            ' || {{ echo "job of {rule} failed, the last lines of {log} follow" >&2;',
            " tail -n 40 {log} >&2; exit 1; }}",
        ]
    )


def get_train_config(wildcards):
    """The train: section as the family's engine reads it (engine-specific blocks removed; the
    family's engine; seed from the root seed unless train.seed is set)."""
    settings = {**train_settings(config), "engine": FAMILY_ENGINES[wildcards.family]}
    return json.dumps(settings, sort_keys=True)


def get_family_engine(wildcards):
    return FAMILY_ENGINES[wildcards.family]


def get_train_shards(wildcards):
    return expand(
        SHARD_FILE,
        family=wildcards.family,
        arm=wildcards.arm,
        chunk=CHUNKS,
        ext=["bin", "idx", "stats.json"],
    )


def train_outputs(family, arm):
    """What continued pretraining of one family x arm leaves for the later stages."""
    return [
        *(
            CPT_HF_CHECKPOINT.format(family=family, arm=arm, ckpt=step_name(s))
            for s in CKPT_STEPS
        ),
        TRAIN_SUMMARY.format(family=family, arm=arm),
    ]


def corpus_source_file():
    """The local file split_corpus reads (fetched / synthesized files come from rules)."""
    c = config["corpus"]
    if c["source"] == "hf":
        return CORPUS_SOURCE
    if c["source"] == "synthetic":
        return CORPUS_SYNTHETIC
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
        SHARD_FILE,
        family=family,
        arm=arm,
        chunk=CHUNKS,
        ext=["bin", "idx", "stats.json"],
    )
    return [*shards, ARM_SUMMARY.format(family=family, arm=arm)]


def model_dir(name):
    """Checkpoint dir of a family's base model or a reference model: a `local` source is used
    in place, every other source is written to resources/models/{name} by prepare_model.
    """
    spec = MODEL_SPECS[name]
    return spec["path"] if spec["source"] == "local" else MODEL_DIR.format(model=name)


def get_model_spec(wildcards):
    return json.dumps(MODEL_SPECS[wildcards.model], sort_keys=True)


def get_model_tokenizer(wildcards):
    """A random-init model takes its vocabulary from the family's tokenizer."""
    if MODEL_SPECS[wildcards.model]["source"] == "random":
        if wildcards.model not in FAMILY_MODELS:
            raise ValueError(
                f"reference model {wildcards.model}: source random needs a family"
            )
        return TOKENIZER_DIR.format(family=wildcards.model)
    return []


def get_eval_model(wildcards):
    """The checkpoint dir one evaluate job scores."""
    if wildcards.ckpt == "base":
        return model_dir(wildcards.model)
    return HF_CHECKPOINT.format(
        model=wildcards.model, arm=wildcards.arm, ckpt=wildcards.ckpt
    )


def eval_outputs(model, arm, ckpt):
    """Scores + per-item predictions of one model x arm x checkpoint on every benchmark file."""
    return [
        p.format(model=model, arm=arm, ckpt=ckpt, bench=b)
        for b in BENCH_FILES
        for p in (EVAL_SCORES, EVAL_PREDICTIONS)
    ]


def eval_subjects(arms=None):
    """(model, arm, checkpoint) triples to evaluate: base models, reference models and the
    trained checkpoints (evaluate.checkpoints: last or all) of every family x arm."""
    subjects = [
        (f, a, step_name(s))
        for f in TRAINED_FAMILIES
        for a in (ENABLED_ARMS if arms is None else arms)
        for s in EVAL_STEPS
    ]
    if arms is not None:
        return subjects
    if config["evaluate"]["base_models"]:
        subjects += [(f, "base", "base") for f in FAMILY_MODELS if f in FAMILIES]
    subjects += [(r, "base", "base") for r in REFERENCE_MODELS]
    return subjects


def get_eval_files(pattern):
    """Every evaluation file of `pattern` (EVAL_SCORES or EVAL_PREDICTIONS) the report reads."""
    return [
        pattern.format(model=m, arm=a, ckpt=c, bench=b)
        for m, a, c in eval_subjects()
        for b in BENCH_FILES
    ]


# The report's outputs (rules/report.smk): tables, plots (one headline per evaluated model) and
# the lm-evaluation-harness layout of every evaluated model x arm x checkpoint.
HEADLINE_PLOTS = sorted(
    {HEADLINE_PLOT.format(model=m) for m, _a, _c in eval_subjects()}
)
LM_EVAL_FILES = [
    f for m, a, c in eval_subjects() for f in lm_eval_files(m, a, c, BENCH_FILES)
]
REPORT_OUTPUTS = [
    *(f"{TABLES_DIR}/{t}" for t in REPORT_TABLES),
    *(f"{PLOTS_DIR}/{p}" for p in REPORT_PLOTS),
    *HEADLINE_PLOTS,
    *LM_EVAL_FILES,
]


def get_arm_targets(arm):
    """Everything of one arm, for every family: shards, summary, training and the evaluation
    of its checkpoints (empty if the arm is not enabled)."""
    if arm not in ENABLED_ARMS:
        return []
    return [
        *(f for family in FAMILIES for f in arm_outputs(family, arm)),
        *(f for family in TRAINED_FAMILIES for f in train_outputs(family, arm)),
        *(f for m, a, c in eval_subjects([arm]) for f in eval_outputs(m, a, c)),
    ]


def get_family_targets(family):
    """Everything of one family, for every enabled arm, and its base model's evaluation."""
    evals = [
        f for m, a, c in eval_subjects() if m == family for f in eval_outputs(m, a, c)
    ]
    return [f for arm in ENABLED_ARMS for f in arm_outputs(family, arm)] + evals


AUDIT_OUTPUTS = [MANIFEST, AUDIT_JSON, AUDIT_TSV]


def get_all_targets(audit=True):
    """Every arm x family, the cross-arm summary, every evaluation and the results report;
    with `audit`, the manifest of their provenance records and the audit (rules/audit.smk),
    which come after everything else (the manifest's inputs are the targets without them).
    """
    return [
        *(f for arm in ENABLED_ARMS for f in get_arm_targets(arm)),
        TOKENIZATION_SUMMARY_TSV,
        TOKENIZATION_SUMMARY_PNG,
        *(f for m, a, c in eval_subjects() for f in eval_outputs(m, a, c)),
        *((TRAINING_CURVES_PNG, TRAINING_SUMMARY_TSV) if TRAINED_FAMILIES else ()),
        *(REPORT_OUTPUTS if eval_subjects() and BENCH_FILES else []),
        *(AUDIT_OUTPUTS if audit else []),
    ]
