"""Style gates CI enforces: ruff on the Python, snakefmt on the rules, snakemake --lint."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd):
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def test_ruff():
    _run(str(BIN / "ruff"), "check", "src", "tests", "workflow_scripts", "envs", "tools")


def test_snakefmt():
    _run(str(BIN / "snakefmt"), "--check", "Snakefile", "rules")


def test_snakemake_lint():
    out = _run(sys.executable, "-m", "snakemake", "--lint")
    assert "Lints for" not in out
