"""filmorph.train.automodel on a CPU: the recipe YAML our config becomes (the fields that matter,
not a golden file), batch arithmetic, the LR schedule mapping, the launch command, the
document semantics of the samples, and run()'s bookkeeping (checkpoint export, metrics, resume)
against a stand-in for Automodel's torchrun that writes Automodel's output layout. NeMo
Automodel itself never runs here: it needs a GPU (see tools/gpu_proof_automodel.py for the real run)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from _models import embedded_shards, tiny_model_dir

from filmorph.io import read_json
from filmorph.train import automodel as A
from filmorph.train.automodel import recipe as R
from filmorph.train.automodel import runner as RN
from filmorph.train.common import RunLayout, checkpoint_steps, lr_at
from filmorph.train.config import TrainConfig

pytestmark = [
    pytest.mark.filterwarnings("ignore:Transformer Engine and Apex:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:megatron"),
]

PREFIXES = [
    "/data/shards/llama/vanilla/chunk_0001",
    "/data/shards/llama/vanilla/chunk_0002",
    "/data/shards/llama/vanilla/chunk_0003",
]


def _cfg(**kw) -> TrainConfig:
    base = dict(
        engine="automodel",
        max_steps=100,
        global_batch_size=64,
        micro_batch_size=2,
        seq_length=512,
        lr=1.0e-4,
        min_lr=1.0e-5,
        warmup_steps=10,
        checkpoint_interval=50,
        eval_interval=25,
        eval_iters=3,
        seed=77,
        gpus_per_node=8,
    )
    base.update(kw)
    return TrainConfig.from_dict(base)


def _config(cfg: TrainConfig, tmp_path: Path, **kw) -> dict:
    args = dict(
        model_dir=tmp_path / "model",
        shard_prefixes=PREFIXES,
        run_dir=tmp_path / "run",
        world_size=cfg.world_size,
        eod_id=128001,
        shard_weights=[3.0, 2.0, 1.0],
    )
    args.update(kw)
    return A.automodel_config(cfg, **args)


# ============================================================================ config translation
def test_config_fields_that_matter(tmp_path):
    cfg = _cfg()
    d = _config(cfg, tmp_path)
    s = d["step_scheduler"]
    assert (s["global_batch_size"], s["local_batch_size"], s["max_steps"]) == (64, 2, 100)
    assert s["ckpt_every_steps"] == 50 and s["val_every_steps"] == 25
    assert s["validate_on_checkpoint"] is True  # 50 % 25 == 0: validation at the last step too
    assert s["save_checkpoint_every_epoch"] is False and s["num_epochs"] == 1
    assert d["seed"] == 77
    opt = d["optimizer"]
    assert opt["_target_"] == "torch.optim.AdamW"
    assert (opt["lr"], opt["betas"], opt["eps"], opt["weight_decay"]) == (1e-4, [0.9, 0.95], 1e-5, 0.1)
    (group,) = opt["param_group_overrides"]
    assert group["wd_mult"] == 0.0
    import re

    pat = re.compile(group["pattern"])
    assert pat.search("model.layers.3.input_layernorm.weight") and pat.search("model.norm.weight")
    assert pat.search("model.layers.0.self_attn.q_norm.weight") and pat.search(
        "model.layers.0.mlp.up_proj.bias"
    )
    assert not pat.search("model.layers.0.self_attn.q_proj.weight") and not pat.search(
        "model.embed_tokens.weight"
    )
    assert d["clip_grad_norm"] == {"max_norm": 1.0}
    assert d["lr_scheduler"]["lr_decay_style"] == "cosine" and d["lr_scheduler"]["min_lr"] == 1e-5
    assert d["model"]["torch_dtype"] == "float32"  # fp32 master weights (FSDP2 casts to bf16)
    one = _config(_cfg(gpus_per_node=1), tmp_path)  # no FSDP2 (so no mixed precision) on one rank
    assert one["model"]["torch_dtype"] == "bfloat16" and one["distributed"]["dp_size"] == 1
    assert _config(_cfg(gpus_per_node=1, precision="fp32"), tmp_path)["model"]["torch_dtype"] == "float32"
    assert d["distributed"]["mp_policy"]["param_dtype"] == "bfloat16"
    assert d["distributed"]["mp_policy"]["reduce_dtype"] == "float32"
    assert d["distributed"]["dp_size"] == 8 and d["distributed"]["strategy"] == "fsdp2"
    assert d["distributed"]["activation_checkpointing"] is False
    assert not d["distributed"].get("patch_is_packed_sequence")
    assert d["model"]["pretrained_model_name_or_path"] == str(tmp_path / "model")
    ck = d["checkpoint"]
    assert Path(ck["checkpoint_dir"]).parent == tmp_path / "run"
    assert ck["model_save_format"] == "safetensors" and ck["save_consolidated"] == "every"
    assert ck["restore_from"] == "LATEST"  # resume key: the newest complete checkpoint in the run dir
    assert d["loss_fn"]["_target_"].endswith("MaskedCrossEntropy")
    assert d["model"]["attn_implementation"] == "flex_attention"  # block-sparse document masks
    plain = _config(_cfg(reset_position_ids=False, reset_attention_mask=False), tmp_path)
    assert "attn_implementation" not in plain["model"]  # Automodel's default (flash / sdpa causal)
    gemma = _config(cfg, tmp_path, attn_implementation="sdpa")
    assert gemma["model"]["attn_implementation"] == "sdpa"
    # without document masks an implementation is set only when named (Gemma 2's softcap)
    capped = _config(_cfg(reset_position_ids=False, reset_attention_mask=False), tmp_path,
                     attn_implementation="flex_attention")
    assert capped["model"]["attn_implementation"] == "flex_attention"
    assert d["dataloader"]["collate_fn"] == A.COLLATE_TARGET


def test_document_attention_by_head_width():
    llama = {"model_type": "llama", "hidden_size": 2048, "num_attention_heads": 32, "head_dim": 64}
    gemma3 = {"model_type": "gemma3_text", "hidden_size": 1152, "num_attention_heads": 4, "head_dim": 256}
    assert A.document_attention(llama) == "flex_attention"
    assert A.document_attention({"hidden_size": 4096, "num_attention_heads": 32}) == "flex_attention"
    assert A.document_attention(gemma3) == "sdpa"
    assert A.document_attention({"model_type": "gemma3", "text_config": gemma3}) == "sdpa"
    # Gemma 2 soft-caps its attention logits: SDPA would drop the cap, FlexAttention applies it
    gemma2 = {**gemma3, "model_type": "gemma2", "attn_logit_softcapping": 50.0}
    assert A.document_attention(gemma2) == "flex_attention"


def test_dataset_uses_every_shard_with_our_semantics(tmp_path):
    cfg = _cfg()
    d = _config(cfg, tmp_path)
    ds = d["dataset"]
    assert ds["_target_"] == A.DATASET_TARGET
    assert ds["paths"] == PREFIXES and ds["weights"] == [3.0, 2.0, 1.0]
    assert (ds["seq_length"], ds["split"], ds["seed"], ds["eod_id"]) == (512, "99,1,0", 77, 128001)
    assert ds["reset_position_ids"] is True and ds["eod_mask_loss"] is True
    assert ds["split_name"] == "train" and ds["num_samples"] == 100 * 64
    assert Path(ds["index_mapping_dir"]) == RunLayout(tmp_path / "run").data_cache
    val = d["validation_dataset"]
    assert val["paths"] == PREFIXES and val["split_name"] == "validation"
    assert val["num_samples"] == 3 * 64  # eval_iters global batches, every eval
    # the targets Automodel imports exist and are what the docs say
    target = A.DATASET_TARGET.rsplit(".", 1)
    assert target[0] == A.__name__ and hasattr(A, target[1])
    assert A.COLLATE_TARGET == f"{A.__name__}.collate_documents"


def test_no_eval_no_validation_and_other_options(tmp_path):
    cfg = _cfg(eval_iters=0, grad_clip=0.0, precision="fp32", checkpoint_interval=30, lr_schedule="linear")
    d = _config(cfg, tmp_path, shard_weights=None)
    assert "validation_dataset" not in d and d["step_scheduler"]["val_every_steps"] is None
    assert d["step_scheduler"]["validate_on_checkpoint"] is False
    assert d["clip_grad_norm"]["max_norm"] == math.inf
    assert d["distributed"]["mp_policy"]["param_dtype"] == "float32"
    assert d["dataset"]["weights"] is None
    # checkpoint interval not a multiple of the eval interval: no validation on checkpoints
    d2 = _config(_cfg(checkpoint_interval=30), tmp_path)
    assert d2["step_scheduler"]["validate_on_checkpoint"] is False
    # one shard: no weights
    d3 = _config(_cfg(), tmp_path, shard_prefixes=PREFIXES[:1], shard_weights=[5.0])
    assert d3["dataset"]["paths"] == PREFIXES[:1] and d3["dataset"]["weights"] is None


@pytest.mark.parametrize(
    ("glob", "micro", "world", "ok"),
    [
        (64, 2, 8, True),
        (64, 8, 8, True),
        (64, 4, 32, False),
        (64, 16, 8, False),
        (48, 4, 8, False),
        (16, 4, 1, True),
        (16, 4, 3, False),
    ],
)
def test_batch_arithmetic(tmp_path, glob, micro, world, ok):
    cfg = _cfg(global_batch_size=glob, micro_batch_size=micro, gpus_per_node=1)
    if ok:
        d = _config(cfg, tmp_path, world_size=world)
        s = d["step_scheduler"]
        assert s["global_batch_size"] // (s["local_batch_size"] * world) == glob // (micro * world)
    else:
        with pytest.raises(ValueError, match="not a multiple"):
            _config(cfg, tmp_path, world_size=world)


def test_refuses_what_automodel_cannot_do(tmp_path):
    with pytest.raises(ValueError, match="reset_position_ids and reset_attention_mask"):
        _config(_cfg(reset_attention_mask=False), tmp_path)
    with pytest.raises(ValueError, match="reset_position_ids and reset_attention_mask"):
        _config(_cfg(reset_position_ids=False), tmp_path)
    d = _config(_cfg(reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False), tmp_path)
    assert d["dataset"]["reset_position_ids"] is False and d["dataset"]["eod_mask_loss"] is False
    with pytest.raises(ValueError, match="expands"):
        _config(_cfg(), tmp_path, shard_prefixes=["/data/$USER/chunk_0001"], shard_weights=None)
    with pytest.raises(ValueError, match="repeat"):
        _config(_cfg(), tmp_path, shard_prefixes=PREFIXES[:1] * 2, shard_weights=None)
    with pytest.raises(ValueError, match="shard_weights"):
        _config(_cfg(), tmp_path, shard_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="packed"):
        _config(_cfg(), tmp_path, overrides={"distributed": {"patch_is_packed_sequence": True}})
    with pytest.raises(ValueError, match="dataset target"):
        _config(_cfg(), tmp_path, overrides={"dataset": {"_target_": "x.Y"}})


def test_overrides_merge_deeply(tmp_path):
    d = _config(
        _cfg(),
        tmp_path,
        overrides={
            "checkpoint": {"enabled": False},
            "validation_dataset": None,
            "distributed": {"activation_checkpointing": True},
        },
    )
    assert d["checkpoint"]["enabled"] is False and d["checkpoint"]["save_consolidated"] == "every"
    assert d["validation_dataset"] is None
    assert d["distributed"]["activation_checkpointing"] is True and d["distributed"]["dp_size"] == 8


def test_yaml_round_trip_and_no_secrets(tmp_path, monkeypatch):
    secrets = {"HF_TOKEN": "hf_SECRETtoken123", "WANDB_API_KEY": "wandbSECRET456"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    wandb = R.wandb_section(tmp_path / "run", "llama-run")
    assert wandb is not None and wandb["project"] == "filmorph"
    cfg = _cfg(grad_clip=0.0)
    d = _config(cfg, tmp_path, wandb=wandb)
    path = A.write_config_yaml(d, tmp_path / "run" / "automodel.yaml")
    text = path.read_text()
    for v in secrets.values():
        assert v not in text
    assert "api_key" not in text.lower() and "token:" not in text.lower()
    back = yaml.safe_load(text)
    assert back == R.plain_data(d)
    assert back["clip_grad_norm"]["max_norm"] == math.inf
    assert back["wandb"]["name"] == "llama-run"
    monkeypatch.delenv("WANDB_API_KEY")
    assert R.wandb_section(tmp_path / "run", "x") is None


# ============================================================================ LR schedule
def _megatron_scheduler_lr(s: dict, n: int) -> float:
    """The rate a Megatron-style OptimizerParamScheduler gives update n (0-based; it is stepped
    once after every update): linear warmup from init_lr over lr_warmup_steps, then the decay
    style from max_lr to min_lr over the remaining lr_decay_steps, min_lr beyond."""
    w, dsteps, lo, hi = s["lr_warmup_steps"], s["lr_decay_steps"], s["min_lr"], s["max_lr"]
    if w > 0 and n <= w:
        return s["init_lr"] + (hi - s["init_lr"]) * n / w
    if s["lr_decay_style"] == "constant":
        return hi
    if n > dsteps:
        return lo
    r = (n - w) / (dsteps - w)
    coeff = 0.5 * (math.cos(math.pi * r) + 1.0) if s["lr_decay_style"] == "cosine" else 1.0 - r
    return lo + coeff * (hi - lo)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
@pytest.mark.parametrize(("warmup", "steps"), [(1, 1), (1, 7), (10, 100), (100, 5000), (7, 7), (3, 4)])
def test_lr_schedule_matches_lr_at_exactly(schedule, warmup, steps):
    cfg = _cfg(
        lr_schedule=schedule, warmup_steps=warmup, max_steps=steps, checkpoint_interval=1, eval_iters=0
    )
    s = A.lr_scheduler_config(cfg)
    assert s["lr_warmup_steps"] < s["lr_decay_steps"] and s["lr_decay_steps"] > 0  # Automodel asserts these
    assert s["start_wd"] == s["end_wd"] == cfg.weight_decay
    for n in range(steps):
        assert _megatron_scheduler_lr(s, n) == pytest.approx(lr_at(cfg, n), rel=1e-12, abs=1e-18), n


def test_lr_schedule_without_warmup_is_close():
    cfg = _cfg(warmup_steps=0, max_steps=50, checkpoint_interval=10)
    s = A.lr_scheduler_config(cfg)
    for n in range(50):
        assert abs(_megatron_scheduler_lr(s, n) - lr_at(cfg, n)) <= (cfg.lr - cfg.min_lr) * math.pi / 50


# ============================================================================ launch
def test_launch_command_single_node(tmp_path):
    cfg = _cfg(gpus_per_node=4)
    cmd = A.launch_command(cfg, tmp_path / "automodel.yaml", python="/py", environ={})
    assert cmd[:3] == ["/py", "-m", "torch.distributed.run"]
    assert "--nproc-per-node=4" in cmd and "--standalone" in cmd
    assert cmd[-4:] == ["-m", A.AUTOMODEL_RECIPE, "--config", str(tmp_path / "automodel.yaml")]


def test_launch_command_under_slurm(tmp_path):
    cfg = _cfg(gpus_per_node=8, nodes=2)
    env = {
        "SLURM_NODEID": "1",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
        "SLURM_JOB_ID": "123456",
    }
    cmd = A.launch_command(cfg, "c.yaml", python="py", environ=env)
    assert "--nnodes=2" in cmd and "--node-rank=1" in cmd and "--nproc-per-node=8" in cmd
    assert "--master-addr=gpu07" in cmd and f"--master-port={20000 + 123456 % 20000}" in cmd
    assert "--standalone" not in cmd
    env2 = dict(env, MASTER_ADDR="head", MASTER_PORT="29999")
    cmd2 = A.launch_command(cfg, "c.yaml", python="py", environ=env2)
    assert "--master-addr=head" in cmd2 and "--master-port=29999" in cmd2
    with pytest.raises(ValueError, match="srun"):
        A.launch_command(cfg, "c.yaml", environ={})
    with pytest.raises(ValueError, match="Slurm gives 3"):
        A.launch_command(cfg, "c.yaml", environ=dict(env, SLURM_JOB_NUM_NODES="3"))
    assert A.node_rank(env) == 1 and A.node_rank({}) == 0


def test_one_process_per_node():
    one = _cfg(gpus_per_node=8)
    assert A.launcher_argv(one, ["--config", "c.json"], python="py") == [
        "py",
        "-m",
        "filmorph.train",
        "--config",
        "c.json",
    ]
    two = _cfg(gpus_per_node=8, nodes=2)
    cmd = A.launcher_argv(two, ["--x"], python="py")
    assert cmd[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "py"]
    A.check_launch(one, {})
    A.check_launch(two, {"SLURM_PROCID": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2"})
    with pytest.raises(ValueError, match="once per node"):
        A.check_launch(one, {"RANK": "0", "WORLD_SIZE": "8", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="once per node"):
        A.check_launch(two, {"SLURM_PROCID": "3", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "16"})


# ============================================================================ samples
def test_document_inputs_reset_positions_and_mask_eod():
    import torch

    eod = 9
    tokens = torch.tensor([5, 6, eod, 7, 8, 8, eod, eod, 4])
    labels = torch.tensor([6, eod, 7, 8, 8, eod, eod, 4, -100])
    out = A.document_inputs(tokens, labels, eod_id=eod, reset_position_ids=True, eod_mask_loss=True)
    assert out["position_ids"].tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 0]
    # the label after an EOD input is not trained; EOD itself (as a label) still is
    assert out["labels"].tolist() == [6, eod, -100, 8, 8, eod, -100, -100, -100]
    assert out["input_ids"].tolist() == tokens.tolist()
    plain = A.document_inputs(tokens, labels, eod_id=eod, reset_position_ids=False, eod_mask_loss=False)
    assert "position_ids" not in plain and plain["labels"].tolist() == labels.tolist()
    assert labels.tolist()[2] == 7  # the input was not modified


def test_collate_documents_turns_the_cache_off():
    import torch

    items = [
        {"input_ids": torch.arange(4), "labels": torch.arange(4), "position_ids": torch.arange(4)}
        for _ in range(3)
    ]
    b = A.collate_documents(items)
    assert b["input_ids"].shape == (3, 4) and b["position_ids"].shape == (3, 4)
    assert b["use_cache"] is False


def test_document_samples_mask_padding_and_cap_length():
    import torch

    eod = 2

    class FakeMegatron:
        def __len__(self):
            return 10

        def __getitem__(self, i):
            toks = torch.tensor([3, 4, eod, 5, 0, 0])  # the end of the data, padded (pad -> 0)
            return {
                "input_ids": toks,
                "labels": torch.tensor([4, eod, 5, 0, 0, 0]),
                "loss_mask": torch.tensor([1.0, 1, 1, 0, 0, 0]),
            }

    ds = A.DocumentSamples(FakeMegatron(), 4, eod_id=eod, reset_position_ids=True, eod_mask_loss=True)
    assert (
        len(ds) == 4
        and len(
            A.DocumentSamples(FakeMegatron(), None, eod_id=eod, reset_position_ids=True, eod_mask_loss=True)
        )
        == 10
    )
    s = ds[0]
    assert s["labels"].tolist() == [4, eod, -100, -100, -100, -100]
    assert s["position_ids"].tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(IndexError):
        ds[4]


def test_dataset_config_normalises_yaml_values():
    c = A.DocumentPretrainingConfig(paths=["a", "b"], eod_id=1, weights=[2.0, 1.0], split=(99, 1, 0))
    assert c.split == "99,1,0"
    assert c.blend() == ["2.0", "a", "1.0", "b"]
    assert A.DocumentPretrainingConfig(paths=["a"], eod_id=1, weights=[2.0]).blend() == ["a"]
    with pytest.raises(ValueError):
        A.DocumentPretrainingConfig(paths=["a"], eod_id=1, split_name="test")
    # the capabilities Automodel's loader looks for
    assert (
        A.DocumentPretrainingConfig.builds_on_all_ranks
        and A.DocumentPretrainingConfig.requires_training_schedule
    )


# ============================================================================ outputs
def _fake_checkpoint(
    root: Path, index: int, *, incomplete: bool = False, tok_bytes: bytes = b"automodel-tok"
):
    d = root / f"epoch_0_step_{index}"
    cons = d / "model" / "consolidated"
    cons.mkdir(parents=True)
    (cons / "config.json").write_text(json.dumps({"model_type": "llama", "use_cache": False}))
    (cons / "model-00001-of-00001.safetensors").write_bytes(b"weights-%d" % index)
    (cons / "model.safetensors.index.json").write_text("{}")
    (cons / "tokenizer.json").write_bytes(tok_bytes)
    (cons / "generation_config.json").write_text("{}")
    (d / "losses.json").write_text(json.dumps({"train_loss": 3.5, "val_loss": 3.7}))
    if incomplete:
        (d / A.INCOMPLETE_MARKER).write_text("")
    return d


def test_checkpoint_mapping_on_a_fake_automodel_tree(tmp_path):
    cfg = _cfg(max_steps=100, checkpoint_interval=50)
    layout = RunLayout(tmp_path / "run")
    root = layout.root / A.AUTOMODEL_DIR
    _fake_checkpoint(root, 49)
    _fake_checkpoint(root, 99)
    _fake_checkpoint(root, 73)  # a preemption checkpoint: state only, not an hf step
    _fake_checkpoint(root, 149, incomplete=True)
    (root / "LATEST").symlink_to("epoch_0_step_99")
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_bytes(b"the family's tokenizer")
    (tok / "tokenizer_config.json").write_text("{}")
    assert [c.step for c in A.automodel_checkpoints(root)] == [50, 74, 100]
    done = A.export_checkpoints(cfg, layout, tokenizer_files_dir=tok, meta={"engine": "automodel"})
    assert done == [50, 100] == checkpoint_steps(cfg)
    for step, index in ((50, 49), (100, 99)):
        d = layout.hf_dir(step)
        assert d.name == f"step_{step:07d}"
        assert (d / "tokenizer.json").read_bytes() == b"the family's tokenizer"
        assert read_json(d / "config.json")["use_cache"] is True
        w = d / "model-00001-of-00001.safetensors"
        src = root / f"epoch_0_step_{index}" / "model" / "consolidated" / w.name
        assert w.read_bytes() == b"weights-%d" % index and os.path.samefile(w, src)  # hard link
        meta = read_json(d / A.TRAIN_META)
        assert meta["step"] == step and meta["loss"] == 3.5 and meta["engine"] == "automodel"
        assert meta["automodel_checkpoint"] == f"automodel/epoch_0_step_{index}"
    assert not layout.hf_dir(74).exists()
    assert A.export_checkpoints(cfg, layout, tokenizer_files_dir=tok, meta={}) == []  # idempotent
    # a pruned Automodel state leaves the exported files intact
    shutil.rmtree(root / "epoch_0_step_49")
    assert (layout.hf_dir(50) / "model-00001-of-00001.safetensors").read_bytes() == b"weights-49"


def test_metrics_from_jsonl_and_log_lines(tmp_path):
    cfg = _cfg(
        max_steps=4,
        log_interval=2,
        checkpoint_interval=2,
        eval_interval=2,
        eval_iters=1,
        global_batch_size=4,
        micro_batch_size=1,
        gpus_per_node=1,
        seq_length=8,
        warmup_steps=1,
    )
    root = tmp_path / "automodel"
    root.mkdir()
    log = tmp_path / "automodel_node0.log"
    lines = [
        f"2026-11-23 12:00:0{i} | INFO | root | step {i} | epoch 0 | loss {5 - i:.4f} | grad_norm 1.0000 | "
        f"lr 1.00e-04 | mem 10.00 GiB | tps 32.00(32.00/gpu) | num_label_tokens 30"
        for i in range(4)
    ]
    lines.append(
        '... [val] name "default" | step 1 | epoch 0 | loss 4.2000 | lr 1.00e-04 | num_label_tokens 8'
    )
    log.write_text("\n".join(lines) + "\n")
    # the JSONL (full precision) covers steps 2-3 only (its buffer was lost for the others)
    with open(root / "training.jsonl", "w") as f:
        for i in (2, 3):
            f.write(
                json.dumps(
                    {
                        "step": i,
                        "epoch": 0,
                        "loss": 3.123456,
                        "grad_norm": 0.5,
                        "mem": 12.5,
                        "lr": lr_at(cfg, i + 1),
                        "tps": 16.0,
                        "num_tokens_per_step": 32,
                        "num_label_tokens": 31,
                    }
                )
                + "\n"
            )
        f.write('{"step": 4, "lo')  # a line cut by a kill
    (root / "validation.jsonl").write_text(json.dumps({"step": 3, "val_loss": 4.05, "lr": 1e-5}) + "\n")
    parsed = A.parse_automodel_metrics(root, [log])
    assert sorted(parsed["train"]) == [1, 2, 3, 4]  # our steps are Automodel's + 1
    assert parsed["train"][1]["source"] == "log" and parsed["train"][3]["source"] == "jsonl"
    assert parsed["train"][3]["loss"] == 3.123456
    assert parsed["valid"] == {2: {"val_loss": 4.2, "source": "log"}, 4: {**parsed["valid"][4]}}
    assert parsed["valid"][4]["val_loss"] == 4.05
    recs = A.build_metrics(cfg, parsed, flops_per_token=100.0, peak=1000.0, world_size=1)
    assert [r["step"] for r in recs] == [2, 4]
    r2, r4 = recs
    assert r2["lr"] == lr_at(cfg, 1) and r4["lr"] == lr_at(cfg, 3)
    assert r2["val_loss"] == 4.2 and r4["val_loss"] == 4.05
    assert r2["tokens_per_s"] == pytest.approx(32.0)  # steps 1-2: 32 tokens in 1 s each
    assert r4["tokens_per_s"] == pytest.approx(16.0)  # steps 3-4: 32 tokens in 2 s each
    assert r4["mfu"] == pytest.approx(16.0 * 100.0 / 1000.0)
    assert r4["tokens"] == 4 * cfg.tokens_per_step and r4["peak_memory_gib"] == 12.5
    assert A.lr_schedule_error(cfg, parsed["train"]) == pytest.approx(0.0, abs=1e-12)


def test_importing_the_engine_imports_no_heavy_library():
    code = (
        "import sys, filmorph.train.automodel\n"
        "bad = [m for m in ('torch', 'transformers', 'nemo_automodel', 'megatron') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ============================================================================ run() with a stand-in
FAKE_TORCHRUN = textwrap.dedent(
    '''\
    """Stands in for `python -m torch.distributed.run ... -m nemo_automodel.recipes.llm.train_ft
    --config X`: reads the recipe YAML and writes what Automodel writes (log lines, checkpoints
    epoch_0_step_S with a .incomplete marker while being written, training.jsonl at the end)."""
    import json, os, re, sys, time
    from pathlib import Path
    import yaml

    argv = sys.argv[1:]
    assert argv[:2] == ["-m", "torch.distributed.run"], argv
    assert "-m" in argv[2:] and argv[argv.index("nemo_automodel.recipes.llm.train_ft") - 1] == "-m"
    cfg = yaml.safe_load(open(argv[argv.index("--config") + 1]))
    sched, ck = cfg["step_scheduler"], Path(cfg["checkpoint"]["checkpoint_dir"])
    assert cfg["checkpoint"]["restore_from"] == "LATEST"
    ck.mkdir(parents=True, exist_ok=True)
    done = [int(m.group(1)) for p in ck.iterdir() if (m := re.match(r"epoch_0_step_(\\d+)$", p.name))
            and not (p / ".incomplete").exists()]
    start = max(done) + 1 if done else 0
    print(f"resuming at update {start}", flush=True)
    out = []
    for s in range(start, sched["max_steps"]):
        loss = 10.0 - 0.1 * s
        print(f"t | INFO | root | step {s} | epoch 0 | loss {loss:.4f} | grad_norm 1.0000 | lr 1.00e-03 | "
              f"mem 7.00 GiB | tps 1000.00(1000.00/gpu) | num_label_tokens 60", flush=True)
        out.append({"step": s, "epoch": 0, "loss": loss, "grad_norm": 1.0, "lr": 1e-3, "mem": 7.0,
                    "tps": 1000.0, "num_tokens_per_step": 64, "num_label_tokens": 60})
        if (s + 1) % sched["ckpt_every_steps"] == 0 or s + 1 == sched["max_steps"]:
            d, tmp = ck / f"epoch_0_step_{s}", ck / f"epoch_0_step_{s}.staging"
            cons = tmp / "model" / "consolidated"
            cons.mkdir(parents=True)
            (tmp / ".incomplete").write_text("")
            os.rename(tmp, d)  # published under its name with the marker, as Automodel does
            cons = d / "model" / "consolidated"
            (cons / "config.json").write_text(json.dumps({"model_type": "llama", "use_cache": False}))
            (cons / "model.safetensors").write_bytes(b"w%d" % s)
            (cons / "tokenizer.json").write_text("{}")
            (d / "losses.json").write_text(json.dumps({"train_loss": loss}))
            (d / ".incomplete").unlink()
            time.sleep(float(os.environ.get("FAKE_CKPT_PAUSE", "0")))
    with open(ck / "training.jsonl", "a") as f:
        for r in out:
            f.write(json.dumps(r) + "\\n")
    '''
)


@pytest.fixture(scope="module")
def llama_inputs(family_dirs, tmp_path_factory):
    """Shards of the embedded corpus (2 chunks) and a tiny Llama model dir with the real
    Llama 3 tokenizer files: what preflight accepts."""
    tdir = family_dirs["llama"]
    root = tmp_path_factory.mktemp("automodel-inputs")
    prefixes = embedded_shards(tdir, root / "shards")
    return {"prefixes": prefixes, "model": tiny_model_dir("llama", tdir, root / "model"), "tok": tdir}


def test_run_exports_checkpoints_metrics_and_resumes(llama_inputs, tmp_path, monkeypatch, capsys):
    fake = tmp_path / "fake_python"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_TORCHRUN)
    fake.chmod(0o755)
    monkeypatch.setenv("FAKE_CKPT_PAUSE", "1.0")
    monkeypatch.setattr(RN, "WATCH_POLL_S", 0.05)
    cfg = TrainConfig.from_dict(
        dict(
            engine="automodel",
            max_steps=6,
            global_batch_size=2,
            micro_batch_size=1,
            seq_length=32,
            warmup_steps=1,
            checkpoint_interval=2,
            log_interval=1,
            eval_iters=0,
            num_workers=0,
        )
    )
    run_dir = tmp_path / "run"
    layout = RunLayout(run_dir)
    kw = dict(python=str(fake), progress=False)
    with pytest.raises(A.TrainingIncomplete, match="step 2"):
        A.run(cfg, llama_inputs["model"], llama_inputs["prefixes"], run_dir, interrupt_after=2, **kw)
    assert layout.hf_dir(2).is_dir() and not layout.hf_dir(4).exists()
    assert (layout.hf_dir(2) / "tokenizer.json").read_bytes() == (
        llama_inputs["tok"] / "tokenizer.json"
    ).read_bytes()
    assert read_json(layout.train_config)["engine"] == "automodel"
    yml = yaml.safe_load((run_dir / A.CONFIG_YAML).read_text())
    assert yml["dataset"]["paths"] == llama_inputs["prefixes"]
    assert yml["dataset"]["eod_id"] == read_json(llama_inputs["tok"] / "tokenizer_meta.json")["eos_id"]

    monkeypatch.setenv("FAKE_CKPT_PAUSE", "0")
    capsys.readouterr()
    summary = A.run(cfg, llama_inputs["model"], llama_inputs["prefixes"], run_dir, **kw)
    # the job log (stderr, no progress bar): where Automodel's output goes and its step lines only
    err = capsys.readouterr().err
    assert f"Automodel's output: {run_dir / 'automodel_node0.log'}" in err
    assert [ln.split("| step ")[1].split(" |")[0] for ln in err.splitlines() if "| step " in ln] == [
        "2", "3", "4", "5"
    ]
    assert "resuming at update" not in err
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 6
    assert [c["step"] for c in summary["checkpoints"]] == [2, 4, 6]
    for s in (2, 4, 6):
        assert (layout.hf_dir(s) / "model.safetensors").read_bytes() == b"w%d" % (s - 1)
    metrics = [json.loads(x) for x in layout.metrics.read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]  # steps 1-2 from the killed run's log
    assert metrics[0]["loss"] == pytest.approx(10.0) and metrics[-1]["loss"] == pytest.approx(9.5)
    assert all(m["tokens_per_s"] == pytest.approx(1000.0 * cfg.tokens_per_step / 64) for m in metrics)
    assert summary["final_loss"] == pytest.approx(9.5) and summary["first_logged_loss"] == pytest.approx(10.0)
    assert summary["peak_memory_gib"] == 7.0 and summary["num_parameters"] > 0
    assert read_json(layout.summary) == summary
    log = (run_dir / "automodel_node0.log").read_text()
    assert "resuming at update 0" in log and "resuming at update 2" in log

    # rerunning a finished run launches nothing and rewrites the same summary
    again = A.run(cfg, llama_inputs["model"], llama_inputs["prefixes"], run_dir, **kw)
    assert again["resumed_from_step"] == 6 and again["final_loss"] == summary["final_loss"]

    # another semantic config in the same run dir is refused, or restarts from scratch
    other = cfg.with_overrides(lr=1.0e-3)
    with pytest.raises(ValueError, match="different"):
        A.run(other, llama_inputs["model"], llama_inputs["prefixes"], run_dir, **kw)
    fresh = A.run(
        other, llama_inputs["model"], llama_inputs["prefixes"], run_dir, on_config_change="restart", **kw
    )
    assert fresh["resumed_from_step"] is None and fresh["config"]["lr"] == 1.0e-3
    assert (run_dir / "automodel_node0.log").read_text().count("resuming at update") == 1


def test_run_reports_a_failed_training(llama_inputs, tmp_path, capsys):
    fake = tmp_path / "failing_python"
    fake.write_text(f"#!{sys.executable}\nimport sys\nprint('CUDA is not available')\nsys.exit(3)\n")
    fake.chmod(0o755)
    cfg = TrainConfig.from_dict(
        dict(
            engine="automodel",
            max_steps=2,
            global_batch_size=2,
            micro_batch_size=1,
            seq_length=32,
            warmup_steps=1,
            eval_iters=0,
        )
    )
    with pytest.raises(RuntimeError, match="exit status 3"):
        A.run(
            cfg,
            llama_inputs["model"],
            llama_inputs["prefixes"],
            tmp_path / "run",
            python=str(fake),
            progress=False,
        )
    assert "CUDA is not available" in (tmp_path / "run" / "automodel_node0.log").read_text()
    err = capsys.readouterr().err  # the job log holds the error too
    assert "last 2 lines of" in err and "CUDA is not available" in err


