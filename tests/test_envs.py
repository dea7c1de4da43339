"""Conda env files: parse, pin every package, and match what this test run has installed."""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml

ENVS = sorted((Path(__file__).resolve().parents[1] / "envs").glob("*.yaml"))


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


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_every_package_pinned(path):
    env, conda, pip = _deps(path)
    assert env["channels"][0] == "conda-forge"
    for d in conda:
        assert re.fullmatch(r"[\w.-]+ =\d[\w.]*", d), f"{path.name}: unpinned conda dep {d!r}"
    for d in pip:
        assert re.fullmatch(r"[\w.-]+==\d[\w.+]*", d), f"{path.name}: unpinned pip dep {d!r}"


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
    path = Path(__file__).resolve().parents[1] / "envs" / "nodeps.txt"
    reqs = [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert reqs
    for d in reqs:
        assert re.fullmatch(r"[\w.-]+==\d[\w.+]*", d), d
        name, pinned = d.split("==")
        assert version(name) == pinned
