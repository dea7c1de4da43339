"""GPU proof of the fine-tuning track: LoRA SFT with NeMo Automodel's recipe, end to end.

One device call (``tools/README.md`` says how to run it).

What it does, per model (a small Llama of the real architecture run by Automodel's own Llama
class; a small NemotronH hybrid Mamba-attention-MoE config through transformers' NemotronH class,
``force_hf``, whose Mamba mixer falls back to its pure-PyTorch path when mamba-ssm /
causal-conv1d are not installed, as here), all random weights:

1. synthetic Tagalog chat data (:func:`filmorph.finetune.data.synthetic_conversations`: repeat,
   reverse, add, spell), validated by :func:`~filmorph.finetune.data.validate_chat_data`;
2. a word-level tokenizer over that data with a chat template, saved beside each model;
3. held-out chat loss of the base model (:func:`filmorph.finetune.loss.evaluate_loss`);
4. :func:`filmorph.finetune.run.train` (our recipe YAML, torchrun + Automodel's ``train_ft``,
   LoRA dim 8 / alpha 32 / Triton on every linear layer -- NemotronH: but ``out_proj`` --,
   global batch 8, local 1, validation every 20 steps, export of the HF PEFT adapter, merge);
5. the adapter reloaded with peft on the base model: the logits must change, the merged
   weights must give the adapter's logits, the held-out loss must fall.

With ``--wheelhouse DIR`` (a Mamba-kernel wheelhouse written by ``python -m filmorph.finetune
build-kernels``, the ``build_kernel_wheels`` rule's command) the NemotronH run takes the cluster
path instead: the ``nemotron3_nano_lora`` preset as configured (Automodel's own NemotronH class,
which has no PyTorch fallback: its Mamba mixer calls mamba-ssm's Triton kernels and
causal-conv1d's CUDA kernels), the wheels installed by :func:`filmorph.finetune.run.train`
exactly as the ``finetune_model`` rule does. To prove which path ran, a ``sitecustomize`` put
first on the training processes' ``PYTHONPATH`` wraps the fused entry points
(``causal_conv1d_fn``, ``mamba_split_conv1d_scan_combined``, ``mamba_chunk_scan_combined``, ...)
with call counters and writes them, with the files the packages were imported from, when each
process exits. The adapter is then reloaded with peft on transformers' NemotronH class in this
process, which has no kernels on its path (the PyTorch Mamba path): the chat loss must fall there
too, so the fused training and the reference path agree.

It prints one table last (model, parameters, steps, train loss first -> last, validation loss
by step, chat loss before -> after, max |logit change|, merged vs adapter, seconds) and writes
``$OUT/table.md`` and ``$OUT/results.json``. Exit status 0 only when every check held.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
# the run: the study's LoRA settings, a higher lr (random weights learn little at 1e-5 in 60 steps)
RUN = {
    "max_steps": 60,
    "val_every_steps": 20,
    "ckpt_every_steps": 30,
    "lr": 1.0e-3,
    "seq_length": 256,
    "gpus": 1,
    "expert_parallel": 1,
}
RESULTS: dict[str, Any] = {}
ROWS: list[dict[str, Any]] = []
TRACE_ENV = "FILMORPH_KERNEL_TRACE"
# written as sitecustomize.py into a directory put first on the training processes' PYTHONPATH
KERNEL_TRACE_SITECUSTOMIZE = """
import atexit, functools, json, os, sys
_dir = os.environ.get("FILMORPH_KERNEL_TRACE")
if _dir:
    _counts, _files = {}, {}

    def _wrap(mod, name):
        fn = getattr(mod, name, None)
        if fn is None:
            return
        key = mod.__name__ + "." + name

        @functools.wraps(fn)
        def counted(*args, **kwargs):
            _counts[key] = _counts.get(key, 0) + 1
            return fn(*args, **kwargs)

        setattr(mod, name, counted)

    try:
        import causal_conv1d
        import mamba_ssm
        import mamba_ssm.ops.triton.selective_state_update as _ssu
        import mamba_ssm.ops.triton.ssd_combined as _ssd

        for _m, _n in [(causal_conv1d, "causal_conv1d_fn"), (causal_conv1d, "causal_conv1d_update"),
                       (_ssd, "mamba_split_conv1d_scan_combined"), (_ssd, "mamba_chunk_scan_combined"),
                       (_ssu, "selective_state_update")]:
            _wrap(_m, _n)
        _files = {m: sys.modules[m].__file__ for m in ("mamba_ssm", "causal_conv1d", "causal_conv1d_cuda")
                  if getattr(sys.modules.get(m), "__file__", None)}
        _files["mamba_ssm_version"] = mamba_ssm.__version__
    except Exception as exc:  # recorded: the proof fails on it
        _files["import_error"] = repr(exc)

    def _dump():
        path = os.path.join(_dir, "trace-%d.json" % os.getpid())
        with open(path, "w") as fh:
            json.dump({"argv": sys.argv[:3], "counts": _counts, "files": _files}, fh)

    atexit.register(_dump)
"""


def stamp(t0: float, msg: str) -> None:
    print(f"[{time.time() - t0:7.1f} s] {msg}", flush=True)


def make_data(work: Path) -> dict[str, Path]:
    from filmorph.finetune.data import synthetic_conversations, validate_chat_data, write_chat_jsonl

    write_chat_jsonl(work / "src_train.jsonl", synthetic_conversations(480, seed=0))
    write_chat_jsonl(work / "src_validation.jsonl", synthetic_conversations(48, seed=1))
    counts = validate_chat_data(
        {"train": work / "src_train.jsonl", "validation": work / "src_validation.jsonl"},
        work / "counts.json",
        clean_dir=work / "data",
    )
    RESULTS["data"] = {
        s: {k: c[k] for k in ("conversations", "turns", "chars_total")} for s, c in counts["files"].items()
    }
    return {"train": work / "data/train.jsonl", "validation": work / "data/validation.jsonl"}


def make_tokenizer(files: Sequence[Path]) -> Any:
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words: set[str] = set()
    for f in files:
        for line in Path(f).read_text(encoding="utf-8").splitlines():
            for m in json.loads(line)["messages"]:
                words.update(m["content"].split())
    vocab = {w: i for i, w in enumerate(SPECIALS + sorted(words - set(SPECIALS)))}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_model(kind: str, tok: Any, out: Path) -> int:
    """A random small model of the real architecture, saved with the tokenizer (bf16)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, NemotronHConfig

    ids = {
        "vocab_size": len(tok),
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "tie_word_embeddings": False,
    }
    if kind == "llama":
        cfg = LlamaConfig(
            hidden_size=256,
            intermediate_size=768,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=32,
            max_position_embeddings=2048,
            **ids,
        )
    else:  # NemotronH: Mamba-2, MoE, attention and MLP blocks, as in Nemotron-3-Nano, small
        cfg = NemotronHConfig(
            hidden_size=256,
            layers_block_type=["linear_attention", "moe", "full_attention", "linear_attention", "moe", "mlp"],
            num_attention_heads=8,
            num_key_value_heads=2,
            head_dim=32,
            intermediate_size=512,
            mamba_num_heads=8,
            mamba_head_dim=32,
            ssm_state_size=32,
            n_groups=2,
            chunk_size=64,
            n_routed_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=128,
            moe_shared_expert_intermediate_size=128,
            max_position_embeddings=2048,
            **ids,
        )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def adapter_checks(base: Path, run_dir: Path, data: Path) -> dict[str, Any]:
    """peft reloads the exported adapter: logits change vs the base; merged == adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base))
    conv = json.loads(data.read_text(encoding="utf-8").splitlines()[0])
    ids = tok.apply_chat_template(conv["messages"], tokenize=True, return_dict=True, return_tensors="pt")
    ids = ids["input_ids"].to("cuda")
    with torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).to("cuda").eval()
        ref = model(ids).logits.float()
        tuned = PeftModel.from_pretrained(model, str(run_dir / "final")).eval()
        out = tuned(ids).logits.float()
        lora = [n for n, _ in tuned.named_parameters() if "lora_" in n]
        merged = AutoModelForCausalLM.from_pretrained(str(run_dir / "merged"), dtype=torch.float32)
        mout = merged.to("cuda").eval()(ids).logits.float()
    cfg = json.loads((run_dir / "final" / "adapter_config.json").read_text())
    return {
        "adapter_tensors": len(lora),
        "target_modules": sorted(cfg["target_modules"]),
        "r": cfg["r"],
        "lora_alpha": cfg["lora_alpha"],
        "max_logit_change": float((out - ref).abs().max()),
        "merged_vs_adapter": float((mout - out).abs().max()),
        "files": sorted(p.name for p in (run_dir / "final").iterdir()),
    }


def kernel_trace(trace_dir: Path) -> dict[str, Any]:
    """The fused-kernel call counts (summed over the processes that made calls), where those
    processes imported the kernels from, and the processes that could not import them.

    The wrappers are installed only after both packages imported, so a process with calls
    imported both; a process that made none (the pip that installs the wheels starts before
    they exist) is listed under ``without_kernels`` and does not fail the proof."""
    counts: dict[str, int] = {}
    files: dict[str, Any] = {}
    without: list[dict[str, Any]] = []
    processes = 0
    for f in sorted(trace_dir.glob("trace-*.json")):
        rec = json.loads(f.read_text())
        processes += 1
        if not rec["counts"]:
            if "import_error" in rec["files"]:
                without.append({"argv": rec["argv"], "import_error": rec["files"]["import_error"]})
            continue
        files.update(rec["files"])
        for k, v in rec["counts"].items():
            counts[k] = counts.get(k, 0) + v
    return {"processes": processes, "counts": counts, "files": files, "without_kernels": without}


def prove(
    kind: str, work: Path, data: dict[str, Path], tok: Any, t0: float, wheelhouse: Path | None = None
) -> bool:
    from filmorph.finetune.config import FinetuneConfig
    from filmorph.finetune.loss import evaluate_loss
    from filmorph.finetune.run import train

    base = work / "models" / kind
    params = make_model(kind, tok, base)
    stamp(t0, f"{kind}: model written, {params / 1e6:.2f} M parameters")
    preset = {"llama": "llama3_8b_lora", "nemotron_h": "nemotron3_nano_lora"}[kind]
    fused = kind == "nemotron_h" and wheelhouse is not None
    extra = {"force_hf": True, "needs_mamba_kernels": False} if kind == "nemotron_h" and not fused else {}
    cfg = FinetuneConfig.from_run({"preset": preset, **RUN, **extra})
    before = evaluate_loss(base, data["validation"], max_length=cfg.seq_length)
    stamp(t0, f"{kind}: chat loss before {before['loss']:.4f} ({before['tokens']} assistant tokens)")
    t = time.time()
    run_dir = work / "runs" / kind
    trace_dir = work / "trace" / kind
    trace_dir.mkdir(parents=True, exist_ok=True)
    site = work / "trace_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(KERNEL_TRACE_SITECUSTOMIZE)
    old_env = {k: os.environ.get(k) for k in (TRACE_ENV, "PYTHONPATH")}
    if fused:
        os.environ[TRACE_ENV] = str(trace_dir)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), old_env["PYTHONPATH"]]))
    try:
        summary = train(
            cfg,
            train_file=data["train"],
            validation_file=data["validation"],
            run_dir=run_dir,
            model=base,
            merge=True,
            progress=True,
            wheelhouse=wheelhouse if fused else None,
        )
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.time() - t
    trace = kernel_trace(trace_dir)
    if fused:
        stamp(t0, f"{kind}: fused kernels in training: {json.dumps(trace)}")
    losses = {k: summary[k] for k in ("first_loss", "final_loss", "val_loss")}
    stamp(t0, f"{kind}: trained in {seconds:.0f} s: {json.dumps(losses)}")
    after = evaluate_loss(base, data["validation"], adapter=run_dir / "final", max_length=cfg.seq_length)
    checks = adapter_checks(base, run_dir, data["validation"])
    stamp(t0, f"{kind}: chat loss after {after['loss']:.4f}; {json.dumps(checks)}")
    vals = [v for _, v in sorted(summary["val_loss"].items(), key=lambda kv: int(kv[0])) if v is not None]
    ok = {
        "validation loss falls": len(vals) >= 2 and vals[-1] < vals[0],
        "chat loss falls": after["loss"] < before["loss"],
        "adapter changes the logits": checks["max_logit_change"] > 1e-3,
        # merged in bf16: rounding, far below the adapter's own effect
        "merged == base + adapter": checks["merged_vs_adapter"]
        <= max(0.1 * checks["max_logit_change"], 1e-2),
        "no out_proj adapter (NemotronH)": kind != "nemotron_h" or "out_proj" not in checks["target_modules"],
    }
    if fused:
        ok["fused Mamba kernels ran in training"] = (
            trace["counts"].get("mamba_ssm.ops.triton.ssd_combined.mamba_split_conv1d_scan_combined", 0)
            + trace["counts"].get("mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined", 0)
            > 0
        )
        ok["kernels imported from the run's wheelhouse install"] = all(
            str(run_dir / "kernels") in trace["files"].get(m, "") for m in ("mamba_ssm", "causal_conv1d")
        )
    RESULTS[kind] = {
        "params": params,
        "summary": summary,
        "before": before,
        "after": after,
        "checks": checks,
        "ok": ok,
        "seconds": seconds,
        "kernel_trace": trace,
        "yaml": (run_dir / "automodel.yaml").read_text(),
    }
    ROWS.append(
        {
            "model": {
                "llama": "Llama (Automodel class)",
                "nemotron_h": "NemotronH (Automodel class, fused Mamba kernels)"
                if fused
                else "NemotronH (HF class, PyTorch Mamba)",
            }[kind],
            "params": f"{params / 1e6:.2f} M",
            "steps": summary["steps"],
            "train loss": f"{summary['first_loss']:.3f} -> {summary['final_loss']:.3f}",
            "val loss": " / ".join(
                f"{s}: {v:.3f}" for s, v in sorted(summary["val_loss"].items(), key=lambda kv: int(kv[0]))
            ),
            "chat loss": f"{before['loss']:.3f} -> {after['loss']:.3f}",
            "max |dlogit|": f"{checks['max_logit_change']:.3f}",
            "merged vs adapter": f"{checks['merged_vs_adapter']:.1e}",
            "seconds": f"{seconds:.0f}",
            "checks": "all held"
            if all(ok.values())
            else "FAILED: " + ", ".join(k for k, v in ok.items() if not v),
        }
    )
    return all(ok.values())


def print_table(out: Path) -> None:
    if not ROWS:
        return
    head = list(ROWS[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in ROWS]
    print("\n".join(lines), flush=True)
    (out / "table.md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.gpu_proof_finetune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/out")))
    p.add_argument("--work", type=Path, default=Path("/tmp/fm-finetune"))
    p.add_argument("--models", default="llama,nemotron_h")
    p.add_argument(
        "--wheelhouse",
        type=Path,
        default=None,
        help="Mamba-kernel wheelhouse (build-kernels): NemotronH on Automodel's fused-kernel class",
    )
    args = p.parse_args(argv)
    import torch

    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    stamp(t0, f"GPU {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    data = make_data(args.work)
    tok = make_tokenizer([data["train"], data["validation"]])
    stamp(t0, f"data {RESULTS['data']}; vocabulary {len(tok)}")
    status = 0
    for kind in args.models.split(","):
        try:
            if not prove(kind, args.work, data, tok, t0, wheelhouse=args.wheelhouse):
                status = 1
        except Exception:
            status = 1
            tb = traceback.format_exc()
            print(f"{kind} FAILED\n{tb}", flush=True)
            RESULTS.setdefault("failures", {})[kind] = tb[-4000:]
            log = args.work / "runs" / kind / "automodel_node0.log"
            if log.is_file():
                print(log.read_text(errors="replace")[-4000:], flush=True)
        (args.out / "results.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    stamp(t0, "done")
    print_table(args.out)
    return status


if __name__ == "__main__":
    sys.exit(main())
