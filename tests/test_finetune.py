"""The fine-tuning track: chat data validation, the Automodel recipe config, the launcher (with a
stand-in for torchrun + Automodel), held-out chat loss with transformers + peft, the Mamba
kernel wheelhouse, and the rules by dry run."""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from filmorph.finetune import config as C
from filmorph.finetune import data as D
from filmorph.finetune import kernels as K

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

GOOD = [
    {"messages": [{"role": "user", "content": "Kumusta?"}, {"role": "assistant", "content": "Mabuti."}]},
    {
        "messages": [
            {"role": "system", "content": "Maikli."},
            {"role": "user", "content": "1+1?"},
            {"role": "assistant", "content": "2"},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Oras?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "oras", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "10:00"},
            {"role": "assistant", "content": "Alas diyes."},
        ]
    },
]


def _jsonl(path, rows):
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


# ============================================================================ data validation
def test_validate_counts_turns_chars_and_writes_clean_copy(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [GOOD[0], "", GOOD[1], GOOD[2]])
    val = _jsonl(tmp_path / "val.jsonl", [GOOD[1]])
    res = D.validate_chat_data(
        {"train": train, "validation": val}, tmp_path / "counts.json", clean_dir=tmp_path / "clean"
    )
    assert json.loads((tmp_path / "counts.json").read_text()) == json.loads(json.dumps(res))
    t = res["files"]["train"]
    assert (t["records_in"], t["conversations"], t["skipped_total"], t["blank_lines"]) == (3, 3, 0, 1)
    assert t["turns"] == {"system": 1, "user": 4, "assistant": 5, "tool": 1} and t["turns_total"] == 11
    assert t["chars"]["assistant"] == len("Mabuti.") + 1 + 1 + len("Alas diyes.")
    assert t["chars_total"] == sum(len(m.get("content") or "") for c in GOOD for m in c["messages"])
    assert res["files"]["validation"]["conversations"] == 1
    clean = [json.loads(x) for x in (tmp_path / "clean/train.jsonl").read_text().splitlines()]
    assert clean == GOOD


BAD = {
    "invalid_json": '{"messages": [',
    "not_an_object": "[1, 2]",
    "missing_messages": {"conversation": []},
    "empty_conversation": {"messages": []},
    "bad_message": {"messages": ["hi"]},
    "unknown_role": {"messages": [{"role": "human", "content": "x"}, {"role": "assistant", "content": "y"}]},
    "bad_content": {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]},
    "misplaced_system": {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "system", "content": "s"},
            {"role": "assistant", "content": "y"},
        ]
    },
    "first_turn_not_user": {
        "messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "y"}]
    },
    "bad_tool_message": {
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "a", "content": "r"},
            {"role": "assistant", "content": "y"},
        ]
    },
    "no_assistant_content": {
        "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]
    },
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_bad_line_error_names_file_line_and_reason(tmp_path, reason):
    path = _jsonl(tmp_path / "chat.jsonl", [GOOD[0], "", BAD[reason], GOOD[1]])
    out = tmp_path / "counts.json"
    with pytest.raises(D.ChatDataError, match=rf"chat\.jsonl:3: {reason}:"):
        D.validate_chat_data({"train": path}, out, clean_dir=tmp_path / "clean")
    assert not out.exists() and not (tmp_path / "clean/train.jsonl").exists()


def test_invalid_utf8_and_only_users(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_bytes(json.dumps(GOOD[0]).encode() + b"\n\xff\xfe\n")
    with pytest.raises(D.ChatDataError, match=r"chat\.jsonl:2: invalid_utf8"):
        D.validate_chat_file(path)
    assert (
        D.check_conversation({"messages": [{"role": "user", "content": "x"}]}).reason
        == "no_assistant_content"
    )


def test_skip_policy_counts_every_reason_and_keeps_good_lines(tmp_path):
    rows = [GOOD[0], *BAD.values(), GOOD[2]]
    path = _jsonl(tmp_path / "chat.jsonl", rows)
    res = D.validate_chat_data(
        {"train": path}, tmp_path / "counts.json", on_bad_record="skip", clean_dir=tmp_path / "clean"
    )["files"]["train"]
    assert res["records_in"] == len(rows) == res["conversations"] + res["skipped_total"]
    assert res["conversations"] == 2
    assert res["skipped"] == {r: int(r in BAD) for r in D.BAD_REASONS}
    lines = (tmp_path / "clean/train.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [GOOD[0], GOOD[2]]


def test_a_file_without_conversations_fails_even_when_skipping(tmp_path):
    path = _jsonl(tmp_path / "chat.jsonl", [BAD["empty_conversation"]])
    with pytest.raises(D.ChatDataError, match="no valid conversation"):
        D.validate_chat_data({"train": path}, tmp_path / "c.json", on_bad_record="skip")


def test_synthetic_chat_is_deterministic_and_valid(tmp_path):
    a, b = D.synthetic_conversations(40, 3), D.synthetic_conversations(40, 3)
    assert a == b and a != D.synthetic_conversations(40, 4)
    assert all(D.check_conversation(c) is None for c in a)
    assert any(c["messages"][0]["role"] == "system" for c in a)
    assert any(sum(m["role"] == "assistant" for m in c["messages"]) == 2 for c in a)


def test_cli_validate(tmp_path, capsys):
    from filmorph.finetune.__main__ import main

    D.write_synthetic(tmp_path / "t.jsonl", 10, 0)
    _jsonl(tmp_path / "v.jsonl", [GOOD[0], BAD["empty_conversation"]])
    argv = ["validate", "--train", str(tmp_path / "t.jsonl"), "--validation", str(tmp_path / "v.jsonl")]
    argv += ["--out", str(tmp_path / "counts.json")]
    assert main(argv) == 2
    assert "v.jsonl:2: empty_conversation" in capsys.readouterr().err
    assert not (tmp_path / "counts.json").exists()
    assert main([*argv, "--on-bad-record", "skip"]) == 0
    assert json.loads((tmp_path / "counts.json").read_text())["files"]["validation"]["skipped_total"] == 1


# ============================================================================ recipe config
def _am(preset, tmp_path, families=("nemotron_h",), **overrides):
    cfg = C.FinetuneConfig.from_run({"preset": preset, **overrides})
    return cfg, C.automodel_finetune_config(
        cfg,
        train_file=tmp_path / "train.jsonl",
        validation_file=tmp_path / "validation.jsonl",
        run_dir=tmp_path / "run",
        trust_remote_code_families=families,
    )


def test_llama_lora_recipe_fields(tmp_path):
    cfg, am = _am("llama3_8b_lora", tmp_path)
    assert am["model"] == {
        "_target_": "nemo_automodel.NeMoAutoModelForCausalLM.from_pretrained",
        "pretrained_model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
        "torch_dtype": "bfloat16",
        "trust_remote_code": False,
    }
    assert am["peft"] == {
        "_target_": "nemo_automodel.components._peft.lora.PeftConfig",
        "dim": 8,
        "alpha": 32,
        "use_triton": True,
        "dropout": 0.0,
        "match_all_linear": True,
    }
    s = am["step_scheduler"]
    assert (s["global_batch_size"], s["local_batch_size"], s["max_steps"]) == (8, 1, 200)
    assert (s["val_every_steps"], s["ckpt_every_steps"], s["num_epochs"]) == (100, 500, None)
    assert am["optimizer"]["lr"] == 1e-5 and am["optimizer"]["_target_"] == "torch.optim.AdamW"
    assert am["lr_scheduler"]["lr_decay_style"] == "constant" and am["lr_scheduler"]["min_lr"] == 1e-5
    assert am["distributed"]["strategy"] == "fsdp2" and am["distributed"]["dp_size"] == cfg.gpus == 1
    assert "ep_size" not in am["distributed"]
    for key, split, name in (
        ("dataset", "train", "train.jsonl"),
        ("validation_dataset", "validation", "validation.jsonl"),
    ):
        ds = am[key]
        assert ds["_target_"] == "nemo_automodel.components.datasets.llm.chat_dataset.ChatDataset"
        assert ds["path_or_dataset_id"] == str(tmp_path / name) and ds["split"] == split
        assert ds["seq_length"] == 2048 and "chat_template" not in ds
    assert am["dataloader"]["collate_fn"] == "nemo_automodel.components.datasets.utils.default_collater"
    assert am["loss_fn"]["_target_"] == "nemo_automodel.components.loss.masked_ce.MaskedCrossEntropy"
    ck = am["checkpoint"]
    assert ck["checkpoint_dir"] == str(tmp_path / "run" / "automodel") and ck["restore_from"] == "LATEST"
    assert ck["model_save_format"] == "safetensors"
    # the YAML Automodel reads holds the same
    from filmorph.train.automodel import write_config_yaml

    assert yaml.safe_load(write_config_yaml(am, tmp_path / "a.yaml").read_text()) == am


def test_sft_has_no_peft_and_spans_eight_gpus(tmp_path):
    cfg, am = _am("llama3_8b_sft", tmp_path)
    assert "peft" not in am and cfg.method == "full" and not cfg.peft
    assert am["distributed"]["dp_size"] == 8 and am["checkpoint"]["save_consolidated"] == "final"
    assert cfg.resources() == {"gpu": 8, "mem_mb": 480000, "runtime": 360}


def test_nemotron_lora_trusts_remote_code_only_when_named(tmp_path):
    cfg, am = _am("nemotron3_nano_lora", tmp_path)
    assert am["model"]["pretrained_model_name_or_path"] == "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"
    assert am["model"]["trust_remote_code"] is True and cfg.needs_mamba_kernels
    assert am["peft"]["exclude_modules"] == ["*.out_proj"] and "match_all_linear" not in am["peft"]
    assert (am["peft"]["dim"], am["peft"]["alpha"], am["peft"]["use_triton"]) == (8, 32, True)
    assert am["distributed"]["ep_size"] == 8 and am["distributed"]["dp_size"] == 8
    _, am = _am("nemotron3_nano_lora", tmp_path, families=())
    assert am["model"]["trust_remote_code"] is False


def test_model_may_be_a_local_dir_and_overrides_merge(tmp_path):
    cfg = C.FinetuneConfig.from_run(
        {
            "preset": "llama3_8b_lora",
            "max_steps": 7,
            "force_hf": True,
            "chat_template": "llama3",
            "automodel_overrides": {"model": {"attn_implementation": "sdpa"}},
        }
    )
    am = C.automodel_finetune_config(
        cfg, train_file="d/t.jsonl", validation_file=None, run_dir="r", model=tmp_path
    )
    assert am["model"]["pretrained_model_name_or_path"] == str(tmp_path)
    assert am["model"]["force_hf"] is True and am["model"]["attn_implementation"] == "sdpa"
    assert am["step_scheduler"]["max_steps"] == 7 and am["step_scheduler"]["val_every_steps"] is None
    assert "validation_dataset" not in am
    assert am["dataset"]["chat_template"] == C.CHAT_TEMPLATES["llama3"]


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"global_batch_size": 12, "gpus": 8}, "not a multiple"),
        ({"match_all_linear": True}, "exclude each other"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"max_steps": 0}, "max_steps"),
        ({"expert_parallel": 3}, "expert_parallel"),
        ({"bogus": 1}, "unknown finetune run keys"),
    ],
)
def test_bad_runs_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        C.FinetuneConfig.from_run({"preset": "nemotron3_nano_lora", **overrides})


def test_paths_automodel_would_mangle_are_refused(tmp_path):
    cfg = C.FinetuneConfig.from_run({"preset": "llama3_8b_lora"})
    with pytest.raises(ValueError, match=r"\$VARIABLES"):
        C.automodel_finetune_config(cfg, train_file="$HOME/t.jsonl", validation_file=None, run_dir="r")
    with pytest.raises(ValueError, match="JSONL"):
        C.automodel_finetune_config(cfg, train_file="t.json", validation_file=None, run_dir="r")


def test_model_sources(tmp_path):
    assert C.model_source(None, "llama3_8b_sft") == ("hub", "meta-llama/Llama-3.1-8B-Instruct", None)
    assert C.model_source("org/name", "llama3_8b_sft") == ("hub", "org/name", None)
    assert C.model_source(str(tmp_path), "llama3_8b_sft") == ("local", str(tmp_path))
    assert C.model_source({"family": "llama"}, "llama3_8b_sft") == ("family", "llama")
    assert C.model_source({"source": "hf", "id": "a/b", "revision": "v1"}, "llama3_8b_sft") == (
        "hub",
        "a/b",
        "v1",
    )
    assert C.hub_dir_name("a/b", "v1") == "a--b--v1"


def test_nemotron_h_adapter_without_out_proj_is_what_peft_loads():
    """peft refuses a LoRA on NemotronH's Mamba out_proj: the preset leaves it out (every other
    linear layer of the real NemotronH class is adapted)."""
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, NemotronHConfig

    cfg = NemotronHConfig(vocab_size=64, hidden_size=32, layers_block_type=["linear_attention", "moe",
                          "full_attention", "mlp"], num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                          intermediate_size=64, mamba_num_heads=4, mamba_head_dim=16, ssm_state_size=8,
                          n_groups=1, chunk_size=16, n_routed_experts=2, num_experts_per_tok=1,
                          moe_intermediate_size=16, moe_shared_expert_intermediate_size=16)  # fmt: skip
    model = AutoModelForCausalLM.from_config(cfg)
    linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"}
    assert "out_proj" in linear
    with pytest.raises(ValueError, match="out_proj"):
        peft.get_peft_model(model, peft.LoraConfig(target_modules=sorted(linear)))
    exclude = C.PRESETS["nemotron3_nano_lora"]["exclude_modules"]
    kept = sorted(x for x in linear if not any(e.endswith("." + x) for e in exclude))
    pm = peft.get_peft_model(AutoModelForCausalLM.from_config(cfg), peft.LoraConfig(target_modules=kept))
    assert any("in_proj.lora_A" in n for n, _ in pm.named_parameters())


def test_recipe_yaml_builds_automodels_chat_dataset(tiny, tmp_path):
    """Where NeMo Automodel is importable: its own config machinery reads our YAML, builds its chat
    dataset over our JSONL (supervising the assistant turns our chat loss scores), the PEFT config
    and the schedules."""
    pytest.importorskip("nemo_automodel")
    from contextlib import nullcontext

    from nemo_automodel.components.config.loader import load_yaml_config
    from nemo_automodel.recipes._typed_config import RecipeConfig

    from filmorph.finetune.loss import IGNORE, assistant_labels
    from filmorph.train.automodel import write_config_yaml

    cfg = C.FinetuneConfig.from_run({"preset": "nemotron3_nano_lora", "gpus": 1, "expert_parallel": 1})
    am = C.automodel_finetune_config(cfg, train_file=tiny["train"], validation_file=tiny["validation"],
                                     run_dir=tmp_path, model=tiny["model"])  # fmt: skip
    node = load_yaml_config(write_config_yaml(am, tmp_path / "automodel.yaml"))
    rc = RecipeConfig(node)
    for dl, path in (
        (rc.dataloader, tiny["train"]),
        (rc.validation_dataloaders["default"], tiny["validation"]),
    ):
        loader = dl.build(
            tokenizer=tiny["tok"], dataset_build_context=nullcontext(), dp_rank=0, dp_world_size=1
        )
        rows = path.read_text().splitlines()
        assert len(loader.dataset) == len(rows)
        ex = loader.dataset[0]
        ids, labels = assistant_labels(tiny["tok"], json.loads(rows[0]))
        assert [t for t in ex["labels"] if t != IGNORE] == [t for t in labels[1:] if t != IGNORE]
    peft = node.peft.instantiate()
    assert (peft.dim, peft.alpha, peft.use_triton, peft.exclude_modules) == (8, 32, True, ["*.out_proj"])
    assert rc.step_scheduler.global_batch_size == 8 and rc.step_scheduler.max_steps == 200
    assert rc.step_scheduler.val_every_steps == 100 and rc.step_scheduler.ckpt_every_steps == 500
    assert rc.lr_scheduler.max_lr == 1e-5 and rc.checkpoint.checkpoint_dir == str(tmp_path / "automodel")


# ============================================================================ launcher
FAKE_AUTOMODEL = """\
import json, os, shutil, sys
import yaml
cfg = yaml.safe_load(open(sys.argv[sys.argv.index("--config") + 1]))
root = cfg["checkpoint"]["checkpoint_dir"]
sched = cfg["step_scheduler"]
os.makedirs(root, exist_ok=True)
done = [int(d.rsplit("_", 1)[1]) + 1 for d in os.listdir(root) if d.startswith("epoch_")]
start, stop = max(done, default=0), min(int(os.environ.get("FAKE_STOP_AT", 10**9)), sched["max_steps"])
print("fake automodel", sys.argv[1:], "resume", start, "PYTHONPATH", os.environ["PYTHONPATH"], flush=True)
with open(os.path.join(root, "training.jsonl"), "a") as f:
    for s in range(start, stop):
        f.write(json.dumps({"step": s, "loss": 5.0 - 0.1 * s, "grad_norm": 1.0, "lr": 1e-5}) + "\\n")
with open(os.path.join(root, "validation.jsonl"), "a") as f:
    for s in range(start, stop):
        if (s + 1) % sched["val_every_steps"] == 0:
            f.write(json.dumps({"step": s, "val_loss": 4.0 - 0.1 * s}) + "\\n")
shutil.copytree(os.environ["FAKE_CKPT_MODEL"], os.path.join(root, f"epoch_0_step_{stop - 1}", "model"))
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Llama (tests/_models.py) with a word-level tokenizer and a chat template,
    saved as an HF dir, and synthetic chat data."""
    from _models import tiny_model
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny_chat")
    convs = D.synthetic_conversations(24, 0)
    words = sorted({w for c in convs for m in c["messages"] for w in m["content"].split()})
    specials = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(specials + words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}"
    )
    model = tiny_model("llama", len(specials) + len(words), eos=2, bos=1)
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    D.write_chat_jsonl(root / "train.jsonl", convs[:16])
    D.write_chat_jsonl(root / "validation.jsonl", convs[16:])
    return {
        "root": root,
        "model": root / "base",
        "tok": tok,
        "train": root / "train.jsonl",
        "validation": root / "validation.jsonl",
    }


def _automodel_adapter(tiny, out):
    """A LoRA adapter dir as Automodel's PeftAddon writes it: peft's weight layout
    (base_model.model.<module>.lora_A/B.weight), Automodel's minimal adapter_config.json, the
    tokenizer and automodel_peft_config.json. LoRA B is random so the adapter changes outputs."""
    peft = pytest.importorskip("peft")
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny["model"])
    pm = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=32, target_modules="all-linear"))
    torch.manual_seed(1)
    for name, p in pm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    pm.save_pretrained(out)
    modules = sorted(json.loads((out / "adapter_config.json").read_text())["target_modules"])
    (out / "adapter_config.json").write_text(
        json.dumps(
            {
                "task_type": "CAUSAL_LM",
                "peft_type": "LORA",
                "r": 8,
                "lora_alpha": 32,
                "use_dora": False,
                "target_modules": modules,
                "bias": "none",
                "base_model_name_or_path": "/somewhere/else",
            }
        )
    )
    (out / "automodel_peft_config.json").write_text(
        json.dumps({"match_all_linear": True, "use_triton": True})
    )
    (out / "README.md").unlink(missing_ok=True)
    tiny["tok"].save_pretrained(out)
    return out


@pytest.fixture()
def fake_automodel(tmp_path, tiny, monkeypatch):
    """torchrun + Automodel stand-in: a "python" that writes Automodel's checkpoint layout."""
    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\n" + FAKE_AUTOMODEL)
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_CKPT_MODEL", str(_automodel_adapter(tiny, tmp_path / "ckpt_model")))
    return str(script)


def test_train_resumes_exports_peft_adapter_and_merges(tiny, fake_automodel, tmp_path, monkeypatch):
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    from filmorph.finetune import run as R
    from filmorph.train.automodel import TrainingIncomplete

    cfg = C.FinetuneConfig.from_run(
        {"preset": "llama3_8b_lora", "max_steps": 20, "val_every_steps": 5, "torch_dtype": "float32"}
    )
    kw = {
        "train_file": tiny["train"],
        "validation_file": tiny["validation"],
        "run_dir": tmp_path / "run",
        "model": tiny["model"],
        "python": fake_automodel,
        "progress": False,
    }
    monkeypatch.setenv("FAKE_STOP_AT", "12")  # a time limit: Automodel checkpoints and stops at 12
    with pytest.raises(TrainingIncomplete, match="step 12 of 20"):
        R.train(cfg, **kw)
    assert not (tmp_path / "run/final").exists()
    monkeypatch.delenv("FAKE_STOP_AT")
    summary = R.train(cfg, merge=True, **kw)
    run = tmp_path / "run"
    log = (run / "automodel_node0.log").read_text()
    assert "resume 0" in log and "resume 12" in log and "nemo_automodel.recipes.llm.train_ft" in log
    am = yaml.safe_load((run / "automodel.yaml").read_text())
    assert am["model"]["pretrained_model_name_or_path"] == str(tiny["model"].resolve())
    assert summary["resumed_from_step"] == 12 and summary["steps"] == 20
    assert summary["first_loss"] == 5.0 and summary["final_loss"] == pytest.approx(3.1)
    assert summary["val_loss"] == {str(s): pytest.approx(4.0 - 0.1 * (s - 1)) for s in (5, 10, 15, 20)}
    final = run / "final"
    acfg = json.loads((final / "adapter_config.json").read_text())
    assert acfg["base_model_name_or_path"] == str(tiny["model"])
    assert (final / "adapter_model.safetensors").is_file() and (final / "tokenizer.json").is_file()
    # transformers + peft load it, and it changes the outputs; merged weights give the same
    base = AutoModelForCausalLM.from_pretrained(tiny["model"]).eval()
    ids = torch.tensor([[3, 4, 9, 10, 11, 5]])
    with torch.no_grad():
        ref = base(ids).logits
        tuned = peft.PeftModel.from_pretrained(base, final).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(run / "merged").eval()(ids).logits
    assert (tuned - ref).abs().max() > 1e-3
    torch.testing.assert_close(merged, tuned, rtol=1e-4, atol=1e-4)
    # a rerun of the finished run launches nothing; another run in the same dir is refused
    mtime = (run / "automodel_node0.log").stat().st_mtime_ns
    R.train(cfg, **kw)
    assert (run / "automodel_node0.log").stat().st_mtime_ns == mtime
    other = C.FinetuneConfig.from_run({**cfg.to_dict(), "lr": 2e-5})
    with pytest.raises(ValueError, match="another fine-tuning run"):
        R.train(other, **kw)
    R.train(other, on_config_change="restart", **kw)
    assert "resume 0" in (run / "automodel_node0.log").read_text()


def test_launcher_runs_once_per_node():
    from filmorph.finetune.run import launcher_argv

    one = C.FinetuneConfig.from_run({"preset": "llama3_8b_lora"})
    two = C.FinetuneConfig.from_run({"preset": "llama3_8b_sft", "nodes": 2, "global_batch_size": 16})
    assert launcher_argv(one, ["train"], python="py") == ["py", "-m", "filmorph.finetune", "train"]
    assert launcher_argv(two, ["train"], python="py")[:3] == ["srun", "--nodes=2", "--ntasks-per-node=1"]


# ============================================================================ chat loss
def test_assistant_labels_cover_assistant_turns_only(tiny):
    from filmorph.finetune.loss import IGNORE, assistant_labels

    tok = tiny["tok"]
    ids, labels = assistant_labels(tok, GOOD[1])
    toks = tok.convert_ids_to_tokens(ids)
    sup = [t for t, lab in zip(toks, labels, strict=True) if lab != IGNORE]
    assert sup == ["<|assistant|>", "<unk>", "<|end|>", "<|assistant|>", "<unk>", "<|end|>"]  # "2", "4"
    turn = ["<unk>", "<|end|>"]
    assert toks == ["<|system|>", *turn, "<|user|>", *turn, "<|assistant|>", *turn] + [
        "<|user|>",
        *turn,
        "<|assistant|>",
        *turn,
    ]
    ids2, labels2 = assistant_labels(tok, GOOD[1], max_length=5)
    assert len(ids2) == 5 and all(x == IGNORE for x in labels2)


def test_chat_loss_before_and_after_a_lora_adapter(tiny, tmp_path):
    from filmorph.finetune.__main__ import main
    from filmorph.finetune.loss import evaluate_loss

    adapter = _automodel_adapter(tiny, tmp_path / "adapter")
    before = evaluate_loss(tiny["model"], tiny["validation"], tmp_path / "before.json")
    assert (
        main(
            [
                "evaluate-loss",
                "--model",
                str(tiny["model"]),
                "--adapter",
                str(adapter),
                "--data",
                str(tiny["validation"]),
                "--out",
                str(tmp_path / "after.json"),
                "--label",
                "stage=after",
            ]
        )
        == 0
    )
    after = json.loads((tmp_path / "after.json").read_text())
    assert before["tokens"] == after["tokens"] > 0 and before["conversations"] == 8
    assert 0 < before["loss"] != pytest.approx(after["loss"]) and after["stage"] == "after"
    # by hand: the mean NLL of the assistant tokens
    import torch
    from transformers import AutoModelForCausalLM

    from filmorph.finetune.loss import IGNORE, assistant_labels

    model = AutoModelForCausalLM.from_pretrained(tiny["model"]).eval()
    total, n = 0.0, 0
    for line in tiny["validation"].read_text().splitlines():
        ids, labels = assistant_labels(tiny["tok"], json.loads(line))
        with torch.no_grad():
            logp = model(torch.tensor([ids])).logits[0].log_softmax(-1)
        for t in range(1, len(ids)):
            if labels[t] != IGNORE:
                total -= float(logp[t - 1, ids[t]])
                n += 1
    assert n == before["tokens"] and before["loss"] == pytest.approx(total / n, rel=1e-5)


# ============================================================================ kernels
def test_wheelhouse_keys_and_build_env():
    v = {"mamba_ssm": "2.3.2.post1", "causal-conv1d": "1.7.0"}
    assert K.source_key(v) == "causal-conv1d-1.7.0_mamba-ssm-2.3.2.post1"
    assert K.arch_key("8.0;9.0+PTX") == "sm80-sm90ptx" and K.arch_key("9.0a 10.0") == "sm90a-sm100"
    assert K.wheelhouse_key(v, "9.0") == "causal-conv1d-1.7.0_mamba-ssm-2.3.2.post1_sm90"
    with pytest.raises(ValueError):
        K.arch_key("sm_90")
    with pytest.raises(ValueError):
        K.source_key({"mamba-ssm": ">=2"})
    env = K.build_env("8.0;9.0", max_jobs=4, environ={})
    assert env == {
        "TORCH_CUDA_ARCH_LIST": "8.0;9.0",
        "MAX_JOBS": "4",
        "MAMBA_FORCE_BUILD": "TRUE",
        "MAMBA_SKIP_CUDA_BUILD": "FALSE",
        "CAUSAL_CONV1D_FORCE_BUILD": "TRUE",
        "CAUSAL_CONV1D_SKIP_CUDA_BUILD": "FALSE",
    }
    cmd = K.build_command("x.tar.gz", "out", python="py")
    assert cmd == [
        "py",
        "-m",
        "pip",
        "wheel",
        "--no-build-isolation",
        "--no-deps",
        "--no-index",
        "-w",
        "out",
        "x.tar.gz",
    ]
    assert K.download_command("mamba-ssm", "2.3.2.post1", "d", python="py")[4:8] == [
        "--no-deps",
        "--no-binary",
        ":all:",
        "--no-build-isolation",
    ]


def _fake_sdist(index, name, version):
    """A pure-Python sdist standing in for a kernel package (same name and version)."""
    mod = name.replace("-", "_")
    base = f"{mod}-{version}"
    src = index / "build" / base
    src.mkdir(parents=True)
    (src / f"{mod}.py").write_text(f"VERSION = {version!r}\n")
    (src / "setup.py").write_text(
        f"from setuptools import setup\nsetup(name={name!r}, version={version!r}, py_modules=[{mod!r}])\n"
    )
    (src / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    with tarfile.open(index / f"{base}.tar.gz", "w:gz") as tar:
        tar.add(src, arcname=base)


def test_wheelhouse_download_build_install_and_skip_when_current(tmp_path):
    versions = {"mamba-ssm": "2.3.2.post1", "causal-conv1d": "1.7.0"}
    index = tmp_path / "index"
    index.mkdir()
    for name, v in versions.items():
        _fake_sdist(index, name, v)
    src = tmp_path / "wheelhouse/src" / K.source_key(versions)
    stamp = K.download_sources(versions, src, index_args=["--no-index", "--find-links", str(index)])
    assert set(stamp["packages"]) == set(versions) and K.check_sources(src) == stamp
    house = tmp_path / "wheelhouse" / K.wheelhouse_key(versions, "9.0")
    wheels = K.build_wheels(src, house, arch_list="9.0", max_jobs=2)
    assert wheels["arch_list"] == "9.0" and wheels["built_with"]["torch"]
    assert {w["sdist_sha256"] for w in wheels["packages"].values()} == {
        s["sha256"] for s in stamp["packages"].values()
    }
    target = K.install_wheels(house, tmp_path / "site")
    assert (target / "mamba_ssm.py").is_file() and (target / "causal_conv1d.py").is_file()
    mtime = (target / K.INSTALL_STAMP).stat().st_mtime_ns
    assert K.install_wheels(house, tmp_path / "site") == target
    assert (target / K.INSTALL_STAMP).stat().st_mtime_ns == mtime  # current: nothing reinstalled
    # a changed sdist is caught before building
    sdist = src / stamp["packages"]["mamba-ssm"]["file"]
    sdist.write_bytes(sdist.read_bytes() + b"x")
    with pytest.raises(ValueError, match="sha256"):
        K.build_wheels(src, tmp_path / "again", arch_list="9.0")


# a setup.py in the shape of the kernel sdists': gencode pairs under CUDA-version conditions
_SETUP_WITH_GENCODES = """import os
cc_flag = []
if os.environ.get("HIP") == "1":
    cc_flag.append("--offload-arch=native")
else:
    cc_flag.append("-gencode")
    cc_flag.append("arch=compute_80,code=sm_80")
    if True:
        cc_flag.append("-gencode")
        cc_flag.append("arch=compute_90,code=sm_90")
    # a comment naming -gencode is no flag
flags = ["-O3"] + cc_flag
"""


def test_restrict_gencode_leaves_the_arch_list_to_torch():
    patched, n = K.restrict_gencode(_SETUP_WITH_GENCODES)
    assert n == 2
    scope: dict = {}
    exec(compile(patched, "setup.py", "exec"), scope)  # still valid Python, same control flow
    assert scope["flags"] == ["-O3"] and scope["cc_flag"] == []
    assert "arch=compute" not in patched
    # an arch flag the patch does not recognise is refused, naming file and line
    odd = _SETUP_WITH_GENCODES.replace(
        'flags = ["-O3"]', 'flags = ["-O3", "-gencode=arch=compute_90,code=sm_90"]'
    )
    with pytest.raises(ValueError, match=r"setup.py:12: .*compute_90"):
        K.restrict_gencode(odd)


def test_wheel_build_killed_part_way_resumes_with_the_rest(tmp_path, monkeypatch):
    versions = {"mamba-ssm": "2.3.2.post1", "causal-conv1d": "1.7.0"}
    index = tmp_path / "index"
    index.mkdir()
    for name, v in versions.items():
        _fake_sdist(index, name, v)
    src = tmp_path / "src"
    K.download_sources(versions, src, index_args=["--no-index", "--find-links", str(index)])
    house = tmp_path / "wheelhouse" / K.wheelhouse_key(versions, "9.0")
    real_run, built = K.subprocess.run, []

    def run(cmd, *a, **kw):
        if cmd[:4] == [sys.executable, "-m", "pip", "wheel"]:
            name = Path(cmd[-1]).name
            if name.startswith("mamba") and not built.count("killed"):
                built.append("killed")
                raise subprocess.CalledProcessError(-9, cmd)  # the job's time limit
            built.append(name)
        return real_run(cmd, *a, **kw)

    monkeypatch.setattr(K.subprocess, "run", run)
    with pytest.raises(subprocess.CalledProcessError):
        K.build_wheels(src, house, arch_list="9.0")
    assert not house.exists()  # nothing under the final name
    partial = house.with_name(house.name + K.PARTIAL_SUFFIX)
    kept = json.loads((partial / K.PARTIAL_STAMP).read_text())
    assert list(kept) == ["causal-conv1d"] and (partial / kept["causal-conv1d"]["file"]).is_file()
    stamp = K.build_wheels(src, house, arch_list="9.0")
    assert built == ["causal_conv1d-1.7.0", "killed", "mamba_ssm-2.3.2.post1"]  # conv1d not rebuilt
    assert set(stamp["packages"]) == set(versions) and not partial.exists()
    assert all((house / w["file"]).is_file() for w in stamp["packages"].values())
    assert stamp["packages"]["causal-conv1d"]["sha256"] == kept["causal-conv1d"]["sha256"]
    # a kept wheel is reused only for the same sdist and arch list
    rec = kept["causal-conv1d"]
    partial.mkdir()
    shutil.copy2(house / rec["file"], partial / rec["file"])
    assert K._kept_wheel_ok(partial, rec, rec["sdist_sha256"], "9.0")
    assert not K._kept_wheel_ok(partial, rec, rec["sdist_sha256"], "8.0")
    assert not K._kept_wheel_ok(partial, rec, "0" * 64, "9.0")


# ============================================================================ rules (dry runs)
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def _config(tmp_path, **finetune):
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["finetune"].update(enabled=True, **finetune)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _snakemake(workdir, configfile, *args, check=True):
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    res = subprocess.run(
        [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(configfile), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.stdout + res.stderr


def _jobs(out):
    """Snakemake's 'Job stats' table as {rule: count}."""
    counts, on = {}, False
    for line in out.splitlines():
        if line.startswith("job ") and "count" in line:
            on = True
        elif on and (m := re.match(r"^(\w+)\s+(\d+)$", line.strip())):
            counts[m.group(1)] = int(m.group(2))
        elif on and line.strip() and not line.startswith("-"):
            break
    return counts


def test_dry_run_wires_data_training_loss_merge_and_benchmarks(tmp_path):
    from filmorph.finetune.__main__ import main  # noqa: F401  (the package imports on this machine)

    out = _snakemake(tmp_path / "wd", _config(tmp_path), "-n", "finetune")
    jobs = _jobs(out)
    assert jobs["synthesize_chat_data"] == 2 and jobs["validate_chat_data"] == 1
    assert jobs["finetune_model"] == 1 and jobs["merge_adapter"] == 1 and jobs["chat_loss"] == 2
    assert jobs["evaluate_finetuned"] == 2  # base and fine-tuned, one job for every benchmark file
    assert "build_kernel_wheels" not in jobs and "download_kernel_sources" not in jobs  # Llama
    assert "evaluate" not in jobs and "train_cpt" not in jobs
    assert "results/eval/tiny_lora/finetune/final/pacute_mcq.json" in out
    assert "input: results/finetune/tiny_lora/merged, resources/benchmarks/" in out


def test_dry_run_nemotron_asks_the_preset_gpus_and_slurm_settings(tmp_path):
    runs = {
        "nano": {"preset": "nemotron3_nano_lora"},
        "sft": {"preset": "llama3_8b_sft", "model": {"family": "llama"}},
    }
    cfgfile = _config(
        tmp_path,
        runs=runs,
        evaluate=False,
        slurm={"partition": "gpu", "qos": "dbg", "account": "proj", "extra": None},
    )
    out = _snakemake(tmp_path / "wd", cfgfile, "-n", "finetune")
    jobs = _jobs(out)
    assert jobs["download_kernel_sources"] == 1 and jobs["build_kernel_wheels"] == 1
    assert jobs["download_finetune_model"] == 1 and jobs["finetune_model"] == 2
    assert jobs["merge_adapter"] == 1  # the LoRA run only: full SFT is already a checkpoint
    blocks = {b.split("\n", 1)[0].strip(): b for b in out.split("\nrule ")[1:]}
    nano = next(b for b in out.split("\nrule ")[1:] if b.startswith("finetune_model:") and "run=nano" in b)
    for want in (
        "gpu=8",
        "mem_mb=480000",
        "runtime=360",
        "slurm_partition=gpu",
        "qos=dbg",
        "slurm_account=proj",
    ):
        assert want in nano, nano
    assert "resources/wheelhouse/causal-conv1d-1.7.0_mamba-ssm-2.3.2.post1_sm80-sm90" in nano
    assert "resources/finetune/models/nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16" in nano
    sft = next(b for b in out.split("\nrule ")[1:] if b.startswith("finetune_model:") and "run=sft" in b)
    assert "gpu=8" in sft and "resources/models/llama" in sft and "wheelhouse" not in sft
    assert "build_kernel_wheels:" in blocks and "gpu=1" in blocks["build_kernel_wheels:"]


def test_current_wheelhouse_is_not_rebuilt(tmp_path):
    runs = {"nano": {"preset": "nemotron3_nano_lora", "model": {"family": "llama"}}}
    cfgfile = _config(tmp_path, runs=runs, evaluate=False)
    wd = tmp_path / "wd"
    versions = {"mamba-ssm": "2.3.2.post1", "causal-conv1d": "1.7.0"}
    src = wd / "resources/wheelhouse/src" / K.source_key(versions)
    src.mkdir(parents=True)
    (src / K.SOURCES_STAMP).write_text("{}")
    house = wd / "resources/wheelhouse" / K.wheelhouse_key(versions, "8.0;9.0")
    house.mkdir(parents=True)
    (house / K.WHEELS_STAMP).write_text("{}")
    jobs = _jobs(_snakemake(wd, cfgfile, "-n", "finetune"))
    assert "download_kernel_sources" not in jobs and "build_kernel_wheels" not in jobs
    assert jobs["finetune_model"] == 1
    # another arch list is another wheelhouse: built from the same (current) sources
    cfgfile = _config(
        tmp_path,
        runs=runs,
        evaluate=False,
        kernels={
            **yaml.safe_load((REPO / "config/config.yaml").read_text())["finetune"]["kernels"],
            "cuda_arch_list": "9.0",
        },
    )
    out = _snakemake(wd, cfgfile, "-n", "finetune")
    jobs = _jobs(out)
    assert jobs["build_kernel_wheels"] == 1 and "download_kernel_sources" not in jobs
    assert "resources/wheelhouse/causal-conv1d-1.7.0_mamba-ssm-2.3.2.post1_sm90" in out


def test_bad_chat_data_stops_the_track_before_any_gpu_job(tmp_path):
    """A real (CPU) run: validation fails naming file and line, so no fine-tuning job starts."""
    bad = _jsonl(tmp_path / "bad.jsonl", [GOOD[0], GOOD[1], '{"messages": [{"role": "user"'])
    cfgfile = _config(
        tmp_path,
        data={
            "train": str(bad),
            "validation": "synthetic",
            "on_bad_record": "error",
            "synthetic": {"train": 8, "validation": 4, "seed": 0},
        },
    )
    wd = tmp_path / "wd"
    out = _snakemake(wd, cfgfile, "--cores", "1", "resources/finetune/data/counts.json", check=False)
    assert "Error in rule validate_chat_data" in out
    log = (wd / "logs/validate_chat_data/validate.log").read_text()
    assert f"{bad}:3: invalid_json" in log
    assert not (wd / "resources/finetune/data/counts.json").exists()
