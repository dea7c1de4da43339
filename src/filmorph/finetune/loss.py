"""Held-out chat loss: the mean next-token loss on assistant tokens of a chat JSONL file.

Each conversation is rendered with the tokenizer's chat template (or ``chat_template``); the
supervised tokens are those of every assistant turn, from its role header to its end-of-turn
token, found by rendering the conversation prefixes before and after the turn (the spans NeMo
Automodel's chat dataset trains on when the template has no ``{% generation %}`` markers; with
such markers the template's own assistant mask is used). Conversations are cut to
``max_length`` tokens, as in training. The result is the token-weighted mean negative
log-likelihood over all supervised tokens of the file (and its exponential).

The model is an HF checkpoint dir or hub id, optionally with a PEFT adapter on top
(``adapter``): the loss "before" fine-tuning is the base model's, "after" the base + adapter's
(or the fully fine-tuned checkpoint's).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from filmorph.io import write_json_atomic

IGNORE = -100


def _render(tok: Any, messages: Sequence[Mapping[str, Any]], *, tools: Any = None) -> list[int]:
    if not messages:
        return []
    out = tok.apply_chat_template(list(messages), tools=tools, tokenize=True, return_dict=True)
    return list(out["input_ids"])


def _is_prefix(prefix: Sequence[int], full: Sequence[int], eos: int | None) -> bool:
    """``prefix`` starts ``full``, allowing a trailing EOS the prefix render adds on its own."""
    if list(full[: len(prefix)]) == list(prefix):
        return True
    return bool(prefix) and prefix[-1] == eos and list(full[: len(prefix) - 1]) == list(prefix[:-1])


def assistant_labels(
    tok: Any, conversation: Mapping[str, Any], max_length: int | None = None
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one conversation: labels are the ids on assistant-turn tokens
    and -100 elsewhere (not shifted). Raises ``ValueError`` when the template renders a prefix
    of the conversation differently from the whole (no prefix arithmetic possible)."""
    messages = list(conversation["messages"])
    tools = conversation.get("tools")
    template = tok.chat_template if isinstance(tok.chat_template, str) else ""
    if "{% generation %}" in template or "{%- generation %}" in template:
        out = tok.apply_chat_template(
            messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids = list(out["input_ids"])
        labels = [t if m else IGNORE for t, m in zip(ids, out["assistant_masks"], strict=True)]
    else:
        ids = _render(tok, messages, tools=tools)
        labels = [IGNORE] * len(ids)
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            start_ids = _render(tok, messages[:i], tools=tools)
            end_ids = _render(tok, messages[: i + 1], tools=tools)
            eos = getattr(tok, "eos_token_id", None)
            if not (_is_prefix(start_ids, ids, eos) and _is_prefix(end_ids, ids, eos)):
                raise ValueError(
                    "the chat template renders a conversation prefix differently from the whole "
                    "conversation; give a template with {% generation %} markers"
                )
            start, end = len(start_ids), min(len(end_ids), len(ids))
            labels[start:end] = ids[start:end]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels


def load_model(
    model: str | Path,
    *,
    adapter: str | Path | None = None,
    dtype: str | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode; a PEFT adapter is applied on top when given."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    src = str(model)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if Path(src).is_dir():
        kwargs["local_files_only"] = True
    from filmorph.models import attention_kwargs

    extra = attention_kwargs(src, **kwargs)  # eager for Gemma 2's softcap
    m = AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, dtype), **kwargs, **extra)
    tok_src = src
    if adapter is not None:
        from peft import PeftModel

        m = PeftModel.from_pretrained(m, str(adapter))
        if (Path(adapter) / "tokenizer_config.json").is_file():
            tok_src = str(adapter)
    tok = AutoTokenizer.from_pretrained(
        tok_src, **({**kwargs, "local_files_only": True} if Path(tok_src).is_dir() else kwargs)
    )
    m.to(device)
    m.eval()
    return m, tok


def chat_loss(
    model: Any,
    tok: Any,
    conversations: Sequence[Mapping[str, Any]],
    *,
    max_length: int | None = 2048,
    chat_template: str | None = None,
) -> dict[str, Any]:
    """Token-weighted mean assistant-token NLL of ``model`` over ``conversations`` (one forward
    pass per conversation, no padding)."""
    import torch
    import torch.nn.functional as F

    if chat_template:
        tok.chat_template = chat_template
    if not getattr(tok, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; pass chat_template")
    device = next(model.parameters()).device
    total, count, used = 0.0, 0, 0
    with torch.no_grad():
        for conv in conversations:
            ids, labels = assistant_labels(tok, conv, max_length)
            target = torch.tensor(labels[1:], dtype=torch.long)
            if len(ids) < 2 or not (target != IGNORE).any():
                continue  # every assistant token was cut by max_length
            logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0, :-1]
            nll = F.cross_entropy(logits.float().cpu(), target, ignore_index=IGNORE, reduction="sum")
            total += float(nll)
            count += int((target != IGNORE).sum())
            used += 1
    if count == 0:
        raise ValueError("no assistant tokens to score")
    mean = total / count
    return {
        "loss": mean,
        "perplexity": math.exp(min(mean, 700.0)),
        "tokens": count,
        "conversations": used,
        "conversations_in": len(conversations),
    }


def evaluate_loss(
    model: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    *,
    adapter: str | Path | None = None,
    max_length: int | None = 2048,
    max_conversations: int | None = None,
    dtype: str | None = None,
    device: str | None = None,
    chat_template: str | None = None,
    trust_remote_code: bool = False,
    label: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`chat_loss` of ``model`` (+ ``adapter``) on the chat JSONL ``data``; written to
    ``out`` (JSON, atomically) when given."""
    t0 = time.time()
    conversations = []
    with open(data, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                conversations.append(json.loads(line))
            if max_conversations is not None and len(conversations) >= max_conversations:
                break
    m, tok = load_model(
        model, adapter=adapter, dtype=dtype, device=device, trust_remote_code=trust_remote_code
    )
    result = chat_loss(m, tok, conversations, max_length=max_length, chat_template=chat_template)
    result.update(
        {
            "model": str(model),
            "adapter": str(adapter) if adapter else None,
            "data": str(data),
            "max_length": max_length,
            "seconds": time.time() - t0,
            **dict(label or {}),
        }
    )
    if out is not None:
        write_json_atomic(out, result)
    return result
