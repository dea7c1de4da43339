#!/bin/bash
# Gemma 3 1B shape under the megatron engine: which TE attention backend, and does it learn,
# with and without thd document masking (20 steps each). Needs /root/site and /root/proof/gemma/hf.
# How to run it: tools/README.md.
set -u
export PYTHONPATH=/root/site:$PWD/src
W=/root/proof/gemma; D=.megatron-carry/data
ls $W/hf/config.json || exit 2
python3 -m filmorph.train.megatron.convert import --hf $W/hf --out $W/import --tokenizer-dir $W/tok > $OUT/import.log 2>&1 || { tail -20 $OUT/import.log; exit 3; }
for mode in doc nodoc; do
  python3 - "$mode" > $W/cfg_$mode.json <<'PY'
import json, sys
from tools.gpu_proof_megatron import PROOF_TRAIN
c = dict(PROOF_TRAIN, max_steps=20, checkpoint_interval=20, eval_interval=20, log_interval=5, micro_batch_size=8)
if sys.argv[1] == "nodoc":
    c["reset_attention_mask"] = False
print(json.dumps(c))
PY
  NVTE_DEBUG=1 NVTE_DEBUG_LEVEL=2 timeout 230 python3 -m filmorph.train.megatron --config $W/cfg_$mode.json --model $W/hf \
    --pretrained-checkpoint $W/import --shards $D/shards/gemma/chunk_0001 $D/shards/gemma/chunk_0002 \
    --run-dir $W/diag_$mode --tokenizer-dir $W/tok > $OUT/train_$mode.log 2>&1
  echo "== $mode rc $?"
  grep -m3 -i "available backends\|selected backend\|disabling\|Disabling" $OUT/train_$mode.log | cut -c1-400
  grep "iteration .*/" $OUT/train_$mode.log | sed -E 's/.*iteration +([0-9]+).*per iteration \(ms\): ([0-9.]+).*lm loss: ([0-9.E+-]+).*grad norm: ([0-9.]+).*/it \1 ms \2 loss \3 gnorm \4/'
done
gzip -f $OUT/*.log
