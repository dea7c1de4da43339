"""Inputs of the training tests (test_train.py, test_train_automodel.py): tiny random models of
the real Llama 3 and Gemma 3 architectures with the real vocabularies, and vanilla-arm shards of
the embedded corpus made with the real tokenizers (the ``family_dirs`` fixture's dirs)."""

from __future__ import annotations

import shutil
from pathlib import Path

from filmorph.io import read_json

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


def tiny_model(family: str, vocab: int, eos: int, bos: int, seed: int = 0, sliding_window: int = 6):
    """A random ``LlamaForCausalLM`` (``family`` llama: tied embeddings, 2 KV heads) or
    ``Gemma3ForCausalLM`` (otherwise: one sliding-window and one full-attention layer)."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if family == "llama":
        cfg = LlamaConfig(
            vocab_size=vocab,
            num_key_value_heads=2,
            head_dim=8,
            tie_word_embeddings=True,
            bos_token_id=bos,
            eos_token_id=eos,
            **TINY,
        )
        return LlamaForCausalLM(cfg)
    cfg = Gemma3TextConfig(
        vocab_size=vocab,
        num_key_value_heads=1,
        head_dim=8,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"],
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=0,
        **TINY,
    )
    return Gemma3ForCausalLM(cfg)


def tiny_model_dir(family: str, tokenizer_dir: Path, out: Path) -> Path:
    """:func:`tiny_model` with the vocabulary and special ids of the prepared tokenizer in
    ``tokenizer_dir``, saved to ``out`` with its tokenizer files (byte copies): a model dir the
    pre-flight check accepts for shards of that tokenizer."""
    meta = read_json(tokenizer_dir / "tokenizer_meta.json")
    tiny_model(family, meta["vocab_size"], meta["eos_id"], meta["bos_id"]).save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_dir / f, out / f)
    return out


def embedded_shards(tokenizer_dir: Path, root: Path, chunks: int = 2, seed: int = 7) -> list[str]:
    """The embedded corpus in ``chunks`` chunks under ``root``, tokenized (vanilla arm) into
    ``root/vanilla/chunk_NNNN``: the shard prefixes."""
    from filmorph.corpus import embedded_corpus_path, split_corpus
    from filmorph.tokenize import tokenize_chunk

    split_corpus(embedded_corpus_path(), root / "corpus", chunks, id_prefix="emb")
    prefixes = []
    for k in range(1, chunks + 1):
        prefix = root / "vanilla" / f"chunk_{k:04d}"
        tokenize_chunk(root / "corpus" / f"chunk_{k:04d}.jsonl", tokenizer_dir, "vanilla", {}, seed, prefix)
        prefixes.append(str(prefix))
    return prefixes
