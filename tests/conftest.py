"""Shared fixtures: the two real tokenizer families, prepared once per test session, and one
finished run of the whole workflow (trimmed config) that several test files read."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def snakemake_env() -> dict[str, str]:
    """This interpreter's bin dir first on PATH (jobs run with the same Python)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def snakemake(workdir, *args, config="config/config.yaml", check=True, timeout=1500):
    """Run Snakemake on this repo's workflow in `workdir`; fail with its output's tail."""
    cmd = [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(REPO / config), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(), timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n"
                             f"{res.stderr[-6000:]}")
    return res


TEST_CONFIG = REPO / "config" / "test.yaml"

# Session fixtures that take minutes to build. `make test` runs the suite on two pytest-xdist
# workers (`-n 2 --dist loadgroup`); every test that uses one of them is put in that fixture's
# group so that one worker builds it once, instead of both workers building it.
SHARED_FIXTURES = ("local_run", "real_model_dirs")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        shared = [f for f in SHARED_FIXTURES if f in getattr(item, "fixturenames", ())]
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))


def trimmed_config(path: Path) -> Path:
    """A copy of the committed test config (config/test.yaml: config.yaml with fewer benchmark
    files and no reference models, so the whole DAG fits in CI) at ``path``."""
    shutil.copyfile(TEST_CONFIG, path)
    return path


@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    """A workdir where `snakemake --profile profiles/local all` finished on the trimmed config
    (`ci_config.yaml` inside it), built once per session (about 5 minutes on 2 cores). Tests
    may rerun jobs in it but must leave every output as the config defines it."""
    work = tmp_path_factory.mktemp("run")
    config = trimmed_config(work / "ci_config.yaml")
    snakemake(work, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", "all",
              config=str(config))
    return work

FAMILY_SPECS = {
    "gemma": {"source": "gemma3_gguf_package"},
    "llama": {"source": "llama3_tiktoken_package"},
}


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory):
    """{family: dir} written by `filmorph.tokenize.prepare` (tokenizer + expansion table)."""
    from filmorph.tokenize import prepare

    root = tmp_path_factory.mktemp("tokenizers")
    out = {}
    for name, spec in FAMILY_SPECS.items():
        prepare(name, spec, root / name)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def families(family_dirs):
    """{family: filmorph.tokenize.PreparedTokenizer} loaded from the prepared dirs."""
    from filmorph.tokenize import PreparedTokenizer

    return {name: PreparedTokenizer(d) for name, d in family_dirs.items()}


@pytest.fixture(scope="session")
def real_model_dirs(tmp_path_factory):
    """{name: HF checkpoint dir} for both packaged GGUF base models (``gemma3-270m``,
    ``smollm2-135m``), written once per session by `filmorph.models.materialize_gguf` (float32;
    about 50 s + 25 s)."""
    from filmorph.models import GGUF_MODELS, materialize_gguf

    root = tmp_path_factory.mktemp("real_models")
    out = {}
    for name in sorted(GGUF_MODELS):
        materialize_gguf(name, root / name)
        out[name] = root / name
    return out
