#!/usr/bin/env bash
# One device call (the lent H100): evaluation throughput on a GPU.
# How to run it (one device call): tools/README.md.
#
# .devpayload/ (listed in .git/info/exclude; ~18 MB), made on the CPU machine:
#   bench/*.jsonl      the study-size benchmark files (config/study.yaml: 15,800 items):
#                        python -m filmorph.benchmarks make --benchmark B --format F \
#                          --items-per-task N --seed 1859 --out .devpayload/bench/B_F.jsonl
#                        (N: pacute/hierarchical/cute 100, langgame 200, addition 1000)
#   tok_gemma/         the real Gemma 3 tokenizer: filmorph.tokenizers.save_tokenizer(
#                        {"source": "gemma3_gguf_package"}, ".devpayload/tok_gemma"), gzip -9
#                        its tokenizer.json
#   smollm2_nowts/     SmolLM2-135M config + tokenizer files without model.safetensors (the
#                        GGUF package is too big to carry): python -m filmorph.models
#                        materialize --name smollm2-135m --out DIR, then copy all but weights
# Measured 2026-11-24: docs/measurements/evaluate_gpu_2026-11-24.log
# The weights are random (bf16): throughput depends on the shapes, not the values. A random
# model never emits the stop string, so every GEN item runs to max_new_tokens: an upper bound.
set -euo pipefail
export PYTHONPATH=$PWD/src TOKENIZERS_PARALLELISM=false
P=.devpayload
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
cp -r $P/tok_gemma /tmp/tok_gemma && gunzip -f /tmp/tok_gemma/tokenizer.json.gz

python - <<'PY' 2>&1 | tee "$OUT/models.log"
import json, time, torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Gemma2Config
def write(cfg, tok_dir, out):
    t = time.time()
    torch.manual_seed(0)
    with torch.device("cuda"):
        m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    m.save_pretrained(out)
    AutoTokenizer.from_pretrained(tok_dir).save_pretrained(out)
    n = sum(p.numel() for p in m.parameters())
    print(json.dumps({"model": out, "params": n, "seconds": round(time.time() - t, 1)}))
cfg = AutoConfig.from_pretrained(".devpayload/smollm2_nowts"); cfg.dtype = "bfloat16"
write(cfg, ".devpayload/smollm2_nowts", "/tmp/smollm2-shape")
tok = AutoTokenizer.from_pretrained("/tmp/tok_gemma")
g2 = Gemma2Config(vocab_size=len(tok), hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                  num_attention_heads=8, num_key_value_heads=4, head_dim=256, sliding_window=4096,
                  max_position_embeddings=8192, query_pre_attn_scalar=256, final_logit_softcapping=30.0,
                  attn_logit_softcapping=50.0, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, dtype="bfloat16")
write(g2, "/tmp/tok_gemma", "/tmp/gemma2-2b-shape")
PY

# 1. the benchmark command with the SmolLM2-135M shape (skip with SKIP_BENCH=1)
if [ -z "${SKIP_BENCH:-}" ]; then
  python -m tools.bench evaluate --model /tmp/smollm2-shape 2>&1 | tee "$OUT/bench_smollm2.log" | tail -3 || true
fi

# 2. the full study suite with a 2B model (Gemma 2 2B shape, Gemma 3 tokenizer), one file per call
start=$(date +%s)
for f in $P/bench/*.jsonl; do
  b=$(basename "$f" .jsonl)
  python -m filmorph.evaluate --model /tmp/gemma2-2b-shape --benchmark "$f" --scores "$OUT/g2b/$b.json" \
    --predictions "/tmp/g2b/$b.jsonl" --max-new-tokens 32 --no-progress 2>&1 | tail -1
done 2>&1 | tee "$OUT/suite_gemma2_2b.log"
end=$(date +%s)
python - "$OUT" $((end - start)) <<'PY'
import json, sys, pathlib
out, wall = pathlib.Path(sys.argv[1]), int(sys.argv[2])
rows = [json.loads(p.read_text()) for p in sorted((out / "g2b").glob("*.json"))]
print("| file | items | seconds | items/s | batch |")
print("|---|---|---|---|---|")
for r in rows:
    print(f"| {pathlib.Path(r['benchmark_file']).stem} | {r['n_items']} | {r['seconds']:.1f} | {r['items_per_s']:.1f} | {r['batch_size_used']} |")
n = sum(r["n_items"] for r in rows); s = sum(r["seconds"] for r in rows)
print(json.dumps({"suite_items": n, "scoring_seconds": round(s, 1), "wall_seconds_incl_loads": wall,
                  "device": rows[0]["device"] if rows else None, "dtype": rows[0]["dtype"] if rows else None}))
PY
