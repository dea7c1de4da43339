"""The library versions the ``megatron`` engine was proven with, and the start-up check against
what is installed.

The engine (import, verify, train, export) ran on the GPU with the versions in :data:`TESTED`
(pip wheels; README, "GPU proofs"). Megatron-Bridge changes its API between minor releases (the
NeMo 25.09 container carries 0.1.0rc3, a year older than the engine; 0.7.0 removes the unfused
attention path Gemma 2 trains on), so :func:`check_megatron_versions` refuses a Megatron-Bridge
outside the tested minor series with an error naming the installed and the tested version, and
warns on a different patch release of that series or a different megatron-core / Transformer
Engine. ``train.megatron.allow_untested_versions: true`` (passed to the job as the environment
variable :data:`ALLOW_ENV`) turns the refusal into a warning.

Only :mod:`importlib.metadata` is read here: no engine library is imported.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TextIO

__all__ = [
    "ALLOW_ENV",
    "TESTED",
    "UntestedVersionError",
    "check_megatron_versions",
    "ensure_megatron_versions",
    "installed_version",
]

# distribution -> the version the engine was proven with (H100, November 2026; README)
TESTED: dict[str, str] = {
    "megatron-bridge": "0.6.2",
    "megatron-core": "0.19.2",
    "transformer-engine": "2.20.2",
}
# the distribution whose untested version is refused (the others are warned about)
REFUSED = "megatron-bridge"
# Transformer Engine installs under several distribution names (pip meta package, the CUDA
# 13 core wheel, a source build in NVIDIA's containers): the first one found counts
ALIASES: dict[str, tuple[str, ...]] = {
    "transformer-engine": ("transformer-engine", "transformer_engine", "transformer-engine-cu13",
                           "transformer-engine-cu12"),
}
ALLOW_ENV = "FILMORPH_ALLOW_UNTESTED_VERSIONS"

VersionReader = Callable[[str], "str | None"]


class UntestedVersionError(RuntimeError):
    """The installed Megatron-Bridge is not one the engine was tested with."""


def installed_version(dist: str) -> str | None:
    """The installed version of distribution `dist` (or one of its aliases); None if absent."""
    for name in ALIASES.get(dist, (dist,)):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def _release(v: str) -> tuple[int, ...]:
    """The numeric release of a version string: "2.16.0+71bbefb" -> (2, 16, 0), "0.1.0rc3" ->
    (0, 1, 0); a pre-release is marked by a negative fourth field so it never equals a release."""
    m = re.match(r"^\s*v?(\d+(?:\.\d+)*)(.*)$", v)
    if not m:
        raise ValueError(f"unreadable version {v!r}")
    nums = tuple(int(x) for x in m.group(1).split("."))
    nums = (nums + (0, 0, 0))[:3]
    rest = m.group(2).split("+", 1)[0].strip(".")
    return nums + ((-1,) if rest else ())


def _env_allows(environ: Mapping[str, str]) -> bool:
    return str(environ.get(ALLOW_ENV, "")).strip().lower() in ("1", "true", "yes")


def check_megatron_versions(
    allow_untested: bool | None = None,
    read_version: VersionReader | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Compare the installed megatron-bridge / megatron-core / transformer-engine with
    :data:`TESTED`; return the warnings (one line each, empty when all match).

    Megatron-Bridge absent, or outside the tested minor series (another ``major.minor``, or a
    pre-release of it), raises :class:`UntestedVersionError` naming both versions, unless
    `allow_untested` (default: the environment variable :data:`ALLOW_ENV`, which the workflow
    sets from ``train.megatron.allow_untested_versions``), which makes it a warning.
    `read_version` (default :func:`installed_version`) maps a distribution to its version."""
    if allow_untested is None:
        allow_untested = _env_allows(os.environ if environ is None else environ)
    read_version = read_version or installed_version
    warnings: list[str] = []
    for dist, tested in TESTED.items():
        found = read_version(dist)
        if found is not None and _release(found) == _release(tested):
            continue
        if dist != REFUSED:
            warnings.append(f"{dist} {found or 'not installed'}: the megatron engine was tested "
                            f"with {tested}")
            continue
        if found is not None and _release(found)[:2] == _release(tested)[:2] \
                and len(_release(found)) == 3:
            warnings.append(f"{dist} {found}: the megatron engine was tested with {tested} "
                            f"(same {'.'.join(map(str, _release(tested)[:2]))} series)")
            continue
        msg = (f"{dist} {found or 'is not installed'}"
               f"{'' if found is None else ' is installed'}: the megatron engine was tested "
               f"with {dist} {tested} only (an untested Megatron-Bridge changes the API the "
               f"engine calls). Install {dist}=={tested} (envs/gpu/megatron.yaml), use the "
               f"container named in config/study.yaml, or set "
               f"train.megatron.allow_untested_versions: true to run anyway")
        if not allow_untested:
            raise UntestedVersionError(msg)
        warnings.append(msg + " (allowed by train.megatron.allow_untested_versions)")
    return warnings


_CHECKED: list[str] | None = None


def ensure_megatron_versions(log: TextIO | None = None) -> list[str]:
    """:func:`check_megatron_versions` once per process (the engine's entry points all call it
    at start-up): raise for an untested Megatron-Bridge, print each warning to `log` (default
    stderr, i.e. the job's log) the first time; return the warnings."""
    global _CHECKED
    if _CHECKED is None:
        notes = check_megatron_versions()
        for note in notes:
            print(f"warning: {note}", file=log or sys.stderr, flush=True)
        _CHECKED = notes
    return _CHECKED
