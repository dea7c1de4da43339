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

Command line: ``python -m filmorph.train.megatron.convert {import,verify,verify-doc-mask,export}
--help``. Nothing here
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
from filmorph.paths import ITER_RE
from filmorph.provenance import package_versions
from filmorph.train.megatron.settings import (
    MEGATRON_PACKAGES,
    require_engine,
    usable_attention_backend,
)
from filmorph.train.megatron.verify import (
    DEFAULT_DOC_LENGTHS,
    DEFAULT_DOC_MASK_GRAD_TOLERANCE,
    DEFAULT_DOC_MASK_LEAK_RATIO,
    block_causal_mask,
    judge_document_masking,
    packed_documents,
    verify,
    verify_document_masking,
    verify_export,
    verify_import,
)
from filmorph.train.megatron.weights import (
    DEFAULT_EXPORT_TOLERANCE,
    DEFAULT_IMPORT_TOLERANCE,
    DEFAULT_MIN_ARGMAX_AGREEMENT,
    EXPORT_META,
    ExportError,
    VerificationError,
    compare_logits,
    contiguous_split_qkv,
    diagnose_fused_qkv,
    diagnose_split_qkv,
    fixed_token_batch,
    fuse_qkv,
    is_hf_dir,
    resolve_iter_dir,
    results_path,
    tokenizer_files_in,
    tokenizer_source,
    unfuse_qkv,
    weight_manifest_check,
)

# the command's functions, with the checks it runs (one import for callers and tests)
__all__ = [
    "DEFAULT_DOC_LENGTHS",
    "DEFAULT_DOC_MASK_GRAD_TOLERANCE",
    "DEFAULT_DOC_MASK_LEAK_RATIO",
    "DEFAULT_EXPORT_TOLERANCE",
    "DEFAULT_IMPORT_TOLERANCE",
    "DEFAULT_MIN_ARGMAX_AGREEMENT",
    "ExportError",
    "VerificationError",
    "block_causal_mask",
    "compare_logits",
    "contiguous_split_qkv",
    "diagnose_fused_qkv",
    "diagnose_split_qkv",
    "export_checkpoint",
    "fixed_token_batch",
    "fuse_qkv",
    "import_checkpoint",
    "judge_document_masking",
    "main",
    "packed_documents",
    "resolve_iter_dir",
    "unfuse_qkv",
    "verify",
    "verify_document_masking",
    "verify_export",
    "verify_import",
    "weight_manifest_check",
]


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
    if not is_hf_dir(hf_dir):
        raise FileNotFoundError(f"{hf_dir} is not an HF checkpoint dir (config.json + *.safetensors)")
    tok = tokenizer_source(hf_dir, tokenizer_dir)
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
    write_json_atomic(results_json or results_path(out, "import"), results)
    return results


def _staged_base(base: Path, tokenizer_dir: Path | None, stage: Path) -> Path:
    """``base`` itself when it holds tokenizer files, else a dir of links to ``base``'s files
    plus the tokenizer files of ``tokenizer_dir`` (``export_ckpt`` saves the tokenizer)."""
    if tokenizer_files_in(base):
        return base
    if tokenizer_dir is None:
        raise FileNotFoundError(
            f"{base} has no tokenizer files and export_ckpt saves the tokenizer: pass tokenizer_dir"
        )
    stage.mkdir(parents=True, exist_ok=True)
    for f in base.iterdir():
        os.symlink(f.resolve(), stage / f.name)
    for name in tokenizer_files_in(tokenizer_dir):
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
    if not is_hf_dir(base):
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
                for name in tokenizer_files_in(tok):
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
    write_json_atomic(results_json or results_path(out, "export"), results)
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
        prog="python -m filmorph.train.megatron.convert",
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
                tol = DEFAULT_EXPORT_TOLERANCE if is_hf_dir(args.candidate) else DEFAULT_IMPORT_TOLERANCE
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
        print(f"filmorph.train.megatron.convert verify: FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(res, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
