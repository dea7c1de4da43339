"""Gemma 2 2B (the study's Gemma model, random weights) on both GPU engines: same GPU, same
shards, same settings, document masking on (issue 23, item 2).

1. ``softcap``: Gemma 2 soft-caps its attention logits. On a 2-layer Gemma 2 of the real head
   width (256) on the GPU, the logits of each attention implementation against eager (which
   applies the cap by construction), and FlexAttention's packed-vs-separate document check
   (:func:`filmorph.train.hf.check_document_masking`), in the model class NeMo Automodel builds
   (``NeMoAutoModelForCausalLM``) when it imports, else the HF class. This is the correctness
   proof for the automodel engine's Gemma 2 path (:func:`filmorph.train.automodel.document_attention`).
2. ``automodel``: the full-size model trained through the engine's config and launcher
   (:func:`tools.gpu_proof_automodel.bench`: no checkpoints) at each setting of :data:`SETTINGS`.
3. ``megatron``: the same settings through :func:`tools.gpu_proof_megatron.sweep` (HF → Megatron
   import, then the engine; Megatron-Bridge's unfused attention, the path that applies the cap).

Run on the device after ``tools.gpu_dag install --stage tools``:
``python3 -m tools.gpu_gemma2_engines --data /root/gd/data --out OUT``. Prints a table last and
writes ``OUT/gemma2_engines.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# (name, train settings): the study's sequence length and global batch (512, 64) at one GPU's
# micro batch, then a longer sequence
SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("seq512_gb64_mb8", {"seq_length": 512, "global_batch_size": 64, "micro_batch_size": 8}),
    ("seq2048_gb16_mb2", {"seq_length": 2048, "global_batch_size": 16, "micro_batch_size": 2}),
)
STEPS = 20

SOFTCAP_CHECK = r"""
import json, sys, tempfile, torch
from transformers import AutoModelForCausalLM, Gemma2Config
from filmorph.train.hf import check_document_masking
out = {}
cfg = Gemma2Config(vocab_size=4096, hidden_size=512, intermediate_size=1024, num_hidden_layers=2,
                   num_attention_heads=2, num_key_value_heads=1, head_dim=256, sliding_window=4096,
                   query_pre_attn_scalar=256, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
torch.manual_seed(0)
base = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
with torch.no_grad():
    for layer in base.model.layers:  # scores well past the cap (|s| >> 50), so that it bites
        layer.self_attn.q_proj.weight.mul_(60)
d = tempfile.mkdtemp()
base.save_pretrained(d)
try:
    from nemo_automodel import NeMoAutoModelForCausalLM as Loader
except Exception as exc:  # noqa: BLE001
    Loader, out["automodel_loader_error"] = AutoModelForCausalLM, repr(exc)[:300]
ids = torch.randint(3, 4000, (1, 64), generator=torch.Generator().manual_seed(1)).cuda()
ref = None
for attn in ("eager", "sdpa", "flex_attention"):
    row = {}
    try:
        try:
            m = Loader.from_pretrained(d, attn_implementation=attn, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001
            row["loader_fallback"] = repr(exc)[-300:]
            m = AutoModelForCausalLM.from_pretrained(d, attn_implementation=attn, dtype=torch.float32)
        m = m.cuda().eval()
        row["class"] = f"{type(m).__module__}.{type(m).__name__}"
        with torch.no_grad():
            logits = m(input_ids=ids, use_cache=False).logits.float()
        ref = logits if attn == "eager" else ref
        row["max_abs_diff_vs_eager"] = float((logits - ref).abs().max())
        if attn != "sdpa":
            row["packed_vs_separate"] = check_document_masking(m, torch.device("cuda"), atol=1e-3)
    except Exception as exc:  # noqa: BLE001
        row["error"] = repr(exc)[-500:]
    out[attn] = row
print(json.dumps(out))
"""


class _Skipped(Exception):
    """An engine left out with --engines."""


def _say(msg: str) -> None:
    print(f"[gemma2_engines {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def softcap_check(env: dict[str, str]) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-c", SOFTCAP_CHECK], env=env, capture_output=True, text=True, timeout=300
    )
    if r.returncode:
        return {"rc": r.returncode, "tail": (r.stdout + r.stderr)[-3000:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def automodel_rows(
    data: Path, work: Path, steps: int, deadline: float, rows: list[dict[str, Any]], save: Any
) -> list[dict[str, Any]]:
    """Write the full-size model once (GPU generator, bf16) and bench every setting, appending
    each row to ``rows`` and calling ``save()`` after it."""
    import tools.gpu_proof_automodel as GA
    from filmorph.models import random_model
    from filmorph.paths import chunk_name
    from tools.gpu_proof_megatron import GEMMA2_2B, _unpack_tokenizer

    tok = _unpack_tokenizer(data / "tok_gemma", work / "tok_gemma")
    model = work / "gemma2_hf"
    if not (model / "config.json").is_file():
        random_model("gemma2", tok, model, config=GEMMA2_2B, seed=0, dtype="bfloat16", device="cuda")
        import torch

        torch.cuda.empty_cache()  # the training runs in child processes
    prefixes = [str(data / "shards" / "gemma" / chunk_name(k)) for k in (0, 1)]
    for name, settings in SETTINGS:
        if time.time() > deadline:
            rows.append({"variant": name, "skipped": "time budget"})
            continue
        cfg = GA.proof_cfg(
            max_steps=steps,
            checkpoint_interval=steps,
            eval_interval=steps,
            eval_iters=0,
            log_interval=1,
            warmup_steps=2,
            **settings,
        )
        GA.bench(name, "gemma", {"prefixes": prefixes}, {"gemma": model}, work, cfg, {})
        rows.append({"variant": name, **settings, **GA.RESULTS.get("bench", {}).get(name, {})})
        save()
    return rows


def megatron_rows(data: Path, out: Path, work: Path, steps: int, budget_s: float) -> list[dict[str, Any]]:
    from tools.gpu_proof_megatron import sweep

    variants = [(name, settings, {}) for name, settings in SETTINGS]
    record = sweep(
        "gemma2",
        data,
        out,
        variants=variants,
        steps=steps,
        work=work,
        budget_s=budget_s,
        doc_mask_check=False,
    )
    return [{k: v for k, v in r.items() if k != "metrics"} for r in record.get("variants", [])]


def table(record: dict[str, Any]) -> str:
    lines = [
        f"### Gemma 2 2B shape (random init, vocab 262,144), {record.get('gpu')}, "
        f"{record['steps']} steps per run, document masking on",
        "",
        "| engine | attention | setting (seq, global/micro) | tokens/s | MFU | peak GiB | loss first → last"
        " |",
        "|---|---|---|---|---|---|---|",
    ]
    for eng, rows in (("automodel", record.get("automodel", [])), ("megatron", record.get("megatron", []))):
        att = "FlexAttention + softcap" if eng == "automodel" else "Bridge unfused (softcap)"
        for r in rows:
            tps = r.get("tokens_per_s") or r.get("steady_tokens_per_s")
            mfu = r.get("mfu") or r.get("steady_mfu")
            peak = r.get("peak_memory_gib")
            first, last = (
                r.get("first_logged_loss", r.get("first_loss")),
                r.get("final_loss", r.get("last_loss")),
            )
            setting = f"{r.get('seq_length')}, {r.get('global_batch_size')}/{r.get('micro_batch_size')}"
            cells = [
                eng,
                att,
                f"{r['variant']} ({setting})",
                f"{tps:,.0f}" if tps else r.get("skipped") or "failed",
                f"{100 * mfu:.1f} %" if mfu else "-",
                f"{peak:.1f}" if peak else "-",
                f"{first:.2f} → {last:.2f}" if first is not None and last is not None else "-",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    sc = record.get("softcap", {})
    lines += ["", "Softcap check (2-layer Gemma 2, head_dim 256, fp32, scores past the cap):"]
    for attn in ("eager", "sdpa", "flex_attention"):
        r = sc.get(attn, {})
        lines.append(
            f"- {attn}: max |logits − eager| = {r.get('max_abs_diff_vs_eager', r.get('error', '-'))}; "
            f"packed vs separate = {r.get('packed_vs_separate', '-')}; class {r.get('class', '-')}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.gpu_gemma2_engines", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--data", type=Path, required=True, help="tools.gpu_proof_megatron's data dir")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("/root/g2work"))
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--budget-s", type=float, default=420.0)
    p.add_argument(
        "--automodel-path",
        default=os.environ.get("FILMORPH_ENGINE_PATH_AUTOMODEL", ""),
        help="Automodel's own packages, ahead of PYTHONPATH for its runs",
    )
    p.add_argument(
        "--megatron-path",
        default=os.environ.get("FILMORPH_ENGINE_PATH_MEGATRON", ""),
        help="Megatron-Bridge's own packages, ahead of PYTHONPATH for its runs",
    )
    p.add_argument("--engines", default="automodel,megatron", help="comma-separated: automodel, megatron")
    a = p.parse_args(argv)
    engines = set(a.engines.split(","))
    t0 = time.time()
    a.out.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    import torch

    record: dict[str, Any] = {
        "steps": a.steps,
        "gpu": torch.cuda.get_device_name(0),
        "settings": dict(SETTINGS),
    }
    am_env = {
        **os.environ,
        "PYTHONPATH": ":".join(x for x in (a.automodel_path, os.environ.get("PYTHONPATH"), str(REPO)) if x),
    }

    def save() -> None:  # after every phase: a bench stopped early still leaves its rows
        record["seconds"] = round(time.time() - t0, 1)
        record["table"] = table(record)
        (a.out / "gemma2_engines.json").write_text(
            json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8"
        )
        (a.out / "gemma2_engines.md").write_text(record["table"] + "\n", encoding="utf-8")

    _say("softcap check")
    record["softcap"] = softcap_check(am_env)
    _say(json.dumps(record["softcap"]))
    save()
    # Automodel runs in its own processes: its transformers goes ahead of Megatron-Bridge's
    shared = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = am_env["PYTHONPATH"]
    try:
        record["automodel"] = []
        if "automodel" not in engines:
            raise _Skipped
        automodel_rows(a.data, a.work, a.steps, t0 + a.budget_s * 0.45, record["automodel"], save)
    except _Skipped:
        pass
    except Exception:  # noqa: BLE001
        record["automodel_error"] = traceback.format_exc()[-3000:]
    # Megatron-Bridge's transformers ahead for its processes
    os.environ["PYTHONPATH"] = ":".join(x for x in (a.megatron_path, shared) if x)
    try:
        if "megatron" not in engines:
            raise _Skipped
        record["megatron"] = megatron_rows(
            a.data, a.out, a.work, a.steps, max(120.0, a.budget_s - (time.time() - t0))
        )
    except _Skipped:
        pass
    except Exception:  # noqa: BLE001
        record["megatron_error"] = traceback.format_exc()[-3000:]
    save()
    print(record["table"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
