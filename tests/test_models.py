"""Tests of filmorph.models on the two real GGUF base models (offline, CPU).

Each GGUF is materialized once per module (Gemma 3 270M: ~50 s, mostly transformers parsing the
GGUF's 262k-token vocabulary three times; SmolLM2-135M: ~15 s).  The GGUF-loaded model and
tokenizer that ``materialize_gguf`` used are captured (by wrapping ``load_gguf``) and serve as
the reference, so the slow GGUF parse is not repeated.  SmolLM2 is materialized over an existing
directory with stale files, which covers re-materializing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from filmorph import models as M
from filmorph.tokenizers import encode_text

EXPECTED_PARAMS = {"gemma3-270m": 268_098_176, "smollm2-135m": 134_515_008}
EXPECTED_ARCH = {"gemma3-270m": "Gemma3ForCausalLM", "smollm2-135m": "LlamaForCausalLM"}
EXPECTED_VOCAB = {"gemma3-270m": 262_144, "smollm2-135m": 49_152}

BATCH_TEXTS = [
    "Nagluluto si Aling Nena ng adobong manok sa kusina.",
    "Mag-aaral ako nang mabuti upang makapagtapos ng pag-aaral sa Maynila.",
]
TOKENIZER_TEXTS = [
    *BATCH_TEXTS,
    "Kumain ka na ba? Oo, salamat po.",
    "Ang Niño ay pumunta sa Parañaque at Las Piñas.",
    "  Tinatanong-tanong\tniya\n\nang mga nagsisipagsayawan… “Talaga?” 😀🇵🇭",
    "Hindi <eos> ito <|im_end|> espesyal <bos>.",
]
META_FIELDS = {
    "name",
    "gguf_file",
    "gguf_sha256",
    "architecture",
    "num_parameters",
    "vocab_size",
    "dtype",
    "tie_word_embeddings",
    "transformers_version",
    "torch_version",
}


def _no_tmp_leftovers(parent: Path) -> None:
    leftovers = [p.name for p in parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.fixture(scope="module", params=sorted(M.GGUF_MODELS))
def built(request, tmp_path_factory):
    """Materialize one GGUF model; keep the GGUF-loaded model/tokenizer as the reference. The
    checkpoint is deleted when the module's tests are done."""
    name = request.param
    root = tmp_path_factory.mktemp(f"models-{name}")
    out = root / "ckpt"
    if name == "smollm2-135m":  # re-materialize over an existing dir with stale contents
        out.mkdir()
        (out / "config.json").write_text("{}", encoding="utf-8")
        (out / "stale.bin").write_bytes(b"old")

    captured = {}
    real_load_gguf = M.load_gguf

    def spy(*args, **kwargs):
        captured["ref"] = real_load_gguf(*args, **kwargs)
        return captured["ref"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(M, "load_gguf", spy)
        meta = M.materialize_gguf(name, out)
    ref_model, ref_tok, gguf_path = captured["ref"]
    model, tok = M.load_causal_lm(str(out))
    yield {
        "name": name,
        "root": root,
        "out": out,
        "meta": meta,
        "gguf_path": gguf_path,
        "ref_model": ref_model,
        "ref_tok": ref_tok,
        "model": model,
        "tok": tok,
    }
    shutil.rmtree(root, ignore_errors=True)  # 0.5-1.1 GB per model and worker


def test_checkpoint_files_and_meta(built):
    name, out, meta = built["name"], built["out"], built["meta"]
    for f in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (out / f).is_file(), f
    assert not (out / "stale.bin").exists()
    _no_tmp_leftovers(built["root"])
    on_disk = json.loads((out / M.META_FILENAME).read_text(encoding="utf-8"))
    assert on_disk == meta
    assert META_FIELDS <= meta.keys()
    assert meta["name"] == name
    assert meta["gguf_file"] == built["gguf_path"].name
    assert len(meta["gguf_sha256"]) == 64
    assert meta["architecture"] == EXPECTED_ARCH[name]
    assert meta["num_parameters"] == EXPECTED_PARAMS[name]
    assert meta["vocab_size"] == meta["tokenizer_len"] == EXPECTED_VOCAB[name]
    assert meta["dtype"] == "float32"
    assert meta["tie_word_embeddings"] is True
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert config["architectures"] == [EXPECTED_ARCH[name]]


def test_reloaded_model_is_plain_and_tied(built):
    model = built["model"]
    assert not model.training
    assert getattr(model, "hf_quantizer", None) is None
    assert model.dtype == torch.float32
    assert model.device.type == "cpu"
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[built["name"]]


def test_logits_equal_gguf_model(built):
    tok, model, ref = built["tok"], built["model"], built["ref_model"]
    tok.padding_side = "right"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    batch = tok(BATCH_TEXTS, return_tensors="pt", padding=True)
    assert batch["input_ids"].shape[1] >= 10
    with torch.no_grad():
        got = model(**batch).logits
        want = ref(**batch).logits
    mask = batch["attention_mask"].bool()
    got, want = got[mask], want[mask]
    assert got.dtype == want.dtype == torch.float32
    assert torch.isfinite(got).all()
    assert (got - want).abs().max().item() < 1e-4
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_model_is_a_language_model(built):
    """The conversion is not garbage: next-token loss far below uniform (ln V ~ 11-12.5)."""
    tok, model = built["tok"], built["model"]
    ids = tok("The capital of France is Paris. The capital of Japan is Tokyo.", return_tensors="pt")
    with torch.no_grad():
        loss = model(**ids, labels=ids["input_ids"]).loss.item()
    assert loss < 4.0


def test_tokenizer_matches_gguf_tokenizer(built):
    tok, ref = built["tok"], built["ref_tok"]
    assert len(tok) == len(ref)
    assert type(tok).__name__ == type(ref).__name__
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (
        ref.bos_token_id,
        ref.eos_token_id,
        ref.pad_token_id,
    )
    assert tok.clean_up_tokenization_spaces is False
    for text in TOKENIZER_TEXTS:
        ids = tok(text)["input_ids"]
        assert ids == ref(text)["input_ids"], text
        raw = encode_text(tok, text)
        assert raw == encode_text(ref, text), text
        assert tok.decode(raw) == ref.decode(raw)


def test_greedy_generation_deterministic(built):
    tok, model, ref = built["tok"], built["model"], built["ref_model"]
    prompt = tok("Ang kabisera ng Pilipinas ay", return_tensors="pt")
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": tok.pad_token_id}
    with torch.no_grad():
        first = model.generate(**prompt, **kwargs)
        second = model.generate(**prompt, **kwargs)
        from_gguf = ref.generate(**prompt, **kwargs)
    assert first.shape[1] > prompt["input_ids"].shape[1]
    assert torch.equal(first, second)
    assert torch.equal(first, from_gguf)


@pytest.fixture()
def tiny():
    """A tiny tied Llama model and a word-level fast tokenizer: save_checkpoint without GGUFs."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    words = ["<unk>", "<eos>", *sorted(set(" ".join(BATCH_TEXTS).split()))]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>")
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tok


def test_save_checkpoint_bfloat16_and_replace(tiny, tmp_path):
    """save_checkpoint casts to bfloat16, replaces an existing dir and keeps the tie."""
    model, tok = tiny
    out = tmp_path / "tiny"
    first = M.save_checkpoint(model, tok, out, meta={"name": "tiny"})
    assert first["dtype"] == "float32" and first["name"] == "tiny"
    (out / "stale.bin").write_bytes(b"old")
    meta = M.save_checkpoint(model, tok, out, meta={"name": "tiny"}, dtype="bfloat16")
    assert meta["dtype"] == "bfloat16"
    assert meta["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert model.dtype == torch.float32  # the source model is left untouched
    assert not (out / "stale.bin").exists()
    _no_tmp_leftovers(tmp_path)
    reloaded, tok2 = M.load_causal_lm(out, dtype="bfloat16")
    assert reloaded.dtype == torch.bfloat16
    assert reloaded.lm_head.weight.data_ptr() == reloaded.get_input_embeddings().weight.data_ptr()
    for k, v in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[k], v.to(torch.bfloat16)), k
    assert tok2(BATCH_TEXTS[0])["input_ids"] == tok(BATCH_TEXTS[0])["input_ids"]


def test_failed_save_leaves_existing_checkpoint(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "keep.txt").write_text("old", encoding="utf-8")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(tok), "save_pretrained", boom)
    with pytest.raises(OSError, match="disk full"):
        M.save_checkpoint(model, tok, out)
    assert (out / "keep.txt").read_text(encoding="utf-8") == "old"
    _no_tmp_leftovers(tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown GGUF model"):
        M.materialize_gguf("gpt-9", "/nonexistent/out")
    with pytest.raises(ValueError, match="dtype"):
        M.materialize_gguf("smollm2-135m", "/nonexistent/out", dtype="int8")


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        M.main(["materialize", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("--name", "--out", "--dtype", "--cache-dir", *M.GGUF_MODELS):
        assert word in text


@pytest.mark.parametrize(("family", "arch"), [("llama", "llama"), ("gemma", "gemma3_text")])
def test_random_model_matches_family_tokenizer(family, arch, family_dirs, tmp_path):
    """A random-init base model takes vocab and special ids from the family's tokenizer, is a pure
    function of its seed, and loads as an ordinary checkpoint."""
    from filmorph.tokenize import PreparedTokenizer

    fam = PreparedTokenizer(family_dirs[family])
    spec = {"source": "random", "architecture": arch, "seed": 7, "config": {"num_hidden_layers": 1}}
    meta = M.prepare_model(spec, tmp_path / "a", tokenizer_dir=family_dirs[family])
    assert meta["vocab_size"] == fam.vocab_size and meta["eos_id"] == fam.eod_id
    model, tok = M.load_causal_lm(tmp_path / "a")
    assert model.config.model_type == arch and model.config.num_hidden_layers == 1
    assert model.config.eos_token_id == fam.eod_id == tok.eos_token_id
    again = M.prepare_model(spec, tmp_path / "b", tokenizer_dir=family_dirs[family])
    other = M.prepare_model({**spec, "seed": 8}, tmp_path / "c", tokenizer_dir=family_dirs[family])
    assert again == meta and other["num_parameters"] == meta["num_parameters"]
    a, b, c = ((tmp_path / d / "model.safetensors").read_bytes() for d in "abc")
    assert a == b and a != c
    with pytest.raises(ValueError, match="tokenizer dir"):
        M.prepare_model(spec, tmp_path / "d")
    with pytest.raises(ValueError, match="cannot be prepared"):
        M.prepare_model({"source": "local", "path": "x"}, tmp_path / "e")


def test_softcapped_attention_loads_with_an_implementation_that_applies_the_cap(family_dirs, tmp_path):
    """Gemma 2 soft-caps its attention scores; transformers' default (SDPA) drops the cap without
    a word. ``load_causal_lm`` (evaluation) and the megatron engine's HF reference load such a
    model with eager attention, whose logits carry the cap."""
    from transformers import AutoModelForCausalLM

    from filmorph.train.megatron.weights import hf_logits

    spec = {
        "source": "random",
        "architecture": "gemma2",
        "seed": 3,
        "config": {"num_hidden_layers": 1, "attn_logit_softcapping": 0.5},
    }
    M.prepare_model(spec, tmp_path / "g2", tokenizer_dir=family_dirs["gemma"])
    ids = torch.tensor([[5, 17, 300, 41, 9, 77, 1200, 3]])

    def logits(attn):
        m = AutoModelForCausalLM.from_pretrained(tmp_path / "g2", attn_implementation=attn)
        with torch.no_grad():  # scale the queries so that the cap bites (|score| >> 0.5)
            m.model.layers[0].self_attn.q_proj.weight.mul_(30)
            m.save_pretrained(tmp_path / "g2")  # the scaled weights are the model's
            return m(input_ids=ids, use_cache=False).logits

    logits("eager")
    try:  # transformers 5.12 (Megatron-Bridge's pin) drops the cap; 5.23 refuses SDPA here itself
        sdpa = logits("sdpa")
    except ValueError as exc:
        assert "does not support an attention implementation" in str(exc)
        sdpa = None
    model, _ = M.load_causal_lm(tmp_path / "g2", dtype="float32", device="cpu")
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():
        mine = model(input_ids=ids, use_cache=False).logits
    # each logits() call scaled the saved weights once more: compare against a fresh eager load
    ref = AutoModelForCausalLM.from_pretrained(tmp_path / "g2", attn_implementation="eager")
    with torch.no_grad():
        want = ref(input_ids=ids, use_cache=False).logits
    assert torch.allclose(mine, want, atol=1e-5)
    if sdpa is not None:  # SDPA really drops the cap there
        assert float((want - sdpa).abs().max()) > 1e-2
    got = hf_logits(tmp_path / "g2", ids, torch.float32, torch.device("cpu"))
    assert torch.allclose(got, want, atol=1e-5)


def test_attention_for_keeps_the_softcap():
    gemma2 = {"model_type": "gemma2", "attn_logit_softcapping": 50.0}
    assert M.attn_logit_softcap(gemma2) == 50.0
    assert M.attn_logit_softcap({"text_config": gemma2}) == 50.0
    assert M.attn_logit_softcap({"model_type": "gemma2", "attn_logit_softcapping": None}) is None
    assert M.attention_for({"model_type": "llama"}) is None  # transformers' default
    assert M.attention_for({"model_type": "llama"}, "sdpa") == "sdpa"
    assert M.attention_for(gemma2) == "eager"
    assert M.attention_for(gemma2, "sdpa") == "eager"
    assert M.attention_for(gemma2, "flash_attention_2", fallback="flex_attention") == "flex_attention"
    assert M.attention_for(gemma2, "flex_attention") == "flex_attention"
    with pytest.raises(ValueError, match="fallback"):
        M.attention_for(gemma2, fallback="sdpa")
