"""Tests of filmorph.scoring: answer extraction and normalization per benchmark, and planted
models on every published format (tests/fixtures/published, converted as distributed).

A planted model puts its mass on the next byte of one planted continuation per item (a
byte-level tokenizer without merges decodes exactly what was planted), so a model that writes
the gold answer in the format the benchmark expects must score 100 %, and one that echoes the
input word must score 0 where the task is to change it (uppercasing, lowercasing)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

from filmorph import evaluate as E
from filmorph import scoring as S
from filmorph.benchmarks.convert import convert
from filmorph.items import Item

FIX = Path(__file__).parent / "fixtures" / "published"

# (fixture file, schema): one per published format
FILES = [
    ("mcq_affixation_dataset.jsonl", "pacute"),
    ("gen_manipulation_dataset.jsonl", "pacute"),
    ("affixation_mcq.jsonl", "pacute"),
    ("hierarchical_mcq.jsonl", "hierarchical"),
    ("hierarchical_gen.jsonl", "hierarchical"),
    ("stress_mcq.jsonl", "stress"),
    ("stress_gen.jsonl", "stress"),
    ("spell.tsv", "cute"),
    ("contains_word.tsv", "cute"),
    ("cute_gen.jsonl", "cute"),
    ("langgame_mcq.jsonl", "langgame"),
    ("langgame_gen.jsonl", "langgame"),
    ("multi_digit_addition_mcq.jsonl", "addition"),
    ("multi_digit_addition_gen.jsonl", "addition"),
]


@pytest.fixture(scope="module")
def byte_tok():
    """A byte-level tokenizer without merges (one token per UTF-8 byte, exact decoding), EOS 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")


class Planted(torch.nn.Module):
    """Logit 30 for the next token of a planted path once the input is the path's first
    ``start`` tokens or more; 0 elsewhere. No KV cache (the scorer then re-reads sequences)."""

    def __init__(self, paths: list[tuple[list[int], int]], vocab_size: int):
        super().__init__()
        self.next_token: dict[tuple[int, ...], int] = {}
        for p, start in paths:
            for j in range(start, len(p)):
                assert self.next_token.setdefault(tuple(p[:j]), p[j]) == p[j], "paths disagree"
        self.vocab_size = vocab_size
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None, logits_to_keep=0, **kw):
        b, t = input_ids.shape
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        keep = t if not logits_to_keep else min(int(logits_to_keep), t)
        logits = torch.zeros((b, keep, self.vocab_size))
        for r in range(b):
            real = [j for j in range(t) if mask[r, j]]
            toks = input_ids[r, real].tolist()
            for k, j in enumerate(real):
                if j >= t - keep and (nxt := self.next_token.get(tuple(toks[: k + 1]))) is not None:
                    logits[r, j - (t - keep), nxt] = 30.0
        return CausalLMOutputWithPast(logits=logits, past_key_values=None)


def planted(tok, items: list[Item], pick) -> Planted:
    """MCQ: the path prompt + delimiter + pick(item) from the end of the prompt; GEN: the
    generated text pick(item) followed by the item's first stop string."""
    paths = []
    for it in items:
        n = len(tok(it.prompt)["input_ids"])
        tail = it.delimiter + pick(it) if it.format == "mcq" else pick(it) + it.stop[0]
        paths.append((tok(it.prompt + tail)["input_ids"], n))
    return Planted(paths, len(tok))


def _load(fname: str, schema: str, **options) -> list[Item]:
    """The fixture's items, bad lines skipped (some fixtures carry one on purpose)."""
    return convert(str(FIX / fname), schema, "x", on_bad_item="skip", **options)


def gold_answer(it: Item) -> str:
    """The gold answer written as the benchmark's prompt asks for it."""
    if it.format == "mcq":
        return it.answer
    return it.answer if it.meta.get("answer_cue") else it.delimiter + it.answer


def _score(tok, items, pick):
    preds = E.score(planted(tok, items, pick), tok, items, batch_size=4, max_new_tokens=40)
    return preds, E.summarize(preds)["overall"]


@pytest.mark.parametrize("fname,schema", FILES, ids=[f for f, _ in FILES])
def test_planted_gold_scores_100_on_every_published_format(fname, schema, byte_tok):
    items = _load(fname, schema)
    preds, s = _score(byte_tok, items, gold_answer)
    if "mcq" in s:
        assert s["mcq"]["acc"] == 1.0 and s["mcq"]["acc_norm"] == 1.0
    if "gen" in s:
        g = s["gen"]
        assert g["exact_match"] == g["exact_match_strict"] == g["edit_sim"] == 1.0
        assert g["contains_match"] == g["prefix_match"] == 1.0
    assert {p["scoring"] for p in preds if p["format"] == "gen"} <= {schema}


@pytest.mark.parametrize(
    "fname,schema",
    [(f, s) for f, s in FILES if f.endswith(".jsonl") and "mcq" in f],
    ids=[f for f, s in FILES if f.endswith(".jsonl") and "mcq" in f],
)
def test_planted_gold_letter_scores_100_lettered(fname, schema, byte_tok):
    items = _load(fname, schema, mcq_style="lettered")
    assert all(it.options == list("ABCD"[: len(it.options)]) for it in items)
    assert all(f"\n{it.answer}. {it.meta['choices'][it.gold]}\n" in it.prompt for it in items)
    _, s = _score(byte_tok, items, lambda it: it.answer)
    assert s["mcq"]["acc"] == 1.0
    _, s = _score(byte_tok, items, lambda it: it.options[(it.gold + 1) % len(it.options)])
    assert s["mcq"]["acc"] == 0.0


def test_answer_cue_and_leading_answer_are_read_the_same_for_every_model(byte_tok):
    """A model that writes 'Answer: X' is read like one that writes X; CUTE without the cue:
    the model's own 'Answer: "…"' wrapper is taken off."""
    items = _load("gen_manipulation_dataset.jsonl", "pacute")
    _, s = _score(byte_tok, items, lambda it: " Answer: " + it.answer)
    assert s["gen"]["exact_match"] == 1.0
    cute = _load("spell.tsv", "cute", cute_answer_cue=False)
    assert all(not it.prompt.endswith('"') and it.stop == ["\n"] for it in cute)
    _, s = _score(byte_tok, cute, lambda it: f' Answer: "{it.answer}". Done')
    assert s["gen"]["exact_match"] == 1.0 and s["gen"]["prefix_match"] == 0.0


def _input_word(it: Item) -> str:
    return re.search(r'"([^"]+)"', it.prompt)[1]


def test_echoing_the_input_scores_0_where_case_is_the_point(byte_tok):
    gen = [
        it
        for it in _load("gen_manipulation_dataset.jsonl", "pacute")
        if it.task in ("uppercasing", "lowercasing")
    ]
    assert len(gen) == 2
    preds, s = _score(byte_tok, gen, lambda it: " " + _input_word(it))
    assert s["gen"]["exact_match"] == 0.0
    assert s["gen"]["contains_match"] == 1.0  # the study's lower-cased metric credits the echo
    mcq = [it for it in _load("mcq_affixation_dataset.jsonl", "pacute") if it.task == "uppercasing"]
    _, s = _score(byte_tok, mcq, _input_word)
    assert s["mcq"]["acc"] == 0.0


def test_echo_scores_0_on_cute_spelling(byte_tok):
    items = _load("spell.tsv", "cute")
    _, s = _score(byte_tok, items, lambda it: it.meta["inputs"][0])
    assert s["gen"]["exact_match"] == 0.0


@pytest.mark.parametrize(
    "prompt,generated,want",
    [
        ('Q. Answer: "', 'r i v e r". More', "r i v e r"),
        ('Q. Answer: "', "r i v e r", "r i v e r"),
        ("Q.", ' Answer: " r i v e r ". x', "r i v e r"),
        ("Q.", ' "river" said', "river"),
        ("Q.", " river", "river"),
        ('Q. Answer: "', 'x". Answer: "y"', "y"),
    ],
)
def test_cute_extraction(prompt, generated, want):
    assert S.extract(S.PROFILES["cute"], prompt, generated) == want


@pytest.mark.parametrize(
    "generated,want",
    [
        (" Answer: uminom", "uminom"),
        ("answer:uminom ", "uminom"),
        (" uminom", "uminom"),
        ("The answer: x", "The answer: x"),
    ],
)
def test_leading_answer_extraction(generated, want):
    assert S.extract(S.PROFILES["pacute"], "Q?", generated) == want


def _gen_item(answer, task, profile):
    return Item(
        id="i",
        benchmark="b",
        group="g",
        task=task,
        format="gen",
        prompt="Q?",
        answer=answer,
        meta={"scoring": profile} if profile else {},
    )


@pytest.mark.parametrize(
    "profile,task,answer,generated,em",
    [
        ("pacute", "uppercasing", "BUKAS", " bukas", False),
        ("pacute", "uppercasing", "BUKAS", "  BUKAS ", True),
        ("pacute", "prefix", "uminom", " Uminom", True),
        ("pacute", "prefix", "uminom", " uminom.", False),  # only whitespace is normalized
        ("pacute", "spelling", "s i l a", " s  i l a", True),
        ("stress", "accent_placement", "batà", " BATÀ", True),
        ("stress", "accent_placement", "batà", " bata", False),  # accents are the point
        ("cute", "spell", "r i v e r", 'R I V E R"', False),  # CUTE compares char tasks as is
        ("cute", "del_word", "cat saw dog.", 'Cat saw dog."', True),  # and word tasks lower-cased
        ("cute", "contains_char_rand", "No", 'no"', False),
        (None, "t", "Bahay", " bahay.", True),  # generated benchmarks: normalize_answer as before
    ],
)
def test_normalization_per_profile(profile, task, answer, generated, em):
    it = _gen_item(answer, task, profile)
    if profile == "cute":
        it.prompt = 'Q. Answer: "'
    r = S.score_gen(it, generated)
    assert r["exact_match"] is em and r["correct"] is em


def test_study_lenient_metrics_and_unknown_profile():
    r = S.score_gen(_gen_item("455", "t", "addition"), " The sum is 455, yes")
    assert (r["exact_match"], r["contains_match"], r["prefix_match"]) == (False, True, False)
    r = S.score_gen(_gen_item("455", "t", "addition"), " 4556")
    assert (r["exact_match"], r["contains_match"], r["prefix_match"]) == (False, True, True)
    assert S.gen_summary([r, {"contains_match": False, "prefix_match": False}, {"exact_match": True}]) == {
        "contains_match": 0.5,
        "prefix_match": 0.5,
    }
    assert S.gen_summary([{"exact_match": True}]) == {}
    with pytest.raises(ValueError, match="unknown scoring profile 'nope'"):
        S.score_gen(_gen_item("x", "t", "nope"), "x")
