"""Tests of filmorph.evaluate: the benchmark scorer on both real base models (Gemma 3 270M and
SmolLM2-135M, materialized once per session by the ``real_model_dirs`` fixture), on planted
models that know the answers, and of the metrics and the command line.

A planted model is a torch module with the HF causal-LM call interface that puts its mass on
the next token of ``prompt + delimiter + answer`` tokenized by the real tokenizer (BOS
included): it scores 100 % only if tokenization, BOS, left padding, position bookkeeping and
the context/continuation alignment are all right.
"""

from __future__ import annotations

import json
import math
import random
import unicodedata
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.modeling_outputs import CausalLMOutputWithPast

from filmorph import evaluate as E
from filmorph.items import Item, read_items, shuffled_options, write_items
from filmorph.models import load_causal_lm

MODELS = ("gemma3-270m", "smollm2-135m")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a small shared CPU, OpenMP threads waiting for a busy core make
    these small forward passes ~10x slower; one thread keeps the module's runtime stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# items
# --------------------------------------------------------------------------------------------


def _mcq(id_, prompt, options, gold, *, delimiter=" ", group="g", task="t", level=None, benchmark="b"):
    return Item(
        id=id_,
        benchmark=benchmark,
        group=group,
        task=task,
        level=level,
        format="mcq",
        prompt=prompt,
        delimiter=delimiter,
        options=list(options),
        gold=gold,
        answer=options[gold],
    )


def _gen(id_, prompt, answer, *, delimiter=" ", stop=("\n",), group="g", task="t", benchmark="b"):
    return Item(
        id=id_,
        benchmark=benchmark,
        group=group,
        task=task,
        format="gen",
        prompt=prompt,
        delimiter=delimiter,
        answer=answer,
        stop=list(stop),
    )


def real_items() -> list[Item]:
    """Filipino-flavoured MCQ and GEN items; gold at every position; one prompt ends with a
    space (lm-eval moves it into the continuation); no option is a token prefix of another."""
    return [
        _mcq(
            "m0",
            'Which option spells out "bahay"?',
            ["b a h a y", "b a y a h", "h a b a y", "y a h a b"],
            0,
            group="composition",
            task="spelling",
        ),
        _mcq(
            "m1",
            'Ano ang ugat ng "kumain"?',
            ["main", "kain", "inom", "kumain"],
            1,
            group="affixation",
            task="root",
        ),
        _mcq("m2", "12+7=", ["18", "21", "19", "91"], 2, delimiter="", group="arith", task="add"),
        _mcq(
            "m3",
            'Which option has the prefix "mag-"?',
            ["kumain", "kinain", "sumayaw", "maglaro"],
            3,
            group="affixation",
            task="prefix",
        ),
        _mcq(
            "m4",
            "Ano ang ika-2 titik sa salitang 'bata'?",
            ["b", "a", "t", "k"],
            1,
            group="level_0",
            task="char",
            level=0,
            benchmark="hierarchical",
        ),
        _mcq(
            "m5",
            'Which option has the infix "-um-"?',
            ["nagsulat", "sulatin", "sumulat", "isulat"],
            2,
            group="affixation",
            task="infix",
        ),
        _mcq(
            "m6",
            'The opposite of "malaki" is ',
            ["mataas", "maliit", "mabigat", "malayo"],
            1,
            delimiter="",
            group="semantics",
            task="antonym",
        ),
        _mcq(
            "m7",
            'How many letters does "aso" have? Answer:',
            ["4", "5", "2", "3"],
            3,
            group="composition",
            task="count",
        ),
        _gen("g0", "30+45=", "75", delimiter="", group="arith", task="add"),
        _gen("g1", 'Spell out the word "sila":', "s i l a", group="composition", task="spelling"),
        _gen("g2", 'Ano ang salitang-ugat ng "kumain"?', "kain", group="affixation", task="root"),
        _gen("g3", 'Isalin sa Ingles: "bahay" ->', "house", stop=("\n", "."), group="semantics", task="tr"),
    ]


# --------------------------------------------------------------------------------------------
# planted models
# --------------------------------------------------------------------------------------------


class _TokenCache:
    """The planted model's stand-in for a KV cache: the token ids seen so far, per row."""

    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def reorder_cache(self, index: torch.Tensor) -> None:
        self.ids = self.ids[index]

    def get_seq_length(self) -> int:
        return self.ids.shape[1]


class PlantedLM(torch.nn.Module):
    """Causal LM whose logit is ``boost`` for the next token of a planted token path once the
    (unpadded) input is that path's first ``start`` tokens or more, 0 for every other token
    (uniform where no path applies).  ``paths``: ``(tokens, start)`` pairs; paths may share
    prompt beginnings but must agree after their ``start``.  With ``cache`` it returns a cache
    (the tokens so far) like an HF model with ``use_cache=True``; without, ``None``."""

    def __init__(self, paths: list[tuple[list[int], int]], vocab_size: int, *, cache: bool = True):
        super().__init__()
        self.next_token: dict[tuple[int, ...], int] = {}
        for p, start in paths:
            for j in range(start, len(p)):
                assert self.next_token.setdefault(tuple(p[:j]), p[j]) == p[j], "paths disagree"
        self.vocab_size = vocab_size
        self.boost = 30.0
        self.cache = cache
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device and dtype

    def forward(
        self, input_ids, attention_mask=None, past_key_values=None, use_cache=False, logits_to_keep=0, **kw
    ):
        ids = input_ids if past_key_values is None else torch.cat([past_key_values.ids, input_ids], dim=1)
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask
        assert mask.shape == ids.shape
        b, t = ids.shape
        n_new = input_ids.shape[1]
        keep = n_new if not logits_to_keep else min(int(logits_to_keep), n_new)
        logits = torch.zeros((b, keep, self.vocab_size))
        for r in range(b):
            real = [j for j in range(t) if mask[r, j]]
            toks = ids[r, real].tolist()
            for k, j in enumerate(real):
                if j >= t - keep:
                    nxt = self.next_token.get(tuple(toks[: k + 1]))
                    if nxt is not None:
                        logits[r, j - (t - keep), nxt] = self.boost
        cache = _TokenCache(ids) if use_cache and self.cache else None
        return CausalLMOutputWithPast(logits=logits, past_key_values=cache)


def _split(tok, prompt: str, continuation: str) -> tuple[list[int], list[int]]:
    """Independent re-statement of the lm-eval split: (context ids, continuation ids)."""
    n = len(prompt) - len(prompt.rstrip())
    if n:
        prompt, continuation = prompt[:-n], prompt[-n:] + continuation
    whole = tok(prompt + continuation)["input_ids"]
    return whole[: len(tok(prompt)["input_ids"])], whole[len(tok(prompt)["input_ids"]) :]


def planted_paths(tok, items: list[Item], pick) -> list[tuple[list[int], int]]:
    """Token paths ``prompt + delimiter + pick(item)`` (+ the first stop string for GEN), each
    planted from the end of the item's context."""
    paths = []
    for it in items:
        if it.format == "mcq":
            conts = [_split(tok, it.prompt, it.delimiter + o)[1] for o in it.options]
            for i, a in enumerate(conts):  # the planted test needs prefix-free options
                for j, b in enumerate(conts):
                    assert i == j or a != b[: len(a)], (it.id, it.options[i], it.options[j])
            ctx, _ = _split(tok, it.prompt, it.delimiter + pick(it))
            paths.append((tok(it.prompt + it.delimiter + pick(it))["input_ids"], len(ctx)))
        else:
            path = tok(it.prompt + it.delimiter + pick(it) + it.stop[0])["input_ids"]
            prompt_ids = tok(it.prompt)["input_ids"]
            assert path[: len(prompt_ids)] == prompt_ids, it.id
            paths.append((path, len(prompt_ids)))
    return paths


def _wrong(it: Item) -> str:
    return it.options[(it.gold + 1) % len(it.options)] if it.format == "mcq" else it.answer[::-1] + "x"


# --------------------------------------------------------------------------------------------
# fixtures: real models
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizers_(real_model_dirs):
    from transformers import AutoTokenizer

    return {n: AutoTokenizer.from_pretrained(str(real_model_dirs[n]), local_files_only=True) for n in MODELS}


@pytest.fixture(scope="module", params=MODELS)
def real_runs(request, real_model_dirs):
    """Score the real items five ways with one real model: twice at batch size 4, once at 1,
    once without shared contexts, once with every MCQ item's options shuffled."""
    model, tok = load_causal_lm(real_model_dirs[request.param], dtype="float32", device="cpu")
    items = real_items()
    rng = random.Random(7)
    shuffled = [shuffled_options(it, rng) if it.format == "mcq" else it for it in items]
    kw = {"max_new_tokens": 10}
    runs = {
        "a": E.score(model, tok, items, batch_size=4, **kw),
        "b": E.score(model, tok, items, batch_size=4, **kw),
        "bs1": E.score(model, tok, items, batch_size=1, **kw),
        "plain": E.score(model, tok, items, batch_size=4, share_context=False, **kw),
        "shuffled": E.score(model, tok, shuffled, batch_size=4, **kw),
    }
    return {"name": request.param, "items": items, "items_shuffled": shuffled, "tok": tok, **runs}


# --------------------------------------------------------------------------------------------
# real models
# --------------------------------------------------------------------------------------------


def test_records_in_item_order_with_fields(real_runs):
    items, preds = real_runs["items"], real_runs["a"]
    assert [p["id"] for p in preds] == [it.id for it in items]
    for it, p in zip(items, preds, strict=True):
        assert (p["benchmark"], p["group"], p["task"], p["level"], p["format"]) == (
            it.benchmark,
            it.group,
            it.task,
            it.level,
            it.format,
        )
        if it.format == "mcq":
            assert p["gold"] == it.gold and p["options"] == it.options
            assert len(p["logprobs"]) == len(p["option_bytes"]) == len(p["option_tokens"]) == 4
            assert all(lp < 0 for lp in p["logprobs"])
            assert p["option_bytes"] == [len((it.delimiter + o).encode()) for o in it.options]
            assert p["pred"] == max(range(4), key=lambda i: p["logprobs"][i])
            assert p["correct"] == (p["pred"] == it.gold)
            assert p["boundary_merge"] is False
        else:
            assert p["stop_reason"] in ("stop", "eos", "length")
            assert 0.0 <= p["edit_sim"] <= 1.0
            assert p["correct"] == p["exact_match"]
            assert p["generated"] is not None and p["new_tokens"] >= 1


def test_real_model_is_a_language_model(real_runs):
    """Not a quality bar (these base models get 2-4 of the 8 right): the options' mean per-token
    log-prob is far above a uniform guess (-ln V: -12.5 Gemma, -10.8 SmolLM2), which misaligned
    logits would not give."""
    per_token = [
        lp / n
        for p in real_runs["a"]
        if p["format"] == "mcq"
        for lp, n in zip(p["logprobs"], p["option_tokens"], strict=True)
    ]
    assert sum(per_token) / len(per_token) > -math.log(len(real_runs["tok"])) + 3


def test_deterministic(real_runs):
    assert real_runs["a"] == real_runs["b"]


@pytest.mark.parametrize("other", ["bs1", "plain"])
def test_batch_size_and_context_sharing_do_not_change_predictions(real_runs, other):
    """Batch size 1 vs 4, and each option's whole sequence vs options on a shared context cache."""
    for p1, p4 in zip(real_runs[other], real_runs["a"], strict=True):
        for key in ("pred", "pred_norm", "correct", "correct_norm", "generated", "exact_match"):
            assert p1[key] == p4[key], (p1["id"], key)
        if p1["format"] == "mcq":
            assert p1["logprobs"] == pytest.approx(p4["logprobs"], abs=1e-3)


def test_shuffled_options_keep_per_item_correctness(real_runs):
    items, shuffled = real_runs["items"], real_runs["items_shuffled"]
    for it, p, s, sit in zip(items, real_runs["a"], real_runs["shuffled"], shuffled, strict=True):
        if it.format != "mcq":
            continue
        assert s["correct"] == p["correct"] and s["correct_norm"] == p["correct_norm"], it.id
        by_text = dict(zip(p["options"], p["logprobs"], strict=True))
        for opt, lp in zip(sit.options, s["logprobs"], strict=True):
            assert lp == pytest.approx(by_text[opt], abs=1e-3)
    assert any(sit.options != it.options for it, sit in zip(items, shuffled, strict=True))


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("name", MODELS)
def test_planted_gold_model_scores_100(name, cache, tokenizers_):
    tok = tokenizers_[name]
    items = real_items()
    model = PlantedLM(planted_paths(tok, items, lambda it: it.answer), len(tok), cache=cache)
    stats = {}
    preds = E.score(model, tok, items, batch_size=3, max_new_tokens=12, stats=stats)
    assert stats["mcq_shared_context"] is cache
    s = E.summarize(preds)["overall"]
    assert s["mcq"]["acc"] == 1.0 and s["mcq"]["acc_norm"] == 1.0
    assert s["gen"]["exact_match"] == 1.0 and s["gen"]["exact_match_strict"] == 1.0
    assert s["gen"]["edit_sim"] == 1.0 and s["gen"]["stopped"] == s["gen"]["n"]
    for p in preds:
        if p["format"] == "mcq":  # the gold continuation gets ~all the mass, token by token
            assert p["logprobs"][p["gold"]] > -1e-3
            it = next(it for it in items if it.id == p["id"])
            assert p["option_tokens"] == [
                len(_split(tok, it.prompt, it.delimiter + o)[1]) for o in it.options
            ]
            assert not p["tie"] and not p["tie_norm"]


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("name", MODELS)
def test_planted_wrong_model_scores_0(name, cache, tokenizers_):
    tok = tokenizers_[name]
    items = real_items()
    model = PlantedLM(planted_paths(tok, items, _wrong), len(tok), cache=cache)
    preds = E.score(model, tok, items, batch_size=5, max_new_tokens=12)
    s = E.summarize(preds)["overall"]
    assert s["mcq"]["acc"] == 0.0 and s["mcq"]["acc_norm"] == 0.0
    assert s["gen"]["exact_match"] == 0.0 and s["gen"]["edit_sim"] < 1.0
    for it, p in zip(items, preds, strict=True):
        if it.format == "mcq":
            assert p["pred"] == p["pred_norm"] == (it.gold + 1) % 4
        else:
            assert p["pred"] == it.answer[::-1] + "x"


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_planted_model_result_independent_of_batch_size(cache, tokenizers_):
    tok = tokenizers_["gemma3-270m"]
    items = real_items()
    model = PlantedLM(planted_paths(tok, items, lambda it: it.answer), len(tok), cache=cache)
    runs = [E.score(model, tok, items, batch_size=bs, max_new_tokens=12) for bs in (1, 7, 64)]
    assert runs[0] == runs[1] == runs[2]


# --------------------------------------------------------------------------------------------
# ties (a tiny word-level tokenizer and a uniform model)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def word_tok():
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<eos>", "q", "r", "x", "y", "z", "w"]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>")


def test_ties_go_to_lowest_index_not_gold(word_tok):
    uniform = PlantedLM([], len(word_tok))
    items = [
        _mcq("t0", "q", ["x", "y", "z"], 2),  # equal tokens, equal bytes: tie in both metrics
        _mcq("t1", "q r", ["y", "x"], 0),  # tie, gold happens to be index 0
        _mcq("t2", "q", ["x y", "z"], 0),  # 2 vs 1 token: no tie; per byte (4 vs 2): a tie
    ]
    preds = E.score(uniform, word_tok, items, batch_size=2)
    p0, p1, p2 = preds
    assert p0["logprobs"][0] == p0["logprobs"][1] == p0["logprobs"][2]
    assert (p0["pred"], p0["pred_norm"], p0["tie"], p0["tie_norm"]) == (0, 0, True, True)
    assert p0["correct"] is False and p0["correct_norm"] is False
    assert (p1["pred"], p1["tie"], p1["correct"]) == (0, True, True)
    assert (p2["pred"], p2["tie"], p2["correct"]) == (1, False, False)
    assert (p2["pred_norm"], p2["tie_norm"], p2["correct_norm"]) == (0, True, True)
    s = E.summarize(preds)["overall"]["mcq"]
    assert (s["ties"], s["ties_norm"]) == (2, 3)
    assert s["acc"] == pytest.approx(1 / 3)


def test_tokenizer_appending_eos_is_handled(word_tok):
    """A tokenizer that appends EOS must not put it between context and continuation."""
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    backend = word_tok.backend_tokenizer.__class__.from_str(word_tok.backend_tokenizer.to_str())
    backend.post_processor = TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", 1)])
    eos_tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>")
    assert eos_tok("q x")["input_ids"][-1] == 1
    items = [_mcq("e0", "q r", ["x z", "y"], 0)]
    model = PlantedLM(planted_paths(word_tok, items, lambda it: it.answer), len(word_tok))
    for tok in (word_tok, eos_tok):
        (p,) = E.score(model, tok, items, batch_size=2)
        assert p["pred"] == 0 and p["option_tokens"] == [2, 1]


# --------------------------------------------------------------------------------------------
# string metrics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("  S  i la. ", "s i la"),
        ("Kain..", "kain"),
        ("a.b", "a.b"),
        ("\tnag-\nluto\n", "nag- luto"),
        ("Nin\u0303o", "niño"),  # combining tilde -> NFC
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # casefold, not lower
        ("", ""),
    ],
)
def test_normalize_answer(raw, norm):
    assert E.normalize_answer(raw) == norm


def test_normalize_answer_is_nfc_and_idempotent():
    out = E.normalize_answer("İSA")  # casefold decomposes the dotted capital I
    assert out == unicodedata.normalize("NFC", out) == E.normalize_answer(out)


def test_levenshtein_and_edit_similarity_examples():
    assert E.levenshtein("kitten", "sitting") == 3
    assert E.levenshtein("kumain", "kain") == 2
    assert E.levenshtein("", "abc") == E.levenshtein("abc", "") == 3
    assert E.edit_similarity("", "") == 1.0
    assert E.edit_similarity("abc", "abc") == 1.0
    assert E.edit_similarity("abc", "") == 0.0
    assert E.edit_similarity("kain", "kumain") == pytest.approx(1 - 2 / 6)
    assert E.edit_similarity("ñ", "n") == 0.0  # code points, not bytes


def _naive_lev(a: str, b: str) -> int:
    if not a or not b:
        return len(a) + len(b)
    return min(_naive_lev(a[1:], b) + 1, _naive_lev(a, b[1:]) + 1, _naive_lev(a[1:], b[1:]) + (a[0] != b[0]))


@settings(max_examples=200, deadline=None)
@given(st.text("abñ ", max_size=6), st.text("abñ ", max_size=6), st.text("abñ ", max_size=4))
def test_levenshtein_properties(a, b, c):
    d = E.levenshtein(a, b)
    assert d == _naive_lev(a, b) == E.levenshtein(b, a)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert (d == 0) == (a == b)
    assert E.levenshtein(a, c) <= d + E.levenshtein(b, c)
    assert 0.0 <= E.edit_similarity(a, b) <= 1.0


def test_truncate_at_stop():
    assert E.truncate_at_stop("abc\ndef", ["\n"]) == ("abc", True)
    assert E.truncate_at_stop("a.b\nc", ["\n", "."]) == ("a", True)
    assert E.truncate_at_stop("\nabc", ["\n"]) == ("\nabc", False)  # leading whitespace
    assert E.truncate_at_stop(" \n abc\nd", ["\n"]) == (" \n abc", True)
    assert E.truncate_at_stop("\n\n", ["\n"]) == ("\n\n", False)
    assert E.truncate_at_stop("abc", ["\n"]) == ("abc", False)


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------


def test_summarize_groups_tasks_levels():
    def rec(i, fmt, group, task, level, ok):
        r = {"id": str(i), "benchmark": "h", "group": group, "task": task, "level": level, "format": fmt}
        if fmt == "mcq":
            r.update(correct=ok, correct_norm=not ok, tie=False, tie_norm=ok, options=["a", "b"])
        else:
            r.update(exact_match=ok, exact_match_strict=ok, edit_sim=0.5, stop_reason="stop", correct=ok)
        return r

    preds = [
        rec(0, "mcq", "level_0", "char", 0, True),
        rec(1, "mcq", "level_0", "char", 0, False),
        rec(2, "mcq", "level_1", "del", 1, True),
        rec(3, "gen", "level_1", "del", 1, True),
        rec(4, "gen", "x", "y", None, False),
    ]
    s = E.summarize(preds)
    assert s["n"] == 5 and s["overall"]["n"] == 5
    assert s["overall"]["mcq"]["acc"] == pytest.approx(2 / 3)
    assert s["overall"]["mcq"]["acc_norm"] == pytest.approx(1 / 3)
    assert s["overall"]["mcq"]["ties_norm"] == 2 and s["overall"]["mcq"]["chance"] == 0.5
    assert s["overall"]["gen"] == pytest.approx(
        {
            "n": 2,
            "exact_match": 0.5,
            "exact_match_stderr": 0.5,
            "exact_match_strict": 0.5,
            "edit_sim": 0.5,
            "stopped": 2,
            "eos": 0,
            "truncated": 0,
        }
    )
    assert set(s["by_group"]) == {"h/level_0", "h/level_1", "h/x"}
    assert s["by_group"]["h/level_1"]["mcq"]["n"] == 1 and s["by_group"]["h/level_1"]["gen"]["n"] == 1
    assert s["by_task"]["h/level_0/char"]["mcq"]["acc"] == 0.5
    assert set(s["by_level"]) == {"h/level_0", "h/level_1"}  # the level-less item is left out
    assert s["by_level"]["h/level_1"]["level"] == 1 and s["by_level"]["h/level_1"]["n"] == 2
    assert "byte" in s["acc_norm_definition"]


# --------------------------------------------------------------------------------------------
# command line and lm-eval export
# --------------------------------------------------------------------------------------------


def test_cli_writes_scores_and_predictions(real_model_dirs, tmp_path, capsys):
    bench = tmp_path / "bench.jsonl"
    write_items(bench, real_items())
    scores, preds = tmp_path / "out" / "s.json", tmp_path / "out" / "p.jsonl"
    model_dir = real_model_dirs["smollm2-135m"]
    argv = [
        "--model",
        str(model_dir),
        "--benchmark",
        str(bench),
        "--scores",
        str(scores),
        "--predictions",
        str(preds),
        "--label",
        "family=llama",
        "--label",
        "arm=vanilla",
        "--label",
        "checkpoint=base",
        "--batch-size",
        "auto",
        "--max-new-tokens",
        "4",
        "--max-items",
        "10",
        "--device",
        "cpu",
    ]
    assert E.main(argv) == 0
    s = json.loads(scores.read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines()]
    assert s["labels"] == {"family": "llama", "arm": "vanilla", "checkpoint": "base"}
    assert s["model"] == str(model_dir) and s["model_meta"]["name"] == "smollm2-135m"
    import hashlib

    assert s["benchmark_sha256"] == hashlib.sha256(bench.read_bytes()).hexdigest()
    from filmorph.provenance import sha256_tree

    assert s["model_sha256"] == sha256_tree(model_dir) and len(s["model_sha256"]) == 64
    assert s["n_items"] == 10 == s["overall"]["n"] and s["max_items"] == 10
    assert (s["dtype"], s["device"], s["batch_size"]) == ("float32", "cpu", "auto")
    assert s["batch_size_used"] == {"mcq": E.CPU_BATCH_SIZE, "gen": E.CPU_BATCH_SIZE}
    assert s["items_per_s"] > 0 and s["seconds"] > 0 and s["max_new_tokens"] == 4
    assert {"torch", "transformers", "tokenizers", "filmorph", "python"} <= s["versions"].keys()
    assert s["overall"]["mcq"]["n"] == 8 and s["overall"]["gen"]["n"] == 2
    assert {"by_group", "by_task", "by_level", "acc_norm_definition"} <= s.keys()
    assert [r["id"] for r in rows] == [it.id for it in read_items(bench)][:10]
    assert all(r["new_tokens"] <= 4 for r in rows if r["format"] == "gen")
    assert sorted(p.name for p in scores.parent.iterdir()) == ["p.jsonl", "s.json"]  # no temp files
    err = capsys.readouterr().err
    assert "10 items" in err and "acc" in err


def test_cli_scores_several_files_with_one_model_load(tokenizers_, tmp_path, monkeypatch, capsys):
    """Repeated --benchmark/--scores/--predictions: the model is loaded once, each file gets its
    own outputs (labels with its name under --benchmark-label) equal to a one-file run's. A
    planted model (the real SmolLM2 tokenizer) that knows every gold answer scores 100 %."""
    from filmorph import models

    tok = tokenizers_["smollm2-135m"]
    items = real_items()
    files = {"one": items[:5], "two": items[5:9]}
    loads = []

    def planted_load(path, **kwargs):
        loads.append(path)
        return PlantedLM(planted_paths(tok, items, lambda it: it.answer), len(tok)).eval(), tok

    monkeypatch.setattr(models, "load_causal_lm", planted_load)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}", encoding="utf-8")
    common = ["--model", str(model_dir), "--max-new-tokens", "8", "--device", "cpu", "--label", "arm=a"]
    argv = [*common, "--benchmark-label", "benchmark"]
    for name, its in files.items():
        write_items(tmp_path / f"{name}.jsonl", its)
        argv += ["--benchmark", str(tmp_path / f"{name}.jsonl"),
                 "--scores", str(tmp_path / "multi" / f"{name}.json"),
                 "--predictions", str(tmp_path / "multi" / f"{name}.jsonl")]
    assert E.main(argv) == 0
    assert loads == [str(model_dir)]
    err = capsys.readouterr().err
    for name, its in files.items():
        assert f"{name}.jsonl: {len(its)} items" in err
        single = ["--benchmark", str(tmp_path / f"{name}.jsonl"),
                  "--scores", str(tmp_path / "single" / f"{name}.json"),
                  "--predictions", str(tmp_path / "single" / f"{name}.jsonl")]
        assert E.main([*common, "--label", f"benchmark={name}", *single]) == 0
        multi = json.loads((tmp_path / "multi" / f"{name}.json").read_text(encoding="utf-8"))
        one = json.loads((tmp_path / "single" / f"{name}.json").read_text(encoding="utf-8"))
        assert multi["labels"] == one["labels"] == {"arm": "a", "benchmark": name}
        assert multi["n_items"] == len(its) and multi["benchmark_file"] == str(tmp_path / f"{name}.jsonl")
        timing = {"load_seconds", "seconds", "items_per_s", "stats"}
        assert {k: v for k, v in multi.items() if k not in timing} == \
            {k: v for k, v in one.items() if k not in timing}
        rows, ones = (
            [json.loads(x) for x in (tmp_path / d / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
            for d in ("multi", "single")
        )
        assert [r["id"] for r in rows] == [it.id for it in its]
        assert rows == ones and all(r["correct"] for r in rows)
    assert len(loads) == 3


def test_cli_names_a_bad_benchmark_file_before_loading_the_model(tmp_path, monkeypatch, capsys):
    """Every file is read before the model is loaded: a bad line or a missing file fails the
    run at once, naming it, with no output written; outputs must pair up with files."""
    from filmorph import models

    monkeypatch.setattr(models, "load_causal_lm", lambda *a, **k: pytest.fail("model loaded"))
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    write_items(good, real_items()[:2])
    bad.write_text(good.read_text(encoding="utf-8") + '{"id": "x"}\n', encoding="utf-8")
    out = tmp_path / "out"

    def argv(*benches):
        a = ["--model", "no-such-model"]
        for b in benches:
            a += ["--benchmark", str(b), "--scores", str(out / f"{b.stem}.json"),
                  "--predictions", str(out / f"{b.stem}.jsonl")]
        return a

    assert E.main(argv(good, bad)) == 2
    assert f"{bad}:3: missing field" in capsys.readouterr().err
    assert E.main(argv(good, tmp_path / "absent.jsonl")) == 2
    assert f"benchmark file {tmp_path / 'absent.jsonl'}" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):  # two --benchmark, one --scores
        E.main([*argv(good), "--benchmark", str(bad)])
    assert "one --scores and one --predictions per --benchmark" in capsys.readouterr().err
    clash = ["--model", "m", "--benchmark", str(good), "--scores", str(out / "s.json"), "--predictions",
             str(out / "p.jsonl"), "--benchmark", str(good), "--scores", str(out / "s.json"),
             "--predictions", str(out / "q.jsonl")]
    assert E.main(clash) == 2
    assert "is the output of both" in capsys.readouterr().err


def test_cli_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        E.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--model",
        "--benchmark",
        "--scores",
        "--predictions",
        "--label",
        "--batch-size",
        "--max-new-tokens",
        "--dtype",
        "--device",
        "--max-items",
        "auto",
    ):
        assert flag in text
    base = ["--model", "m", "--benchmark", "b", "--scores", "s", "--predictions", "p"]
    for bad in (
        ["--label", "noequals"],
        ["--batch-size", "0"],
        ["--batch-size", "big"],
        ["--max-items", "0"],
    ):
        with pytest.raises(SystemExit):
            E.main(base + bad)


def test_export_lm_eval_task(tmp_path):
    bench = tmp_path / "pacute_mcq.jsonl"
    write_items(bench, real_items())
    yaml_path = E.export_lm_eval_task(bench, tmp_path / "lm_eval")
    import yaml

    cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    assert cfg["task"] == "filmorph_pacute_mcq" and cfg["output_type"] == "multiple_choice"
    assert cfg["target_delimiter"] == "" and cfg["doc_to_choice"] == "choices"
    data = Path(cfg["dataset_kwargs"]["data_files"]["test"])
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    mcq = [it for it in real_items() if it.format == "mcq"]
    assert [r["id"] for r in rows] == [it.id for it in mcq]
    for r, it in zip(rows, mcq, strict=True):
        assert r["choices"] == [it.delimiter + o for o in it.options] and r["gold"] == it.gold
        assert r["prompt"] == it.prompt


def test_out_of_memory_backoff_halves_and_retries():
    """In auto mode a batch that runs out of memory is retried at half the size; every unit is
    run exactly once, in order; without auto the error propagates."""
    done, sizes = [], []

    def run(start, stop):
        sizes.append(stop - start)
        if stop - start > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        done.extend(range(start, stop))

    progress = []
    assert E.run_batched([1] * 10, 16, True, run, progress.append) == 2
    assert done == list(range(10)) and sum(progress) == 10
    assert sizes[:4] == [10, 8, 4, 2]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        E.run_batched([1] * 10, 16, False, run, progress.append)
    # weights: a unit heavier than the batch still runs alone
    runs = []
    E.run_batched([3, 3, 1, 5], 4, False, lambda a, b: runs.append((a, b)), lambda n: None)
    assert runs == [(0, 1), (1, 3), (3, 4)]
