"""What the ``megatron`` engine's conversions compare: a fixed token batch, logits of an HF
model and of a Megatron iteration, the fused QKV layout (and which layout a wrong export
used), the tensors an export must hold, and where an HF or a Megatron checkpoint lives.

Nothing here imports megatron.bridge, megatron.core or transformer_engine at module level;
the HF and pure-torch helpers run on a CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filmorph.io import read_json
from filmorph.paths import iter_name
from filmorph.tokenizers import HF_TOKENIZER_FILES
from filmorph.train.megatron.settings import (
    ITER_RE,
    TRACKER_FILE,
    avoid_gemma2_flex_attention,
    latest_iteration,
    masked_softmax_fusion_available,
    require_engine,
    usable_attention_backend,
)

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


def is_hf_dir(p: Path) -> bool:
    return (p / "config.json").is_file() and any(p.glob("*.safetensors"))


def is_megatron_dir(p: Path) -> bool:
    if not p.is_dir():
        return False
    if ITER_RE.match(p.name) or (p / TRACKER_FILE).is_file():
        return True
    return any(d.is_dir() and ITER_RE.match(d.name) for d in p.iterdir())


def results_path(out: str | Path, kind: str) -> Path:
    out = Path(out)
    return out.parent / f"{out.name}.{kind}.json"


def tokenizer_files_in(d: Path) -> list[str]:
    return [f for f in TOKENIZER_FILES if (d / f).is_file()]


def tokenizer_source(hf_dir: Path, tokenizer_dir: str | Path | None) -> Path | None:
    if tokenizer_dir is not None:
        t = Path(tokenizer_dir)
        if "tokenizer.json" not in tokenizer_files_in(t) and "tokenizer.model" not in tokenizer_files_in(t):
            raise FileNotFoundError(f"tokenizer_dir {t} has no tokenizer.json / tokenizer.model")
        return t
    if tokenizer_files_in(hf_dir):
        return hf_dir
    return None


def hf_config(hf_dir: Path) -> Any:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(hf_dir), local_files_only=True)
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def attention_dims(hf_dir: Path) -> dict[str, int]:
    cfg = hf_config(hf_dir)
    heads = int(cfg.num_attention_heads)
    groups = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    return {"num_heads": heads, "num_query_groups": groups, "head_dim": head_dim}


def _safetensors_files(hf_dir: Path) -> list[Path]:
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        return sorted({hf_dir / f for f in read_json(index)["weight_map"].values()})
    return sorted(hf_dir.glob("*.safetensors"))


def hf_tensors(hf_dir: Path, names: Sequence[str]) -> dict[str, Any]:
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
    tied = bool(getattr(hf_config(Path(base_dir)), "tie_word_embeddings", False))
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


def torch_device(device: str | None) -> Any:
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def torch_dtype(name: str) -> Any:
    import torch

    table = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if name not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, not {name!r}")
    return table[name]


def exact_matmuls() -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def hf_logits(hf_dir: Path, ids: Any, dtype: Any, device: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from filmorph.models import attention_kwargs

    extra = attention_kwargs(hf_dir, local_files_only=True)  # eager for Gemma 2: SDPA drops its softcap
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=dtype, local_files_only=True, **extra)
    model.to(device).eval()
    with torch.no_grad():
        logits = model(input_ids=ids.to(device), use_cache=False).logits.float().cpu()
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return logits


# ============================================================================ Megatron side
@contextlib.contextmanager
def megatron_model(
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


def megatron_logits(iter_dir: Path, ids: Any, dtype: Any, device: Any) -> tuple[Any, Any]:
    """Logits of the Megatron checkpoint at ``iter_dir`` (loaded in its own dtype, then cast to
    ``dtype``) and its layer-0 fused QKV weight (for diagnostics)."""
    import torch

    with megatron_model(iter_dir, dtype, device, what="verify (a Megatron checkpoint)") as model:
        b, t = ids.shape
        pos = torch.arange(t, device=device).unsqueeze(0).expand(b, t)
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), position_ids=pos, attention_mask=None)
        qkv = model.state_dict().get(MEGATRON_QKV_KEY)
        qkv = None if qkv is None else qkv.detach().float().cpu()
        logits = logits.float().cpu()
    return logits, qkv
