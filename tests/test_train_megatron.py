"""filmorph.train.megatron on a CPU machine: the pure translation of TrainConfig into
Megatron-Bridge settings, the thd document packing against megatron-core's own document
semantics (megatron-core's GPTDataset on real shards), the metrics callbacks, checkpoint
bookkeeping, and that nothing needs Megatron-Bridge / Transformer Engine until it is used."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest

from filmorph.io import read_json, write_json_atomic
from filmorph.train import megatron as M
from filmorph.train.common import MetricsWriter, read_metrics
from filmorph.train.config import TrainConfig
from filmorph.train.megatron import engine as E

pytestmark = [
    pytest.mark.filterwarnings("ignore:Transformer Engine and Apex:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _cfg(**kw) -> TrainConfig:
    base = {
        "engine": "megatron",
        "max_steps": 200,
        "global_batch_size": 16,
        "micro_batch_size": 2,
        "seq_length": 64,
        "warmup_steps": 10,
        "checkpoint_interval": 50,
        "eval_interval": 50,
        "eval_iters": 2,
        "log_interval": 5,
    }
    return TrainConfig.from_dict({**base, **kw})


def _stats(prefix: Path, eod: int = 128001, vocab: int = 128256) -> str:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(f"{prefix}.stats.json"), {"eod_id": eod, "tokenizer": {"vocab_size": vocab}})
    return str(prefix)


def _settings(tmp_path, cfg=None, counts=(100, 300, 600), **kw):
    prefixes = [_stats(tmp_path / "shards" / f"chunk_{i:04d}") for i in range(1, len(counts) + 1)]
    args = {
        "shard_prefixes": prefixes,
        "shard_token_counts": list(counts),
        "run_dir": tmp_path / "run",
        "world_size": 1,
        "tensor_parallel": 1,
        "pretrained_checkpoint": tmp_path / "import",
        "environ": {},
    }
    args.update(kw)
    return M.megatron_settings(cfg or _cfg(), **args), prefixes


# ============================================================================ settings
def test_settings_carry_the_config(tmp_path):
    cfg = _cfg(lr=2e-4, min_lr=2e-5, adam_beta2=0.98, adam_eps=1e-6, weight_decay=0.05, grad_clip=0.5, seed=7)
    s, prefixes = _settings(tmp_path, cfg)
    json.dumps(s)  # JSON-able: it is written into train_config.json
    # blend: every prefix, in order, weights proportional to tokens
    paths, weights = s["dataset"]["blend"]
    assert paths == prefixes
    assert weights == pytest.approx([0.1, 0.3, 0.6])
    assert sum(weights) == pytest.approx(1.0)
    # iterations, batch, schedule
    assert s["train"]["train_iters"] == 200
    assert (s["train"]["global_batch_size"], s["train"]["micro_batch_size"]) == (16, 2)
    assert s["train"]["exit_signal_handler"] is True
    sch = s["scheduler"]
    assert (sch["lr_decay_style"], sch["lr_warmup_iters"], sch["lr_decay_iters"]) == ("cosine", 10, 200)
    assert sch["lr_warmup_init"] == 0.0
    assert sch["start_weight_decay"] == sch["end_weight_decay"] == 0.05  # the scheduler owns weight decay
    opt = s["optimizer"]
    assert (opt["optimizer"], opt["lr"], opt["min_lr"]) == ("adam", 2e-4, 2e-5)
    assert (opt["adam_beta1"], opt["adam_beta2"], opt["adam_eps"]) == (0.9, 0.98, 1e-6)
    assert (opt["weight_decay"], opt["clip_grad"], opt["bf16"], opt["use_distributed_optimizer"]) == (
        0.05,
        0.5,
        True,
        True,
    )
    assert s["mixed_precision"] == "bf16_mixed"
    # dataset semantics
    ds = s["dataset"]
    assert (ds["sequence_length"], ds["split"], ds["random_seed"]) == (64, "99,1,0", 7)
    assert ds["reset_position_ids"] and ds["reset_attention_mask"] and ds["eod_mask_loss"]
    assert ds["path_to_cache"] == str(tmp_path / "run" / "data_cache")
    assert s["document_masking"] == "thd"
    # tokenizer: the shards' EOD and vocab, read from their stats.json
    tok = s["tokenizer"]
    assert (tok["tokenizer_type"], tok["null_tokenizer_eod_id"], tok["vocab_size"]) == (
        "NullTokenizer",
        128001,
        128256,
    )
    assert tok["null_tokenizer_pad_id"] == -1 and tok["use_tokenizer_vocab_size"] is False
    assert (s["eod_id"], s["vocab_size"]) == (128001, 128256)
    # checkpoints: save == load (resume), the import as the starting point, keep all
    ck = s["checkpoint"]
    assert ck["save"] == ck["load"] == str(tmp_path / "run" / "megatron")
    assert ck["pretrained_checkpoint"] == str(tmp_path / "import")
    assert (ck["save_interval"], ck["ckpt_format"], ck["most_recent_k"]) == (50, "torch_dist", -1)
    assert ck["save_optim"] and ck["load_optim"]
    assert s["validation"] == {"eval_interval": 50, "eval_iters": 2}
    assert s["logger"]["log_interval"] == 5
    assert s["rng"] == {"seed": 7}
    assert s["model"]["gradient_accumulation_fusion"] is False
    assert s["model"]["seq_length"] == 64


def test_settings_schedules_precision_and_eval(tmp_path):
    s, _ = _settings(tmp_path, _cfg(lr_schedule="linear"))
    assert s["scheduler"]["lr_decay_style"] == "linear"
    s, _ = _settings(tmp_path, _cfg(lr_schedule="constant", warmup_steps=0))
    assert (s["scheduler"]["lr_decay_style"], s["scheduler"]["lr_warmup_iters"]) == ("constant", 0)
    s, _ = _settings(tmp_path, _cfg(precision="fp32"))
    assert s["mixed_precision"] is None and s["optimizer"]["bf16"] is False
    s, _ = _settings(tmp_path, _cfg(eval_iters=0))
    assert s["validation"] == {"eval_interval": None, "eval_iters": 0}
    s, _ = _settings(tmp_path, _cfg(reset_attention_mask=False))
    assert s["document_masking"] == "none" and s["dataset"]["reset_attention_mask"] is False
    s, _ = _settings(tmp_path, _cfg(num_workers=0))
    assert s["dataloader"]["persistent_workers"] is False
    s, _ = _settings(tmp_path, exit_interval=25)
    assert s["train"]["exit_interval"] == 25


@pytest.mark.parametrize(
    ("world", "tp", "gbs", "mbs", "dp", "accum"),
    [
        (1, 1, 16, 2, 1, 8),
        (8, 1, 16, 2, 8, 1),
        (8, 2, 16, 2, 4, 2),
        (8, 8, 16, 1, 1, 16),
        (4, 2, 16, 4, 2, 2),
    ],
)
def test_settings_parallel_arithmetic(tmp_path, world, tp, gbs, mbs, dp, accum):
    s, _ = _settings(
        tmp_path, _cfg(global_batch_size=gbs, micro_batch_size=mbs), world_size=world, tensor_parallel=tp
    )
    assert s["parallel"] == {
        "world_size": world,
        "tensor_parallel": tp,
        "pipeline_parallel": 1,
        "context_parallel": 1,
        "data_parallel": dp,
        "grad_accum_steps": accum,
    }
    assert s["model"]["tensor_model_parallel_size"] == tp
    assert s["model"]["sequence_parallel"] is (tp > 1)


@pytest.mark.parametrize(
    ("kw", "cfg_kw", "words"),
    [
        ({"world_size": 6, "tensor_parallel": 4}, {}, "not divisible by tensor_parallel"),
        ({"world_size": 3, "tensor_parallel": 1}, {}, "not a multiple of micro_batch_size"),
        ({"world_size": 2, "tensor_parallel": 3}, {}, "not divisible"),
        ({"world_size": 1, "tensor_parallel": 0}, {}, "must be >= 1"),
        ({"world_size": 2, "tensor_parallel": 2}, {"seq_length": 63}, "not a multiple of tensor_parallel"),
        ({}, {"warmup_steps": 200}, "warmup_steps"),
        ({"shard_token_counts": [1, 2]}, {}, "token counts"),
        ({"shard_token_counts": [0, 1, 2]}, {}, "every shard needs tokens"),
        ({"eod_id": 5, "vocab_size": 5}, {}, "EOD id 5"),
        ({"exit_interval": 0}, {}, "exit_interval"),
    ],
)
def test_settings_reject(tmp_path, kw, cfg_kw, words):
    with pytest.raises(ValueError, match=words):
        _settings(tmp_path, _cfg(**cfg_kw), **kw)


def test_settings_shard_facts(tmp_path):
    # explicit values win over stats.json
    s, _ = _settings(tmp_path, eod_id=1, vocab_size=262144)
    assert (s["tokenizer"]["null_tokenizer_eod_id"], s["tokenizer"]["vocab_size"]) == (1, 262144)
    # shards from two tokenizers cannot form one blend
    a = _stats(tmp_path / "x" / "a", eod=1, vocab=262144)
    b = _stats(tmp_path / "x" / "b", eod=128001, vocab=128256)
    with pytest.raises(ValueError, match="disagree"):
        M.megatron_settings(
            _cfg(),
            shard_prefixes=[a, b],
            shard_token_counts=[1, 1],
            run_dir=tmp_path,
            world_size=1,
            environ={},
        )
    with pytest.raises(ValueError, match="stats.json is missing"):
        M.megatron_settings(
            _cfg(),
            shard_prefixes=[str(tmp_path / "none")],
            shard_token_counts=[1],
            run_dir=tmp_path,
            world_size=1,
            environ={},
        )
    with pytest.raises(ValueError, match="repeat"):
        M.megatron_settings(
            _cfg(),
            shard_prefixes=[a, a],
            shard_token_counts=[1, 1],
            run_dir=tmp_path,
            world_size=1,
            environ={},
        )


def test_settings_wandb_only_with_a_key_and_never_the_key(tmp_path):
    s, _ = _settings(tmp_path)
    assert not any(k.startswith("wandb") for k in s["logger"])
    secret = "wandb-secret-0123456789abcdef"
    env = {"WANDB_API_KEY": secret, "WANDB_PROJECT": "proj", "WANDB_ENTITY": "team", "HF_TOKEN": "hf_secret"}
    s, _ = _settings(tmp_path, environ=env)
    assert s["logger"]["wandb_project"] == "proj" and s["logger"]["wandb_entity"] == "team"
    assert s["logger"]["wandb_exp_name"] == "run"
    dumped = json.dumps(s)
    assert secret not in dumped and "hf_secret" not in dumped and "API_KEY" not in dumped


def test_iteration_bookkeeping(tmp_path):
    save = tmp_path / "run" / "megatron"
    assert M.latest_iteration(save) == 0 and M.checkpoint_iterations(save) == []
    for it in (50, 100, 150):
        M.megatron_iter_dir(tmp_path / "run", it).mkdir(parents=True)
    (save / M.TRACKER_FILE).write_text("100\n")
    assert M.latest_iteration(save) == 100
    assert M.checkpoint_iterations(save) == [50, 100]  # 150: a save that did not finish
    assert M.megatron_iter_dir("r", 7) == Path("r/megatron/iter_0000007")
    (save / M.TRACKER_FILE).write_text("release")
    assert M.latest_iteration(save) == -1
    (save / M.TRACKER_FILE).write_text("x")
    with pytest.raises(ValueError, match="not an iteration"):
        M.latest_iteration(save)


# ============================================================================ thd packing
def test_document_cu_seqlens():
    import torch

    eod = 9
    tokens = torch.tensor([[1, 2, 9, 3, 4, 5, 9, 6], [9, 1, 1, 1, 1, 1, 1, 9]])
    cu, longest = M.document_cu_seqlens(tokens, eod)
    assert cu.dtype == torch.int32
    # sample 0: [1 2 9][3 4 5 9][6]; sample 1: [9][1 1 1 1 1 1 9]; the packed row ends at 16
    assert cu.tolist() == [0, 3, 7, 8, 9, 16]
    assert longest == 7
    cu, longest = M.document_cu_seqlens(torch.ones(3, 5, dtype=torch.long), eod)
    assert cu.tolist() == [0, 5, 10, 15] and longest == 5


def _segments(cu, t):
    """Segment index of every position of each sample ([B, T])."""
    import torch

    seg = torch.zeros(int(cu[-1]), dtype=torch.long)
    seg[cu[1:-1].long()] = 1
    return seg.cumsum(0).reshape(-1, t)


def test_thd_segments_are_megatrons_document_masks():
    """The thd segmentation allows exactly the attention megatron-core's reset_attention_mask
    allows (its dense mask), and restarts where its reset_position_ids restarts."""
    import torch
    from megatron.core.datasets.gpt_dataset import _get_ltor_masks_and_position_ids

    g = torch.Generator().manual_seed(0)
    eod, t = 3, 24
    for _ in range(20):
        data = torch.randint(0, 6, (t,), generator=g)
        mask, loss_mask, pos = _get_ltor_masks_and_position_ids(data, eod, True, True, True, True)
        cu, _ = M.document_cu_seqlens(data.unsqueeze(0), eod)
        seg = _segments(cu, t)[0]
        allowed = (seg[:, None] == seg[None, :]) & torch.ones(t, t).tril().bool()
        assert torch.equal(~mask[0], allowed)  # megatron: True = masked out
        assert torch.equal(pos, torch.cat([torch.arange(int(n)) for n in (cu[1:] - cu[:-1])]))
        assert torch.equal(loss_mask == 0, data == eod)


class _Tok:
    def __init__(self, eod: int, vocab: int):
        self.eod, self.vocab_size, self.pad = eod, vocab, -1
        self.unique_identifiers = {"class": "test", "eod": eod, "vocab_size": vocab}


@pytest.fixture()
def gloo():
    import torch.distributed as dist

    with tempfile.TemporaryDirectory() as d:
        dist.init_process_group("gloo", init_method=f"file://{d}/store", rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


def test_dataset_settings_build_megatron_core_datasets(tmp_path, gloo):
    """settings["dataset"] is a valid megatron-core GPTDatasetConfig; the samples it yields
    carry the position-id restarts and EOD loss mask that the thd segmentation reproduces."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from filmorph.shards import ShardWriter

    eod, vocab = 1, 1000
    rng = np.random.default_rng(0)
    prefixes, counts = [], []
    for k, docs in enumerate((40, 80)):
        prefix = tmp_path / f"chunk_{k:04d}"
        w = ShardWriter(prefix, vocab)
        for _ in range(docs):
            body = rng.integers(2, vocab, size=int(rng.integers(3, 40)))
            w.add(np.append(body, eod))
        w.commit()
        prefixes.append(_stats(prefix, eod=eod, vocab=vocab))
        counts.append(w.tokens)
    cfg = _cfg(seq_length=32, split="90,10,0", max_steps=10, warmup_steps=1)
    s = M.megatron_settings(
        cfg,
        shard_prefixes=prefixes,
        shard_token_counts=counts,
        run_dir=tmp_path / "run",
        world_size=1,
        environ={},
    )
    ds = dict(s["dataset"])
    paths, weights = ds.pop("blend")
    mcfg = GPTDatasetConfig(blend=(paths, weights), tokenizer=_Tok(s["eod_id"], s["vocab_size"]), **ds)
    train, valid, _ = BlendedMegatronDatasetBuilder(GPTDataset, [64, 16, 0], lambda: True, mcfg).build()
    assert len(train) >= 64 and len(valid) >= 16
    assert weights == pytest.approx([c / sum(counts) for c in counts])
    for i in range(0, 64, 7):
        item = train[i]
        tokens = item["tokens"].unsqueeze(0)
        cu, _ = M.document_cu_seqlens(tokens, eod)
        restarts = [int(j) for j in np.nonzero(item["position_ids"].numpy() == 0)[0]]
        assert restarts == [int(x) for x in cu[:-1]]
        assert np.array_equal(item["loss_mask"].numpy() == 0, item["tokens"].numpy() == eod)
        assert "attention_mask" not in item  # the thd forward step needs no T x T mask


# ============================================================================ metrics callbacks
class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _ctx(step, loss=None, val=None, lr=1e-4, grad=1.5, skipped=False):
    import torch

    return types.SimpleNamespace(
        state=types.SimpleNamespace(train_state=types.SimpleNamespace(step=step)),
        loss_dict=None if loss is None else {"lm loss": torch.tensor(loss)},
        total_loss_dict=None if val is None else {"lm loss": torch.tensor(val)},
        grad_norm=grad,
        skipped_iter=skipped,
        optimizer=types.SimpleNamespace(param_groups=[{"lr": lr, "is_decoupled_lr": False}]),
    )


def _run_steps(rec, clock, start, end, step_s=0.5, evals=()):
    for s in range(start, end):
        rec.on_train_step_start(_ctx(s))
        clock.t += step_s
        rec.on_train_step_end(_ctx(s, loss=10.0 - s * 0.01))
        clock.t += 3.0  # checkpoint / logging time outside the steps: not in tokens/s
        if s + 1 in evals:
            rec.on_eval_end(_ctx(s + 1, val=9.0))


def test_metrics_recorder(tmp_path):
    cfg = _cfg(max_steps=12, log_interval=5, eval_interval=10, eval_iters=1, warmup_steps=1)
    clock = _Clock()
    rec = M.MetricsRecorder(
        MetricsWriter(tmp_path / "metrics.jsonl"),
        cfg,
        world_size=2,
        flops_per_token=1e9,
        peak_flops_per_device=1e12,
        clock=clock,
        memory_gib=lambda: 3.5,
    )
    rec.on_train_start(_ctx(0))
    _run_steps(rec, clock, 0, 12, evals=(10, 12))
    rec.on_train_end(_ctx(12))
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs] == [5, 10, 12]
    r5, r10, r12 = recs
    tps = 5 * cfg.tokens_per_step / 2.5  # five steps of 0.5 s; the 3 s between steps excluded
    assert r5["tokens_per_s"] == pytest.approx(tps)
    assert r5["mfu"] == pytest.approx(tps * 1e9 / (1e12 * 2))
    assert r5["step_time_s"] == pytest.approx(0.5)
    assert r5["loss"] == pytest.approx(10.0 - 4 * 0.01)
    assert (r5["lr"], r5["grad_norm"], r5["peak_memory_gib"], r5["tokens"]) == (1e-4, 1.5, 3.5, 5 * 16 * 64)
    assert (
        r5["val_loss"] is None
        and r10["val_loss"] == pytest.approx(9.0)
        and r12["val_loss"] == pytest.approx(9.0)
    )
    assert r12["tokens_per_s"] == pytest.approx(2 * cfg.tokens_per_step / 1.0)
    # a resumed run (from step 5) drops the later lines and writes them again
    clock2 = _Clock()
    rec2 = M.MetricsRecorder(
        MetricsWriter(tmp_path / "metrics.jsonl"),
        cfg,
        world_size=2,
        flops_per_token=None,
        peak_flops_per_device=None,
        clock=clock2,
    )
    rec2.on_train_start(_ctx(5))
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [5]
    _run_steps(rec2, clock2, 5, 12)
    rec2.on_train_end(_ctx(12))
    rec2.on_eval_end(_ctx(12, val=8.0))  # the evaluation after training: a record of its own
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs] == [5, 10, 12, 12]
    assert recs[1]["mfu"] is None and recs[-1] == {
        "step": 12,
        "val_loss": 8.0,
        "elapsed_s": recs[-1]["elapsed_s"],
    }
    # other ranks keep no file
    rec3 = M.MetricsRecorder(None, cfg, world_size=2, flops_per_token=None, peak_flops_per_device=None)
    rec3.on_train_start(_ctx(0))
    _run_steps(rec3, _Clock(), 0, 5)
    rec3.on_train_end(_ctx(5))
    assert rec3.records == 1


def test_metrics_recorder_registers_with_a_callback_manager():
    seen = []

    class Manager:
        def register(self, event, fn):
            seen.append((event, fn.__name__))

    M.MetricsRecorder(None, _cfg(), world_size=1, flops_per_token=None, peak_flops_per_device=None).register(
        Manager()
    )
    assert [e for e, _ in seen] == [
        "on_train_start",
        "on_train_step_start",
        "on_train_step_end",
        "on_eval_end",
        "on_train_end",
    ]
    assert all(e == n for e, n in seen)


def test_hf_flops_per_token_matches_the_instantiated_model(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from filmorph.train.common import model_flops_per_token

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(tmp_path / "m")
    assert M.hf_flops_per_token(tmp_path / "m", 128) == pytest.approx(model_flops_per_token(model, 128))


# ============================================================================ engine boundary
def test_package_imports_without_the_engine():
    code = (
        "import sys, filmorph.train.megatron, filmorph.train.megatron.convert\n"
        "heavy = ('megatron.bridge', 'megatron.core', 'transformer_engine', 'torch')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("missing", "present", "name"),
    [
        ("transformer_engine", (), "transformer-engine"),
        ("megatron.bridge", ("transformer_engine",), "megatron-bridge"),
    ],
)
def test_engine_functions_name_the_missing_package(monkeypatch, tmp_path, missing, present, name):
    for mod in present:
        monkeypatch.setitem(sys.modules, mod, types.ModuleType(mod))
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    s, _ = _settings(tmp_path)
    with pytest.raises(M.MissingEngineError, match=name):
        M.build_config_container(s, tmp_path)
    with pytest.raises(ImportError, match=name):  # MissingEngineError is an ImportError
        M.require_engine()


def test_train_needs_the_imported_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="pretrained_checkpoint"):
        M.train(_cfg(), tmp_path, ["x"], tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        M.train(_cfg(), tmp_path, ["x"], tmp_path / "run", pretrained_checkpoint=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a Megatron checkpoint"):
        M.train(_cfg(), tmp_path, ["x"], tmp_path / "run", pretrained_checkpoint=tmp_path / "empty")


def test_dispatch_from_the_train_cli_reaches_this_engine(tmp_path):
    """python -m filmorph.train --engine megatron calls megatron.train with the hf engine's
    keywords; without --pretrained-checkpoint it stops with a message saying what is missing."""
    from filmorph.train.__main__ import run

    with pytest.raises(ValueError, match="pretrained_checkpoint"):
        run(
            _cfg(),
            model_dir=tmp_path,
            shard_prefixes=["x"],
            run_dir=tmp_path / "r",
            tokenizer_dir=None,
            max_steps=None,
            progress=False,
        )


def test_cli_help_and_overrides():
    out = subprocess.run(
        [sys.executable, "-m", "filmorph.train.megatron", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--pretrained-checkpoint", "--shards", "--run-dir", "--tensor-parallel", "--model-override"):
        assert flag in out
    assert E._parse_overrides(['cross_entropy_fusion_impl="te"', "recompute_granularity=null", "x=abc"]) == {
        "cross_entropy_fusion_impl": "te",
        "recompute_granularity": None,
        "x": "abc",
    }
    with pytest.raises(ValueError, match="KEY=JSON"):
        E._parse_overrides(["novalue"])


def test_train_config_record_round_trips(tmp_path):
    """The settings dict goes into train_config.json; it must survive JSON."""
    s, _ = _settings(tmp_path)
    write_json_atomic(tmp_path / "s.json", s)
    assert read_json(tmp_path / "s.json") == json.loads(json.dumps(s))


# ============================================================================ train() with a stand-in Bridge
class _FakeManager:
    def __init__(self):
        self.events: dict[str, list] = {}

    def register(self, event, fn):
        self.events.setdefault(event, []).append(fn)

    def fire(self, event, context):
        for fn in self.events.get(event, []):
            fn(context)


@pytest.fixture()
def fake_bridge(monkeypatch):
    """megatron.bridge stand-ins: build_config_container returns the settings dict, and
    pretrain walks the steps the way Megatron-Bridge's loop fires callbacks, saving iter dirs
    and the tracker, resuming from the tracker, and ending the process with sys.exit(0) at
    ``stop_at`` (what Megatron-Bridge does after a signal)."""
    state = {"calls": [], "stop_at": None}

    def pretrain(container, forward, callbacks):
        s = container
        state["calls"].append({"settings": s, "forward": forward})
        save = Path(s["checkpoint"]["save"])
        assert s["checkpoint"]["load"] == str(save)
        start, total = M.latest_iteration(save), s["train"]["train_iters"]

        def ctx(step, loss=None, val=None):
            return _ctx(step, loss=loss, val=val)

        def checkpoint(done):
            (save / f"iter_{done:07d}").mkdir(parents=True, exist_ok=True)
            (save / M.TRACKER_FILE).write_text(str(done))

        callbacks.fire("on_train_start", ctx(start))
        for step in range(start, total):
            callbacks.fire("on_train_step_start", ctx(step))
            callbacks.fire("on_train_step_end", ctx(step, loss=8.0 - 0.1 * step))
            done = step + 1
            if done % s["checkpoint"]["save_interval"] == 0:
                checkpoint(done)
            if s["validation"]["eval_interval"] and done % s["validation"]["eval_interval"] == 0:
                callbacks.fire("on_eval_end", ctx(done, val=7.5))
            if state["stop_at"] == done:
                checkpoint(done)
                sys.exit(0)
        if M.latest_iteration(save) != total:
            checkpoint(total)
        callbacks.fire("on_train_end", ctx(total))

    mods = {
        "megatron.bridge": types.ModuleType("megatron.bridge"),
        "megatron.bridge.training": types.ModuleType("megatron.bridge.training"),
        "megatron.bridge.training.callbacks": types.SimpleNamespace(CallbackManager=_FakeManager),
        "megatron.bridge.training.gpt_step": types.SimpleNamespace(forward_step="stock"),
        "megatron.bridge.training.pretrain": types.SimpleNamespace(pretrain=pretrain),
    }
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(E, "build_config_container", lambda settings, hf, model_overrides=None: settings)
    monkeypatch.setattr(E, "_patch_compile_helpers", lambda: None)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", *M.RUNTIME_ENV):
        monkeypatch.setenv(key, "0" if key in ("RANK", "LOCAL_RANK") else "1")
    return state


@pytest.fixture()
def tiny_run_inputs(tmp_path):
    """Hand-made shards (stats.json naming a tokenizer), that tokenizer's dir, and a tiny HF
    model with the same vocabulary and EOS: what preflight needs."""
    import hashlib

    from transformers import LlamaConfig, LlamaForCausalLM

    from filmorph.shards import ShardWriter

    vocab, eod = 300, 1
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text('{"stand-in": true}')
    sha = hashlib.sha256((tok / "tokenizer.json").read_bytes()).hexdigest()
    rng = np.random.default_rng(0)
    prefixes = []
    for k in (1, 2):
        prefix = tmp_path / "shards" / f"chunk_{k:04d}"
        w = ShardWriter(prefix, vocab)
        for _ in range(30 * k):
            w.add(np.append(rng.integers(2, vocab, size=int(rng.integers(3, 30))), eod))
        w.commit()
        tokenizer = {"family": "test", "vocab_size": vocab, "eos_id": eod, "tokenizer_json_sha256": sha}
        write_json_atomic(
            Path(f"{prefix}.stats.json"), {"eod_id": eod, "tokenizer": tokenizer, "arm": "vanilla"}
        )
        prefixes.append(str(prefix))
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        eos_token_id=eod,
    )
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "hf")
    imp = tmp_path / "import"
    (imp / "iter_0000000").mkdir(parents=True)
    (imp / M.TRACKER_FILE).write_text("0")
    return {"model": tmp_path / "hf", "shards": prefixes, "tok": tok, "import": imp, "run": tmp_path / "run"}


def test_train_runs_resumes_and_summarises(fake_bridge, tiny_run_inputs, capsys):
    t = tiny_run_inputs
    cfg = _cfg(
        max_steps=20,
        checkpoint_interval=10,
        log_interval=5,
        eval_interval=10,
        eval_iters=1,
        warmup_steps=2,
        seq_length=16,
        global_batch_size=4,
        micro_batch_size=2,
    )
    kw = {"pretrained_checkpoint": t["import"], "tokenizer_dir": t["tok"]}
    fake_bridge["stop_at"] = 10  # a signal after step 10: checkpoint, sys.exit(0)
    with pytest.raises(M.TrainingIncomplete, match="iteration 10 of 20"):
        M.train(cfg, t["model"], t["shards"], t["run"], **kw)
    first = fake_bridge["calls"][0]
    s = first["settings"]
    assert isinstance(first["forward"], M.DocumentForwardStep) and first["forward"].eod_id == 1
    assert s["dataset"]["blend"][0] == t["shards"] and s["checkpoint"]["pretrained_checkpoint"] == str(
        t["import"]
    )
    record = read_json(t["run"] / "train_config.json")
    assert record["engine"] == "megatron" and record["megatron_settings"]["eod_id"] == 1
    assert [r["step"] for r in read_metrics(t["run"] / "metrics.jsonl")] == [5, 10]

    fake_bridge["stop_at"] = None  # the rerun resumes from iteration 10
    summary = M.train(cfg, t["model"], t["shards"], t["run"], **kw)
    recs = read_metrics(t["run"] / "metrics.jsonl")
    assert [r["step"] for r in recs] == [5, 10, 15, 20]
    assert [r["val_loss"] for r in recs] == [None, 7.5, None, 7.5]
    assert summary["final_loss"] == pytest.approx(8.0 - 0.1 * 19) and summary["final_val_loss"] == 7.5
    assert [c["step"] for c in summary["checkpoints"]] == [10, 20]
    assert summary["checkpoints"][1]["megatron"] == "megatron/iter_0000020"
    assert summary["checkpoints"][1]["hf"] == "hf/step_0000020"
    assert summary["tokens_seen"] == 20 * 4 * 16 and summary["document_masking"] == "thd"
    assert read_json(t["run"] / "train_summary.json")["steps"] == 20

    n = len(fake_bridge["calls"])
    assert M.train(cfg, t["model"], t["shards"], t["run"], **kw)["steps"] == 20  # done: no training
    assert len(fake_bridge["calls"]) == n
    with pytest.raises(ValueError, match="different config"):
        M.train(cfg.with_overrides(lr=5e-4), t["model"], t["shards"], t["run"], **kw)
    # restart: the old run goes, Megatron checkpoints included, and training starts at 0
    (t["run"] / "megatron" / "iter_0000020" / "marker").write_text("old")
    summary = M.train(
        cfg.with_overrides(lr=5e-4), t["model"], t["shards"], t["run"], on_config_change="restart", **kw
    )
    assert not (t["run"] / "megatron" / "iter_0000020" / "marker").exists()
    assert summary["config"]["lr"] == 5e-4 and [c["step"] for c in summary["checkpoints"]] == [10, 20]
    assert [r["step"] for r in read_metrics(t["run"] / "metrics.jsonl")] == [5, 10, 15, 20]
    with pytest.raises(ValueError, match="on_config_change"):
        M.train(cfg, t["model"], t["shards"], t["run"], on_config_change="maybe", **kw)


def test_launch_id_and_rank0_wait(tmp_path):
    assert E._launch_id({}) is None
    assert E._launch_id({"TORCHELASTIC_RUN_ID": "abc", "MASTER_PORT": "29500"}) == "torchrun-abc-29500"
    assert E._launch_id({"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"}) == "slurm-77-0-0"
    assert E._launch_id({"MASTER_ADDR": "n1", "MASTER_PORT": "5"}) == "n1:5"
    layout = E.RunLayout(tmp_path)
    rank1 = types.SimpleNamespace(rank=1, world_size=2)
    write_json_atomic(layout.train_config, {"launch": "old"})
    with pytest.raises(TimeoutError):
        E._wait_for_rank0(rank1, layout, "new", timeout_s=0.5)
    write_json_atomic(layout.train_config, {"launch": "new"})
    E._wait_for_rank0(rank1, layout, "new", timeout_s=0.5)
    E._wait_for_rank0(types.SimpleNamespace(rank=0, world_size=2), layout, "other", timeout_s=0.1)


def test_train_cli_exit_codes(fake_bridge, tiny_run_inputs, tmp_path, capsys):
    t = tiny_run_inputs
    conf = tmp_path / "train.json"
    conf.write_text(
        json.dumps(
            {
                "max_steps": 10,
                "checkpoint_interval": 5,
                "warmup_steps": 1,
                "seq_length": 16,
                "global_batch_size": 2,
                "micro_batch_size": 1,
                "eval_iters": 0,
            }
        )
    )
    argv = [
        "--config",
        str(conf),
        "--model",
        str(t["model"]),
        "--pretrained-checkpoint",
        str(t["import"]),
        "--shards",
        *t["shards"],
        "--run-dir",
        str(t["run"]),
        "--tokenizer-dir",
        str(t["tok"]),
    ]
    fake_bridge["stop_at"] = 5
    assert M.main(argv) == 3
    assert "rerun the same command to resume" in capsys.readouterr().err
    fake_bridge["stop_at"] = None
    assert M.main([*argv, "--model-override", 'cross_entropy_fusion_impl="te"']) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["engine"] == "megatron" and out["steps"] == 10


def test_attention_backend_falls_back_without_flash_attn():
    """Bridge's Gemma 3 provider asks for TE's flash backend; without flash-attn TE finds no
    backend at all (seen on the H100), so the engine and verify ask for 'auto' instead."""
    pytest.importorskip("megatron.core")
    from megatron.core.transformer.enums import AttnBackend

    assert M.usable_attention_backend(AttnBackend.flash, flash_available=False) == AttnBackend.auto
    assert M.usable_attention_backend(AttnBackend.flash, flash_available=True) == AttnBackend.flash
    for other in (AttnBackend.fused, AttnBackend.unfused, AttnBackend.local, AttnBackend.auto):
        assert M.usable_attention_backend(other, flash_available=False) == other


def test_document_masking_refused_for_gemma3(tmp_path):
    """thd document masking of the Gemma 3 shape trained wrongly on the H100: refused with a
    way out; Llama, Gemma 3 without document masking and config-less dirs pass."""
    cfg = TrainConfig.from_dict({"engine": "megatron"})
    assert cfg.reset_attention_mask
    gemma = tmp_path / "gemma"
    gemma.mkdir()
    (gemma / "config.json").write_text(json.dumps({"model_type": "gemma3_text", "sliding_window": 512}))
    with pytest.raises(ValueError, match="sliding_window 512.*automodel"):
        M.check_document_masking(cfg, gemma)
    assert M.check_document_masking(cfg.with_overrides(reset_attention_mask=False), gemma) == "none"
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama", "sliding_window": None}))
    assert M.check_document_masking(cfg, llama) == "thd"
    assert M.check_document_masking(cfg, tmp_path / "missing") == "thd"


def _model_dir(root: Path, name: str, config: dict | None) -> Path:
    d = root / name
    d.mkdir()
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))
    return d


def test_document_masking_mode_per_model_type(tmp_path):
    """thd for most models, the dataset's block-diagonal mask for Gemma 2 (whose Bridge
    attention refuses packed sequences), none when the run does not mask documents."""
    cfg = TrainConfig.from_dict({"engine": "megatron"})
    off = cfg.with_overrides(reset_attention_mask=False)
    dirs = {
        "llama": _model_dir(tmp_path, "llama", {"model_type": "llama"}),
        "gemma2": _model_dir(tmp_path, "gemma2", {"model_type": "gemma2", "sliding_window": 4096}),
        "gemma3": _model_dir(tmp_path, "gemma3", {"model_type": "gemma3_text", "sliding_window": 512}),
        # a multimodal config: the text model's type decides
        "nested": _model_dir(
            tmp_path, "nested", {"model_type": "x", "text_config": {"model_type": "gemma2"}}
        ),
        "gemma3_no_window": _model_dir(
            tmp_path, "g3nw", {"model_type": "gemma3_text", "sliding_window": None}
        ),
        "no_config": _model_dir(tmp_path, "empty", None),
    }
    assert M.MASK_MODEL_TYPES == ("gemma2",)
    assert M.DOCUMENT_MASKING_MODES == ("none", "thd", "mask")
    assert M.check_document_masking(cfg, dirs["llama"]) == "thd"
    assert M.check_document_masking(cfg, dirs["gemma2"]) == "mask"
    assert M.check_document_masking(cfg, dirs["nested"]) == "mask"
    assert M.check_document_masking(cfg, dirs["gemma3_no_window"]) == "thd"
    assert M.check_document_masking(cfg, dirs["no_config"]) == "thd"
    for d in dirs.values():  # without document masking every model is "none", gemma3 included
        assert M.check_document_masking(off, d) == "none"
    with pytest.raises(ValueError, match="sliding_window 512"):
        M.check_document_masking(cfg, dirs["gemma3"])
    for mode in (M.check_document_masking(cfg, dirs[k]) for k in ("llama", "gemma2")):
        assert mode in M.DOCUMENT_MASKING_MODES


def test_settings_document_masking_modes(tmp_path):
    thd, _ = _settings(tmp_path)
    assert thd["document_masking"] == "thd" and thd["dataset"]["create_attention_mask"] is False
    explicit, _ = _settings(tmp_path, document_masking="thd")
    assert explicit == thd
    mask, _ = _settings(tmp_path, document_masking="mask")
    assert mask["document_masking"] == "mask" and mask["dataset"]["create_attention_mask"] is True
    assert mask["dataset"]["reset_attention_mask"] is True and mask["dataset"]["reset_position_ids"] is True
    # nothing else changes with the mode
    assert {k: v for k, v in mask.items() if k not in ("document_masking", "dataset")} == {
        k: v for k, v in thd.items() if k not in ("document_masking", "dataset")
    }
    assert {k: v for k, v in mask["dataset"].items() if k != "create_attention_mask"} == {
        k: v for k, v in thd["dataset"].items() if k != "create_attention_mask"
    }
    off = _cfg(reset_attention_mask=False)
    none, _ = _settings(tmp_path, off)
    assert none["document_masking"] == "none" and none["dataset"]["create_attention_mask"] is False
    assert _settings(tmp_path, off, document_masking="none")[0] == none
    json.dumps(mask)


@pytest.mark.parametrize(
    ("cfg_kw", "mode", "words"),
    [
        ({"reset_attention_mask": False}, "mask", "does not match reset_attention_mask"),
        ({"reset_attention_mask": False}, "thd", "does not match reset_attention_mask"),
        ({}, "none", "does not match reset_attention_mask"),
        ({}, "bogus", "document_masking must be one of"),
        ({}, "THD", "document_masking must be one of"),
    ],
)
def test_settings_reject_document_masking(tmp_path, cfg_kw, mode, words):
    with pytest.raises(ValueError, match=words):
        _settings(tmp_path, _cfg(**cfg_kw), document_masking=mode)


def test_gemma2_workarounds_without_bridge_or_cuda_extension(monkeypatch):
    """On a machine without Megatron-Bridge and megatron's fused-softmax CUDA extension both
    helpers say no; with them (faked) they patch / report them."""
    import importlib.util

    if importlib.util.find_spec("megatron.bridge") is None:
        assert M.avoid_gemma2_flex_attention() is False
    if importlib.util.find_spec("scaled_masked_softmax_cuda") is None:
        assert M.masked_softmax_fusion_available() is False
    # blocked imports: False whatever is installed
    monkeypatch.setitem(sys.modules, "megatron.bridge", None)
    monkeypatch.setitem(sys.modules, "scaled_masked_softmax_cuda", None)
    assert M.avoid_gemma2_flex_attention() is False
    assert M.masked_softmax_fusion_available() is False
    # faked modules: the flag is switched off, the extension is reported
    names = ("megatron.bridge", "megatron.bridge.models", "megatron.bridge.models.gemma")
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    provider = types.ModuleType("megatron.bridge.models.gemma.gemma2_provider")
    provider._HAVE_FLEX_ATTN = True
    monkeypatch.setitem(sys.modules, provider.__name__, provider)
    assert M.avoid_gemma2_flex_attention() is True and provider._HAVE_FLEX_ATTN is False
    monkeypatch.setitem(
        sys.modules, "scaled_masked_softmax_cuda", types.ModuleType("scaled_masked_softmax_cuda")
    )
    assert M.masked_softmax_fusion_available() is True


def test_sweep_launches_through_module_argv():
    from filmorph.train.launch import module_argv

    assert module_argv("filmorph.train.megatron", python="py") == ["py", "-m", "filmorph.train.megatron"]
    eight = module_argv("filmorph.train.megatron", nproc=8, python="py")
    assert eight[:3] == ["py", "-m", "torch.distributed.run"]
    assert "--standalone" in eight and "--nproc-per-node=8" in eight
    assert eight[-2:] == ["-m", "filmorph.train.megatron"]
    with pytest.raises(ValueError):
        module_argv("filmorph.train.megatron", nproc=0, python="py")


