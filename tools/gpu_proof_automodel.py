"""GPU proof of the ``automodel`` engine: real architectures, real tokenizers, our shards.

``prepare`` runs on the CPU machine, ``prove`` on the lent GPU (``tools/README.md`` says how).

``prove`` writes models of the real shapes with random bf16 weights (Llama 3.2 1B: 1.24 B
parameters, vocab 128,256, tied; Gemma 3 1B: 1.0 B, vocab 262,144, sliding window 512) with
the family's tokenizer files, then per phase:

* ``mask``: Automodel's own Llama class and the HF Gemma 3 class keep packed documents apart
  when given restarted position ids and ``use_cache=False`` (what the engine feeds them);
* ``llama``: :func:`filmorph.train.automodel.run` for 100 steps on both shards, killed once
  the step-50 checkpoint is complete and rerun (it must resume at 50), then
  ``hf/step_0000100`` reloaded in transformers and run forward;
* ``gemma``: the same (no kill) for the Gemma 3 shape;
* ``tune``: short runs of the Llama shape with other local batches / sequence lengths / loss,
  without checkpoints, for tokens/s and MFU;
* ``matched``: the engine comparison: 30-step runs of the Llama shape at the settings of
  :data:`tools.gpu_proof_megatron.MATCHED` (global batch 16; seq 2048 micro 4 and 8,
  seq 1024 micro 16 and 8), for the same table as the Megatron ``sweep --matched``. Run both in
  one device session, on the same shards (``tools/README.md``).

It prints one table last (model, seq, global/micro batch, steps, loss first -> last, tokens/s,
MFU = tokens/s × (6 N + 12 L H Q T) / 989e12, peak GPU memory). Phases stop early when the
time budget (``--budget-s``) would be exceeded.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filmorph.paths import chunk_name, step_name

FAMILIES = {
    "llama": {"source": "llama3_tiktoken_package"},
    "gemma": {"source": "gemma3_gguf_package"},
}
TOKENIZER_KEEP = ("tokenizer.json", "tokenizer_config.json", "tokenizer_meta.json")
ROWS: list[dict[str, Any]] = []
RESULTS: dict[str, Any] = {}


# ============================================================================ CPU: payload
def prepare(out: Path, target_mb: int = 14, chunks: int = 2, seed: int = 7) -> None:
    """Synthetic Filipino corpus -> ``chunks`` chunks -> vanilla shards of both families,
    tokenizers and shards gzipped (the GPU side gunzips them)."""
    from filmorph.corpus import split_corpus, synthesize
    from filmorph.tokenize import prepare as prepare_tokenizer
    from filmorph.tokenize import tokenize_chunk

    work = out.parent / (out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.jsonl"
    if not corpus.is_file():
        synthesize(corpus, target_mb * 1_000_000, seed=seed)
    if not (work / "chunks" / "counts.json").is_file():
        split_corpus(corpus, work / "chunks", chunks, id_prefix="syn")
    for fam, spec in FAMILIES.items():
        tdir = work / f"tok_{fam}"
        if not (tdir / "tokenizer_meta.json").is_file():
            prepare_tokenizer(fam, spec, tdir)
        dst = out / f"tok_{fam}"
        dst.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_KEEP:
            if name == "tokenizer.json":
                with (
                    open(tdir / name, "rb") as f,
                    gzip.open(dst / (name + ".gz"), "wb", compresslevel=6) as g,
                ):
                    shutil.copyfileobj(f, g)
            else:
                shutil.copyfile(tdir / name, dst / name)
        for k in range(1, chunks + 1):
            prefix = work / "shards" / fam / chunk_name(k - 1)
            if not Path(f"{prefix}.stats.json").is_file():
                tokenize_chunk(
                    work / "chunks" / f"{chunk_name(k - 1)}.jsonl",
                    tdir,
                    "vanilla",
                    {},
                    1234,
                    prefix,
                    workers=os.cpu_count() or 1,
                )
            sdst = out / "shards" / fam
            sdst.mkdir(parents=True, exist_ok=True)
            for ext in (".idx", ".stats.json"):
                shutil.copyfile(f"{prefix}{ext}", sdst / f"{prefix.name}{ext}")
            with open(f"{prefix}.bin", "rb") as f, gzip.open(sdst / f"{prefix.name}.bin.gz", "wb", 6) as g:
                shutil.copyfileobj(f, g)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"payload {out}: {size / 2**20:.1f} MiB")


# ============================================================================ GPU side
class Clock:
    def __init__(self, budget_s: float):
        self.t0 = time.time()
        self.budget_s = budget_s

    def left(self) -> float:
        return self.budget_s - (time.time() - self.t0)

    def stamp(self, msg: str) -> None:
        print(f"[{time.time() - self.t0:7.1f} s] {msg}", flush=True)


def unpack(payload: Path, work: Path) -> dict[str, dict[str, Any]]:
    """Gunzip tokenizers and shards into ``work``: {family: {tok, prefixes}}."""
    out: dict[str, dict[str, Any]] = {}
    for fam in FAMILIES:
        tdir = work / f"tok_{fam}"
        tdir.mkdir(parents=True, exist_ok=True)
        for f in (payload / f"tok_{fam}").iterdir():
            if f.name.endswith(".gz"):
                with gzip.open(f, "rb") as g, open(tdir / f.name[:-3], "wb") as h:
                    shutil.copyfileobj(g, h)
            else:
                shutil.copyfile(f, tdir / f.name)
        sdir = work / "shards" / fam
        sdir.mkdir(parents=True, exist_ok=True)
        prefixes = []
        for f in sorted((payload / "shards" / fam).iterdir()):
            if f.name.endswith(".bin.gz"):
                with gzip.open(f, "rb") as g, open(sdir / f.name[:-3], "wb") as h:
                    shutil.copyfileobj(g, h)
                prefixes.append(str(sdir / f.name[: -len(".bin.gz")]))
            else:  # the Megatron proof's carry (.megatron-carry/data) keeps .bin uncompressed
                shutil.copyfile(f, sdir / f.name)
                if f.name.endswith(".bin"):
                    prefixes.append(str(sdir / f.name[: -len(".bin")]))
        out[fam] = {"tok": tdir, "prefixes": prefixes}
    return out


def model_config(fam: str, meta: dict[str, Any], *, small: bool = False) -> Any:
    """The real architecture (Llama 3.2 1B / Gemma 3 1B); ``small``: 2 narrow layers."""
    from transformers import Gemma3TextConfig, LlamaConfig

    if fam == "llama":
        kw = dict(
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=64,
        )
        if small:
            kw = dict(
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=16,
            )
        return LlamaConfig(
            vocab_size=meta["vocab_size"],
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 32.0,
                "high_freq_factor": 4.0,
                "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8192,
            },
            tie_word_embeddings=True,
            bos_token_id=meta["bos_id"],
            eos_token_id=meta["eos_id"],
            dtype="bfloat16",
            **kw,
        )
    layers = 2 if small else 26
    kw = dict(
        hidden_size=1152, intermediate_size=6912, num_attention_heads=4, num_key_value_heads=1, head_dim=256
    )
    if small:
        kw = dict(
            hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=1, head_dim=16
        )
    return Gemma3TextConfig(
        vocab_size=meta["vocab_size"],
        num_hidden_layers=layers,
        sliding_window=512 if not small else 4,
        layer_types=[("full_attention" if (i + 1) % 6 == 0 else "sliding_attention") for i in range(layers)]
        if not small
        else ["sliding_attention", "full_attention"],
        max_position_embeddings=32768,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
        },
        query_pre_attn_scalar=256,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=meta["bos_id"],
        eos_token_id=[meta["eos_id"], 106],
        pad_token_id=meta["pad_id"],
        dtype="bfloat16",
        **kw,
    )


def write_model(fam: str, tok: Path, out: Path) -> dict[str, Any]:
    """Random bf16 model of the real shape + the tokenizer files (byte copies)."""
    import torch
    from transformers import AutoModelForCausalLM

    meta = json.loads((tok / "tokenizer_meta.json").read_text())
    cfg = model_config(fam, meta)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tok / name, out / name)
    n = sum(p.numel() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    return {"params": n, "config": cfg.to_dict()}


def masking_check() -> None:
    """Automodel's Llama class and HF Gemma 3: packed documents (restarted position ids, no mask,
    use_cache=False) give the logits of the documents run alone."""
    import torch
    from nemo_automodel.components.models.llama.model import LlamaForCausalLM as AutomodelLlama
    from transformers import Gemma3ForCausalLM

    from filmorph.train.hf import check_document_masking

    meta = {"vocab_size": 512, "bos_id": 1, "eos_id": 2, "pad_id": 0}
    torch.manual_seed(0)
    for name, cls, fam in (
        ("Automodel LlamaForCausalLM", AutomodelLlama, "llama"),
        ("HF Gemma3ForCausalLM", Gemma3ForCausalLM, "gemma"),
    ):
        for attn in ("sdpa", "flex_attention"):
            cfg = model_config(fam, meta, small=True)
            cfg.dtype = torch.float32
            cfg._attn_implementation = attn
            model = cls(cfg).to("cuda", torch.float32)
            diff = check_document_masking(model, torch.device("cuda"))
            print(
                f"document masking ({name}, {attn}): max |packed - separate| logit = {diff:.2e}  OK",
                flush=True,
            )
            RESULTS.setdefault("masking", {})[f"{name} {attn}"] = diff


def proof_cfg(**kw: Any) -> Any:
    from filmorph.train.config import TrainConfig

    base = dict(
        engine="automodel",
        max_steps=100,
        global_batch_size=16,
        micro_batch_size=4,
        seq_length=2048,
        lr=3.0e-4,
        min_lr=3.0e-5,
        warmup_steps=10,
        lr_schedule="cosine",
        checkpoint_interval=50,
        eval_interval=50,
        eval_iters=2,
        log_interval=10,
        num_workers=0,
        seed=1234,
        split="99,1,0",
    )
    base.update(kw)
    return TrainConfig.from_dict(base)


def reload_check(hf_dir: Path, base_dir: Path) -> dict[str, Any]:
    """transformers loads the checkpoint; a forward pass on real text gives finite logits; the
    weights differ from the base model's."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.bfloat16).to("cuda").eval()
    text = "Ang mga bata ay naglalaro sa labas ng bahay habang umuulan."
    enc = tok(text, return_tensors="pt").to("cuda")
    with torch.no_grad():
        out = model(**enc, labels=enc["input_ids"])
    finite = bool(torch.isfinite(out.logits).all())
    name = "model.embed_tokens.weight"
    trained = base = None
    for d, which in ((hf_dir, "trained"), (base_dir, "base")):
        for f in sorted(d.glob("*.safetensors")):
            with safe_open(str(f), "pt") as s:
                if name in s.keys():
                    t = s.get_tensor(name)[:64].float()
                    trained, base = (t, base) if which == "trained" else (trained, t)
    changed = None if trained is None or base is None else float((trained - base).abs().max())
    res = {
        "hf_dir": str(hf_dir),
        "class": type(model).__name__,
        "tokens": int(enc["input_ids"].shape[1]),
        "loss": float(out.loss),
        "finite": finite,
        "embed_max_change": changed,
        "files": sorted(p.name for p in hf_dir.iterdir()),
    }
    print(
        f"reload {hf_dir.name}: {res['class']}, {res['tokens']} tokens, loss {res['loss']:.3f}, "
        f"finite {finite}, max |Δ embed| {changed}",
        flush=True,
    )
    del model
    torch.cuda.empty_cache()
    return res


def _num(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "-"


def _row(name: str, fam: str, cfg: Any, summary: dict[str, Any], note: str = "") -> None:
    ROWS.append(
        {
            "run": name,
            "model": {"llama": "Llama 3.2 1B shape", "gemma": "Gemma 3 1B shape"}[fam],
            "seq": cfg.seq_length,
            "batch": f"{cfg.global_batch_size}/{cfg.micro_batch_size}",
            "steps": summary.get("steps"),
            "loss": f"{_num(summary.get('first_logged_loss'))} -> {_num(summary.get('final_loss'))}",
            "tokens_per_s": summary.get("tokens_per_s"),
            "mfu": summary.get("mfu"),
            "peak_gib": summary.get("peak_memory_gib"),
            "note": note,
        }
    )


def main_run(
    fam: str,
    data: dict[str, Any],
    models: dict[str, Path],
    work: Path,
    clock: Clock,
    *,
    interrupt: int | None,
    micro: int,
) -> None:
    from filmorph.train.automodel import run
    from filmorph.train.launch import TrainingIncomplete

    cfg = proof_cfg(micro_batch_size=micro)
    run_dir = work / "runs" / fam
    t = time.time()
    resumed = None
    if interrupt:
        clock.stamp(f"{fam}: run() until the step-{interrupt} checkpoint is complete, then kill")
        try:
            run(cfg, models[fam], data["prefixes"], run_dir, interrupt_after=interrupt)
            raise AssertionError("run() was not interrupted")
        except TrainingIncomplete as exc:
            clock.stamp(f"{fam}: {exc}; hf dirs: {sorted(p.name for p in (run_dir / 'hf').iterdir())}")
    clock.stamp(f"{fam}: run() (again: must resume)" if interrupt else f"{fam}: run()")
    summary = run(cfg, models[fam], data["prefixes"], run_dir)
    resumed = summary.get("resumed_from_step")
    clock.stamp(
        f"{fam}: done in {time.time() - t:.0f} s; resumed_from_step={resumed}; "
        f"automodel checkpoints {summary['automodel_checkpoints']}"
    )
    if interrupt:
        assert resumed == interrupt, f"expected to resume at {interrupt}, got {resumed}"
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        tps, mf = m["tokens_per_s"] or 0, m["mfu"] or 0
        print(
            f"  step {m['step']:4d} loss {m['loss']:.4f} val {m['val_loss']} lr {m['lr']:.3e} "
            f"tok/s {tps:,.0f} mfu {mf:.3f} mem {m['peak_memory_gib']}"
        )
    final = run_dir / "hf" / step_name(cfg.max_steps)
    rel = reload_check(final, models[fam])
    keep = {
        k: summary.get(k)
        for k in (
            "steps",
            "resumed_from_step",
            "first_logged_loss",
            "final_loss",
            "final_val_loss",
            "tokens_per_s",
            "mfu",
            "peak_memory_gib",
            "lr_schedule_max_rel_error",
            "flops_per_token",
            "num_parameters",
            "train_seconds",
            "seconds",
            "automodel_checkpoints",
            "checkpoints",
            "device",
            "versions",
        )
    }
    RESULTS[f"{fam}_main"] = {"summary": keep, "reload": rel, "metrics": metrics}
    note = f"resumed at {resumed}" if resumed else ""
    _row(f"{fam} engine run", fam, cfg, summary, note)
    shutil.copyfile(run_dir / "automodel.yaml", OUT / f"{fam}_automodel.yaml")
    # free the disk (fp32 DCP states + consolidated exports: ~20 GB per Llama checkpoint)
    shutil.rmtree(run_dir / "automodel", ignore_errors=True)


def bench(
    name: str,
    fam: str,
    data: dict[str, Any],
    models: dict[str, Path],
    work: Path,
    cfg: Any,
    overrides: dict[str, Any],
) -> None:
    """A short run without checkpoints through the engine's config + launcher (not run():
    run() always checkpoints the last step)."""
    from filmorph.train import automodel as A
    from filmorph.train.common import mfu, peak_flops, preflight

    run_dir = work / "bench" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    report = preflight(data["prefixes"], models[fam], scan_ids=False)
    amcfg = A.automodel_config(
        cfg,
        model_dir=models[fam],
        shard_prefixes=data["prefixes"],
        run_dir=run_dir,
        world_size=1,
        eod_id=report["eod_id"],
        shard_weights=[s["tokens"] for s in report["shards"]],
        overrides={"checkpoint": {"enabled": False}, **overrides},
    )
    yaml_path = A.write_config_yaml(amcfg, run_dir / A.CONFIG_YAML)
    log = run_dir / "automodel_node0.log"
    env = {**os.environ, **A.CHILD_ENV}
    t = time.time()
    with open(log, "w") as fh:
        rc = subprocess.call(A.launch_command(cfg, yaml_path), stdout=fh, stderr=subprocess.STDOUT, env=env)
    parsed = A.parse_automodel_metrics(run_dir / A.AUTOMODEL_DIR, [log])["train"]
    if rc != 0 or not parsed:
        tail = log.read_text(errors="replace")[-3000:]
        print(f"bench {name}: FAILED rc={rc}\n{tail}", flush=True)
        RESULTS.setdefault("bench", {})[name] = {"rc": rc, "tail": tail[-1500:]}
        return
    facts = A._model_facts(models[fam], cfg.seq_length)
    rates = sorted(
        cfg.tokens_per_step * r["tps"] / (r.get("num_tokens_per_step") or cfg.tokens_per_step)
        for s, r in parsed.items()
        if s > 5 and r.get("tps")
    )
    tps = rates[len(rates) // 2] if rates else None
    import torch

    peak = peak_flops(torch.cuda.get_device_name(0), cfg.precision)
    summary = {
        "steps": max(parsed),
        "first_logged_loss": parsed[min(parsed)].get("loss"),
        "final_loss": parsed[max(parsed)].get("loss"),
        "tokens_per_s": tps,
        "mfu": mfu(tps, facts["flops_per_token"], peak, 1) if tps else None,
        "peak_memory_gib": max(r.get("mem") or 0 for r in parsed.values()),
    }
    RESULTS.setdefault("bench", {})[name] = {**summary, "overrides": overrides, "seconds": time.time() - t}
    print(f"bench {name}: {summary} ({time.time() - t:.0f} s)", flush=True)
    _row(name, fam, cfg, summary, json.dumps(overrides, separators=(",", ":"))[:60])


def print_table() -> None:
    head = [
        "run",
        "model",
        "seq",
        "global/micro",
        "steps",
        "loss first -> last",
        "tokens/s",
        "MFU",
        "peak GiB",
        "note",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in ROWS:
        tps = f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "-"
        m = f"{100 * r['mfu']:.1f} %" if r["mfu"] else "-"
        mem = f"{r['peak_gib']:.1f}" if r["peak_gib"] else "-"
        cells = [r["run"], r["model"], r["seq"], r["batch"], r["steps"], r["loss"], tps, m, mem, r["note"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    print("\n".join(lines), flush=True)
    (OUT / "table.md").write_text("\n".join(lines) + "\n")


OUT = Path(os.environ.get("OUT", "/tmp/out"))
PHASES = ("mask", "llama", "gemma", "tune", "matched")


def matched_variants() -> list[tuple[str, Any, dict[str, Any]]]:
    """The engine comparison's settings (:data:`tools.gpu_proof_megatron.MATCHED`,
    global batch 16) as Automodel bench runs of as many steps as the Megatron sweep's
    (``SWEEP_STEPS``), with the engine's own defaults (document masking, flex attention for the
    Llama shape)."""
    from tools.gpu_proof_megatron import SWEEP_STEPS
    from tools.gpu_proof_megatron import matched_variants as megatron_variants

    # the Megatron variants' names and batch settings; their overrides are Megatron provider
    # fields, so none of them applies here
    return [
        (f"matched: {name}", proof_cfg(max_steps=SWEEP_STEPS, eval_iters=0, **train), {})
        for name, train, _ in megatron_variants()
    ]


def run_variants(
    variants: Sequence[tuple[str, Any, dict[str, Any]]],
    data: dict[str, Any],
    models: dict[str, Path],
    work: Path,
    clock: Clock,
) -> None:
    """Bench runs of the Llama shape while at least 100 s of the budget are left."""
    for name, cfg, ov in variants:
        if clock.left() < 100:
            clock.stamp(f"skipping {name}: {clock.left():.0f} s left")
            continue
        clock.stamp(name)
        bench(name, "llama", data["llama"], models, work, cfg, ov)


def prove(payload: Path, work: Path, phases: Sequence[str], budget_s: float) -> int:
    import torch

    clock = Clock(budget_s)
    work.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    clock.stamp(
        f"GPU {torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
        f"disk free {shutil.disk_usage(work).free / 2**30:.0f} GiB"
    )
    data = unpack(payload, work)
    clock.stamp("payload unpacked")
    models: dict[str, Path] = {}
    for fam in ("llama", "gemma"):
        if fam in phases or (fam == "llama" and {"tune", "matched"} & set(phases)):
            info = write_model(fam, data[fam]["tok"], work / "models" / fam)
            models[fam] = work / "models" / fam
            RESULTS[f"{fam}_params"] = info["params"]
            clock.stamp(f"{fam} model written: {info['params'] / 1e9:.3f} B parameters")
    status = 0
    plan = [p for p in PHASES if p in phases]
    need = {"mask": 30, "llama": 300, "gemma": 240, "tune": 120, "matched": 120}
    plan_failed = False
    for phase in plan:
        if plan_failed:
            clock.stamp(f"skipping {phase}: an earlier phase failed")
            continue
        if clock.left() < need[phase]:
            clock.stamp(f"skipping {phase}: {clock.left():.0f} s left, needs ~{need[phase]} s")
            continue
        try:
            if phase == "mask":
                masking_check()
            elif phase == "llama":
                main_run("llama", data["llama"], models, work, clock, interrupt=50, micro=4)
            elif phase == "gemma":
                main_run("gemma", data["gemma"], models, work, clock, interrupt=None, micro=2)
            elif phase == "tune":
                chunked = {"_target_": "nemo_automodel.components.loss.chunked_ce.ChunkedCrossEntropy"}
                short = dict(max_steps=15, eval_iters=0)
                nodoc = dict(reset_position_ids=False, reset_attention_mask=False)
                flex = {"model": {"attn_implementation": "flex_attention"}}
                variants = [
                    ("tune: micro 8", proof_cfg(**short, micro_batch_size=8), {}),
                    ("tune: flex attention", proof_cfg(**short), flex),
                    ("tune: no doc masking", proof_cfg(**short, **nodoc), {}),
                    (
                        "tune: micro 8, chunked CE",
                        proof_cfg(**short, micro_batch_size=8),
                        {"loss_fn": chunked},
                    ),
                    (
                        "tune: seq 1024, micro 8",
                        proof_cfg(**short, seq_length=1024, global_batch_size=32, micro_batch_size=8),
                        {},
                    ),
                ]
                run_variants(variants, data, models, work, clock)
            elif phase == "matched":
                run_variants(matched_variants(), data, models, work, clock)
        except Exception:
            status = 1
            plan_failed = phase != "mask"
            tb = traceback.format_exc()
            print(f"PHASE {phase} FAILED\n{tb}", flush=True)
            RESULTS.setdefault("failures", {})[phase] = tb[-3000:]
        (OUT / "results.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    clock.stamp("done")
    print_table()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tools.gpu_proof_automodel",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare", help="make the payload (CPU)")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--target-mb", type=int, default=14)
    b = sub.add_parser("prove", help="the GPU proof")
    b.add_argument("--payload", type=Path, required=True)
    b.add_argument("--work", type=Path, default=Path("/tmp/fm-automodel"))
    b.add_argument("--out", type=Path, default=None)
    b.add_argument(
        "--phases",
        default="mask,llama,gemma,tune",
        help=f"comma-separated, of {','.join(PHASES)} ('matched': the engine comparison's "
        "settings, for the table with the Megatron sweep --matched)",
    )
    b.add_argument("--budget-s", type=float, default=540)
    args = p.parse_args(argv)
    if args.cmd == "prepare":
        prepare(args.out, target_mb=args.target_mb)
        return 0
    global OUT
    if args.out is not None:
        OUT = args.out
    phases = args.phases.split(",")
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        p.error(f"unknown phase(s) {unknown}; known: {', '.join(PHASES)}")
    return prove(args.payload, args.work, phases, args.budget_s)


if __name__ == "__main__":
    sys.exit(main())
