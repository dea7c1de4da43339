"""Shared fixtures: the two real tokenizer families, prepared once per test session."""

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
    """{family: filmorph.tokenize.Family} loaded from the prepared dirs."""
    from filmorph.tokenize import Family

    return {name: Family(d) for name, d in family_dirs.items()}


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
