"""Checkpoint conversion for the ``megatron`` engine, with the checks that make the published
run's two conversion bugs impossible.

* :func:`import_checkpoint`: HF base model → Megatron ``torch_dist`` checkpoint (Megatron-Bridge's
  provider path: ``AutoBridge.from_hf_pretrained(dir).to_megatron_provider(load_weights=True)``,
  ``provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)`` and
  ``save_megatron_model`` inside a one-process gloo group; ``gradient_accumulation_fusion`` off,
  which needs no APEX). ``AutoBridge.import_ckpt`` cannot switch that fusion off.
* :func:`verify` (:func:`verify_import`, :func:`verify_export`): the logits of a converted model
  on a fixed batch of token ids must equal the HF model's within a tolerance (fp32 on both
  sides), else :class:`VerificationError` with the max abs difference and the argmax
  agreement. The published run most likely trained from scratch because its loader read only
  the non-sharded part of a distributed checkpoint; a model whose weights were not loaded has
  logits that differ by O(1) and fails here. Its export sliced the fused QKV weight
  contiguously (Q | K | V) although Megatron fuses it per query group (the group's query
  heads, then its key, then its value head); on failure :func:`verify` says which layout the
  candidate's layer-0 attention weights match (:func:`diagnose_fused_qkv`,
  :func:`diagnose_split_qkv`).
* :func:`export_checkpoint`: one Megatron iteration → HF checkpoint (``AutoBridge.export_ckpt``
  on a bridge made from the HF base dir, which must hold tokenizer files); the export must
  hold every tensor of the base model with its shape (an export that drops weights fails
  instead of being loaded with ``strict=False``), then the family's tokenizer files are copied in.

Every command writes its results as JSON next to its output (``OUT.import.json``,
``CANDIDATE.verify.json``, ``OUT.export.json``: max abs diff, argmax agreement, seconds, ...)
and prints them as one JSON line. Outputs appear atomically. One conversion per process
(megatron-core keeps per-model state in environment variables).

* :func:`verify_document_masking`: on the GPU, a packed row of documents under the engine's
  document masking must give the logits and gradients of the documents run one by one, and a
  row without masking must not (the control).

Command line: ``python -m filmorph.convert {import,verify,verify-doc-mask,export} --help``. Nothing here
imports megatron.bridge, megatron.core or transformer_engine at module level; :func:`verify`
of two HF checkpoints and the pure-torch helpers run on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filmorph.io import atomic_path, read_json, write_json_atomic
from filmorph.paths import iter_name
from filmorph.provenance import package_versions
from filmorph.tokenizers import HF_TOKENIZER_FILES
from filmorph.train.megatron import (
    ITER_RE,
    MEGATRON_PACKAGES,
    TRACKER_FILE,
    avoid_gemma2_flex_attention,
    latest_iteration,
    masked_softmax_fusion_available,
    require_engine,
    usable_attention_backend,
)

__all__ = [
    "DEFAULT_EXPORT_TOLERANCE",
    "DEFAULT_IMPORT_TOLERANCE",
    "DEFAULT_MIN_ARGMAX_AGREEMENT",
    "VerificationError",
    "compare_logits",
    "contiguous_split_qkv",
    "diagnose_fused_qkv",
    "diagnose_split_qkv",
    "export_checkpoint",
    "fixed_token_batch",
    "fuse_qkv",
    "import_checkpoint",
    "resolve_iter_dir",
    "unfuse_qkv",
    "verify",
    "block_causal_mask",
    "judge_document_masking",
    "packed_documents",
    "verify_document_masking",
    "verify_export",
    "verify_import",
    "weight_manifest_check",
]

# Max abs logit difference allowed (fp32 on both sides). Megatron (Transformer Engine kernels,
# which may run fp32 GEMMs in TF32) vs transformers differ by rounding only, orders of magnitude
# below what unloaded or scrambled weights give (O(1) and more); an HF → Megatron → HF round
# trip copies the weights bit for bit (0.0 seen for three architectures on the H100). The
# argmax share tolerates the odd near-tie flipped by rounding (3 of 64 positions).
DEFAULT_IMPORT_TOLERANCE = 5e-2
DEFAULT_EXPORT_TOLERANCE = 1e-4
DEFAULT_MIN_ARGMAX_AGREEMENT = 0.95
TOKENIZER_FILES = HF_TOKENIZER_FILES
EXPORT_META = "filmorph_train_meta.json"
MEGATRON_QKV_KEY = "decoder.layers.0.self_attention.linear_qkv.weight"
HF_QKV_KEYS = tuple(f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkv")


class VerificationError(AssertionError):
    """A converted checkpoint does not reproduce the HF model."""


class ExportError(RuntimeError):
    """An export wrote other tensors than the base model has."""


# ============================================================================ pure helpers
def fixed_token_batch(vocab_size: int, *, batch: int = 2, length: int = 32, seed: int = 0) -> Any:
    """The fixed ``[batch, length]`` int64 batch of token ids the checks use: uniform in
    ``[0, vocab_size)`` from a seeded CPU generator (the same ids on every machine)."""
    import torch

    if vocab_size < 2 or batch < 1 or length < 1:
        raise ValueError(
            f"need vocab_size >= 2, batch >= 1, length >= 1 (got {vocab_size}, {batch}, {length})"
        )
    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, int(vocab_size), (batch, length), generator=g, dtype=torch.long)


def compare_logits(
    reference: Any,
    candidate: Any,
    tolerance: float,
    *,
    min_argmax_agreement: float = DEFAULT_MIN_ARGMAX_AGREEMENT,
) -> dict[str, Any]:
    """Compare two ``[..., vocab]`` logit tensors (the candidate may have a padded vocab: only
    the reference's columns count), in fp32.

    Passes when both are finite, the max abs difference is at most ``tolerance``, the argmax
    agrees on at least ``min_argmax_agreement`` of the positions, and the reference is not
    constant (a degenerate reference would make any candidate pass). Returns
    ``max_abs_diff``, ``mean_abs_diff``, ``argmax_agreement``, ``reference_max_abs``,
    ``reference_std``, ``positions``, ``tolerance``, ``min_argmax_agreement``, ``passed`` and
    ``reason`` (why it failed, else ``None``).
    """
    import torch

    ref = torch.as_tensor(reference).detach().to("cpu", torch.float32)
    cand = torch.as_tensor(candidate).detach().to("cpu", torch.float32)
    vocab = ref.shape[-1]
    if cand.shape[:-1] != ref.shape[:-1] or cand.shape[-1] < vocab:
        raise ValueError(f"logit shapes differ: reference {tuple(ref.shape)}, candidate {tuple(cand.shape)}")
    cand = cand[..., :vocab]
    finite = bool(torch.isfinite(ref).all() and torch.isfinite(cand).all())
    diff = (ref - cand).abs()
    max_diff = float(diff.max()) if finite else float("inf")
    agree = float((ref.argmax(-1) == cand.argmax(-1)).float().mean())
    ref_std = float(ref.std()) if ref.numel() > 1 else 0.0
    reasons = []
    if not finite:
        reasons.append("non-finite logits")
    if max_diff > tolerance:
        reasons.append(f"max abs diff {max_diff:.4g} > tolerance {tolerance:.4g}")
    if agree < min_argmax_agreement:
        reasons.append(f"argmax agreement {agree:.4f} < {min_argmax_agreement:.4f}")
    if ref_std <= 1e-6:
        reasons.append("the reference logits are constant: the comparison would prove nothing")
    return {
        "max_abs_diff": max_diff,
        "mean_abs_diff": float(diff.mean()) if finite else float("inf"),
        "argmax_agreement": agree,
        "reference_max_abs": float(ref.abs().max()),
        "reference_std": ref_std,
        "positions": int(ref[..., 0].numel()),
        "tolerance": float(tolerance),
        "min_argmax_agreement": float(min_argmax_agreement),
        "passed": not reasons,
        "reason": "; ".join(reasons) or None,
    }


def _qkv_dims(num_heads: int, num_query_groups: int, head_dim: int) -> int:
    if num_heads < 1 or num_query_groups < 1 or head_dim < 1 or num_heads % num_query_groups:
        raise ValueError(
            f"num_heads {num_heads} must be a positive multiple of num_query_groups {num_query_groups}"
        )
    return num_heads // num_query_groups


def fuse_qkv(q: Any, k: Any, v: Any, *, num_heads: int, num_query_groups: int, head_dim: int) -> Any:
    """Megatron's fused ``linear_qkv`` weight from HF's ``q_proj`` ``[H*d, h]``, ``k_proj`` and
    ``v_proj`` ``[G*d, h]``: for each of the ``G`` query groups, its ``H/G`` query heads, then
    its key head, then its value head (rows), concatenated."""
    import torch

    per = _qkv_dims(num_heads, num_query_groups, head_dim)
    qh = q.reshape(num_query_groups, per * head_dim, -1)
    kh = k.reshape(num_query_groups, head_dim, -1)
    vh = v.reshape(num_query_groups, head_dim, -1)
    return torch.cat([qh, kh, vh], dim=1).reshape((num_heads + 2 * num_query_groups) * head_dim, -1)


def unfuse_qkv(qkv: Any, *, num_heads: int, num_query_groups: int, head_dim: int) -> tuple[Any, Any, Any]:
    """The inverse of :func:`fuse_qkv`: HF's ``(q_proj, k_proj, v_proj)`` weights from Megatron's
    per-group fused ``linear_qkv`` weight."""
    per = _qkv_dims(num_heads, num_query_groups, head_dim)
    groups = qkv.reshape(num_query_groups, (per + 2) * head_dim, -1)
    q = groups[:, : per * head_dim].reshape(num_heads * head_dim, -1)
    k = groups[:, per * head_dim : (per + 1) * head_dim].reshape(num_query_groups * head_dim, -1)
    v = groups[:, (per + 1) * head_dim :].reshape(num_query_groups * head_dim, -1)
    return q, k, v


def contiguous_split_qkv(
    qkv: Any, *, num_heads: int, num_query_groups: int, head_dim: int
) -> tuple[Any, Any, Any]:
    """The published export's mistake, for diagnostics: rows ``[0, H*d)`` as q, the next
    ``G*d`` as k, the rest as v, ignoring the per-group layout. Equals :func:`unfuse_qkv`
    only when there is one query group."""
    _qkv_dims(num_heads, num_query_groups, head_dim)
    nq, nkv = num_heads * head_dim, num_query_groups * head_dim
    return qkv[:nq], qkv[nq : nq + nkv], qkv[nq + nkv : nq + 2 * nkv]


def _same(a: Any, b: Any, atol: float) -> bool:
    import torch

    a = torch.as_tensor(a).float()
    b = torch.as_tensor(b).float()
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=0.0, atol=atol))


def diagnose_fused_qkv(
    fused: Any,
    q: Any,
    k: Any,
    v: Any,
    *,
    num_heads: int,
    num_query_groups: int,
    head_dim: int,
    atol: float = 1e-6,
) -> str:
    """Which layout a Megatron ``linear_qkv`` weight holds, given the HF q/k/v weights: the
    per-group layout (correct), a contiguous Q | K | V one (the layout bug), or neither
    (weights not loaded, or other weights)."""
    dims = {"num_heads": num_heads, "num_query_groups": num_query_groups, "head_dim": head_dim}
    if all(_same(a, b, atol) for a, b in zip(unfuse_qkv(fused, **dims), (q, k, v), strict=True)):
        return "layer-0 fused QKV equals the HF q/k/v in Megatron's per-query-group layout"
    if all(_same(a, b, atol) for a, b in zip(contiguous_split_qkv(fused, **dims), (q, k, v), strict=True)):
        return (
            "layer-0 fused QKV holds the HF q/k/v concatenated as Q | K | V: it was fused contiguously "
            "instead of per query group (the QKV layout bug)"
        )
    return "layer-0 fused QKV matches the HF q/k/v in no layout: the weights were not loaded, or are others"


def diagnose_split_qkv(
    reference: Sequence[Any],
    candidate: Sequence[Any],
    *,
    num_heads: int,
    num_query_groups: int,
    head_dim: int,
    atol: float = 1e-6,
) -> str:
    """Compare an exported model's layer-0 ``(q, k, v)`` weights with the reference HF model's:
    equal, equal to a contiguous slice of the Megatron-fused reference (an export that sliced
    the fused QKV weight contiguously: the published run's bug), or different."""
    dims = {"num_heads": num_heads, "num_query_groups": num_query_groups, "head_dim": head_dim}
    if all(_same(a, b, atol) for a, b in zip(reference, candidate, strict=True)):
        return "layer-0 q/k/v equal the reference"
    sliced = contiguous_split_qkv(fuse_qkv(*reference, **dims), **dims)
    if all(_same(a, b, atol) for a, b in zip(sliced, candidate, strict=True)):
        return (
            "layer-0 q/k/v equal a contiguous Q | K | V slice of the per-query-group fused weight: the "
            "export ignored Megatron's QKV layout (the published run's bug)"
        )
    return "layer-0 q/k/v differ from the reference (and are no QKV re-slicing of it)"


def resolve_iter_dir(path: str | Path) -> Path:
    """The ``iter_NNNNNNN`` dir of a Megatron checkpoint: ``path`` itself when it is one, else
    the iteration in its ``latest_checkpointed_iteration.txt``, else its newest ``iter_*``."""
    p = Path(path)
    if ITER_RE.match(p.name) and p.is_dir():
        return p
    if not p.is_dir():
        raise FileNotFoundError(f"no Megatron checkpoint at {p}")
    if (p / TRACKER_FILE).is_file():
        it = latest_iteration(p)
        d = p / ("release" if it < 0 else iter_name(it))
        if d.is_dir():
            return d
        raise FileNotFoundError(f"{p / TRACKER_FILE} names {d.name}, which does not exist")
    iters = sorted(d for d in p.iterdir() if d.is_dir() and ITER_RE.match(d.name))
    if not iters:
        raise FileNotFoundError(f"{p} is not a Megatron checkpoint (no {TRACKER_FILE}, no iter_NNNNNNN dir)")
    return iters[-1]


def _is_hf_dir(p: Path) -> bool:
    return (p / "config.json").is_file() and any(p.glob("*.safetensors"))


def _is_megatron_dir(p: Path) -> bool:
    if not p.is_dir():
        return False
    if ITER_RE.match(p.name) or (p / TRACKER_FILE).is_file():
        return True
    return any(d.is_dir() and ITER_RE.match(d.name) for d in p.iterdir())


def _results_path(out: str | Path, kind: str) -> Path:
    out = Path(out)
    return out.parent / f"{out.name}.{kind}.json"


def _tokenizer_files(d: Path) -> list[str]:
    return [f for f in TOKENIZER_FILES if (d / f).is_file()]


def _tokenizer_source(hf_dir: Path, tokenizer_dir: str | Path | None) -> Path | None:
    if tokenizer_dir is not None:
        t = Path(tokenizer_dir)
        if "tokenizer.json" not in _tokenizer_files(t) and "tokenizer.model" not in _tokenizer_files(t):
            raise FileNotFoundError(f"tokenizer_dir {t} has no tokenizer.json / tokenizer.model")
        return t
    if _tokenizer_files(hf_dir):
        return hf_dir
    return None


def _hf_config(hf_dir: Path) -> Any:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(hf_dir), local_files_only=True)
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def _attention_dims(hf_dir: Path) -> dict[str, int]:
    cfg = _hf_config(hf_dir)
    heads = int(cfg.num_attention_heads)
    groups = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    return {"num_heads": heads, "num_query_groups": groups, "head_dim": head_dim}


def _safetensors_files(hf_dir: Path) -> list[Path]:
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        return sorted({hf_dir / f for f in read_json(index)["weight_map"].values()})
    return sorted(hf_dir.glob("*.safetensors"))


def _hf_tensors(hf_dir: Path, names: Sequence[str]) -> dict[str, Any]:
    from safetensors import safe_open

    out: dict[str, Any] = {}
    for f in _safetensors_files(hf_dir):
        with safe_open(str(f), framework="pt") as fh:
            for n in names:
                if n in fh.keys():
                    out[n] = fh.get_tensor(n)
    return out


def weight_manifest_check(base_dir: str | Path, candidate_dir: str | Path) -> dict[str, Any]:
    """Tensor names and shapes of two HF checkpoints (from the safetensors headers): names
    missing from the candidate, extra names, and shape mismatches. A tied ``lm_head.weight``
    present on one side only is ignored. ``ok`` is true when nothing is missing and no shape
    differs (an extra tensor is reported, not fatal: transformers ignores it)."""
    from safetensors import safe_open

    def manifest(d: Path) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for f in _safetensors_files(d):
            with safe_open(str(f), framework="pt") as fh:
                for n in fh.keys():
                    shapes[n] = tuple(fh.get_slice(n).get_shape())
        return shapes

    base, cand = manifest(Path(base_dir)), manifest(Path(candidate_dir))
    tied = bool(getattr(_hf_config(Path(base_dir)), "tie_word_embeddings", False))
    ignore = {"lm_head.weight"} if tied else set()
    missing = sorted(set(base) - set(cand) - ignore)
    extra = sorted(set(cand) - set(base) - ignore)
    shapes = sorted(n for n in set(base) & set(cand) if base[n] != cand[n])
    return {
        "tensors": len(base),
        "missing": missing,
        "extra": extra,
        "shape_mismatch": shapes,
        "ok": not (missing or shapes),
    }


def _device(device: str | None) -> Any:
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _dtype(name: str) -> Any:
    import torch

    table = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if name not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, not {name!r}")
    return table[name]


def _exact_matmuls() -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _hf_logits(hf_dir: Path, ids: Any, dtype: Any, device: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=dtype, local_files_only=True)
    model.to(device).eval()
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), use_cache=False).logits.float().cpu()
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return logits


# ============================================================================ Megatron side
@contextlib.contextmanager
def _megatron_model(
    iter_dir: Path, dtype: Any, device: Any, *, what: str, overrides: dict[str, Any] | None = None
) -> Any:
    """The Megatron checkpoint at ``iter_dir`` (loaded in its own dtype, then cast to ``dtype``)
    as one unwrapped model on ``device`` in eval mode, inside a one-process distributed context
    (nccl on a GPU, else gloo); the CUDA cache is emptied afterwards.

    Loaded so that it runs on the pip route: where flash-attn is missing, a checkpoint saved
    asking for 'flash' (Bridge's Gemma 3 default) would find no backend, so it loads with
    'auto'; Gemma 2 off FlexAttention and, without megatron's fused-softmax extension, with
    ``masked_softmax_fusion`` off; then ``overrides`` on top."""
    require_engine(what)
    import torch
    from megatron.bridge.training.model_load_save import load_megatron_model, temporary_distributed_context
    from megatron.core.utils import unwrap_model

    cuda = device.type == "cuda"
    with temporary_distributed_context(backend="nccl" if cuda else "gloo"):
        from megatron.core.transformer.enums import AttnBackend

        avoid_gemma2_flex_attention()
        settings: dict[str, Any] = {}
        backend = usable_attention_backend(AttnBackend.flash)
        if backend != AttnBackend.flash:
            settings["attention_backend"] = backend
        if not masked_softmax_fusion_available():
            settings["masked_softmax_fusion"] = False
        settings.update(overrides or {})
        models = load_megatron_model(
            str(iter_dir), use_cpu_init=not cuda, skip_temp_dist_context=True, mp_overrides=settings or None
        )
        model = unwrap_model(models[0] if isinstance(models, list) else models)
        try:
            yield model.to(device=device, dtype=dtype).eval()
        finally:
            del model, models
    if cuda:
        torch.cuda.empty_cache()


def _megatron_logits(iter_dir: Path, ids: Any, dtype: Any, device: Any) -> tuple[Any, Any]:
    """Logits of the Megatron checkpoint at ``iter_dir`` (loaded in its own dtype, then cast to
    ``dtype``) and its layer-0 fused QKV weight (for diagnostics)."""
    import torch

    with _megatron_model(iter_dir, dtype, device, what="verify (a Megatron checkpoint)") as model:
        b, t = ids.shape
        pos = torch.arange(t, device=device).unsqueeze(0).expand(b, t)
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), position_ids=pos, attention_mask=None)
        qkv = model.state_dict().get(MEGATRON_QKV_KEY)
        qkv = None if qkv is None else qkv.detach().float().cpu()
        logits = logits.float().cpu()
    return logits, qkv


# ============================================================================ verify
def verify(
    hf_dir: str | Path,
    candidate: str | Path,
    *,
    tolerance: float,
    min_argmax_agreement: float = DEFAULT_MIN_ARGMAX_AGREEMENT,
    dtype: str = "float32",
    batch: int = 2,
    length: int = 32,
    seed: int = 0,
    device: str | None = None,
    results_json: str | Path | None = None,
) -> dict[str, Any]:
    """Check that ``candidate`` computes what the HF model in ``hf_dir`` computes.

    ``candidate`` is a Megatron checkpoint (a dir with ``iter_*`` dirs or one ``iter_*`` dir:
    the import check; needs Megatron-Bridge and a GPU) or an HF checkpoint dir (the export
    check; runs anywhere). Both models see :func:`fixed_token_batch` (``batch`` × ``length``
    ids of the HF vocab, ``seed``) in ``dtype`` (torch TF32 off); :func:`compare_logits` decides. The
    results (comparison, layer-0 QKV diagnosis on failure, seconds, versions) go to
    ``results_json`` (default ``CANDIDATE.verify.json``) whether or not the check passes;
    then :class:`VerificationError` is raised on failure, its message giving the max abs
    difference and the argmax agreement.
    """
    import torch

    t0 = time.time()
    hf_dir, cand = Path(hf_dir), Path(candidate)
    if not _is_hf_dir(hf_dir):
        raise FileNotFoundError(f"{hf_dir} is not an HF checkpoint dir (config.json + *.safetensors)")
    if _is_hf_dir(cand):
        kind = "hf"
    elif _is_megatron_dir(cand):
        kind = "megatron"
    else:
        raise FileNotFoundError(f"{cand} is neither an HF checkpoint dir nor a Megatron checkpoint")
    if kind == "megatron":
        require_engine("verify (a Megatron checkpoint)")
    dev, dt = _device(device), _dtype(dtype)
    _exact_matmuls()
    config = _hf_config(hf_dir)
    ids = fixed_token_batch(int(config.vocab_size), batch=batch, length=length, seed=seed)
    ref = _hf_logits(hf_dir, ids, dt, dev)
    iter_dir = None
    fused = None
    if kind == "hf":
        out = _hf_logits(cand, ids, dt, dev)
    else:
        iter_dir = resolve_iter_dir(cand)
        out, fused = _megatron_logits(iter_dir, ids, dt, dev)
    cmp = compare_logits(ref, out, tolerance, min_argmax_agreement=min_argmax_agreement)
    diagnosis = None
    if not cmp["passed"]:
        diagnosis = _diagnose(hf_dir, cand, kind, fused)
    results = {
        "check": "import" if kind == "megatron" else "export",
        "hf_dir": str(hf_dir),
        "candidate": str(cand),
        "candidate_kind": kind,
        "iter_dir": None if iter_dir is None else str(iter_dir),
        "dtype": dtype,
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "batch": [int(ids.shape[0]), int(ids.shape[1])],
        "seed": seed,
        **cmp,
        "diagnosis": diagnosis,
        "seconds": round(time.time() - t0, 3),
        "versions": package_versions(MEGATRON_PACKAGES),
    }
    write_json_atomic(results_json or _results_path(cand, "verify"), results)
    if not cmp["passed"]:
        raise VerificationError(
            f"{cand} does not reproduce {hf_dir}: max abs diff {cmp['max_abs_diff']:.4g} "
            f"(tolerance {tolerance:.4g}), argmax agreement {cmp['argmax_agreement']:.2%} "
            f"over {cmp['positions']} positions; {cmp['reason']}" + (f"; {diagnosis}" if diagnosis else "")
        )
    return results


def _diagnose(hf_dir: Path, cand: Path, kind: str, fused: Any) -> str | None:
    try:
        dims = _attention_dims(hf_dir)
        ref = _hf_tensors(hf_dir, HF_QKV_KEYS)
        if len(ref) != 3:
            return None
        reference = [ref[k] for k in HF_QKV_KEYS]
        if kind == "megatron":
            if fused is None:
                return f"the Megatron model has no {MEGATRON_QKV_KEY}"
            return diagnose_fused_qkv(fused, *reference, **dims)
        got = _hf_tensors(cand, HF_QKV_KEYS)
        if len(got) != 3:
            return f"{cand} lacks layer-0 q/k/v weights"
        return diagnose_split_qkv(reference, [got[k] for k in HF_QKV_KEYS], **dims)
    except Exception as exc:  # diagnostics must never hide the verification result
        return f"(no QKV diagnosis: {type(exc).__name__}: {exc})"


def verify_import(
    hf_dir: str | Path,
    megatron_dir: str | Path,
    *,
    tolerance: float = DEFAULT_IMPORT_TOLERANCE,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`verify` of an imported Megatron checkpoint against its HF source."""
    if not _is_megatron_dir(Path(megatron_dir)):
        raise FileNotFoundError(f"{megatron_dir} is not a Megatron checkpoint")
    return verify(hf_dir, megatron_dir, tolerance=tolerance, **kwargs)


def verify_export(
    hf_dir: str | Path,
    exported_hf_dir: str | Path,
    *,
    tolerance: float = DEFAULT_EXPORT_TOLERANCE,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`verify` of an HF export (of the untrained import) against the HF base model."""
    if not _is_hf_dir(Path(exported_hf_dir)):
        raise FileNotFoundError(f"{exported_hf_dir} is not an HF checkpoint dir")
    return verify(hf_dir, exported_hf_dir, tolerance=tolerance, **kwargs)


# ============================================================================ document masking
# Documents of the check's packed row (tokens each, the last one an EOD). The first is longer
# than Gemma 3's sliding window (512), so the window and the document boundary both bind.
DEFAULT_DOC_LENGTHS = (600, 300, 124)
# Pass when the packed row's logits are much closer to the documents run one by one than a
# row without document masking is (bf16 kernels differ by rounding; cross-document attention
# changes every later document's logits by O(1)), the argmaxes agree, and the gradients agree.
DEFAULT_DOC_MASK_LEAK_RATIO = 0.1
DEFAULT_DOC_MASK_GRAD_TOLERANCE = 0.1


def packed_documents(
    vocab_size: int, eod_id: int, lengths: Sequence[int] = DEFAULT_DOC_LENGTHS, *, seed: int = 0
) -> tuple[Any, Any, list[tuple[int, int]]]:
    """One packed row of documents as the shards hold them: ``(tokens [1, T], position_ids
    [1, T], spans)``. Document ``k`` fills ``spans[k] = (start, end)``, its ids are uniform in
    ``[0, vocab_size)`` without ``eod_id`` (seeded CPU generator) and its last id is
    ``eod_id``; position ids restart at 0 in every document (``reset_position_ids``)."""
    import torch

    if vocab_size < 3 or not 0 <= eod_id < vocab_size:
        raise ValueError(f"need vocab_size >= 3 and 0 <= eod_id < vocab_size (got {vocab_size}, {eod_id})")
    if len(lengths) < 2 or min(lengths) < 2:
        raise ValueError(f"need >= 2 documents of >= 2 tokens each, not {list(lengths)}")
    g = torch.Generator().manual_seed(int(seed))
    toks, pos, spans, start = [], [], [], 0
    for n in lengths:
        ids = torch.randint(0, vocab_size - 1, (n,), generator=g, dtype=torch.long)
        ids[ids >= eod_id] += 1  # skip the EOD id
        ids[-1] = eod_id
        toks.append(ids)
        pos.append(torch.arange(n, dtype=torch.long))
        spans.append((start, start + n))
        start += n
    return torch.cat(toks).unsqueeze(0), torch.cat(pos).unsqueeze(0), spans


def block_causal_mask(spans: Sequence[tuple[int, int]], length: int) -> Any:
    """Megatron's attention mask of a packed row: ``[1, 1, T, T]`` bool, ``True`` where a query
    may NOT see a key (a later position, or another document), as megatron-core's
    ``reset_attention_mask`` builds it."""
    import torch

    doc = torch.full((length,), -1, dtype=torch.long)
    for k, (s, e) in enumerate(spans):
        doc[s:e] = k
    if (doc < 0).any():
        raise ValueError(f"the spans {list(spans)} do not cover 0..{length}")
    later = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
    other = doc[:, None] != doc[None, :]
    return (later | other)[None, None]


def judge_document_masking(
    separate: Any,
    packed: Any,
    leaky: Any,
    spans: Sequence[tuple[int, int]],
    *,
    grad_rel_diff: float | None,
    leak_ratio: float = DEFAULT_DOC_MASK_LEAK_RATIO,
    grad_tolerance: float = DEFAULT_DOC_MASK_GRAD_TOLERANCE,
    min_argmax_agreement: float = DEFAULT_MIN_ARGMAX_AGREEMENT,
) -> dict[str, Any]:
    """Decide the document-masking check from ``[T, V]`` logits: ``separate`` (each document
    run alone), ``packed`` (the packed row with the engine's document masking) and ``leaky``
    (the packed row with plain causal attention: the control). The leak is measured on the
    documents after the first (the first sees no other document either way), and so is
    packed's difference. Passes when all
    are finite, packed's mean abs difference to separate is at most ``leak_ratio`` × leaky's,
    packed's argmax agrees with separate's on ``min_argmax_agreement`` of the positions, the
    control did leak (else the check proves nothing), and ``grad_rel_diff`` (‖g_packed −
    g_separate‖ / ‖g_separate‖ of a next-token loss within the documents), when given, is at
    most ``grad_tolerance``."""
    import torch

    if len(spans) < 2:
        raise ValueError(f"the check needs >= 2 documents (a leak needs a later one), not {list(spans)}")
    sep, pk, lk = (torch.as_tensor(x).detach().to("cpu", torch.float32) for x in (separate, packed, leaky))
    later = torch.zeros(sep.shape[0], dtype=torch.bool)
    for s, e in spans[1:]:
        later[s:e] = True
    finite = all(bool(torch.isfinite(x).all()) for x in (sep, pk, lk))
    packed_diff = (pk - sep).abs()
    leak_diff = (lk - sep).abs()[later]
    # both means over the later documents: where a leak would show
    packed_mean = float(packed_diff[later].mean()) if finite else float("inf")
    leak_mean = float(leak_diff.mean()) if finite else float("inf")
    agree = float((pk.argmax(-1) == sep.argmax(-1)).float().mean())
    reasons = []
    if not finite:
        reasons.append("non-finite logits")
    elif leak_mean <= 1e-6:
        reasons.append("the row without document masking gave the same logits: the check proves nothing")
    elif packed_mean > leak_ratio * leak_mean:
        reasons.append(
            f"packed vs separate mean abs diff {packed_mean:.4g} > {leak_ratio} x the unmasked row's "
            f"{leak_mean:.4g}: documents see each other"
        )
    if agree < min_argmax_agreement:
        reasons.append(f"argmax agreement {agree:.4f} < {min_argmax_agreement:.4f}")
    if grad_rel_diff is not None and not grad_rel_diff <= grad_tolerance:
        reasons.append(f"gradient relative difference {grad_rel_diff:.4g} > {grad_tolerance:.4g}")
    return {
        "packed_max_abs_diff": float(packed_diff.max()) if finite else float("inf"),
        "packed_mean_abs_diff": packed_mean,
        "unmasked_mean_abs_diff": leak_mean,
        "argmax_agreement": agree,
        "grad_rel_diff": grad_rel_diff,
        "positions": int(sep.shape[0]),
        "leak_ratio": float(leak_ratio),
        "grad_tolerance": float(grad_tolerance),
        "min_argmax_agreement": float(min_argmax_agreement),
        "passed": not reasons,
        "reason": "; ".join(reasons) or None,
    }


def _next_token_loss(logits: Any, tokens: Any, spans: Sequence[tuple[int, int]]) -> Any:
    """Summed cross entropy of each position predicting the next id of its own document."""
    import torch

    total = logits.new_zeros((), dtype=torch.float32)
    for s, e in spans:
        total = total + torch.nn.functional.cross_entropy(
            logits[s : e - 1].float(), tokens[s + 1 : e], reduction="sum"
        )
    return total


def _megatron_masking_run(
    iter_dir: Path,
    tokens: Any,
    positions: Any,
    spans: Sequence[tuple[int, int]],
    mode: str,
    eod_id: int,
    device: Any,
) -> dict[str, Any]:
    """Logits ``[T, V]`` (fp32, CPU) of the Megatron checkpoint in bf16 for the documents run
    one by one, the packed row with ``mode``'s masking and the packed row without; gradients of
    :func:`_next_token_loss` for the first two, compared as ‖Δg‖ / ‖g‖."""
    require_engine("verify-doc-mask (a Megatron checkpoint)")
    import torch
    from megatron.core.packed_seq_params import PackedSeqParams

    from filmorph.train.megatron import document_cu_seqlens

    with _megatron_model(
        iter_dir,
        torch.bfloat16,
        device,
        what="verify-doc-mask (a Megatron checkpoint)",
        # gradients without a DDP wrapper: no fused accumulation into main_grad buffers
        overrides={"gradient_accumulation_fusion": False},
    ) as model:
        params = [p for p in model.parameters()]
        for p in params:
            p.requires_grad_(True)
        x, pos = tokens.to(device), positions.to(device)
        t = x.shape[1]

        def run(net: Any, kind: str, backward: bool) -> tuple[Any, Any]:
            net.zero_grad(set_to_none=True)
            if kind == "separate":
                parts = []
                for s, e in spans:
                    parts.append(net(input_ids=x[:, s:e], position_ids=pos[:, s:e], attention_mask=None)[0])
                logits = torch.cat(parts)
            elif kind == "packed" and mode == "thd":
                cu, max_len = document_cu_seqlens(tokens, eod_id)
                cu = cu.to(device)
                packed = PackedSeqParams(
                    qkv_format="thd",
                    cu_seqlens_q=cu,
                    cu_seqlens_kv=cu,
                    max_seqlen_q=max_len,
                    max_seqlen_kv=max_len,
                )
                logits = net(input_ids=x, position_ids=pos, attention_mask=None, packed_seq_params=packed)[0]
            elif kind == "packed":  # mode "mask": the dataset's block-diagonal mask
                mask = block_causal_mask(spans, t).to(device)
                logits = net(input_ids=x, position_ids=pos, attention_mask=mask)[0]
            else:  # "leaky": plain causal attention over the packed row
                logits = net(input_ids=x, position_ids=pos, attention_mask=None)[0]
            grads = None
            if backward:
                _next_token_loss(logits, x[0], spans).backward()
                grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
            return logits.detach().float().cpu(), grads

        sep, g_sep = run(model, "separate", True)
        packed, g_packed = run(model, "packed", True)
        with torch.no_grad():
            leaky, _ = run(model, "leaky", False)
        num = den = 0.0
        for a, b in zip(g_packed, g_sep, strict=True):
            if a is None or b is None:
                continue
            num += float((a.float() - b.float()).pow(2).sum())
            den += float(b.float().pow(2).sum())
        grad_rel = (num**0.5) / (den**0.5) if den > 0 else float("inf")
        grad_norm = den**0.5
        del g_sep, g_packed
    return {
        "separate": sep,
        "packed": packed,
        "leaky": leaky,
        "grad_rel_diff": grad_rel,
        "grad_norm": grad_norm,
    }


def verify_document_masking(
    hf_dir: str | Path,
    candidate: str | Path,
    *,
    eod_id: int | None = None,
    mode: str | None = None,
    lengths: Sequence[int] = DEFAULT_DOC_LENGTHS,
    seed: int = 0,
    leak_ratio: float = DEFAULT_DOC_MASK_LEAK_RATIO,
    grad_tolerance: float = DEFAULT_DOC_MASK_GRAD_TOLERANCE,
    min_argmax_agreement: float = DEFAULT_MIN_ARGMAX_AGREEMENT,
    results_json: str | Path | None = None,
) -> dict[str, Any]:
    """Check on the GPU that the megatron engine's document masking keeps documents apart for
    this model, forward and backward: a packed row of documents (:func:`packed_documents`)
    must give the logits and gradients of the documents run one by one
    (:func:`judge_document_masking`), in bf16, the training precision.

    ``mode`` is the engine's masking for the model (default:
    :func:`filmorph.train.megatron.document_masking_mode` with document masking on, which
    raises for the refused model types; pass ``"thd"`` to measure those anyway; ``"none"``
    writes a record saying the check was skipped, for runs without document masking). ``eod_id``
    defaults to the HF config's ``eos_token_id``. Results go to ``results_json`` (default
    ``CANDIDATE.docmask.json``) whether or not the check passes; then
    :class:`VerificationError` on failure.
    """
    import torch

    from filmorph.train.megatron import document_masking_mode

    t0 = time.time()
    hf_dir, cand = Path(hf_dir), Path(candidate)
    if not _is_hf_dir(hf_dir):
        raise FileNotFoundError(f"{hf_dir} is not an HF checkpoint dir (config.json + *.safetensors)")
    if not _is_megatron_dir(cand):
        raise FileNotFoundError(f"{cand} is not a Megatron checkpoint")
    if mode == "none":  # document masking is off: nothing to check, but say so in the record
        results = {
            "check": "document_masking",
            "mode": "none",
            "hf_dir": str(hf_dir),
            "candidate": str(cand),
            "passed": None,
            "skipped": "document masking is off (train.reset_attention_mask: false)",
        }
        write_json_atomic(results_json or _results_path(cand, "docmask"), results)
        return results
    if mode not in (None, "thd", "mask"):
        raise ValueError(f"mode must be 'none', 'thd' or 'mask', not {mode!r}")
    if not torch.cuda.is_available():
        raise RuntimeError("verify-doc-mask runs the Megatron model's bf16 attention kernels: it needs a GPU")
    if mode is None:
        mode = document_masking_mode(hf_dir)

    config = _hf_config(hf_dir)
    if eod_id is None:
        eos = getattr(config, "eos_token_id", None)
        eod_id = eos[0] if isinstance(eos, list | tuple) else eos
    if eod_id is None:
        raise ValueError(f"{hf_dir}/config.json has no eos_token_id: pass eod_id")
    tokens, positions, spans = packed_documents(int(config.vocab_size), int(eod_id), lengths, seed=seed)
    iter_dir = resolve_iter_dir(cand)
    runs = _megatron_masking_run(iter_dir, tokens, positions, spans, mode, int(eod_id), torch.device("cuda"))
    verdict = judge_document_masking(
        runs["separate"],
        runs["packed"],
        runs["leaky"],
        spans,
        grad_rel_diff=runs["grad_rel_diff"],
        leak_ratio=leak_ratio,
        grad_tolerance=grad_tolerance,
        min_argmax_agreement=min_argmax_agreement,
    )
    results = {
        "check": "document_masking",
        "mode": mode,
        "hf_dir": str(hf_dir),
        "candidate": str(cand),
        "iter_dir": str(iter_dir),
        "model_type": getattr(config, "model_type", None),
        "eod_id": int(eod_id),
        "lengths": [int(n) for n in lengths],
        "seed": seed,
        "dtype": "bfloat16",
        "device": torch.cuda.get_device_name(),
        "grad_norm": runs["grad_norm"],
        **verdict,
        "seconds": round(time.time() - t0, 3),
        "versions": package_versions(MEGATRON_PACKAGES),
    }
    write_json_atomic(results_json or _results_path(cand, "docmask"), results)
    if not verdict["passed"]:
        raise VerificationError(
            f"{cand}: document masking ({mode}) does not keep documents apart: {verdict['reason']}"
        )
    return results


# ============================================================================ import / export
def import_checkpoint(
    hf_dir: str | Path,
    megatron_dir: str | Path,
    *,
    tensor_parallel: int = 1,
    tokenizer_dir: str | Path | None = None,
    results_json: str | Path | None = None,
) -> dict[str, Any]:
    """Write the HF checkpoint ``hf_dir`` as a Megatron ``torch_dist`` checkpoint
    ``megatron_dir`` (``iter_0000000`` + tracker; no optimizer state), atomically.

    One process, CPU initialisation, a one-rank gloo group: ``torch_dist`` checkpoints are
    resharded when loaded, so a run with ``tensor_parallel`` > 1 loads this single-rank
    import (the value is recorded). The tokenizer recorded in the checkpoint comes from
    ``tokenizer_dir`` or ``hf_dir``. Results (seconds, parameter count, versions) go to
    ``results_json`` (default ``MEGATRON_DIR.import.json``). Needs Megatron-Bridge.
    """
    require_engine("import_checkpoint")
    if tensor_parallel < 1:
        raise ValueError(f"tensor_parallel must be >= 1, not {tensor_parallel}")
    t0 = time.time()
    hf_dir, out = Path(hf_dir), Path(megatron_dir)
    if not _is_hf_dir(hf_dir):
        raise FileNotFoundError(f"{hf_dir} is not an HF checkpoint dir (config.json + *.safetensors)")
    tok = _tokenizer_source(hf_dir, tokenizer_dir)
    from megatron.bridge import AutoBridge
    from megatron.bridge.training.model_load_save import temporary_distributed_context

    bridge = AutoBridge.from_hf_pretrained(str(hf_dir))
    provider = bridge.to_megatron_provider(load_weights=True)
    provider.gradient_accumulation_fusion = False
    provider.attention_backend = usable_attention_backend(provider.attention_backend)
    provider.tensor_model_parallel_size = 1
    provider.pipeline_model_parallel_size = 1
    provider.sequence_parallel = False
    provider.finalize()
    with atomic_path(out) as tmp:
        with temporary_distributed_context(backend="gloo"):
            model = provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)
            n_params = sum(p.numel() for m in model for p in m.parameters())
            bridge.save_megatron_model(
                model, str(tmp), hf_tokenizer_path=None if tok is None else str(tok), low_memory_save=True
            )
            del model
        it = resolve_iter_dir(tmp)
    results = {
        "hf_dir": str(hf_dir),
        "megatron_dir": str(out),
        "iteration_dir": it.name,
        "parameters": int(n_params),
        "tensor_parallel_requested": int(tensor_parallel),
        "tensor_parallel_saved": 1,
        "tokenizer": None if tok is None else str(tok),
        "seconds": round(time.time() - t0, 3),
        "versions": package_versions(MEGATRON_PACKAGES),
    }
    write_json_atomic(results_json or _results_path(out, "import"), results)
    return results


def _staged_base(base: Path, tokenizer_dir: Path | None, stage: Path) -> Path:
    """``base`` itself when it holds tokenizer files, else a dir of links to ``base``'s files
    plus the tokenizer files of ``tokenizer_dir`` (``export_ckpt`` saves the tokenizer)."""
    if _tokenizer_files(base):
        return base
    if tokenizer_dir is None:
        raise FileNotFoundError(
            f"{base} has no tokenizer files and export_ckpt saves the tokenizer: pass tokenizer_dir"
        )
    stage.mkdir(parents=True, exist_ok=True)
    for f in base.iterdir():
        os.symlink(f.resolve(), stage / f.name)
    for name in _tokenizer_files(tokenizer_dir):
        if not (stage / name).exists():
            os.symlink((tokenizer_dir / name).resolve(), stage / name)
    return stage


def _run_record(iter_dir: Path) -> dict[str, Any]:
    """What the training run of ``RUN_DIR/megatron/iter_N`` recorded (empty when the iteration
    dir is not inside a filmorph run dir, e.g. an import)."""
    run_dir = iter_dir.parent.parent
    step = int(ITER_RE.match(iter_dir.name).group(1)) if ITER_RE.match(iter_dir.name) else None
    out: dict[str, Any] = {"step": step}
    cfg_path = run_dir / "train_config.json"
    if iter_dir.parent.name != "megatron" or not cfg_path.is_file():
        return out
    rec = read_json(cfg_path)
    gbs = rec["config"]["global_batch_size"]
    out.update(
        run_dir=str(run_dir),
        consumed_samples=None if step is None else step * gbs,
        tokens_seen=None if step is None else step * gbs * rec["config"]["seq_length"],
        base_model=rec.get("model", {}).get("path"),
        base_model_config_sha256=rec.get("model", {}).get("config_sha256"),
        tokenizer=rec.get("tokenizer"),
        shard_prefixes=rec.get("shard_prefixes"),
    )
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file() and step is not None:
        for line in metrics.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                r = json.loads(line)
                if r.get("step") == step and r.get("loss") is not None:
                    out["loss"] = r["loss"]
    return out


def export_checkpoint(
    megatron_iter_dir: str | Path,
    hf_base_dir: str | Path,
    hf_out: str | Path,
    *,
    tokenizer_dir: str | Path | None = None,
    results_json: str | Path | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Write the Megatron checkpoint ``megatron_iter_dir`` (an ``iter_*`` dir, or a checkpoint
    dir: its newest iteration) as an HF checkpoint ``hf_out``, atomically.

    ``AutoBridge.from_hf_pretrained(hf_base_dir).export_ckpt(...)`` (on the CPU, one-rank gloo
    group); the base dir supplies the HF config and the tokenizer (``tokenizer_dir`` when the
    base has none; its files then also replace the exported ones, byte for byte). The
    export must hold every tensor of the base with the base's shape (:func:`weight_manifest_check`),
    else :class:`ExportError` and nothing is written. ``hf_out/filmorph_train_meta.json``
    records the engine, step and (inside a run dir) the run's identities. Results go to
    ``results_json`` (default ``HF_OUT.export.json``). Needs Megatron-Bridge.
    """
    require_engine("export_checkpoint")
    t0 = time.time()
    iter_dir = resolve_iter_dir(megatron_iter_dir)
    base = Path(hf_base_dir)
    if not _is_hf_dir(base):
        raise FileNotFoundError(f"{base} is not an HF checkpoint dir (config.json + *.safetensors)")
    tok = None if tokenizer_dir is None else Path(tokenizer_dir)
    out = Path(hf_out)
    from megatron.bridge import AutoBridge

    with tempfile.TemporaryDirectory(prefix="filmorph-export-") as scratch:
        src = _staged_base(base, tok, Path(scratch) / "base")
        bridge = AutoBridge.from_hf_pretrained(str(src))
        with atomic_path(out) as tmp:
            bridge.export_ckpt(str(iter_dir), str(tmp), show_progress=False, strict=strict)
            if tok is not None:
                for name in _tokenizer_files(tok):
                    shutil.copyfile(tok / name, tmp / name)
            check = weight_manifest_check(base, tmp)
            if not check["ok"]:
                raise ExportError(
                    f"the export of {iter_dir} has other tensors than {base}: "
                    f"missing {check['missing'][:5]}, extra {check['extra'][:5]}, "
                    f"shape mismatch {check['shape_mismatch'][:5]}"
                )
            meta = {"engine": "megatron", "megatron_iter_dir": str(iter_dir), **_run_record(iter_dir)}
            meta.setdefault("base_model", str(base))
            write_json_atomic(tmp / EXPORT_META, meta)
    results = {
        "megatron_iter_dir": str(iter_dir),
        "hf_base_dir": str(base),
        "hf_out": str(out),
        "tokenizer_dir": None if tok is None else str(tok),
        "weights": check,
        "step": meta.get("step"),
        "seconds": round(time.time() - t0, 3),
        "versions": package_versions(MEGATRON_PACKAGES),
    }
    write_json_atomic(results_json or _results_path(out, "export"), results)
    return results


# ============================================================================ command line
DESCRIPTION = """\
Convert checkpoints for the megatron engine and prove the conversions right.

  import   HF checkpoint dir -> Megatron torch_dist checkpoint (iter_0000000), CPU, one process
  verify   logits of a converted checkpoint (Megatron dir: needs a GPU and Megatron-Bridge; HF dir:
           runs anywhere) vs the HF model on a fixed batch of token ids, fp32; exits 1 with the max
           abs difference and the argmax agreement when they differ beyond --tolerance
  export   one Megatron iteration -> HF checkpoint (config, safetensors, tokenizer files); the
           export must hold every tensor of the base model, with its shape

Each writes a results JSON next to its output (OUT.import.json, CANDIDATE.verify.json,
OUT.export.json) and prints it as one JSON line. Run one conversion per process.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m filmorph.convert",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    imp = sub.add_parser("import", help="HF checkpoint -> Megatron checkpoint")
    imp.add_argument("--hf", required=True, type=Path, help="HF checkpoint dir (config.json + safetensors)")
    imp.add_argument("--out", required=True, type=Path, help="Megatron checkpoint dir to write")
    imp.add_argument(
        "--tensor-parallel",
        type=int,
        default=1,
        help="tensor-parallel size of the training that loads it (recorded; the import is "
        "single-rank and resharded at load)",
    )
    imp.add_argument("--tokenizer-dir", type=Path, default=None, help="tokenizer files (default: --hf)")
    imp.add_argument("--results", type=Path, default=None, help="results JSON (default OUT.import.json)")

    ver = sub.add_parser("verify", help="logits of a converted checkpoint vs the HF model")
    ver.add_argument("--hf", required=True, type=Path, help="the HF model (reference)")
    ver.add_argument(
        "--candidate",
        required=True,
        type=Path,
        help="Megatron checkpoint dir / iter_* dir, or HF checkpoint dir",
    )
    ver.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help=f"max abs logit difference (default {DEFAULT_IMPORT_TOLERANCE} for a Megatron candidate, "
        f"{DEFAULT_EXPORT_TOLERANCE} for an HF one)",
    )
    ver.add_argument(
        "--min-argmax-agreement",
        type=float,
        default=DEFAULT_MIN_ARGMAX_AGREEMENT,
        help="share of positions whose argmax must agree (default %(default)s)",
    )
    ver.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute dtype")
    ver.add_argument("--batch", type=int, default=2, help="sequences in the fixed batch (default 2)")
    ver.add_argument("--length", type=int, default=32, help="tokens per sequence (default 32)")
    ver.add_argument("--seed", type=int, default=0, help="seed of the fixed token ids (default 0)")
    ver.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    ver.add_argument(
        "--results", type=Path, default=None, help="results JSON (default CANDIDATE.verify.json)"
    )

    dm = sub.add_parser(
        "verify-doc-mask",
        help="GPU: packed documents under the engine's document masking = documents run alone",
    )
    dm.add_argument("--hf", required=True, type=Path, help="the HF model (architecture, eos id)")
    dm.add_argument("--candidate", required=True, type=Path, help="its Megatron import (or an iter_* dir)")
    dm.add_argument("--eod-id", type=int, default=None, help="document separator id (default: eos_token_id)")
    dm.add_argument(
        "--mode",
        choices=("thd", "mask", "none"),
        default=None,
        help="masking to measure (default: the engine's choice for this model; refused types raise; "
        "none: record that the run has no document masking, no GPU needed)",
    )
    dm.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=list(DEFAULT_DOC_LENGTHS),
        help="document lengths of the packed row (default %(default)s)",
    )
    dm.add_argument("--seed", type=int, default=0, help="seed of the document ids (default 0)")
    dm.add_argument(
        "--leak-ratio",
        type=float,
        default=DEFAULT_DOC_MASK_LEAK_RATIO,
        help="packed-vs-separate logit diff allowed, as a share of the unmasked row's (default %(default)s)",
    )
    dm.add_argument(
        "--grad-tolerance",
        type=float,
        default=DEFAULT_DOC_MASK_GRAD_TOLERANCE,
        help="relative gradient difference allowed (default %(default)s)",
    )
    dm.add_argument(
        "--results", type=Path, default=None, help="results JSON (default CANDIDATE.docmask.json)"
    )

    exp = sub.add_parser("export", help="Megatron iteration -> HF checkpoint")
    exp.add_argument(
        "--megatron", required=True, type=Path, help="iter_NNNNNNN dir (or a checkpoint dir: its newest)"
    )
    exp.add_argument("--hf-base", required=True, type=Path, help="the HF base model the run started from")
    exp.add_argument("--out", required=True, type=Path, help="HF checkpoint dir to write")
    exp.add_argument("--tokenizer-dir", type=Path, default=None, help="the family's tokenizer files")
    exp.add_argument("--results", type=Path, default=None, help="results JSON (default OUT.export.json)")
    exp.add_argument("--strict", action="store_true", help="Megatron-Bridge's strict export validation")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "import":
            res = import_checkpoint(
                args.hf,
                args.out,
                tensor_parallel=args.tensor_parallel,
                tokenizer_dir=args.tokenizer_dir,
                results_json=args.results,
            )
        elif args.command == "verify":
            tol = args.tolerance
            if tol is None:
                tol = DEFAULT_EXPORT_TOLERANCE if _is_hf_dir(args.candidate) else DEFAULT_IMPORT_TOLERANCE
            res = verify(
                args.hf,
                args.candidate,
                tolerance=tol,
                min_argmax_agreement=args.min_argmax_agreement,
                dtype=args.dtype,
                batch=args.batch,
                length=args.length,
                seed=args.seed,
                device=args.device,
                results_json=args.results,
            )
        elif args.command == "verify-doc-mask":
            res = verify_document_masking(
                args.hf,
                args.candidate,
                eod_id=args.eod_id,
                mode=args.mode,
                lengths=args.lengths,
                seed=args.seed,
                leak_ratio=args.leak_ratio,
                grad_tolerance=args.grad_tolerance,
                results_json=args.results,
            )
        else:
            res = export_checkpoint(
                args.megatron,
                args.hf_base,
                args.out,
                tokenizer_dir=args.tokenizer_dir,
                results_json=args.results,
                strict=args.strict,
            )
    except VerificationError as exc:
        print(f"filmorph.convert verify: FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(res, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
