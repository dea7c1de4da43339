"""Conda env files: parse, pin every package, and match what this test run has installed. The
GPU envs (envs/gpu/) are made on the cluster: here they are only parsed and checked for pins,
and the workflow's rules must name them."""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))  # installed here (Makefile setup, CI)
GPU_ENVS = sorted((REPO / "envs" / "gpu").glob("*.yaml"))  # made on a GPU cluster


def _deps(path):
    env = yaml.safe_load(path.read_text())
    conda, pip = [], []
    for d in env["dependencies"]:
        if isinstance(d, dict):
            pip.extend(d["pip"])
        else:
            conda.append(d)
    return env, conda, pip


def test_env_files_exist():
    assert {p.name for p in ENVS} >= {"data.yaml", "workflow.yaml"}
    assert {p.name for p in GPU_ENVS} == {"automodel.yaml", "megatron.yaml"}


@pytest.mark.parametrize("path", ENVS + GPU_ENVS, ids=lambda p: str(p.relative_to(REPO / "envs")))
def test_every_package_pinned(path):
    env, conda, pip = _deps(path)
    assert env["channels"][0] == "conda-forge"
    for d in conda:
        assert re.fullmatch(r"[\w.-]+ =\d[\w.]*", d), f"{path.name}: unpinned conda dep {d!r}"
    names = []
    for d in pip:
        assert re.fullmatch(r"[\w.-]+==\d[\w.+]*", d), f"{path.name}: unpinned pip dep {d!r}"
        names.append(re.sub(r"[-_.]+", "-", d.split("==")[0]).lower())
    assert len(names) == len(set(names)), f"{path.name}: a package listed twice"


@pytest.mark.parametrize("path", GPU_ENVS, ids=lambda p: p.name)
def test_gpu_envs_are_python_312_with_cuda_torch(path):
    """The versions seen working on the H100: Python 3.12 (Megatron-Bridge needs it), torch
    2.11.0 (its PyPI wheel is the CUDA 13 build), the engine's own library."""
    _, conda, pip = _deps(path)
    assert "python =3.12" in conda and "torch==2.11.0" in pip
    own = {"automodel.yaml": "nemo_automodel==0.7.0", "megatron.yaml": "megatron-bridge==0.6.2"}
    assert own[path.name] in pip


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_installed_versions_are_the_pins(path):
    """CI installs exactly these pip lists (Makefile setup), so tests run what conda runs."""
    _, _, pip = _deps(path)
    for d in pip:
        name, pinned = d.split("==")
        try:
            got = version(name)
        except PackageNotFoundError:
            pytest.fail(f"{name} from {path.name} is not installed")
        assert got.split("+")[0] == pinned, f"{name}: installed {got}, pinned {pinned}"


def test_nodeps_list_is_pinned_and_installed():
    path = REPO / "envs" / "nodeps.txt"
    reqs = [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert reqs
    for d in reqs:
        assert re.fullmatch(r"[\w.-]+==\d[\w.+]*", d), d
        name, pinned = d.split("==")
        assert version(name) == pinned


def _rules(tmp_path, train):
    """{rule name: rule} of the workflow parsed with the default config and ``train``."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[REPO / "config" / "config.yaml"],
                                           config={"train": train}),
            snakefile=REPO / "Snakefile",
            workdir=tmp_path,
        )
        return {r.name: r for r in workflow._workflow.rules}


ENGINE_RULES = {
    "hf": {"train_cpt": "data.yaml"},
    "automodel": {"train_cpt": "gpu/automodel.yaml"},
    "megatron": {r: "gpu/megatron.yaml" for r in
                 ("import_checkpoint", "verify_import", "train_cpt_megatron", "export_checkpoint")},
}


def _conda_env(rule, family="gemma"):
    """A rule's conda env; train_cpt names it by a function of the family wildcard."""
    env = rule.conda_env
    return env(SimpleNamespace(family=family)) if callable(env) else env


@pytest.mark.parametrize("engine", sorted(ENGINE_RULES))
def test_each_engine_rule_names_its_env(engine, tmp_path):
    """Every rule of an engine names that engine's env file (relative to rules/), and it exists;
    with a container the megatron rules run in it, with no conda env."""
    rules = _rules(tmp_path, {"engine": engine})
    for name, env in ENGINE_RULES[engine].items():
        assert _conda_env(rules[name]) == f"../envs/{env}", name
        assert (REPO / "rules" / _conda_env(rules[name])).resolve().is_file(), name
        assert rules[name].container_img is None, name
    assert not {r for e, rs in ENGINE_RULES.items() if e != engine for r in rs
                if r != "train_cpt" or engine == "megatron"} & set(rules)
    if engine == "megatron":
        image = "docker://nvcr.io/nvidia/nemo:26.08.01"
        rules = _rules(tmp_path, {"engine": engine, "megatron": {"container": image}})
        for name in ENGINE_RULES[engine]:
            assert rules[name].conda_env is None and rules[name].container_img == image, name


def test_train_cpt_takes_each_familys_engine_env_and_settings(tmp_path):
    """families.<name>.engine: one train_cpt rule, its conda env and the engine in the train
    settings it passes chosen per family (gemma on automodel, llama on train.engine hf)."""
    import json

    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(
                configfiles=[REPO / "config" / "config.yaml"],
                config={"families": {"gemma": {"engine": "automodel"}}}),
            snakefile=REPO / "Snakefile",
            workdir=tmp_path,
        )
        wf = workflow._workflow
        rules = {r.name: r for r in wf.rules}
        assert "train_cpt_megatron" not in rules and "import_checkpoint" not in rules
        train = rules["train_cpt"]
        assert _conda_env(train, "gemma") == "../envs/gpu/automodel.yaml"
        assert _conda_env(train, "llama") == "../envs/data.yaml"
        settings = wf.globals["get_train_config"]
        for family, engine in (("gemma", "automodel"), ("llama", "hf")):
            assert json.loads(settings(SimpleNamespace(family=family)))["engine"] == engine
            assert wf.globals["get_family_engine"](SimpleNamespace(family=family)) == engine
        assert wf.config["families"]["gemma"]["tokenizer"]["source"] == "gemma3_gguf_package"
