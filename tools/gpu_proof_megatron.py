"""GPU proof of the ``megatron`` engine, in as few device calls as the transfer limits allow.

Per family (Llama 3.2 1B shape, Gemma 3 1B shape; random weights drawn on the GPU, the real
tokenizers): write the HF model → ``filmorph.train.megatron.convert import`` → ``verify``
(Megatron logits = HF logits) → ``export`` of the untrained import → ``verify`` (HF export = HF
model) → ≥ 100 training steps with ``filmorph.train.megatron`` on shards made on the CPU machine
with the real tokenizers (with thd document masking; when that fails, once more without) →
``export`` of the last iteration → transformers reloads it (loss on a shard window below the
base model's) → ``filmorph.evaluate`` (the scorer of the ``evaluate`` rule) scores it on two
small benchmark files (:data:`PROOF_BENCHMARKS`) → negative control (``verify`` of the trained
Megatron iteration against the base HF model must fail). Every step runs in its own process (one model
family per process), its log is kept, and a table is printed last.

Before training, ``verify-doc-mask`` (:func:`filmorph.train.megatron.convert.verify_document_masking`)
checks the engine's document masking for the model on the GPU.

``sweep`` trains a list of settings for a few steps each from one import and prints
steady-state tokens/s, MFU and peak memory per setting (:data:`DEFAULT_SWEEPS`, or
``--variant NAME=JSON``).

How to run it on a lent GPU, and what it measured: ``tools/README.md``.

Over 800 lines on purpose: one lab program (wheel packing for the device, model shapes, the
proof's stages and the sweeps share its constants and its runner); it is not installed and
nothing imports it but ``gpu_proof_automodel`` and its tests.

Nothing here imports torch, transformers or Megatron at module level.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filmorph.paths import chunk_name
from filmorph.provenance import sha256_file
from filmorph.train.common import read_metrics
from filmorph.train.launch import module_argv

__all__ = [
    "DEFAULT_SWEEPS",
    "FAMILIES",
    "MATCHED",
    "PROOF_TRAIN",
    "WHEELS",
    "device_wheel_args",
    "main",
    "matched_variants",
    "parse_variant",
    "plan_bins",
    "prepare",
    "run_proof",
    "sweep",
    "sweep_table",
]

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".megatron-carry"
STASH = Path("/root/mc")
SITE = Path("/root/site")
WORK = Path("/root/proof")
CONVERT_MODULE = "filmorph.train.megatron.convert"
CONVERT = [sys.executable, "-m", CONVERT_MODULE]

TE_VERSION = "2.20.2"
TE_CORE_WHEEL = f"transformer_engine_cu13-{TE_VERSION}-py3-none-manylinux_2_28_x86_64.whl"
TE_CORE_BYTES = 276_522_776
TE_CORE_SHA256 = "30063d3699e779cce63617c3458804f7a504ce8279f2749c98313db9daae273e"
TE_TORCH_WHEEL = f"transformer_engine_torch-{TE_VERSION}-cp312-cp312-linux_x86_64.whl"
PART_BYTES = 62_000_000
CALL_BUDGET = 60 * 2**20  # carried bytes per call; the working tree needs the rest of 64 MiB
MIB = 2**20

# What Megatron-Bridge 0.6.2 needs at import on the device (../shared/notes/gpu-device.md),
# beyond the device's own packages; fetched with --no-deps. Unpinned ones are pinned by
# prepare (MANIFEST.json records the files).
WHEELS = (
    "megatron-core==0.19.2",
    "megatron-bridge==0.6.2",
    f"transformer-engine=={TE_VERSION}",
    "transformers==5.12.1",
    "tokenizers==0.22.2",
    "omegaconf==2.3.0",
    "hydra-core==1.3.8",
    "pydantic==2.14.3",
    "pydantic-core==2.50.4",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "typing-extensions==4.16.0",
    "nvdlfw-inspect==0.2.2",
    "nvidia-cudnn-frontend==1.32.0",
    "nvidia-modelopt==0.47.0",
    "PuLP==2.9.0",
    "nvidia-resiliency-ext==0.7.0",
    "datasets==5.2.0",
    "dill==0.4.1",
    "multiprocess==0.70.19",
    "diffusers==0.42.1",
    "importlib-metadata==10.2.0",
    "defusedxml==0.7.1",
    "megatron-energon==7.4.1",
    "braceexpand==0.1.7",
    "rapidyaml==0.15.2",
    "deprecation==2.1.0",
    "filetype==1.2.0",
    "webdataset==1.0.2",
    "mfusepy==3.1.1",
    "s3fs==2026.9.0",
    "multi-storage-client==1.3.1",
    "jmespath",
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "rpds-py",
    "opentelemetry-api",
    "xattr",
    "cffi",
    "pycparser",
    "wcmatch",
    "bracex",
    "lark",
    "prettytable",
    "wcwidth",
    "pyroute2",
    "tzdata<2026",
)
SDISTS = ("antlr4-python3-runtime==4.9.3",)  # pure Python; installs with --no-build-isolation
PLATFORMS = tuple(f"manylinux_2_{n}_x86_64" for n in (39, 35, 34, 31, 28, 27, 24, 17)) + (
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "any",
)

# The real architectures at full size (random weights; the vocabulary comes from the tokenizer).
LLAMA32_1B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
    },
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
GEMMA3_1B = {
    "hidden_size": 1152,
    "intermediate_size": 6912,
    "num_hidden_layers": 26,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "sliding_window": 512,
    "max_position_embeddings": 32768,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
# The study's Llama model (meta-llama/Llama-3.1-8B) at full width: for the multi-GPU sweep
# (``sweep --nproc 8``; one H100 cannot hold its training state)
LLAMA31_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
    },
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}
# The study's Gemma model (google/gemma-2-2b) at full width; its vocabulary here is the Gemma 3
# tokenizer's (262k; Gemma 2's is 256k), whose shards the proof carries.
GEMMA2_2B = {
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "sliding_window": 4096,
    "max_position_embeddings": 8192,
    "query_pre_attn_scalar": 256,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
# data: which tokenizer's shards and files (data/tok_X, data/shards/X); doc_mask_mode: the
# masking verify-doc-mask measures (None: the engine's choice; the Gemma 3 shape's thd is
# refused by the engine, so the check measures it explicitly and must reject it);
# train: the proof's training settings for that family
FAMILIES = {
    "llama": {
        "architecture": "llama",
        "shape": LLAMA32_1B,
        "tokenizer": {"source": "llama3_tiktoken_package"},
        "data": "llama",
        "doc_mask_mode": None,
        "train": {"micro_batch_size": 16},  # the sweep's fastest (41.6 % MFU, 59 GiB)
    },
    "gemma": {
        "architecture": "gemma3_text",
        "shape": GEMMA3_1B,
        "tokenizer": {"source": "gemma3_gguf_package"},
        "data": "gemma",
        "doc_mask_mode": "thd",
        "train": {"micro_batch_size": 8},
    },
    "llama31_8b": {
        "architecture": "llama",
        "shape": LLAMA31_8B,
        "tokenizer": {"source": "llama3_tiktoken_package"},
        "data": "llama",
        "doc_mask_mode": None,
        "train": {"micro_batch_size": 1},
    },
    "gemma2": {
        "architecture": "gemma2",
        "shape": GEMMA2_2B,
        "tokenizer": {"source": "gemma3_gguf_package"},
        "data": "gemma",
        "doc_mask_mode": None,
        "train": {"micro_batch_size": 2},
    },
}
# The proof's training: the batch and sequence length of the Automodel run in the notes, so
# the two GPU engines compare on the same figures; 100 steps; checkpoints at 50 and 100.
PROOF_TRAIN = {
    "engine": "megatron",
    "max_steps": 100,
    "global_batch_size": 16,
    "micro_batch_size": 4,
    "seq_length": 1024,
    "lr": 3.0e-4,
    "min_lr": 3.0e-5,
    "warmup_steps": 10,
    "checkpoint_interval": 50,
    "eval_interval": 50,
    "eval_iters": 2,
    "log_interval": 10,
    "split": "98,2,0",
    "num_workers": 2,
    "precision": "bf16",
}
# Scored on the trained export by filmorph.evaluate (the scorer the `evaluate` rule calls):
# file name -> (benchmark, format, items per task)
PROOF_BENCHMARKS = {"hierarchical_mcq": ("hierarchical", "mcq", 10), "pacute_gen": ("pacute", "gen", 4)}
TOKENIZER_KEEP = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer_meta.json")


# ============================================================================ helpers
def _say(msg: str) -> None:
    print(f"[gpu_proof_megatron {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def plan_bins(items: Sequence[tuple[str, int]], capacities: Sequence[int]) -> list[list[str]]:
    """First-fit-decreasing packing of ``(name, bytes)`` items into bins of the given
    capacities (bins in order). Raises ``ValueError`` when an item fits nowhere."""
    bins: list[list[str]] = [[] for _ in capacities]
    free = list(capacities)
    for name, size in sorted(items, key=lambda x: (-x[1], x[0])):
        for i, room in enumerate(free):
            if size <= room:
                bins[i].append(name)
                free[i] -= size
                break
        else:
            raise ValueError(
                f"{name} ({size / MIB:.1f} MiB) fits in no call; free: {[f // MIB for f in free]} MiB"
            )
    return bins


def _tree_bytes() -> int:
    """Bytes of the working tree that travels with every call (tracked + untracked, not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    total = 0
    for name in out.decode().split("\0"):
        p = REPO / name
        if name and p.is_file():
            total += p.stat().st_size
    return total


# ============================================================================ prepare (CPU machine)
def device_wheel_args() -> list[str]:
    """pip arguments that select binary wheels for the device's Python (3.12, CPython,
    manylinux x86_64), for ``pip download`` and ``pip install --target``."""
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    return ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", *plat]


def _download(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest)]
    if not (dest / TE_CORE_WHEEL).is_file():
        _say("downloading transformer-engine-cu13 (276 MB)")
        subprocess.run([*base, *device_wheel_args(), f"transformer-engine-cu13=={TE_VERSION}"], check=True)
    _say(f"downloading {len(WHEELS)} wheels")
    subprocess.run([*base, *device_wheel_args(), *WHEELS], check=True)
    subprocess.run([*base, "--no-binary=:all:", *SDISTS], check=True)


def _build_data(out: Path, build: Path, corpus_mb: float) -> list[str]:
    """Tokenizers (tokenizer.json gzipped) and 2 chunks of vanilla shards per family."""
    from filmorph.corpus import split_corpus, synthesize
    from filmorph.tokenize import prepare as prepare_tokenizer
    from filmorph.tokenize import tokenize_chunk

    build.mkdir(parents=True, exist_ok=True)
    corpus = build / f"corpus_{corpus_mb:g}mb.jsonl"
    if not corpus.is_file():
        _say(f"synthesizing a {corpus_mb:g} MB corpus")
        synthesize(corpus, int(corpus_mb * 1e6), seed=0)
    chunks = build / f"chunks_{corpus_mb:g}mb"
    if not (chunks / "counts.json").is_file():
        split_corpus(corpus, chunks, 2, id_prefix="proof")
    files = []
    for fam in sorted({spec["data"] for spec in FAMILIES.values()}):
        spec = FAMILIES[fam]
        tok_build = build / f"tok_{fam}"
        if not (tok_build / "tokenizer_meta.json").is_file():
            _say(f"preparing the {fam} tokenizer")
            prepare_tokenizer(fam, spec["tokenizer"], tok_build)
        tok_out = out / f"tok_{fam}"
        tok_out.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_KEEP:
            src = tok_build / name
            if not src.is_file():
                continue
            if name == "tokenizer.json":
                with (
                    open(src, "rb") as fi,
                    gzip.open(tok_out / "tokenizer.json.gz", "wb", compresslevel=9) as fo,
                ):
                    shutil.copyfileobj(fi, fo)
                files.append(str((tok_out / "tokenizer.json.gz").relative_to(out)))
            else:
                shutil.copyfile(src, tok_out / name)
                files.append(str((tok_out / name).relative_to(out)))
        for k in (1, 2):
            prefix = build / "shards" / fam / "vanilla" / chunk_name(k - 1)
            if not Path(f"{prefix}.stats.json").is_file():
                _say(f"tokenizing chunk {k} for {fam}")
                tokenize_chunk(
                    chunks / f"{chunk_name(k - 1)}.jsonl", tok_build, "vanilla", {}, 7, prefix, workers=2
                )
            dst = out / "shards" / fam
            dst.mkdir(parents=True, exist_ok=True)
            for ext in (".bin", ".idx", ".stats.json"):
                shutil.copyfile(f"{prefix}{ext}", dst / f"{chunk_name(k - 1)}{ext}")
                files.append(str((dst / f"{chunk_name(k - 1)}{ext}").relative_to(out)))
    files += _build_benchmarks(out / "bench")
    return files


def _build_benchmarks(out: Path) -> list[str]:
    """The benchmark files the proof scores the trained export on (:data:`PROOF_BENCHMARKS`)."""
    from filmorph.benchmarks import generate
    from filmorph.items import write_items

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, (bench, fmt, n) in PROOF_BENCHMARKS.items():
        path = out / f"{name}.jsonl"
        if not path.is_file():
            write_items(path, generate(bench, fmt, items_per_task=n, seed=0))
        files.append(f"bench/{path.name}")
    return files


def check_settings_fields(dl: Path) -> dict[str, list[str]]:
    """Every key :func:`filmorph.train.megatron.megatron_settings` emits must be a field of the
    Megatron-Bridge / megatron-core config class it goes into, in the downloaded wheels' source
    (read with ``ast``: they cannot be imported without Transformer Engine). Returns the unknown
    keys per section (empty lists when all is well)."""
    import ast
    import tempfile
    import zipfile

    from filmorph.train.config import TrainConfig
    from filmorph.train.megatron import megatron_settings

    def fields(root: Path, rel: str, cls: str) -> set[str]:
        tree = ast.parse((root / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == cls:
                return {
                    n.target.id
                    for n in node.body
                    if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
                }
        raise KeyError(f"{cls} not in {rel}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for pattern in ("megatron_core-*.whl", "megatron_bridge-*.whl"):
            with zipfile.ZipFile(next(dl.glob(pattern))) as z:
                z.extractall(root)
        c, b = "megatron/training/config/", "megatron/bridge/"
        tc, cc, bc = c + "training_config.py", c + "common_config.py", b + "training/config.py"
        known = {
            "train": fields(root, tc, "TrainingConfig") | fields(root, bc, "TrainingConfig"),
            "validation": fields(root, tc, "ValidationConfig"),
            "scheduler": fields(root, tc, "SchedulerConfig") | fields(root, bc, "SchedulerConfig"),
            "logger": fields(root, tc, "LoggerConfig") | fields(root, bc, "LoggerConfig"),
            "checkpoint": fields(root, tc, "CheckpointConfig") | fields(root, bc, "CheckpointConfig"),
            "tokenizer": fields(root, tc, "TokenizerConfig")
            | fields(root, b + "training/tokenizers/config.py", "TokenizerConfig"),
            "rng": fields(root, cc, "RNGConfig"),
            "dist": fields(root, cc, "DistributedInitConfig") | fields(root, bc, "DistributedInitConfig"),
            "optimizer": fields(root, "megatron/core/optimizer/optimizer_config.py", "OptimizerConfig"),
            "ddp": fields(
                root,
                "megatron/core/distributed/distributed_data_parallel_config.py",
                "DistributedDataParallelConfig",
            ),
            "dataset": fields(root, "megatron/core/datasets/gpt_dataset.py", "GPTDatasetConfig")
            | fields(
                root,
                "megatron/core/datasets/blended_megatron_dataset_config.py",
                "BlendedMegatronDatasetConfig",
            ),
            "dataloader": fields(root, b + "data/base.py", "DataloaderConfig"),
            "model": fields(root, "megatron/core/transformer/transformer_config.py", "TransformerConfig")
            | fields(root, "megatron/core/model_parallel_config.py", "ModelParallelConfig")
            | fields(root, b + "models/gpt_provider.py", "GPTModelProvider"),
        }
    cfg = TrainConfig.from_dict({"engine": "megatron", "max_steps": 10, "warmup_steps": 1})
    s = megatron_settings(
        cfg,
        shard_prefixes=["a"],
        shard_token_counts=[1],
        run_dir="r",
        world_size=1,
        eod_id=1,
        vocab_size=2,
        pretrained_checkpoint="p",
        exit_interval=5,
        environ={"WANDB_API_KEY": "x", "WANDB_ENTITY": "e"},
    )
    unknown = {sec: sorted(set(s[sec]) - names) for sec, names in known.items()}
    bad = {k: v for k, v in unknown.items() if v}
    if bad:
        raise RuntimeError(
            f"megatron_settings emits keys the downloaded Megatron-Bridge does not know: {bad}"
        )
    return unknown


def prepare(carry: Path = CARRY, *, corpus_mb: float = 8.0, download: bool = True) -> dict[str, Any]:
    """Build ``carry``'s call folders ``c1``…``c6`` and ``data`` (see the module docstring) and
    ``MANIFEST.json``; return the manifest."""
    dl = carry / "dl"
    if download:
        _download(dl)
    core = dl / TE_CORE_WHEEL
    if not core.is_file() or core.stat().st_size != TE_CORE_BYTES:
        raise RuntimeError(f"{core} is missing or not {TE_CORE_BYTES} bytes")
    if sha256_file(core) != TE_CORE_SHA256:
        raise RuntimeError(f"{core}: sha256 differs from the one the device notes record")
    check_settings_fields(dl)
    _say("megatron_settings' keys are all fields of the downloaded Megatron-Bridge config classes")
    te_torch = REPO.parent / "shared" / "wheels" / TE_TORCH_WHEEL
    if not te_torch.is_file():
        raise FileNotFoundError(f"{te_torch} is missing (built on the device, kept in ../shared/wheels)")

    for d in [carry / f"c{i}" for i in range(1, 7)] + [carry / "data"]:
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    # the core wheel in parts: c1..c5 hold one part each
    parts = []
    with open(core, "rb") as f:
        for i in range(1, 6):
            blob = f.read(PART_BYTES)
            (carry / f"c{i}" / f"te_core.part{i}").write_bytes(blob)
            parts.append(len(blob))
        if f.read(1):
            raise RuntimeError("the core wheel needs more than five parts")
    # every other wheel/sdist fills the room left, c6 last
    others = sorted(p for p in dl.iterdir() if p.name != TE_CORE_WHEEL and p.suffix in (".whl", ".gz"))
    others.append(te_torch)
    by_name = {p.name: p for p in others}
    rooms = [CALL_BUDGET - n for n in parts] + [CALL_BUDGET]
    bins = plan_bins([(p.name, p.stat().st_size) for p in others], rooms)
    for i, names in enumerate(bins, start=1):
        for name in names:
            shutil.copyfile(by_name[name], carry / f"c{i}" / name)
    data_files = _build_data(carry / "data", carry / "build", corpus_mb)

    manifest: dict[str, Any] = {
        "te_core": {"wheel": TE_CORE_WHEEL, "bytes": TE_CORE_BYTES, "sha256": TE_CORE_SHA256, "parts": parts},
        "tree_bytes": _tree_bytes(),
        "calls": {},
    }
    for d in [carry / f"c{i}" for i in range(1, 7)] + [carry / "data"]:
        files = sorted(p for p in d.rglob("*") if p.is_file())
        manifest["calls"][d.name] = {
            "bytes": sum(p.stat().st_size for p in files),
            "files": {str(p.relative_to(d)): p.stat().st_size for p in files},
        }
    total = manifest["tree_bytes"] + max(c["bytes"] for c in manifest["calls"].values())
    if total > 64 * MIB:
        raise RuntimeError(f"a call would carry {total / MIB:.1f} MiB with the working tree (> 64 MiB)")
    for i in range(1, 7):  # each call folder knows the whole plan (install checks it)
        write = carry / f"c{i}" / "MANIFEST.json"
        write.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    (carry / "MANIFEST.json").write_text(
        json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    _say("plan (working tree %.1f MiB):" % (manifest["tree_bytes"] / MIB))
    for name, c in manifest["calls"].items():
        print(f"  {name:5s} {c['bytes'] / MIB:6.1f} MiB  {len(c['files']):3d} files")
    print(f"  data files: {len(data_files)}")
    return manifest


# ============================================================================ device: stash / install
def stash(folder: Path, to: Path = STASH) -> dict[str, Any]:
    """Copy the files of one carried call folder to ``to`` (kept while the machine is warm)."""
    to.mkdir(parents=True, exist_ok=True)
    copied = []
    for p in sorted(folder.iterdir()):
        if p.is_file():
            shutil.copyfile(p, to / p.name)
            copied.append(p.name)
    have = sorted(p.name for p in to.iterdir())
    res = {
        "copied": copied,
        "stash": str(to),
        "stash_files": len(have),
        "parts": [n for n in have if ".part" in n],
    }
    print(json.dumps(res))
    return res


def install(
    folder: Path, *, stash_dir: Path = STASH, site: Path = SITE, out: Path | None = None
) -> dict[str, Any]:
    """Stash ``folder`` too, join the TE core parts (sha256 checked), install every wheel into
    ``site`` with one ``pip install --no-deps --target`` (both TE wheels and the torch
    extension share ``transformer_engine/``), the sdists with ``--no-build-isolation``, then
    run a smoke test in a fresh interpreter."""
    t0 = time.time()
    stash(folder, stash_dir)
    manifest = json.loads((stash_dir / "MANIFEST.json").read_text(encoding="utf-8"))
    parts = sorted(stash_dir.glob("te_core.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if len(parts) != len(manifest["te_core"]["parts"]):
        raise SystemExit(
            f"only {len(parts)} of {len(manifest['te_core']['parts'])} TE core parts in {stash_dir}: "
            "the machine went back between calls; start again at call 1"
        )
    core = stash_dir / TE_CORE_WHEEL
    with open(core, "wb") as fo:
        for p in parts:
            with open(p, "rb") as fi:
                shutil.copyfileobj(fi, fo)
    sha = sha256_file(core)
    if sha != manifest["te_core"]["sha256"]:
        raise SystemExit(f"joined TE core wheel sha256 {sha} != {manifest['te_core']['sha256']}")
    wanted = {n for c in manifest["calls"].values() for n in c["files"] if n.endswith((".whl", ".tar.gz"))}
    missing = sorted(n for n in wanted if not (stash_dir / n).is_file())
    if missing:
        raise SystemExit(f"missing from {stash_dir}: {missing}; start again at call 1")
    wheels = sorted(str(p) for p in stash_dir.glob("*.whl"))
    sdists = sorted(str(p) for p in stash_dir.glob("*.tar.gz"))
    shutil.rmtree(site, ignore_errors=True)  # pip --target skips top-level dirs that exist
    site.mkdir(parents=True)
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--target",
        str(site),
    ]
    subprocess.run([*pip, *wheels], check=True)
    if sdists:
        subprocess.run([*pip, "--no-build-isolation", *sdists], check=True)
    for name in (TE_CORE_WHEEL, TE_TORCH_WHEEL):  # the three TE wheels share transformer_engine/
        _ensure_wheel_files(stash_dir / name, site)
    smoke = subprocess.run(
        [sys.executable, "-c", SMOKE],
        env={**os.environ, "PYTHONPATH": f"{site}:{REPO / 'src'}"},
        capture_output=True,
        text=True,
    )
    res = {
        "seconds": round(time.time() - t0, 1),
        "wheels": len(wheels),
        "sdists": len(sdists),
        "te_core_sha256_ok": True,
        "smoke_rc": smoke.returncode,
        "smoke": _last_json(smoke.stdout),
        "smoke_tail": (smoke.stdout + smoke.stderr)[-3000:] if smoke.returncode else None,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "install.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(res, indent=1))
    if smoke.returncode:
        raise SystemExit("smoke test failed")
    return res


def _ensure_wheel_files(wheel: Path, site: Path) -> list[str]:
    """Unzip ``wheel`` over ``site`` when any of its files is missing there (what ``pip install
    --target`` does when a top-level dir already exists); returns the names that were missing."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        missing = [n for n in z.namelist() if not n.endswith("/") and not (site / n).exists()]
        if missing:
            z.extractall(site)
    return missing


SMOKE = r"""
import json, torch
import transformer_engine, transformer_engine.pytorch as te
lin = te.Linear(256, 256, params_dtype=torch.bfloat16).cuda()
y = lin(torch.randn(32, 256, device="cuda", dtype=torch.bfloat16))
torch.cuda.synchronize()
import megatron.core, megatron.bridge
from megatron.bridge import AutoBridge
from megatron.bridge.training.pretrain import pretrain
import transformers
print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                  "te": transformer_engine.__version__, "megatron_core": megatron.core.__version__,
                  "megatron_bridge": getattr(megatron.bridge, "__version__", None),
                  "transformers": transformers.__version__, "te_linear_out": list(y.shape)}))
"""


# ============================================================================ device: the proof
def _last_json(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


class _Runner:
    """Runs each stage in its own process, keeps its log, and watches the time budget."""

    def __init__(self, logs: Path, env: dict[str, str], budget_s: float):
        self.logs = logs
        self.env = env
        self.t0 = time.time()
        self.budget_s = budget_s
        self.stages: list[dict[str, Any]] = []
        logs.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget_s - (time.time() - self.t0)

    def __call__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        expect_rc: int = 0,
        timeout: float | None = None,
        results: Path | None = None,
    ):
        timeout = max(10.0, min(timeout or self.left(), self.left()))
        _say(f"stage {name}: {' '.join(str(a) for a in argv)[:300]}")
        t = time.time()
        log = self.logs / f"{name}.log"
        with open(log, "w", encoding="utf-8") as fh:
            try:
                rc = subprocess.run(
                    [str(a) for a in argv], env=self.env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout
                ).returncode
            except subprocess.TimeoutExpired:
                rc = 124
        text = log.read_text(encoding="utf-8", errors="replace")
        rec = {
            "stage": name,
            "rc": rc,
            "ok": rc == expect_rc,
            "seconds": round(time.time() - t, 1),
            "result": _last_json(text),
        }
        if results is not None and results.is_file():  # verify writes its results on failure too
            rec["result"] = json.loads(results.read_text(encoding="utf-8"))
        if not rec["ok"]:
            rec["tail"] = text[-2500:]
        self.stages.append(rec)
        _say(f"stage {name}: rc {rc} ({'ok' if rec['ok'] else 'FAILED'}) in {rec['seconds']} s")
        return rec

    def skip(self, name: str, why: str) -> dict[str, Any]:
        rec = {"stage": name, "rc": None, "ok": None, "seconds": 0.0, "result": None, "skipped": why}
        self.stages.append(rec)
        _say(f"stage {name}: skipped ({why})")
        return rec


RELOAD = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from filmorph.shards import read_shard
trained, base, prefix, seq = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ds = read_shard(prefix)
ids = []
i = len(ds) - 1  # the last documents: the valid split's side of the shard
while len(ids) < seq + 1 and i >= 0:
    ids = [int(x) for x in ds[i]] + ids
    i -= 1
x = torch.tensor([ids[-(seq + 1):]], device="cuda")
out = {}
for name, path in (("trained", trained), ("base", base)):
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, local_files_only=True).cuda().eval()
    with torch.no_grad():
        out[name + "_loss"] = float(m(input_ids=x[:, :-1], labels=x[:, :-1]).loss)
    if name == "trained":
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        g = m.generate(x[:, :16], max_new_tokens=8, do_sample=False)
        out["generated"] = tok.decode(g[0, 16:])
        out["architecture"] = type(m).__name__
        out["parameters"] = sum(p.numel() for p in m.parameters())
    del m
    torch.cuda.empty_cache()
out["trained_better"] = out["trained_loss"] < out["base_loss"]
print(json.dumps(out))
if not out["trained_better"]:
    sys.exit(2)
"""

MAKE_MODEL = (
    "import json, sys; from filmorph.models import random_model; "
    "a = json.loads(sys.argv[1]); "
    "print(json.dumps(random_model(a['architecture'], a['tok'], a['out'], config=a['shape'], seed=a['seed'], "
    "dtype='bfloat16', device='cuda'), default=str))"
)


def _unpack_tokenizer(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.name == "tokenizer.json.gz":
            with gzip.open(p, "rb") as fi, open(dst / "tokenizer.json", "wb") as fo:
                shutil.copyfileobj(fi, fo)
        elif p.is_file():
            shutil.copyfile(p, dst / p.name)
    return dst


def _tar_logs(wdir: Path, dest: Path) -> None:
    """Every stage log of ``wdir/logs`` into ``dest`` (head and tail of long ones)."""
    with tarfile.open(dest, "w:gz") as tar:
        for log in sorted((wdir / "logs").glob("*.log")):
            text = log.read_bytes()
            if len(text) > 400_000:
                text = text[:100_000] + b"\n[... cut ...]\n" + text[-300_000:]
            tmp = wdir / f"{log.name}.cut"
            tmp.write_bytes(text)
            tar.add(tmp, arcname=log.name)


def _doc_mask_stage(stage: _Runner, family: str, wdir: Path, model: Path, imp: Path) -> dict[str, Any]:
    """Stage ``verify_doc_mask``: ``filmorph.train.megatron.convert verify-doc-mask`` of the import, in the
    family's ``doc_mask_mode``. The Gemma 3 shape's thd masking is refused by the engine: the
    check must reject it too (exit 1 is the expected outcome there)."""
    mode = FAMILIES[family]["doc_mask_mode"]
    return stage(
        "verify_doc_mask",
        [*CONVERT, "verify-doc-mask", "--hf", model, "--candidate", imp]
        + ["--results", wdir / "docmask.json"]
        + (["--mode", mode] if mode else []),
        expect_rc=1 if family == "gemma" else 0,
        timeout=180,
        results=wdir / "docmask.json",
    )


SKIPPABLE = frozenset({"verify_doc_mask", "export_untrained", "train", "evaluate", "negative_control"})


def _base_model(family: str, data: Path, work: Path, budget_s: float):
    """The start of a proof or sweep: a clean work dir, the stage runner, the family's
    tokenizer and shards from ``data``, and the random HF model (stage ``model``) imported to
    Megatron (stage ``import``). Returns ``(wdir, runner, tok, shards, model_dir, import_dir)``."""
    spec = FAMILIES[family]
    py = sys.executable
    wdir = work / family
    shutil.rmtree(wdir, ignore_errors=True)
    wdir.mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"
    )
    paths = [str(SITE), str(REPO / "src")] + [p for p in env.get("PYTHONPATH", "").split(":") if p]
    env["PYTHONPATH"] = ":".join(dict.fromkeys(paths))
    stage = _Runner(wdir / "logs", env, budget_s)
    tok = _unpack_tokenizer(Path(data) / f"tok_{spec['data']}", wdir / "tok")
    shards = [str(Path(data) / "shards" / spec["data"] / chunk_name(k - 1)) for k in (1, 2)]
    model, imp = wdir / "hf", wdir / "import"
    args = {"architecture": spec["architecture"], "tok": str(tok), "out": str(model), "shape": spec["shape"]}
    made = stage("model", [py, "-c", MAKE_MODEL, json.dumps({**args, "seed": 0})], timeout=180)
    if made["ok"]:
        stage(
            "import",
            [*CONVERT, "import", "--hf", model, "--out", imp, "--tokenizer-dir", tok],
            timeout=300,
        )
    return wdir, stage, tok, shards, model, imp


def run_proof(
    family: str,
    data: Path,
    out: Path,
    *,
    work: Path = WORK,
    budget_s: float = 580.0,
    steps: int | None = None,
    micro_batch: int | None = None,
    import_tolerance: float = 5e-2,
    export_tolerance: float = 1e-4,
    model_overrides: Sequence[str] = (),
    fallback_no_doc_mask: bool = True,
    keep: bool = False,
    skip: Sequence[str] = (),
) -> dict[str, Any]:
    """The whole proof for one family (see the module docstring); writes
    ``out/proof_FAMILY.{json,md}`` and ``out/logs_FAMILY.tar.gz``; returns the record.
    ``skip``: optional stages of :data:`SKIPPABLE` left out (to fit a larger model in one call)."""
    spec = FAMILIES[family]
    skip = set(skip)
    unknown = skip - SKIPPABLE
    if unknown:
        raise ValueError(f"cannot skip {sorted(unknown)}; skippable: {sorted(SKIPPABLE)}")
    py = sys.executable
    wdir, stage, tok, shards, model, imp = _base_model(family, data, work, budget_s)
    cvt = [py, "-m", CONVERT_MODULE]
    record: dict[str, Any] = {"family": family, "shape": spec["shape"], "architecture": spec["architecture"]}
    if (imp / "latest_checkpointed_iteration.txt").is_file():
        stage(
            "verify_import",
            [*cvt, "verify", "--hf", model, "--candidate", imp, "--tolerance", str(import_tolerance)],
            timeout=240,
            results=wdir / "import.verify.json",
        )
        if not stage.stages[-1]["ok"] and stage.stages[-1]["result"] is None:
            # it crashed rather than compared: try the checkpoint's own precision (informative only)
            stage(
                "verify_import_bf16",
                [
                    *cvt,
                    "verify",
                    "--hf",
                    model,
                    "--candidate",
                    imp,
                    "--dtype",
                    "bfloat16",
                    "--tolerance",
                    "1.0",
                    "--min-argmax-agreement",
                    "0.9",
                    "--results",
                    wdir / "import.verify_bf16.json",
                ],
                timeout=180,
                results=wdir / "import.verify_bf16.json",
            )
        if "verify_doc_mask" in skip:
            stage.skip("verify_doc_mask", "--skip verify_doc_mask")
        else:
            _doc_mask_stage(stage, family, wdir, model, imp)
        if "export_untrained" in skip:
            stage.skip("export_untrained", "--skip export_untrained")
        else:
            stage(
                "export_untrained",
                [
                    *cvt,
                    "export",
                    "--megatron",
                    imp,
                    "--hf-base",
                    model,
                    "--out",
                    wdir / "export0",
                    "--tokenizer-dir",
                    tok,
                ],
                timeout=240,
            )
        if (wdir / "export0" / "config.json").is_file():
            stage(
                "verify_export",
                [
                    *cvt,
                    "verify",
                    "--hf",
                    model,
                    "--candidate",
                    wdir / "export0",
                    "--tolerance",
                    str(export_tolerance),
                ],
                timeout=180,
                results=wdir / "export0.verify.json",
            )
        shutil.rmtree(wdir / "export0", ignore_errors=True)

        train_cfg = {**PROOF_TRAIN, **spec["train"]}
        if steps:
            train_cfg["max_steps"] = steps
            # short runs save once (a 2.6 B checkpoint with optimizer state takes a while)
            every = steps if steps < 100 else steps // 2
            train_cfg["checkpoint_interval"] = train_cfg["eval_interval"] = every
        if micro_batch:
            train_cfg["micro_batch_size"] = micro_batch
        overrides = [a for o in model_overrides for a in ("--model-override", o)]
        run_dir = wdir / "run"
        for attempt in ("doc_mask", "no_doc_mask"):
            if "train" in skip:
                stage.skip("train", "--skip train (and what needs the trained run)")
                break
            if attempt == "no_doc_mask":
                if not fallback_no_doc_mask or stage.left() < 200:
                    break
                train_cfg["reset_attention_mask"] = False
                run_dir = wdir / "run_no_doc_mask"
            cfg_path = wdir / f"train_{attempt}.json"
            cfg_path.write_text(json.dumps(train_cfg, indent=1), encoding="utf-8")
            trained = stage(
                f"train_{attempt}",
                [
                    py,
                    "-m",
                    "filmorph.train.megatron",
                    "--config",
                    cfg_path,
                    "--model",
                    model,
                    "--pretrained-checkpoint",
                    imp,
                    "--shards",
                    *shards,
                    "--run-dir",
                    run_dir,
                    "--tokenizer-dir",
                    tok,
                    *overrides,
                ],
                timeout=stage.left() - 60,
            )
            if trained["ok"]:
                break
        record["train_config"] = train_cfg
        summary_path = run_dir / "train_summary.json"
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            record["train_summary"] = {
                k: v for k, v in summary.items() if k not in ("shards", "model", "config")
            }
            record["metrics"] = read_metrics(run_dir / "metrics.jsonl")
            last = run_dir / "megatron"
            stage(
                "export_trained",
                [
                    *cvt,
                    "export",
                    "--megatron",
                    last,
                    "--hf-base",
                    model,
                    "--out",
                    wdir / "export_trained",
                    "--tokenizer-dir",
                    tok,
                ],
                timeout=240,
            )
            if (wdir / "export_trained" / "config.json").is_file():
                stage(
                    "reload",
                    [
                        py,
                        "-c",
                        RELOAD,
                        wdir / "export_trained",
                        model,
                        shards[0],
                        str(train_cfg["seq_length"]),
                    ],
                    timeout=180,
                )
        # the trained export scored by the evaluation rule's scorer
        if (wdir / "export_trained" / "config.json").is_file():
            for name in PROOF_BENCHMARKS:
                bench = Path(data) / "bench" / f"{name}.jsonl"
                if "evaluate" in skip:
                    stage.skip(f"evaluate_{name}", "--skip evaluate")
                    continue
                if not bench.is_file() or stage.left() < 45:
                    stage.skip(
                        f"evaluate_{name}", "no benchmark file" if not bench.is_file() else "no time left"
                    )
                    continue
                stage(
                    f"evaluate_{name}",
                    [
                        py,
                        "-m",
                        "filmorph.evaluate",
                        "--model",
                        wdir / "export_trained",
                        "--benchmark",
                        bench,
                        "--scores",
                        wdir / f"eval_{name}.json",
                        "--predictions",
                        wdir / f"eval_{name}.jsonl",
                        "--label",
                        f"family={family}",
                        "--label",
                        "checkpoint=megatron_export",
                        "--no-progress",
                    ],
                    timeout=min(120, stage.left() - 5),
                    results=wdir / f"eval_{name}.json",
                )
        # negative control: the import check must reject a Megatron checkpoint whose weights are
        # not the HF model's (here: the trained iteration, whose weights moved) - the failure the
        # published run never caught (its training never loaded the pretrained weights)
        last_iter = run_dir / "megatron"
        if "negative_control" in skip:
            stage.skip("negative_control", "--skip negative_control")
        elif (last_iter / "latest_checkpointed_iteration.txt").is_file() and stage.left() > 60:
            stage(
                "negative_control",
                [
                    *cvt,
                    "verify",
                    "--hf",
                    model,
                    "--candidate",
                    last_iter,
                    "--tolerance",
                    str(import_tolerance),
                    "--results",
                    wdir / "negative.verify.json",
                ],
                expect_rc=1,
                timeout=stage.left(),
            )
            # ok only when verify ran and rejected the checkpoint (exit 1 for any error is not enough)
            neg_rec, neg = stage.stages[-1], wdir / "negative.verify.json"
            neg_rec["result"] = json.loads(neg.read_text(encoding="utf-8")) if neg.is_file() else None
            neg_rec["ok"] = bool(neg_rec["ok"] and neg_rec["result"] and neg_rec["result"]["passed"] is False)
        else:
            stage.skip("negative_control", f"no trained checkpoint or {stage.left():.0f} s left")
    record["stages"] = stage.stages
    record["seconds"] = round(time.time() - stage.t0, 1)
    record["table"] = proof_table(record)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"proof_{family}.json").write_text(
        json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8"
    )
    (out / f"proof_{family}.md").write_text(record["table"] + "\n", encoding="utf-8")
    _tar_logs(wdir, out / f"logs_{family}.tar.gz")
    if not keep:
        for d in ("run", "run_no_doc_mask", "import", "export_trained", "hf_other"):
            shutil.rmtree(wdir / d, ignore_errors=True)
    print(record["table"], flush=True)
    return record


# ============================================================================ device: the speed sweep
SWEEP_STEPS = 30
# (name, train settings over PROOF_TRAIN, Megatron provider overrides), most telling first (the
# budget may end the list early). Llama 3.2 1B, global batch 16, seq 1024 as in the proof; the
# first variant matches the Automodel proof's headline run (seq 2048, global batch 16: 40.2 %).
DEFAULT_SWEEPS: dict[str, tuple[tuple[str, dict[str, Any], dict[str, Any]], ...]] = {
    "llama": (
        ("seq2048_mb8", {"seq_length": 2048, "micro_batch_size": 8}, {}),
        # Automodel's headline run used global 16 / micro 4 at seq 2048: the fully matched pair
        ("seq2048_mb4", {"seq_length": 2048, "micro_batch_size": 4}, {}),
        ("mb16_te_ce", {"micro_batch_size": 16}, {"cross_entropy_fusion_impl": "te"}),
        ("mb8_te_ce", {"micro_batch_size": 8}, {"cross_entropy_fusion_impl": "te"}),
        ("mb16", {"micro_batch_size": 16}, {}),
        ("mb8", {"micro_batch_size": 8}, {}),
        (
            "mb8_no_doc_mask",
            {"micro_batch_size": 8, "reset_attention_mask": False, "reset_position_ids": False},
            {},
        ),
    ),
    "gemma": (
        (
            "mb8_no_doc_mask",
            {"micro_batch_size": 8, "reset_attention_mask": False, "reset_position_ids": False},
            {},
        ),
    ),
    "gemma2": (("mb2_mask", {"micro_batch_size": 2}, {}),),
}


# The engine comparison (issue: same model, same shards, same global batch and sequence
# length for both GPU engines): (seq_length, micro_batch_size) at global batch 16, Llama 3.2 1B
# shape. ``sweep --matched`` trains these on Megatron-Bridge, ``gpu_proof_automodel prove
# --phases matched`` on Automodel, in the same device session, from the same carried shards.
MATCHED_GLOBAL_BATCH = 16
MATCHED = ((2048, 4), (2048, 8), (1024, 16), (1024, 8))


def matched_variants() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """:data:`MATCHED` as sweep variants (``seq2048_mb4``, ...)."""
    return [
        (
            f"seq{seq}_mb{mb}",
            {"seq_length": seq, "micro_batch_size": mb, "global_batch_size": MATCHED_GLOBAL_BATCH},
            {},
        )
        for seq, mb in MATCHED
    ]


# The study's per-run settings (config/study.yaml): global batch 64, micro batch 1, seq 512
STUDY_BATCH = {"global_batch_size": 64, "micro_batch_size": 1, "seq_length": 512}


def parse_variant(text: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``NAME=JSON`` with JSON ``{"train": {...}, "overrides": {...}}`` (both optional) ->
    ``(name, train, overrides)``."""
    name, sep, body = text.partition("=")
    if not sep or not name:
        raise ValueError(f"a variant is NAME=JSON, not {text!r}")
    spec = json.loads(body) if body.strip() else {}
    if not isinstance(spec, dict) or set(spec) - {"train", "overrides"}:
        raise ValueError(f"variant {name}: JSON object with keys 'train' and/or 'overrides', not {body!r}")
    return name, dict(spec.get("train") or {}), dict(spec.get("overrides") or {})


def sweep(
    family: str,
    data: Path,
    out: Path,
    *,
    variants: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any]]] | None = None,
    steps: int = SWEEP_STEPS,
    work: Path = WORK,
    budget_s: float = 580.0,
    doc_mask_check: bool = True,
    nproc: int = 1,
) -> dict[str, Any]:
    """Speed of training settings on one family's imported model: each variant trains ``steps``
    steps (log every 5, one checkpoint at the end, no evaluation) from the same import on the
    same shards; steady-state tokens/s and MFU (:func:`steady_state`), peak memory, first and
    last loss, largest gradient norm. Variants run until the budget ends. With
    ``doc_mask_check``, ``verify-doc-mask`` of the import runs first. ``nproc`` > 1 trains
    data-parallel on that many GPUs of the host (torchrun through
    :func:`filmorph.train.launch.module_argv`; NCCL multicast off, see
    :data:`filmorph.train.megatron.RUNTIME_ENV`); tokens/s per GPU goes in the table for
    scaling efficiency. Writes ``out/sweep_FAMILY[_gpuN].{json,md}`` and the logs next to them.
    """
    launch = module_argv("filmorph.train.megatron", nproc=nproc)
    variants = list(DEFAULT_SWEEPS[family] if variants is None else variants)
    wdir, stage, tok, shards, model, imp = _base_model(family, data, work, budget_s)
    record: dict[str, Any] = {
        "family": family,
        "architecture": FAMILIES[family]["architecture"],
        "steps": steps,
        "gpus": nproc,
    }
    rows = []
    if (imp / "latest_checkpointed_iteration.txt").is_file():
        if doc_mask_check:
            _doc_mask_stage(stage, family, wdir, model, imp)
        for name, train_over, overrides in variants:
            if stage.left() < 100:
                stage.skip(f"train_{name}", f"{stage.left():.0f} s left")
                continue
            cfg = {
                **PROOF_TRAIN,
                **FAMILIES[family]["train"],
                "max_steps": steps,
                "checkpoint_interval": steps,
                "eval_iters": 0,
                "log_interval": 5,
                "warmup_steps": min(PROOF_TRAIN["warmup_steps"], steps - 1),
                **dict(train_over),
            }
            cfg_path = wdir / f"train_{name}.json"
            cfg_path.write_text(json.dumps(cfg, indent=1), encoding="utf-8")
            run_dir = wdir / f"run_{name}"
            argv = [*launch, "--config", cfg_path, "--model", model]
            argv += ["--pretrained-checkpoint", imp, "--shards", *shards, "--run-dir", run_dir]
            argv += ["--tokenizer-dir", tok]
            for key, value in dict(overrides).items():
                argv += ["--model-override", f"{key}={json.dumps(value)}"]
            rec = stage(f"train_{name}", argv, timeout=stage.left() - 10)
            metrics = read_metrics(run_dir / "metrics.jsonl")
            losses = [m["loss"] for m in metrics if m.get("loss") is not None]
            norms = [m["grad_norm"] for m in metrics if m.get("grad_norm") is not None]
            peaks = [m["peak_memory_gib"] for m in metrics if m.get("peak_memory_gib") is not None]
            summary_path = run_dir / "train_summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
            rows.append(
                {
                    "variant": name,
                    "ok": rec["ok"],
                    "micro_batch_size": cfg["micro_batch_size"],
                    "global_batch_size": cfg["global_batch_size"],
                    "gpus": nproc,
                    "seq_length": cfg["seq_length"],
                    "overrides": dict(overrides),
                    "document_masking": summary.get("document_masking"),
                    **{f"steady_{k}": v for k, v in steady_state(metrics).items()},
                    "peak_memory_gib": max(peaks) if peaks else None,
                    "first_loss": losses[0] if losses else None,
                    "last_loss": losses[-1] if losses else None,
                    "max_grad_norm": max(norms) if norms else None,
                    "seconds": rec["seconds"],
                    "metrics": metrics,
                }
            )
            shutil.rmtree(run_dir, ignore_errors=True)  # ~17 GB of checkpoint per variant
    record["stages"] = stage.stages
    record["variants"] = rows
    record["seconds"] = round(time.time() - stage.t0, 1)
    record["table"] = sweep_table(record)
    out.mkdir(parents=True, exist_ok=True)
    name = family if nproc == 1 else f"{family}_gpu{nproc}"
    (out / f"sweep_{name}.json").write_text(
        json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8"
    )
    (out / f"sweep_{name}.md").write_text(record["table"] + "\n", encoding="utf-8")
    _tar_logs(wdir, out / f"logs_sweep_{name}.tar.gz")
    for d in ("import", "hf"):
        shutil.rmtree(wdir / d, ignore_errors=True)
    print(record["table"], flush=True)
    return record


def _per_gpu(row: Mapping[str, Any]) -> str:
    tps = row.get("steady_tokens_per_s")
    return _fmt(None if tps is None else tps / max(1, int(row.get("gpus") or 1)), ".0f")


def sweep_table(record: Mapping[str, Any]) -> str:
    """The markdown table of a sweep record."""
    rows = [
        f"### megatron engine speed sweep: {record['family']} ({record['architecture']}, "
        f"{record['steps']} steps per variant, {record.get('gpus', 1)} GPU(s))",
        "",
    ]
    for s in record.get("stages", []):
        if s["stage"] == "verify_doc_mask":
            r = s.get("result") or {}
            rows.append(
                f"verify_doc_mask ({r.get('mode')}): passed {r.get('passed')}, packed vs separate "
                f"mean abs diff {_fmt(r.get('packed_mean_abs_diff'))} (unmasked row "
                f"{_fmt(r.get('unmasked_mean_abs_diff'))}), argmax agreement "
                f"{_fmt(r.get('argmax_agreement'), '.2%')}, gradient rel. diff "
                f"{_fmt(r.get('grad_rel_diff'))}; rc {s['rc']} "
                f"({'as expected' if s.get('ok') else 'NOT as expected'})"
            )
            rows.append("")
    rows += [
        "| variant | ok | global/micro batch | seq | overrides | doc masking | steady tokens/s | "
        "per GPU | steady MFU | peak GiB | loss first -> last | max grad norm | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record.get("variants", []):
        over = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "-"
        rows.append(
            f"| {r['variant']} | {'yes' if r['ok'] else '**NO**'} | {r['global_batch_size']}/"
            f"{r['micro_batch_size']} | {r['seq_length']} | {over} | {r.get('document_masking') or '-'} | "
            f"{_fmt(r.get('steady_tokens_per_s'), '.0f')} | {_per_gpu(r)} | "
            f"{_fmt(r.get('steady_mfu'), '.1%')} | "
            f"{_fmt(r.get('peak_memory_gib'), '.1f')} | "
            f"{_fmt(r.get('first_loss'))} -> {_fmt(r.get('last_loss'))} | "
            f"{_fmt(r.get('max_grad_norm'))} | {r['seconds']} |"
        )
    for s in record.get("stages", []):
        if s.get("ok") is False and s.get("tail"):
            rows.append("")
            rows.append(f"{s['stage']} failed (rc {s['rc']}): " + s["tail"].strip().splitlines()[-1][:200])
    return "\n".join(rows)


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def steady_state(metrics: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Median tokens/s and MFU over the logged intervals after the first (which holds the
    warm-up: CUDA context, kernel autotuning, first data loads)."""
    import statistics

    rows = [m for m in metrics if m.get("tokens_per_s") is not None][1:]
    if not rows:
        return {"tokens_per_s": None, "mfu": None}
    mfus = [m["mfu"] for m in rows if m.get("mfu") is not None]
    return {
        "tokens_per_s": statistics.median(m["tokens_per_s"] for m in rows),
        "mfu": statistics.median(mfus) if mfus else None,
    }


def proof_table(record: Mapping[str, Any]) -> str:
    """The markdown table of one family's proof record."""
    rows = [
        f"### megatron engine proof: {record['family']} ({record['architecture']}, random init)",
        "",
        "| stage | ok | seconds | figures |",
        "|---|---|---|---|",
    ]
    for s in record.get("stages", []):
        r = s.get("result") or {}
        figs = ""
        if s["stage"] == "verify_doc_mask" and r.get("check") == "document_masking":
            figs = (
                f"mode {r.get('mode')}: later docs vs one by one {_fmt(r.get('packed_mean_abs_diff'))} "
                f"(control {_fmt(r.get('unmasked_mean_abs_diff'))}), gradient rel. diff "
                f"{_fmt(r.get('grad_rel_diff'), '.1%')}, argmax agreement "
                f"{_fmt(r.get('argmax_agreement'), '.2%')}, passed {r.get('passed')}"
            )
        elif s["stage"].startswith(("verify_", "negative_control")) and r:
            figs = (
                f"max abs diff {_fmt(r.get('max_abs_diff'))}, argmax agreement "
                f"{_fmt(r.get('argmax_agreement'), '.2%')}, passed {r.get('passed')}"
            )
        elif s["stage"] == "import" and r:
            figs = f"{_fmt(r.get('parameters'))} parameters"
        elif s["stage"].startswith("train_") and r:
            figs = (
                f"loss {_fmt(r.get('final_loss'))}, {_fmt(r.get('tokens_per_s'), '.0f')} tokens/s, "
                f"MFU {_fmt(r.get('mfu'), '.1%')}"
            )
        elif s["stage"] == "reload" and r:
            figs = (
                f"loss base {_fmt(r.get('base_loss'))} -> trained {_fmt(r.get('trained_loss'))}, "
                f"{r.get('architecture')}"
            )
        elif s["stage"].startswith("evaluate_") and r.get("overall"):
            o = r["overall"]
            parts = [f"{r.get('n_items')} items"]
            if "mcq" in o:
                parts.append(f"acc {_fmt(o['mcq']['acc'])}, acc_norm {_fmt(o['mcq']['acc_norm'])}")
            if "gen" in o:
                parts.append(
                    f"exact match {_fmt(o['gen']['exact_match'])}, edit sim {_fmt(o['gen']['edit_sim'])}"
                )
            figs = ", ".join(parts)
        elif s.get("skipped"):
            figs = f"skipped: {s['skipped']}"
        elif not s.get("ok") and s.get("tail"):
            figs = "see log: " + s["tail"].strip().splitlines()[-1][:120].replace("|", "/")
        ok = {True: "yes", False: "**NO**", None: "-"}[s.get("ok")]
        rows.append(f"| {s['stage']} | {ok} | {s['seconds']} | {figs} |")
    summ = record.get("train_summary") or {}
    if summ:
        cfg = record.get("train_config", {})
        steady = steady_state(record.get("metrics") or [])
        rows += [
            "",
            "| steps | global/micro batch | seq | first -> last loss | val loss | tokens/s | MFU | "
            "steady tokens/s | steady MFU | peak GiB | doc masking |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {summ.get('steps')} | {cfg.get('global_batch_size')}/{cfg.get('micro_batch_size')} | "
            f"{cfg.get('seq_length')} | {_fmt(summ.get('first_logged_loss'))} -> "
            f"{_fmt(summ.get('final_loss'))} | "
            f"{_fmt(summ.get('final_val_loss'))} | {_fmt(summ.get('tokens_per_s'), '.0f')} | "
            f"{_fmt(summ.get('mfu'), '.1%')} | {_fmt(steady.get('tokens_per_s'), '.0f')} | "
            f"{_fmt(steady.get('mfu'), '.1%')} | {_fmt(summ.get('peak_memory_gib'), '.1f')} | "
            f"{summ.get('document_masking')} |",
        ]
    return "\n".join(rows)


def _with_study_batch(variants: list[Any], on: bool) -> list[Any]:
    """``variants`` with :data:`STUDY_BATCH` under each one's own train settings (when ``on``)."""
    if not on:
        return variants
    return [(name, {**STUDY_BATCH, **dict(train)}, over) for name, train, over in variants]


# ============================================================================ command line
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.gpu_proof_megatron",
        description="GPU proof of the megatron engine (the plan: this module's docstring).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prepare", help="CPU machine: wheels, TE parts, data -> .megatron-carry/")
    pr.add_argument("--carry", type=Path, default=CARRY)
    pr.add_argument("--corpus-mb", type=float, default=8.0)
    pr.add_argument("--no-download", action="store_true", help="use the wheels already in CARRY/dl")
    st = sub.add_parser("stash", help="device: copy a carried call folder to /root/mc")
    st.add_argument("folder", type=Path)
    ins = sub.add_parser("install", help="device: stash, join TE, pip install into /root/site, smoke test")
    ins.add_argument("folder", type=Path)
    ins.add_argument("--out", type=Path, default=None)
    rn = sub.add_parser("run", help="device: the proof for one family")
    rn.add_argument("--family", choices=sorted(FAMILIES), required=True)
    rn.add_argument("--data", type=Path, required=True)
    rn.add_argument("--out", type=Path, required=True)
    rn.add_argument("--work", type=Path, default=WORK)
    rn.add_argument("--budget-s", type=float, default=580.0)
    rn.add_argument("--steps", type=int, default=None)
    rn.add_argument("--micro-batch", type=int, default=None)
    rn.add_argument("--import-tolerance", type=float, default=5e-2)
    rn.add_argument("--export-tolerance", type=float, default=1e-4)
    rn.add_argument("--model-override", action="append", default=[], metavar="KEY=JSON")
    rn.add_argument("--no-fallback", action="store_true", help="no retry without document masking")
    rn.add_argument("--keep", action="store_true", help="keep the checkpoints in --work")
    rn.add_argument(
        "--skip", action="append", default=[], choices=sorted(SKIPPABLE), help="leave out an optional stage"
    )
    sw = sub.add_parser("sweep", help="device: training speed of settings on one family's import")
    sw.add_argument("--family", choices=sorted(FAMILIES), required=True)
    sw.add_argument("--data", type=Path, required=True)
    sw.add_argument("--out", type=Path, required=True)
    sw.add_argument("--work", type=Path, default=WORK)
    sw.add_argument("--budget-s", type=float, default=580.0)
    sw.add_argument("--steps", type=int, default=SWEEP_STEPS)
    sw.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="NAME=JSON",
        help='e.g. mb16=\'{"train": {"micro_batch_size": 16}, "overrides": {...}}\' '
        "(default: DEFAULT_SWEEPS)",
    )
    sw.add_argument(
        "--matched",
        action="store_true",
        help="the engine-comparison settings (MATCHED: seq/micro batch at global batch 16) "
        "instead of DEFAULT_SWEEPS",
    )
    sw.add_argument("--no-doc-mask-check", action="store_true")
    sw.add_argument(
        "--nproc", type=int, default=1, help="GPUs of this host to train on, data parallel (torchrun)"
    )
    sw.add_argument(
        "--study-batch",
        action="store_true",
        help="each variant at the study's global batch 64, micro batch 1, seq 512 (unless it sets them)",
    )
    args = p.parse_args(argv)
    if args.command == "sweep":
        rec = sweep(
            args.family,
            args.data,
            args.out,
            variants=_with_study_batch(
                [parse_variant(v) for v in args.variant]
                if args.variant is not None
                else matched_variants()
                if args.matched
                else list(DEFAULT_SWEEPS[args.family]),
                args.study_batch,
            ),
            nproc=args.nproc,
            steps=args.steps,
            work=args.work,
            budget_s=args.budget_s,
            doc_mask_check=not args.no_doc_mask_check,
        )
        return 0 if rec["variants"] and all(r["ok"] for r in rec["variants"]) else 1
    if args.command == "prepare":
        prepare(args.carry, corpus_mb=args.corpus_mb, download=not args.no_download)
    elif args.command == "stash":
        stash(args.folder)
    elif args.command == "install":
        install(args.folder, out=args.out)
    else:
        rec = run_proof(
            args.family,
            args.data,
            args.out,
            work=args.work,
            budget_s=args.budget_s,
            steps=args.steps,
            micro_batch=args.micro_batch,
            import_tolerance=args.import_tolerance,
            export_tolerance=args.export_tolerance,
            model_overrides=args.model_override,
            fallback_no_doc_mask=not args.no_fallback,
            keep=args.keep,
            skip=args.skip,
        )
        required = ("model", "import", "verify_import")
        required += tuple(
            st
            for st, needs in (
                ("verify_doc_mask", "verify_doc_mask"),
                ("verify_export", "export_untrained"),
                ("export_trained", "train"),
                ("reload", "train"),
            )
            if needs not in args.skip
        )
        ok = {s["stage"]: s.get("ok") for s in rec["stages"]}
        trained = "train" in args.skip or any(
            s["stage"].startswith("train_") and s.get("ok") for s in rec["stages"]
        )
        return 0 if trained and all(ok.get(k) for k in required) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
