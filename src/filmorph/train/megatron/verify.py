"""The ``megatron`` engine's checks on the GPU: :func:`verify` (a converted checkpoint's logits
equal the HF model's; on failure, which QKV layout the candidate has) and
:func:`verify_document_masking` (packed documents under the engine's document masking give
the logits and gradients of the documents run one by one; a row without masking does not).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filmorph.io import write_json_atomic
from filmorph.provenance import package_versions
from filmorph.train.megatron.settings import (
    MEGATRON_PACKAGES,
    require_engine,
)
from filmorph.train.megatron.weights import (
    DEFAULT_EXPORT_TOLERANCE,
    DEFAULT_IMPORT_TOLERANCE,
    DEFAULT_MIN_ARGMAX_AGREEMENT,
    HF_QKV_KEYS,
    MEGATRON_QKV_KEY,
    VerificationError,
    attention_dims,
    compare_logits,
    diagnose_fused_qkv,
    diagnose_split_qkv,
    exact_matmuls,
    fixed_token_batch,
    hf_config,
    hf_logits,
    hf_tensors,
    is_hf_dir,
    is_megatron_dir,
    megatron_logits,
    megatron_model,
    resolve_iter_dir,
    results_path,
    torch_device,
    torch_dtype,
)


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
    if not is_hf_dir(hf_dir):
        raise FileNotFoundError(f"{hf_dir} is not an HF checkpoint dir (config.json + *.safetensors)")
    if is_hf_dir(cand):
        kind = "hf"
    elif is_megatron_dir(cand):
        kind = "megatron"
    else:
        raise FileNotFoundError(f"{cand} is neither an HF checkpoint dir nor a Megatron checkpoint")
    if kind == "megatron":
        require_engine("verify (a Megatron checkpoint)")
    dev, dt = torch_device(device), torch_dtype(dtype)
    exact_matmuls()
    config = hf_config(hf_dir)
    ids = fixed_token_batch(int(config.vocab_size), batch=batch, length=length, seed=seed)
    ref = hf_logits(hf_dir, ids, dt, dev)
    iter_dir = None
    fused = None
    if kind == "hf":
        out = hf_logits(cand, ids, dt, dev)
    else:
        iter_dir = resolve_iter_dir(cand)
        out, fused = megatron_logits(iter_dir, ids, dt, dev)
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
    write_json_atomic(results_json or results_path(cand, "verify"), results)
    if not cmp["passed"]:
        raise VerificationError(
            f"{cand} does not reproduce {hf_dir}: max abs diff {cmp['max_abs_diff']:.4g} "
            f"(tolerance {tolerance:.4g}), argmax agreement {cmp['argmax_agreement']:.2%} "
            f"over {cmp['positions']} positions; {cmp['reason']}" + (f"; {diagnosis}" if diagnosis else "")
        )
    return results


def _diagnose(hf_dir: Path, cand: Path, kind: str, fused: Any) -> str | None:
    try:
        dims = attention_dims(hf_dir)
        ref = hf_tensors(hf_dir, HF_QKV_KEYS)
        if len(ref) != 3:
            return None
        reference = [ref[k] for k in HF_QKV_KEYS]
        if kind == "megatron":
            if fused is None:
                return f"the Megatron model has no {MEGATRON_QKV_KEY}"
            return diagnose_fused_qkv(fused, *reference, **dims)
        got = hf_tensors(cand, HF_QKV_KEYS)
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
    if not is_megatron_dir(Path(megatron_dir)):
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
    if not is_hf_dir(Path(exported_hf_dir)):
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

    from filmorph.train.megatron.settings import document_cu_seqlens

    with megatron_model(
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

    from filmorph.train.megatron.engine import document_masking_mode

    t0 = time.time()
    hf_dir, cand = Path(hf_dir), Path(candidate)
    if not is_hf_dir(hf_dir):
        raise FileNotFoundError(f"{hf_dir} is not an HF checkpoint dir (config.json + *.safetensors)")
    if not is_megatron_dir(cand):
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
        write_json_atomic(results_json or results_path(cand, "docmask"), results)
        return results
    if mode not in (None, "thd", "mask"):
        raise ValueError(f"mode must be 'none', 'thd' or 'mask', not {mode!r}")
    if not torch.cuda.is_available():
        raise RuntimeError("verify-doc-mask runs the Megatron model's bf16 attention kernels: it needs a GPU")
    if mode is None:
        mode = document_masking_mode(hf_dir)

    config = hf_config(hf_dir)
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
    write_json_atomic(results_json or results_path(cand, "docmask"), results)
    if not verdict["passed"]:
        raise VerificationError(
            f"{cand}: document masking ({mode}) does not keep documents apart: {verdict['reason']}"
        )
    return results
