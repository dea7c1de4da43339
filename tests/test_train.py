"""filmorph.train: config, pre-flight, data semantics, the hf engine (packing, loss, checkpoints,
resume), metrics and launch helpers. CPU only; tiny random models of the real Llama 3 and
Gemma 3 architectures with the real vocabularies, shards of the embedded corpus made with the
real tokenizers (the ``family_dirs`` fixture)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from _models import embedded_shards, tiny_model, tiny_model_dir

from filmorph.io import read_json
from filmorph.shards import ShardWriter
from filmorph.train import common as C
from filmorph.train import launch as L
from filmorph.train.config import TrainConfig, parse_split

pytestmark = [
    pytest.mark.filterwarnings("ignore:Transformer Engine and Apex:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:megatron"),
]

# ============================================================================ fixtures
@pytest.fixture(scope="module")
def shards(family_dirs, tmp_path_factory):
    """{family: [chunk prefixes]}: the embedded corpus in 2 chunks, vanilla arm."""
    root = tmp_path_factory.mktemp("train-shards")
    return {fam: embedded_shards(tdir, root / fam) for fam, tdir in family_dirs.items()}


@pytest.fixture(scope="module")
def models(family_dirs, tmp_path_factory):
    """{family: model dir}: tiny random model + the family's tokenizer files (byte copies)."""
    root = tmp_path_factory.mktemp("train-models")
    return {fam: tiny_model_dir(fam, tdir, root / fam) for fam, tdir in family_dirs.items()}


def _cfg(**kw) -> TrainConfig:
    base = dict(
        max_steps=6,
        global_batch_size=2,
        micro_batch_size=1,
        seq_length=32,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=1,
        checkpoint_interval=2,
        log_interval=1,
        eval_interval=3,
        eval_iters=1,
        num_workers=0,
        precision="fp32",
        split="90,10,0",
        seed=11,
    )
    base.update(kw)
    return TrainConfig.from_dict(base)


# ============================================================================ config
def test_config_defaults_are_the_study_settings():
    cfg = TrainConfig.from_dict(None)
    assert cfg.to_dict() == TrainConfig.from_dict({}).to_dict()
    assert (cfg.engine, cfg.max_steps, cfg.global_batch_size, cfg.micro_batch_size, cfg.seq_length) == (
        "hf",
        5000,
        64,
        1,
        512,
    )
    assert (cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.lr_schedule) == (1e-4, 1e-5, 100, "cosine")
    assert (cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, cfg.weight_decay, cfg.grad_clip) == (
        0.9,
        0.95,
        1e-5,
        0.1,
        1.0,
    )
    assert cfg.precision == "bf16" and cfg.checkpoint_interval == 1000 and cfg.split == "99,1,0"
    assert cfg.reset_position_ids and cfg.reset_attention_mask and cfg.eod_mask_loss
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.with_overrides(max_steps=7, engine=None).max_steps == 7
    assert cfg.grad_accum_steps() == 64 and cfg.grad_accum_steps(8) == 8
    assert C.checkpoint_steps(cfg) == [1000, 2000, 3000, 4000, 5000]
    json.dumps(cfg.to_dict())


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"bogus": 1}, "unknown key"),
        ({"max_steps": True}, "max_steps must be an integer"),
        ({"max_steps": 0}, "max_steps must be >= 1"),
        ({"lr": "1e-4"}, "lr must be a number"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"min_lr": 1.0}, "min_lr"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"engine": "deepspeed"}, "engine must be one of"),
        ({"precision": "fp16"}, "precision"),
        ({"lr_schedule": "wsd"}, "lr_schedule"),
        ({"reset_position_ids": 1}, "reset_position_ids must be true or false"),
        ({"global_batch_size": 10, "micro_batch_size": 4}, "not a multiple"),
        ({"global_batch_size": 12, "gpus_per_node": 8}, "not a multiple"),
        ({"split": "99;1"}, "split"),
        ({"split": "0,1,0"}, "no training data"),
        ({"split": "100,0,0"}, "no valid part"),
        ({"adam_beta2": 1.0}, "adam_beta2"),
        ({"grad_clip": -1.0}, "grad_clip"),
    ],
)
def test_config_rejects(change, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig.from_dict(change)


def test_config_accepts_no_eval_and_split_parsing():
    cfg = TrainConfig.from_dict({"split": "100,0,0", "eval_iters": 0})
    assert not cfg.eval_enabled and C.eval_steps(cfg) == []
    assert parse_split("99,1") == pytest.approx((0.99, 0.01, 0.0))
    assert parse_split("2,1,1") == pytest.approx((0.5, 0.25, 0.25))


def test_lr_schedule():
    cfg = TrainConfig.from_dict({"max_steps": 110, "warmup_steps": 10, "lr": 1e-3, "min_lr": 1e-4})
    lrs = [C.lr_at(cfg, s) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # warmup ends at the peak
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert all(a > b for a, b in zip(lrs[9:109], lrs[10:], strict=True))
    assert lrs[59] == pytest.approx(5.5e-4) and lrs[-1] == pytest.approx(1e-4)  # cosine midpoint, end
    lin = cfg.with_overrides(lr_schedule="linear")
    assert C.lr_at(lin, 59) == pytest.approx(5.5e-4) and C.lr_at(lin, 109) == pytest.approx(1e-4)
    assert C.lr_at(cfg.with_overrides(lr_schedule="constant"), 109) == pytest.approx(1e-3)
    no_warmup = TrainConfig.from_dict({"max_steps": 5, "warmup_steps": 0, "lr_schedule": "linear"})
    assert [C.lr_at(no_warmup, s) for s in range(5)] == pytest.approx([8.2e-5, 6.4e-5, 4.6e-5, 2.8e-5, 1e-5])
    short = TrainConfig.from_dict({"max_steps": 5})  # shorter than the default warmup of 100
    assert C.lr_at(short, 4) == pytest.approx(1e-4 * 5 / 100)


def test_checkpoint_and_eval_steps():
    cfg = _cfg(max_steps=10, checkpoint_interval=3, eval_interval=4)
    assert C.checkpoint_steps(cfg) == [3, 6, 9, 10]
    assert C.eval_steps(cfg) == [4, 8, 10]
    assert C.checkpoint_steps(_cfg(max_steps=2, checkpoint_interval=5)) == [2]


def test_find_resume_step(tmp_path):
    assert C.find_resume_step(tmp_path) == 0
    lay = C.RunLayout(tmp_path)
    for s in (2, 4, 6):
        lay.state_dir(s).mkdir(parents=True)
    for s in (2, 4):
        (lay.state_dir(s) / C.STATE_FILE).write_text("{}")
    (lay.states / ".step_0000008.tmp-x").mkdir()  # an interrupted write
    assert C.find_resume_step(tmp_path) == 4  # step 6 has no state.json
    assert C.complete_states(tmp_path) == [2, 4]
    (lay.state_dir(4) / C.STATE_FILE).unlink()
    assert C.find_resume_step(tmp_path) == 2
    assert C.step_name(1000) == "step_0001000"


# ============================================================================ launch env, FLOPs, metrics
def test_detect_dist_env():
    assert L.detect_dist_env({}) == L.DistEnv()
    tr = L.detect_dist_env(
        {
            "RANK": "3",
            "WORLD_SIZE": "8",
            "LOCAL_RANK": "3",
            "MASTER_ADDR": "h",
            "MASTER_PORT": "29500",
            "SLURM_PROCID": "0",
            "SLURM_STEP_ID": "0",
        }
    )
    assert (tr.rank, tr.world_size, tr.local_rank, tr.launcher, tr.master_port) == (
        3,
        8,
        3,
        "torchrun",
        29500,
    )
    sl = L.detect_dist_env(
        {
            "SLURM_PROCID": "9",
            "SLURM_NTASKS": "16",
            "SLURM_LOCALID": "1",
            "SLURM_STEP_ID": "0",
            "SLURM_JOB_NODELIST": "gpu[03-04,07]",
            "SLURM_JOB_ID": "1234",
        }
    )
    assert (sl.rank, sl.world_size, sl.local_rank, sl.launcher) == (9, 16, 1, "slurm")
    assert sl.master_addr == "gpu03" and sl.master_port == 21234
    # a batch script of an --ntasks=8 job that starts one process is not 8 ranks
    assert L.detect_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}).world_size == 1
    assert L.detect_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_STEP_ID": "0"}).world_size == 1


def test_child_processes_import_this_package():
    """The ranks a launcher starts get the directory holding this very package on PYTHONPATH
    (after the extra paths, before the caller's), whatever module computes it."""
    import filmorph

    env = L.with_package_path({"PYTHONPATH": "/old"}, first=["/wheels"])
    parts = env["PYTHONPATH"].split(os.pathsep)
    assert parts[0] == "/wheels" and parts[-1] == "/old" and len(parts) == 3
    assert (Path(parts[1]) / "filmorph" / "__init__.py").resolve() == Path(filmorph.__file__).resolve()
    assert L.with_package_path({})["PYTHONPATH"] == parts[1]


def test_engine_pythonpath_puts_the_engines_own_packages_first():
    """Without conda, an engine's conflicting pins live in their own directory, named by
    FILMORPH_ENGINE_PATH_<ENGINE>, ahead of the shared PYTHONPATH, for that engine only."""
    sep = os.pathsep
    env = {"PYTHONPATH": "/site", "FILMORPH_ENGINE_PATH_AUTOMODEL": f"/am{sep}/am2"}
    got = L.engine_pythonpath("automodel", env, first=["/src"]).split(sep)
    assert got == ["/src", "/am", "/am2", "/site"]
    assert L.engine_pythonpath("megatron", env, first=["/src"]).split(sep) == ["/src", "/site"]
    assert L.engine_pythonpath("hf", {}) == ""
    assert L.ENGINE_PATH_ENV.format(engine="AUTOMODEL") in env


def test_launch_argv():
    args = ["--config", "c.json"]
    one = L.launch_argv(TrainConfig.from_dict({}), args, python="py")
    assert one == ["py", "-m", "filmorph.train", *args]
    eight = L.launch_argv(TrainConfig.from_dict({"gpus_per_node": 8}), args, python="py")
    assert eight[:5] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=8"]
    assert eight[-3:] == ["filmorph.train", *args][-3:]
    multi = L.launch_argv(TrainConfig.from_dict({"gpus_per_node": 8, "nodes": 2}), args, python="py")
    assert multi[:3] == ["srun", "--nodes=2", "--ntasks-per-node=8"]


def test_flops_and_mfu(models):
    from transformers import AutoModelForCausalLM

    assert C.flops_per_token(100, 2, 4, 8, 16) == 6 * 100 + 12 * 2 * 4 * 8 * 16
    assert C.peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert C.peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert C.peak_flops(None, "bf16") is None and C.peak_flops("NVIDIA H100 80GB HBM3", "fp32") is None
    assert C.mfu(1000.0, 6e9, 989e12, 2) == pytest.approx(1000 * 6e9 / (2 * 989e12))
    assert C.mfu(1000.0, 6e9, None, 1) is None
    m = AutoModelForCausalLM.from_pretrained(models["llama"])
    n = sum(p.numel() for p in m.parameters())  # tied: the output projection is the embedding
    assert C.model_flops_per_token(m, 64) == 6 * n + 12 * 2 * 4 * 8 * 64


def test_metrics_writer_and_wandb(tmp_path, monkeypatch):
    w = C.MetricsWriter(tmp_path / "m" / "metrics.jsonl")
    for s in (1, 2, 3):
        w.log({"step": s, "loss": 1.0 / s, "mfu": None})
    with open(w.path, "a") as fh:
        fh.write('{"step": 4, "lo')  # a line cut by a kill
    w.truncate_after(2)
    assert [r["step"] for r in C.read_metrics(w.path)] == [1, 2]
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert C.start_wandb(tmp_path, "x", {}) is None
    calls = []
    fake = types.SimpleNamespace(init=lambda **kw: calls.append(kw) or "run")
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_API_KEY", "secret-key-123")
    assert C.start_wandb(tmp_path, "x", {"lr": 1}) == "run"
    assert "secret-key-123" not in json.dumps(calls, default=str)
    assert calls[0]["resume"] == "allow" and calls[0]["config"] == {"lr": 1}


# ============================================================================ pre-flight
def test_preflight_accepts_matching_inputs(shards, models, family_dirs):
    rep = C.preflight(shards["llama"], models["llama"])
    assert rep["eod_id"] == 128001 and rep["tokenizer"]["vocab_size"] == 128256
    assert rep["max_token_id"] < 128256 and [s["prefix"] for s in rep["shards"]] == shards["llama"]
    assert rep["tokenizer_files_dir"] == str(models["llama"])
    rep = C.preflight(shards["gemma"], models["gemma"], tokenizer_dir=family_dirs["gemma"])
    assert rep["eod_id"] == 1 and rep["tokenizer_files_dir"] == str(family_dirs["gemma"])


def _model_variant(src: Path, dst: Path, **config_changes) -> Path:
    shutil.copytree(src, dst)
    cfg = read_json(dst / "config.json")
    cfg.update(config_changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    (dst / "generation_config.json").unlink(missing_ok=True)
    return dst


def test_preflight_rejects_mismatches(shards, models, family_dirs, tmp_path):
    with pytest.raises(C.PreflightError, match="vocab mismatch"):
        C.preflight(shards["gemma"], models["llama"], tokenizer_dir=family_dirs["gemma"])
    bad_eos = _model_variant(models["llama"], tmp_path / "eos", eos_token_id=128009)
    with pytest.raises(C.PreflightError, match="EOD mismatch"):
        C.preflight(shards["llama"], bad_eos)
    with pytest.raises(C.PreflightError, match="different tokenizers"):
        C.preflight([shards["llama"][0], shards["gemma"][0]], models["gemma"])
    # another tokenizer.json in the model dir
    other = _model_variant(models["llama"], tmp_path / "tok")
    shutil.copyfile(family_dirs["gemma"] / "tokenizer.json", other / "tokenizer.json")
    with pytest.raises(C.PreflightError, match="tokenizer mismatch"):
        C.preflight(shards["llama"], other)
    with pytest.raises(C.PreflightError, match="map tokens to different ids"):
        C.preflight(shards["llama"], other, tokenizer_dir=family_dirs["llama"])
    with pytest.raises(C.PreflightError, match="tokenizer mismatch"):
        C.preflight(shards["llama"], models["llama"], tokenizer_dir=family_dirs["gemma"])
    # same vocabulary, other bytes: accepted when the family's tokenizer dir is given
    reser = _model_variant(models["llama"], tmp_path / "reser")
    tj = read_json(reser / "tokenizer.json")
    (reser / "tokenizer.json").write_text(json.dumps(tj, indent=1))
    with pytest.raises(C.PreflightError, match="--tokenizer-dir"):
        C.preflight(shards["llama"], reser)
    rep = C.preflight(shards["llama"], reser, tokenizer_dir=family_dirs["llama"])
    assert any("vocabularies are identical" in n for n in rep["notes"])


def test_preflight_catches_out_of_range_ids(shards, models, tmp_path):
    prefix = tmp_path / "chunk_0001"
    with ShardWriter(prefix, 300_000) as w:  # writer allows it; the model (128256 rows) does not
        w.add([5, 6, 7, 128001])
        w.add([200_000, 128001])
    shutil.copyfile(f"{shards['llama'][0]}.stats.json", f"{prefix}.stats.json")
    with pytest.raises(C.PreflightError, match=r"out of range.*\[5, 200000\]"):
        C.preflight([prefix], models["llama"])
    C.preflight([prefix], models["llama"], scan_ids=False)  # the scan is what catches it
    assert C.shard_id_range(prefix, block=3) == (5, 200_000)


# ============================================================================ data semantics
def _hand_shards(root: Path, n_shards: int = 1, docs: int = 60, eod: int = 1, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    prefixes = []
    for k in range(n_shards):
        prefix = root / f"chunk_{k + 1:04d}"
        lo = 1000 * (k + 1)  # shard k's ids live in [lo, lo + 999]: a sample shows its source
        with ShardWriter(prefix, 10_000) as w:
            for _ in range(docs + 30 * k):
                w.add(list(rng.integers(lo, lo + 1000, size=int(rng.integers(1, 12)))) + [eod])
        prefixes.append(str(prefix))
    return prefixes


def test_dataset_position_ids_and_loss_mask_at_eod(tmp_path):
    import torch.distributed as dist

    from filmorph.train.data import build_datasets

    prefixes = _hand_shards(tmp_path, docs=80)
    cfg = _cfg(max_steps=20, global_batch_size=4, seq_length=24, split="90,10,0", eval_iters=2)
    data = build_datasets(prefixes, cfg, eod_id=1, vocab_size=10_000, cache_dir=tmp_path / "cache")
    assert not dist.is_initialized()  # the builder's gloo group is gone
    assert len(data.train) >= 80 and data.valid is not None and len(data.valid) >= 8
    seen_eod = 0
    for i in range(40):
        item = data.train[i]
        tokens, labels, pos, mask = item["tokens"], item["labels"], item["position_ids"], item["loss_mask"]
        assert tokens.shape == labels.shape == pos.shape == mask.shape == (24,)
        assert (tokens[1:] == labels[:-1]).all()
        expect_pos, p = [], 0
        for t in tokens.tolist():
            expect_pos.append(p)
            p = 0 if t == 1 else p + 1
        assert pos.tolist() == expect_pos  # restarts right after every EOD
        assert mask.tolist() == [0.0 if t == 1 else 1.0 for t in tokens.tolist()]  # input EOD masked
        seen_eod += int((tokens == 1).sum())
    assert seen_eod > 20
    # the flags off: plain positions, nothing masked
    off = _cfg(
        max_steps=20,
        global_batch_size=4,
        seq_length=24,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        split="90,10,0",
        eval_iters=0,
    )
    plain = build_datasets(prefixes, off, eod_id=1, vocab_size=10_000, cache_dir=tmp_path / "cache2")
    assert plain.train[0]["position_ids"].tolist() == list(range(24))
    assert plain.train[0]["loss_mask"].tolist() == [1.0] * 24 and plain.valid is None


def test_blend_uses_every_chunk_by_token_count(tmp_path):
    from filmorph.train.data import blend_of, build_datasets

    prefixes = _hand_shards(tmp_path, n_shards=3, docs=40)
    blend = blend_of(prefixes)
    assert blend.prefixes == tuple(prefixes) and blend.weights == [float(t) for t in blend.tokens]
    cfg = _cfg(max_steps=60, global_batch_size=4, seq_length=16, split="98,2,0", eval_iters=0)
    data = build_datasets(prefixes, cfg, eod_id=1, vocab_size=10_000, cache_dir=tmp_path / "cache")
    counts = np.zeros(3)
    for i in range(cfg.max_steps * cfg.global_batch_size):
        toks = data.train[i]["tokens"].numpy()
        toks = toks[toks != 1]
        counts += np.bincount(toks // 1000 - 1, minlength=3)[:3]
    assert (counts > 0).all()
    share = counts / counts.sum()
    expected = np.array(blend.tokens) / sum(blend.tokens)
    assert np.abs(share - expected).max() < 0.05, (share, expected)


def test_empty_split_fails_instead_of_hanging(tmp_path):
    from filmorph.train.data import build_datasets, split_document_counts

    assert split_document_counts(92, "99,1,0") == (91, 1, 0)
    assert split_document_counts(20, "99,1,0") == (20, 0, 0)
    prefixes = _hand_shards(tmp_path, docs=20)
    with pytest.raises(ValueError, match="none for valid"):
        build_datasets(prefixes, _cfg(split="99,1,0"), eod_id=1, vocab_size=10_000, cache_dir=tmp_path / "c")


def test_interrupted_index_cache_is_rebuilt(tmp_path):
    from filmorph.train.data import CACHE_MARKER, build_datasets

    prefixes = _hand_shards(tmp_path, docs=40)
    cfg = _cfg(split="90,10,0")
    build_datasets(prefixes, cfg, eod_id=1, vocab_size=10_000, cache_dir=tmp_path / "cache")
    marker = tmp_path / "cache" / CACHE_MARKER
    assert marker.is_file()
    npy = sorted((tmp_path / "cache").glob("*shuffle_index.npy"))[0]
    npy.write_bytes(b"half")  # a kill while megatron wrote it
    marker.unlink()
    data = build_datasets(prefixes, cfg, eod_id=1, vocab_size=10_000, cache_dir=tmp_path / "cache")
    assert data.train[0]["tokens"].shape == (32,) and marker.is_file()


# ============================================================================ the hf engine
@pytest.mark.parametrize("family", ["llama", "gemma"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_documents_match_separate_runs(family, attn):
    """The engine's model inputs for a packed sequence (two documents, the first ending in
    EOD, position ids restarting after it) give each document exactly the logits it gets
    alone: no attention across the boundary (Gemma 3: sliding window 6 < document length)."""
    import torch

    from filmorph.train.hf import check_document_masking, forward_kwargs

    vocab, eos = (128256, 128001) if family == "llama" else (262144, 1)
    model = tiny_model(family, vocab, eos, 2)
    model.set_attn_implementation(attn)
    model.eval()
    g = torch.Generator().manual_seed(1)
    a = torch.cat([torch.randint(3, 50000, (13,), generator=g), torch.tensor([eos])])
    b = torch.randint(3, 50000, (10,), generator=g)
    tokens = torch.cat([a, b])[None]
    pos = torch.cat([torch.arange(14), torch.arange(10)])[None]
    batch = {"tokens": tokens, "position_ids": pos}
    with torch.no_grad():
        packed = model(**forward_kwargs(_cfg(), batch, "cpu")).logits[0]
        alone = torch.cat([model(input_ids=a[None]).logits[0], model(input_ids=b[None]).logits[0]])
        crossing = model(input_ids=tokens, use_cache=False).logits[0]
    assert (packed - alone).abs().max() < 1e-5
    assert (crossing[14:] - alone[14:]).abs().max() > 1e-3  # without the position ids it would leak
    assert check_document_masking(model) < 1e-5
    # reset_position_ids without reset_attention_mask: positions restart, attention crosses
    cross_cfg = _cfg(reset_attention_mask=False)
    with torch.no_grad():
        both = model(**forward_kwargs(cross_cfg, batch, "cpu")).logits[0]
    assert (both[:14] - alone[:14]).abs().max() < 1e-5 and (both[14:] - alone[14:]).abs().max() > 1e-3


def test_hf_optimizer_precision_and_resume_step(tmp_path):
    """AdamW decays matrices and embeddings only and skips frozen parameters; bf16 only on a
    GPU; the resume step is the newest state with weights, optimizer and RNG files."""
    import torch

    from filmorph.train.hf import build_optimizer, param_groups, precision_of, set_lr
    from filmorph.train.hf_checkpoint import resume_step

    model = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 3))
    model[2].bias.requires_grad_(False)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[1].weight), id(model[1].bias)}
    cfg = _cfg(precision="bf16", warmup_steps=4)
    opt = build_optimizer(model, cfg, fused=False)
    assert [g["lr"] for g in opt.param_groups] == [C.lr_at(cfg, 0)] * 2 == [cfg.lr / 4] * 2
    assert set_lr(opt, 0.5) == 0.5 and [g["lr"] for g in opt.param_groups] == [0.5, 0.5]
    assert precision_of(cfg, torch.device("cpu")) == ("fp32", "float32")
    assert precision_of(cfg, torch.device("cuda", 0)) == ("bf16", "bfloat16")
    assert precision_of(_cfg(precision="fp32"), torch.device("cuda", 0)) == ("fp32", "float32")

    lay = C.RunLayout(tmp_path)
    assert resume_step(lay, 6) == 0
    for step in (2, 4, 6):  # only step 4 keeps its optimizer file (6: a weights-only state)
        lay.state_dir(step).mkdir(parents=True)
        for f in ("model.safetensors", "rng.pt", C.STATE_FILE, *(["optimizer.pt"] if step == 4 else [])):
            (lay.state_dir(step) / f).write_text("{}")
    assert resume_step(lay, 6) == 4
    with pytest.raises(ValueError, match="state at step 4 > max_steps 3"):
        resume_step(lay, 3)


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _cli_args(cfg: TrainConfig, config_json: Path, model: Path, prefixes: list, run_dir: Path) -> list:
    """``python -m filmorph.train`` arguments training ``cfg`` (written to ``config_json``)."""
    config_json.write_text(json.dumps(cfg.to_dict()))
    return ["--config", str(config_json), "--model", str(model), "--shards", *prefixes,
            "--run-dir", str(run_dir), "--no-progress"]


def _assert_same_run(a: Path, b: Path, steps) -> None:
    """The HF checkpoints of ``steps`` hold bitwise the same weights in both run dirs, and the
    runs logged the same steps with the same losses."""
    import torch

    la, lb = C.RunLayout(a), C.RunLayout(b)
    for step in steps:
        wa = _weights(la.hf_dir(step) / "model.safetensors")
        wb = _weights(lb.hf_dir(step) / "model.safetensors")
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), step

    def logged(lay):
        return [(r["step"], r["loss"], r["val_loss"]) for r in C.read_metrics(lay.metrics)]

    assert logged(la) == logged(lb)


def test_training_run_loss_metrics_and_checkpoints(shards, models, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from filmorph.train.hf import train

    cfg = _cfg(
        max_steps=20,
        global_batch_size=2,
        seq_length=64,
        lr=1e-2,
        min_lr=1e-3,
        warmup_steps=2,
        checkpoint_interval=8,
        log_interval=4,
        eval_interval=10,
        eval_iters=1,
    )
    run = tmp_path / "run"
    summary = train(cfg, models["llama"], shards["llama"], run, progress=False)
    lay = C.RunLayout(run)

    # loss goes down
    rows = C.read_metrics(lay.metrics)
    assert [r["step"] for r in rows] == [4, 8, 10, 12, 16, 20]
    # without the bar, the job log gets one line per logged step, the same figures
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("step ")]
    assert [x.split(" | ")[0] for x in lines] == [f"step {r['step']}/20" for r in rows]
    assert lines[2] == C.step_line(rows[2], 20) and f"val {rows[2]['val_loss']:.4f}" in lines[2]
    assert "mfu" not in lines[0] and "tok/s" in lines[0]  # None fields are left out
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0, rows
    assert summary["final_loss"] == rows[-1]["loss"]
    for r in rows:
        assert set(r) >= {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu", "val_loss"}
        assert r["tokens"] == r["step"] * 2 * 64 and r["mfu"] is None and r["grad_norm"] > 0
        assert r["lr"] == pytest.approx(C.lr_at(cfg, r["step"] - 1))
    vals = [(r["step"], r["val_loss"]) for r in rows if r["val_loss"] is not None]
    assert [v[0] for v in vals] == [10, 20] and vals[1][1] < vals[0][1]

    # checkpoints: every 8 steps and the last; HF dirs load with transformers
    assert [c["step"] for c in summary["checkpoints"]] == [8, 16, 20]
    assert sorted(p.name for p in lay.hf_root.iterdir()) == ["step_0000008", "step_0000016", "step_0000020"]
    assert C.complete_states(run) == [8, 16, 20]
    assert not (lay.state_dir(8) / "optimizer.pt").exists() and (lay.state_dir(20) / "optimizer.pt").exists()
    sha = read_json(f"{shards['llama'][0]}.stats.json")["tokenizer"]["tokenizer_json_sha256"]
    for step in (8, 20):
        d = lay.hf_dir(step)
        m = AutoModelForCausalLM.from_pretrained(d, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
        assert tok.eos_token_id == 128001 and C.sha256_file(d / "tokenizer.json") == sha
        state = _weights(lay.state_dir(step) / "model.safetensors")
        got = m.state_dict()
        assert all(torch.equal(got[k], v) for k, v in state.items())
        assert m.config.use_cache and read_json(d / "filmorph_train_meta.json")["step"] == step
    assert not list(lay.hf_root.glob(".*")) and not list(lay.states.glob(".*"))

    # the records an audit reads
    tc = read_json(lay.train_config)
    assert tc["config"] == cfg.to_dict() and tc["shard_prefixes"] == shards["llama"]
    assert tc["tokenizer"]["tokenizer_json_sha256"] == sha and tc["effective_precision"] == "fp32"
    assert summary == read_json(lay.summary)
    assert summary["tokens_seen"] == 20 * 2 * 64 and summary["steps"] == 20
    assert summary["final_val_loss"] == rows[-1]["val_loss"]


def test_resume_gives_the_same_weights(shards, models, tmp_path, capsys):
    import torch

    from filmorph.train.__main__ import main
    from filmorph.train.hf import TrainingInterrupted, train

    cfg = _cfg(max_steps=6, checkpoint_interval=2, eval_interval=3, log_interval=1)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    # loader worker processes in one run, none in the other: the same batches
    train(cfg.with_overrides(num_workers=2), models["llama"], shards["llama"], straight, progress=False)

    with pytest.raises(TrainingInterrupted):  # "killed" after step 3: the state of step 2 is the last
        train(cfg, models["llama"], shards["llama"], resumed, progress=False, interrupt_after=3)
    lay = C.RunLayout(resumed)
    assert C.complete_states(resumed) == [2] and [r["step"] for r in C.read_metrics(lay.metrics)] == [1, 2, 3]
    shutil.rmtree(lay.hf_dir(2))  # Snakemake removes the outputs of a failed job
    argv = _cli_args(cfg, tmp_path / "train.json", models["llama"], shards["llama"], resumed)
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["steps"] == 6 and out["engine"] == "hf"

    a, b = C.RunLayout(straight), lay
    _assert_same_run(straight, resumed, (2, 4, 6))
    assert [r["step"] for r in C.read_metrics(b.metrics)] == [1, 2, 3, 4, 5, 6]
    assert read_json(b.summary)["resumed_from_step"] == 2

    # a finished run: rerunning only re-creates a missing checkpoint
    shutil.rmtree(b.hf_dir(6))
    assert main(argv) == 0
    w6 = _weights(b.hf_dir(6) / "model.safetensors")
    assert all(torch.equal(w6[k], v) for k, v in _weights(a.hf_dir(6) / "model.safetensors").items())
    assert [r["step"] for r in C.read_metrics(b.metrics)] == [1, 2, 3, 4, 5, 6]

    # the same run dir with another training config is refused, or restarted on request
    other = cfg.with_overrides(lr=1e-2, max_steps=2)
    with pytest.raises(ValueError, match="different config"):
        train(other, models["llama"], shards["llama"], resumed, progress=False)
    train(other, models["llama"], shards["llama"], resumed, progress=False, on_config_change="restart")
    assert sorted(p.name for p in b.hf_root.iterdir()) == ["step_0000002"]
    assert read_json(b.summary)["resumed_from_step"] is None and len(C.read_metrics(b.metrics)) == 2


def test_stop_signal_saves_a_state_and_the_rerun_matches_bitwise(shards, models, tmp_path):
    """What Slurm does before a time limit: SIGTERM to every process of the job (here the
    engine's process group, its data-loader workers included) while training runs. The engine
    finishes the step, saves a resumable state, writes that step's metrics and exits with 3;
    the rerun resumes there and ends with bitwise the weights and losses of a run never
    stopped."""
    import os
    import signal
    import subprocess
    import time

    from filmorph.train.__main__ import main
    from filmorph.train.hf import train

    cfg = _cfg(max_steps=24, checkpoint_interval=8, eval_interval=10, log_interval=1, num_workers=2)
    run = tmp_path / "run"
    lay = C.RunLayout(run)
    argv = _cli_args(cfg, tmp_path / "train.json", models["llama"], shards["llama"], run)
    with open(tmp_path / "stopped.log", "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "filmorph.train", *argv], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 300
        while not C.read_metrics(lay.metrics):  # the first step is done
            assert proc.poll() is None and time.time() < deadline, log.read()
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=300) == 3
        log.seek(0)
        assert "SIGTERM received: stopped after step" in log.read()
    rows = C.read_metrics(lay.metrics)
    reached = rows[-1]["step"]
    assert 1 <= reached < cfg.max_steps and [r["step"] for r in rows] == list(range(1, reached + 1))
    assert reached in C.complete_states(run, required=("model.safetensors", "optimizer.pt", "rng.pt"))
    assert C.find_resume_step(run) == reached
    assert sorted(p.name for p in lay.hf_root.glob("*")) == [C.step_name(s) for s in (8, 16) if s <= reached]
    assert not lay.summary.exists()

    assert main(argv) == 0
    assert read_json(lay.summary)["resumed_from_step"] == reached
    assert C.complete_states(run) == [8, 16, 24]  # the state of the stop went with the next save
    train(cfg, models["llama"], shards["llama"], tmp_path / "straight", progress=False)
    _assert_same_run(tmp_path / "straight", run, (8, 16, 24))


def test_job_script_outlives_the_stop_signal(tmp_path):
    """Slurm signals every process of the job step: the job script's wait for the engine
    survives it (the engine saves and exits), returns the engine's status, and torchrun gets a
    longer shutdown timeout."""
    import os
    import signal
    import subprocess
    import time

    (tmp_path / "engine.py").write_text(
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
        "print(os.environ['TORCH_ELASTIC_SHUTDOWN_TIMEOUT'], flush=True)\n"
        "open(sys.argv[1], 'w').close()\n"
        "time.sleep(120)\n"
    )
    (tmp_path / "job.py").write_text(
        "import os, sys\n"
        "from filmorph.train.launch import run_training_command\n"
        "engine, log, ready = sys.argv[1:]\n"
        "with open(log, 'w') as fh:\n"
        "    sys.exit(run_training_command([sys.executable, engine, ready], fh, dict(os.environ)))\n"
    )
    ready = tmp_path / "ready"
    argv = [sys.executable, *(str(tmp_path / f) for f in ("job.py", "engine.py", "log", "ready"))]
    job = subprocess.Popen(argv, start_new_session=True)
    for _ in range(3000):
        if ready.exists() or job.poll() is not None:
            break
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGTERM)
    assert job.wait(timeout=60) == 3
    assert (tmp_path / "log").read_text().strip() == str(L.TORCHRUN_SHUTDOWN_S)


def test_stop_request_records_the_first_signal():
    import os
    import signal

    from filmorph.train.launch import StopRequest

    before = signal.getsignal(signal.SIGUSR1)
    stop = StopRequest().install()
    try:
        assert stop.signum is None and stop.name == "a stop signal on another rank"
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGUSR1 and stop.name == "SIGUSR1"
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_export_bf16(models, family_dirs, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from filmorph.train.hf_checkpoint import export_hf

    m = AutoModelForCausalLM.from_pretrained(models["gemma"])
    export_hf(m, tmp_path / "bf16", tokenizer_files_dir=family_dirs["gemma"], dtype="bfloat16", meta={"x": 1})
    r = AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto")
    assert r.dtype == torch.bfloat16 and r.lm_head.weight is r.model.embed_tokens.weight
    sd = m.state_dict()
    assert all(torch.equal(v, sd[k].to(torch.bfloat16)) for k, v in r.state_dict().items())
    assert (tmp_path / "bf16" / "tokenizer_meta.json").is_file()


def test_cli(tmp_path, capsys, monkeypatch):
    from filmorph.train.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "--shards PREFIX" in capsys.readouterr().out
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"engine": "megatron"}))
    argv = ["--config", str(cfg), "--model", "m", "--shards", "p", "--run-dir", str(tmp_path / "r")]
    monkeypatch.setitem(sys.modules, "filmorph.train.megatron", None)  # an engine module that is absent
    with pytest.raises(NotImplementedError, match="'megatron' is not implemented"):
        main(argv)
    cfg.write_text(json.dumps({"max_step": 3}))
    with pytest.raises(ValueError, match="unknown key"):
        main(argv)


def test_ddp_two_ranks_match_one_process(shards, models, tmp_path):
    """torchrun with 2 CPU ranks (gloo DDP, grad accumulation 1 per rank) trains like one
    process with accumulation 2: same losses (up to float summation order)."""
    import subprocess

    cfg = _cfg(max_steps=3, global_batch_size=4, checkpoint_interval=3, eval_iters=0, split="90,10,0")
    args = _cli_args(cfg, tmp_path / "train.json", models["llama"], shards["llama"], tmp_path / "ddp")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    launch = L.launch_argv(cfg.with_overrides(gpus_per_node=2), args)
    res = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    from filmorph.train.hf import train

    train(cfg, models["llama"], shards["llama"], tmp_path / "one", progress=False)
    ddp, one = (
        C.read_metrics(tmp_path / "ddp" / "metrics.jsonl"),
        C.read_metrics(tmp_path / "one" / "metrics.jsonl"),
    )
    assert [r["step"] for r in ddp] == [1, 2, 3] and read_json(tmp_path / "ddp" / "train_summary.json")[
        "world_size"
    ] == 2
    for a, b in zip(ddp, one, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["loss_tokens"] == b["loss_tokens"]
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
