"""An offline wheelhouse for the Mamba kernels (``mamba-ssm``, ``causal-conv1d``).

Login nodes have internet but no GPU; compute nodes have GPUs (and nvcc) but no internet. So:

1. :func:`download_sources` (login node) fetches the pinned sdists with
   ``pip download --no-deps --no-binary :all:`` (``--no-build-isolation`` and the packages'
   ``*_SKIP_CUDA_BUILD=TRUE``: pip reads their metadata by running ``setup.py``, which otherwise
   wants nvcc and torch in an isolated env) and writes ``sources.json`` (file, version, sha256).
2. :func:`build_wheels` (compute node) checks those sha256s, unpacks each sdist and builds it
   with ``pip wheel --no-build-isolation --no-deps --no-index``, ``TORCH_CUDA_ARCH_LIST`` from
   the config, ``MAMBA_FORCE_BUILD`` / ``CAUSAL_CONV1D_FORCE_BUILD`` (never look for a prebuilt
   wheel on GitHub) and ``MAX_JOBS``, into a wheelhouse with ``wheels.json`` (the sdists' sha256s,
   arch list, torch/CUDA/Python it was built for, each wheel's sha256, size and build seconds).
   Its environment must hold torch (CUDA build), setuptools, wheel, packaging and ninja (no
   build isolation).

   Both sdists' ``setup.py`` hard-code a ``-gencode`` list (with CUDA 13: sm_75, 80, 87, 90,
   100, 103, 110, 120, 121), and torch's extension builder ignores ``TORCH_CUDA_ARCH_LIST`` as
   soon as an extension names any ``-gencode``: built as shipped, every kernel is compiled for
   nine GPUs. :func:`restrict_gencode` takes that list out of the unpacked ``setup.py`` (and
   refuses a ``setup.py`` whose arch flags it cannot recognise), so the config's arch list is
   the one compiled; ``wheels.json`` records the patch.

   A build killed part-way (a job's time limit) keeps each finished wheel in
   ``<wheelhouse>.partial/``; the next attempt reuses those whose sdist sha256 and arch list
   match and builds only the rest, so a long build can span several jobs.
3. :func:`install_wheels` (the fine-tune job) installs them with
   ``pip install --no-index --no-deps --find-links WHEELHOUSE --target DIR`` into a directory
   put first on the ranks' ``PYTHONPATH``; nothing is reinstalled when DIR already holds that
   wheelhouse's wheels.

The workflow keys the source dir by the versions and the wheelhouse by versions + arch list
(:func:`source_key`, :func:`wheelhouse_key`), so a current wheelhouse is never rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filmorph.io import atomic_path, read_json, write_json_atomic
from filmorph.provenance import sha256_file

# build order: causal-conv1d first (mamba-ssm uses it at run time, not at build time)
PACKAGES = ("causal-conv1d", "mamba-ssm")
SOURCES_STAMP = "sources.json"
WHEELS_STAMP = "wheels.json"
INSTALL_STAMP = ".filmorph_kernels.json"
_ENV_PREFIX = {"mamba-ssm": "MAMBA", "causal-conv1d": "CAUSAL_CONV1D"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _versions(versions: Mapping[str, str]) -> dict[str, str]:
    out = {_norm(k): str(v) for k, v in versions.items()}
    unknown = sorted(set(out) - set(PACKAGES))
    if unknown or set(out) != set(PACKAGES):
        raise ValueError(f"kernel versions must name exactly {PACKAGES}, not {sorted(out)}")
    for name, v in out.items():
        if not re.fullmatch(r"[0-9][0-9A-Za-z.+]*", v):
            raise ValueError(f"{name}: not a pinned version: {v!r}")
    return out


def source_key(versions: Mapping[str, str]) -> str:
    """``causal-conv1d-1.7.0_mamba-ssm-2.3.2.post1``: names the source dir of these versions."""
    v = _versions(versions)
    return "_".join(f"{p}-{v[p]}" for p in PACKAGES)


def arch_key(arch_list: str) -> str:
    """``"8.0;9.0+PTX"`` -> ``sm80-sm90ptx`` (the TORCH_CUDA_ARCH_LIST, as a path component)."""
    archs = [a for a in re.split(r"[;\s,]+", arch_list.strip()) if a]
    if not archs:
        raise ValueError("empty CUDA arch list")
    out = []
    for a in archs:
        m = re.fullmatch(r"(\d+)\.(\d+)([a-z]?)(\+PTX)?", a)
        if not m:
            raise ValueError(f"bad CUDA arch {a!r} (expected e.g. 9.0, 9.0a or 9.0+PTX)")
        out.append(f"sm{m.group(1)}{m.group(2)}{m.group(3)}" + ("ptx" if m.group(4) else ""))
    return "-".join(out)


def wheelhouse_key(versions: Mapping[str, str], arch_list: str) -> str:
    return f"{source_key(versions)}_{arch_key(arch_list)}"


def _pip(python: str | None) -> list[str]:
    return [python or sys.executable, "-m", "pip"]


def download_command(
    name: str, version: str, dest: str | Path, *, python: str | None = None, index_args: Sequence[str] = ()
) -> list[str]:
    return [
        *_pip(python),
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--no-build-isolation",
        *index_args,
        "-d",
        str(dest),
        f"{name}=={version}",
    ]


def download_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """pip reads an sdist's metadata by running its setup.py: skip the CUDA parts there."""
    env = dict(os.environ if environ is None else environ)
    for prefix in _ENV_PREFIX.values():
        env[f"{prefix}_SKIP_CUDA_BUILD"] = "TRUE"
    return env


def download_sources(
    versions: Mapping[str, str],
    out_dir: str | Path,
    *,
    python: str | None = None,
    index_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Download the sdists of ``versions`` into ``out_dir`` (atomically) with ``sources.json``."""
    v = _versions(versions)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        files = {}
        for name in PACKAGES:
            before = set(tmp.iterdir())
            subprocess.run(
                download_command(name, v[name], tmp, python=python, index_args=index_args),
                check=True,
                env=download_env(),
            )
            new = sorted(set(tmp.iterdir()) - before)
            if len(new) != 1 or not new[0].name.endswith((".tar.gz", ".zip")):
                raise RuntimeError(
                    f"pip download of {name}=={v[name]} gave {[p.name for p in new]}, not one sdist"
                )
            files[name] = {"file": new[0].name, "version": v[name], "sha256": sha256_file(new[0])}
        stamp = {"packages": files, "key": source_key(v)}
        write_json_atomic(tmp / SOURCES_STAMP, stamp)
    return stamp


def check_sources(src_dir: str | Path) -> dict[str, Any]:
    """``sources.json`` of ``src_dir``, after checking every sdist's sha256 against it."""
    src_dir = Path(src_dir)
    stamp = read_json(src_dir / SOURCES_STAMP)
    for info in stamp["packages"].values():
        got = sha256_file(src_dir / info["file"])
        if got != info["sha256"]:
            raise ValueError(f"{src_dir / info['file']}: sha256 {got} != {info['sha256']} in {SOURCES_STAMP}")
    return stamp


def build_env(
    arch_list: str, *, max_jobs: int = 8, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The build's environment: the arch list, forced local CUDA builds, parallel jobs."""
    arch_key(arch_list)  # validates
    env = dict(os.environ if environ is None else environ)
    env["TORCH_CUDA_ARCH_LIST"] = arch_list
    env["MAX_JOBS"] = str(int(max_jobs))
    for prefix in _ENV_PREFIX.values():
        env[f"{prefix}_FORCE_BUILD"] = "TRUE"
        env[f"{prefix}_SKIP_CUDA_BUILD"] = "FALSE"
    return env


def build_command(sdist: str | Path, wheel_dir: str | Path, *, python: str | None = None) -> list[str]:
    """``pip wheel`` of one sdist (a ``.tar.gz`` or an unpacked source dir), offline."""
    return [
        *_pip(python),
        "wheel",
        "--no-build-isolation",
        "--no-deps",
        "--no-index",
        "-w",
        str(wheel_dir),
        str(sdist),
    ]


# one hard-coded arch in a setup.py: `cc_flag.append("-gencode")` then `cc_flag.append("arch=…")`
_GENCODE_PAIR = re.compile(
    r'cc_flag\.append\(\s*"-gencode"\s*\)[ \t]*\n([ \t]*)cc_flag\.append\(\s*"arch=compute_\w+,code=\w+"\s*\)'
)
_ARCH_FLAG = re.compile(r"arch=compute_|-gencode|--generate-code|-arch=sm_")


def restrict_gencode(setup_py: str, *, origin: str = "setup.py") -> tuple[str, int]:
    """``setup_py`` with its hard-coded ``-gencode`` pairs replaced by ``pass``, and how many.

    Afterwards torch's extension builder adds the flags of ``TORCH_CUDA_ARCH_LIST`` (it adds
    none while an extension names its own). A ``setup.py`` that still names an arch flag after
    the patch is refused: building it would silently ignore the configured arch list.
    """
    patched, n = _GENCODE_PAIR.subn(
        lambda m: f"pass  # filmorph: arch list from TORCH_CUDA_ARCH_LIST\n{m.group(1)}pass", setup_py
    )
    left = [
        f"{origin}:{i}: {line.strip()}"
        for i, line in enumerate(patched.splitlines(), 1)
        if _ARCH_FLAG.search(line) and not line.lstrip().startswith("#")
    ]
    if left:
        raise ValueError(
            "cannot restrict the CUDA arch list: arch flags left after removing the hard-coded "
            "-gencode pairs:\n  " + "\n  ".join(left)
        )
    return patched, n


def unpack_sdist(sdist: str | Path, dest: str | Path) -> Path:
    """Unpack a ``.tar.gz`` sdist into ``dest`` and return its one top-level source dir."""
    import tarfile

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist, "r:gz") as tar:
        tar.extractall(dest, filter="data")
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1 or not (tops[0] / "setup.py").is_file():
        found = [p.name for p in tops]
        raise RuntimeError(f"{sdist}: expected one top-level dir with a setup.py, got {found}")
    return tops[0]


def _torch_facts(python: str | None) -> dict[str, Any]:
    code = (
        "import json, sys, torch; print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda,"
        " 'python': '%d.%d' % sys.version_info[:2]}))"
    )
    out = subprocess.run([python or sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


PARTIAL_SUFFIX = ".partial"
PARTIAL_STAMP = "built.json"


def _kept_wheel_ok(partial: Path, rec: Mapping[str, Any], sdist_sha256: str, arch_list: str) -> bool:
    """A wheel kept from an earlier attempt is reused only if it is whole and was built from
    the same sdist for the same arch list."""
    wheel = partial / str(rec.get("file", ""))
    return (
        rec.get("sdist_sha256") == sdist_sha256
        and rec.get("arch_list") == arch_list
        and wheel.is_file()
        and sha256_file(wheel) == rec.get("sha256")
    )


def build_wheels(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    arch_list: str,
    max_jobs: int = 8,
    python: str | None = None,
) -> dict[str, Any]:
    """Build a wheel of every sdist in ``src_dir`` (checked against ``sources.json``) into
    ``out_dir`` (atomically) with ``wheels.json``.

    Finished wheels wait in ``<out_dir>.partial/`` (with ``built.json``) until all are built,
    so an attempt killed part-way resumes with the packages it had not finished.
    """
    import shutil
    import tempfile
    import time

    sources = check_sources(src_dir)
    env = build_env(arch_list, max_jobs=max_jobs)
    out_dir = Path(out_dir)
    partial = out_dir.with_name(out_dir.name + PARTIAL_SUFFIX)
    partial.mkdir(parents=True, exist_ok=True)
    built_path = partial / PARTIAL_STAMP
    built: dict[str, Any] = read_json(built_path) if built_path.is_file() else {}
    for name in PACKAGES:
        info = sources["packages"][name]
        rec = built.get(name, {})
        if _kept_wheel_ok(partial, rec, info["sha256"], arch_list):
            print(f"{name}: {rec['file']} kept from an earlier attempt", file=sys.stderr, flush=True)
            continue
        t0 = time.time()
        with tempfile.TemporaryDirectory(prefix=f".build-{name}-", dir=partial) as work:
            tree = unpack_sdist(Path(src_dir) / info["file"], Path(work) / "src")
            setup_py = tree / "setup.py"
            patched, removed = restrict_gencode(setup_py.read_text(encoding="utf-8"), origin=str(setup_py))
            setup_py.write_text(patched, encoding="utf-8")
            print(
                f"{name}: building {info['file']} for TORCH_CUDA_ARCH_LIST={arch_list} "
                f"({removed} hard-coded -gencode pairs removed), MAX_JOBS={max_jobs}",
                file=sys.stderr,
                flush=True,
            )
            wheel_dir = Path(work) / "wheel"
            subprocess.run(build_command(tree, wheel_dir, python=python), check=True, env=env)
            new = sorted(wheel_dir.glob("*.whl"))
            if len(new) != 1:
                raise RuntimeError(f"building {info['file']} gave {[p.name for p in new]}, not one wheel")
            wheel = partial / new[0].name
            with atomic_path(wheel) as tmp:
                shutil.move(new[0], tmp)
        built[name] = {
            "file": wheel.name,
            "version": info["version"],
            "sha256": sha256_file(wheel),
            "sdist_sha256": info["sha256"],
            "arch_list": arch_list,
            "gencode_pairs_removed": removed,
            "patched_setup_sha256": hashlib.sha256(patched.encode()).hexdigest(),
            "bytes": wheel.stat().st_size,
            "seconds": round(time.time() - t0, 1),
        }
        write_json_atomic(built_path, built)
        print(
            f"{name}: {wheel.name}, {wheel.stat().st_size / 2**20:.1f} MiB in {built[name]['seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name in PACKAGES:
            shutil.copy2(partial / built[name]["file"], tmp / built[name]["file"])
        stamp = {
            "packages": {n: {k: v for k, v in built[n].items() if k != "arch_list"} for n in PACKAGES},
            "arch_list": arch_list,
            "built_with": _torch_facts(python),
            "key": f"{sources['key']}_{arch_key(arch_list)}",
        }
        write_json_atomic(tmp / WHEELS_STAMP, stamp)
    shutil.rmtree(partial, ignore_errors=True)
    return stamp


def install_command(
    wheelhouse: str | Path, target: str | Path, requirements: Sequence[str], *, python: str | None = None
) -> list[str]:
    return [
        *_pip(python),
        "install",
        "--no-index",
        "--no-deps",
        "--find-links",
        str(wheelhouse),
        "--target",
        str(target),
        *requirements,
    ]


def install_wheels(wheelhouse: str | Path, target: str | Path, *, python: str | None = None) -> Path:
    """Install the wheelhouse's wheels (the pinned versions in its ``wheels.json``, checked by
    sha256) into ``target`` and return it; nothing happens when ``target`` already holds them."""
    wheelhouse, target = Path(wheelhouse), Path(target)
    stamp = read_json(wheelhouse / WHEELS_STAMP)
    for info in stamp["packages"].values():
        got = sha256_file(wheelhouse / info["file"])
        if got != info["sha256"]:
            raise ValueError(
                f"{wheelhouse / info['file']}: sha256 {got} != {info['sha256']} in {WHEELS_STAMP}"
            )
    want = {"wheels": {n: i["sha256"] for n, i in sorted(stamp["packages"].items())}}
    if (target / INSTALL_STAMP).is_file() and read_json(target / INSTALL_STAMP) == want:
        return target
    reqs = [f"{name}=={info['version']}" for name, info in sorted(stamp["packages"].items())]
    with atomic_path(target) as tmp:
        subprocess.run(install_command(wheelhouse, tmp, reqs, python=python), check=True)
        write_json_atomic(tmp / INSTALL_STAMP, want)
    return target
