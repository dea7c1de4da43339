"""filmorph.train.megatron.convert on a CPU machine: the logit comparison, the guards against the published
run's two conversion bugs (weights never loaded; fused QKV sliced contiguously), verify of HF
checkpoints end to end, export bookkeeping, and clear errors where Megatron-Bridge is needed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from filmorph.io import read_json
from filmorph.train import megatron as M
from filmorph.train.megatron import convert as C

pytestmark = [
    pytest.mark.filterwarnings("ignore:Transformer Engine and Apex:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

HEADS, GROUPS, HEAD_DIM, HIDDEN = 4, 2, 8, 32


def _tiny_llama(seed: int, groups: int = GROUPS, vocab_size: int = 300):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=groups,
        head_dim=HEAD_DIM,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """{name: dir}: ``ref`` (seed 0), ``copy`` (the same weights saved again), ``reinit`` (the
    same architecture initialised with another seed: what a model whose weights were never
    loaded looks like), ``sliced`` (ref with every layer's q/k/v replaced by a contiguous slice
    of its Megatron-fused weight: the published export's bug)."""
    import torch

    root = tmp_path_factory.mktemp("hf")
    ref = _tiny_llama(0)
    ref.save_pretrained(root / "ref")
    ref.save_pretrained(root / "copy")
    _tiny_llama(1).save_pretrained(root / "reinit")
    sliced = _tiny_llama(0)
    dims = {"num_heads": HEADS, "num_query_groups": GROUPS, "head_dim": HEAD_DIM}
    with torch.no_grad():
        for layer in sliced.model.layers:
            a = layer.self_attn
            fused = C.fuse_qkv(a.q_proj.weight, a.k_proj.weight, a.v_proj.weight, **dims)
            q, k, v = C.contiguous_split_qkv(fused, **dims)
            a.q_proj.weight.copy_(q)
            a.k_proj.weight.copy_(k)
            a.v_proj.weight.copy_(v)
    sliced.save_pretrained(root / "sliced")
    return {n: root / n for n in ("ref", "copy", "reinit", "sliced")}


# ============================================================================ compare_logits
def test_fixed_token_batch_is_fixed():
    a = C.fixed_token_batch(1000, batch=3, length=7, seed=5)
    assert a.shape == (3, 7) and int(a.min()) >= 0 and int(a.max()) < 1000
    assert a.equal(C.fixed_token_batch(1000, batch=3, length=7, seed=5))
    assert not a.equal(C.fixed_token_batch(1000, batch=3, length=7, seed=6))
    with pytest.raises(ValueError):
        C.fixed_token_batch(1)


def test_compare_logits():
    import torch

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 16, 50, generator=g)
    same = C.compare_logits(ref, ref.clone(), 1e-6)
    assert same["passed"] and same["max_abs_diff"] == 0.0 and same["argmax_agreement"] == 1.0
    assert same["positions"] == 32 and same["reason"] is None
    near = C.compare_logits(ref, ref + 1e-4, 1e-3)
    assert near["passed"] and near["max_abs_diff"] == pytest.approx(1e-4, rel=1e-2)
    # a candidate with a padded vocab: only the reference's columns count
    padded = torch.cat([ref, torch.full((2, 16, 14), 99.0)], dim=-1)
    assert C.compare_logits(ref, padded, 1e-6)["passed"]
    # other logits: fails, says why
    other = C.compare_logits(ref, torch.randn(2, 16, 50, generator=g), 1e-2)
    assert not other["passed"] and other["max_abs_diff"] > 1 and other["argmax_agreement"] < 0.5
    assert "max abs diff" in other["reason"] and "argmax agreement" in other["reason"]
    # within tolerance but argmax disagreement beyond the allowed share
    flipped = ref.clone()
    flipped[..., 0] = ref.max(-1).values + 1e-3
    res = C.compare_logits(ref, flipped, 10.0, min_argmax_agreement=0.99)
    assert not res["passed"] and "argmax" in res["reason"]
    # a constant reference proves nothing
    assert not C.compare_logits(torch.zeros(1, 4, 8), torch.zeros(1, 4, 8), 1.0)["passed"]
    nan = ref.clone()
    nan[0, 0, 0] = float("nan")
    assert "non-finite" in C.compare_logits(ref, nan, 1.0)["reason"]
    with pytest.raises(ValueError, match="shapes differ"):
        C.compare_logits(ref, ref[:, :8], 1.0)


# ============================================================================ fused QKV layout
def _megatron_fused_by_hand(q, k, v, heads, groups, d):
    """Megatron's linear_qkv layout written out: for each query group g, rows of its heads
    q[g*H/G .. (g+1)*H/G), then k head g, then v head g."""
    import torch

    per = heads // groups
    rows = []
    for g in range(groups):
        for h in range(g * per, (g + 1) * per):
            rows.append(q[h * d : (h + 1) * d])
        rows.append(k[g * d : (g + 1) * d])
        rows.append(v[g * d : (g + 1) * d])
    return torch.cat(rows)


@pytest.mark.parametrize(("heads", "groups", "d"), [(4, 2, 8), (32, 8, 64), (8, 4, 16), (4, 4, 8)])
def test_unfuse_inverts_megatrons_layout_and_contiguous_slicing_does_not(heads, groups, d):
    import torch

    g = torch.Generator().manual_seed(heads * groups)
    q = torch.randn(heads * d, 24, generator=g)
    k = torch.randn(groups * d, 24, generator=g)
    v = torch.randn(groups * d, 24, generator=g)
    dims = {"num_heads": heads, "num_query_groups": groups, "head_dim": d}
    fused = _megatron_fused_by_hand(q, k, v, heads, groups, d)
    assert torch.equal(C.fuse_qkv(q, k, v, **dims), fused)
    for got, want in zip(C.unfuse_qkv(fused, **dims), (q, k, v), strict=True):
        assert torch.equal(got, want)
    sliced = C.contiguous_split_qkv(fused, **dims)
    assert [t.shape for t in sliced] == [q.shape, k.shape, v.shape]  # the shapes fit: nothing complains
    assert not torch.equal(sliced[0], q)  # but the heads are scrambled
    assert not torch.equal(sliced[1], k)
    assert "per-query-group" in C.diagnose_fused_qkv(fused, q, k, v, **dims)
    assert "contiguously" in C.diagnose_fused_qkv(torch.cat([q, k, v]), q, k, v, **dims)
    assert "no layout" in C.diagnose_fused_qkv(torch.randn(fused.shape, generator=g), q, k, v, **dims)
    assert "equal the reference" in C.diagnose_split_qkv((q, k, v), (q, k, v), **dims)
    assert "contiguous" in C.diagnose_split_qkv((q, k, v), sliced, **dims)
    assert "differ" in C.diagnose_split_qkv((q, k, v), (q + 1, k, v), **dims)


def test_one_query_group_hides_the_slicing_bug():
    """With a single KV head (Gemma 3 1B) the two layouts coincide: only models with several
    query groups (Llama 3, Gemma 2 2B) expose a contiguous slice."""
    import torch

    q, k, v = torch.randn(4 * 8, 16), torch.randn(8, 16), torch.randn(8, 16)
    dims = {"num_heads": 4, "num_query_groups": 1, "head_dim": 8}
    fused = C.fuse_qkv(q, k, v, **dims)
    for a, b in zip(C.contiguous_split_qkv(fused, **dims), C.unfuse_qkv(fused, **dims), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="multiple"):
        C.fuse_qkv(q, k, v, num_heads=4, num_query_groups=3, head_dim=8)


# ============================================================================ verify, HF candidates
def test_verify_passes_for_the_same_weights(hf_models, tmp_path):
    res = C.verify_export(hf_models["ref"], hf_models["copy"], results_json=tmp_path / "v.json")
    assert res["passed"] and res["max_abs_diff"] == 0.0 and res["argmax_agreement"] == 1.0
    assert res["candidate_kind"] == "hf" and res["check"] == "export" and res["batch"] == [2, 32]
    assert read_json(tmp_path / "v.json")["passed"] is True


def test_verify_fails_when_weights_were_not_loaded(hf_models, tmp_path):
    """Guard (a): a randomly re-initialised model of the same architecture (what the published
    run trained: its loader never loaded the pretrained weights) fails the check."""
    with pytest.raises(C.VerificationError, match=r"max abs diff .*argmax agreement") as err:
        C.verify(
            hf_models["ref"],
            hf_models["reinit"],
            tolerance=C.DEFAULT_IMPORT_TOLERANCE,
            results_json=tmp_path / "v.json",
        )
    assert "no QKV re-slicing" in str(err.value)
    res = read_json(tmp_path / "v.json")  # the results are kept for the failure too
    assert res["passed"] is False and res["max_abs_diff"] > 10 * C.DEFAULT_IMPORT_TOLERANCE


def test_verify_names_a_contiguous_qkv_slice(hf_models, tmp_path):
    """Guard (b): an export that sliced the fused QKV weight contiguously fails, and the
    diagnosis says so (via the unfuse helpers)."""
    with pytest.raises(C.VerificationError, match="contiguous"):
        C.verify_export(hf_models["ref"], hf_models["sliced"], results_json=tmp_path / "v.json")
    assert "Megatron's QKV layout" in read_json(tmp_path / "v.json")["diagnosis"]


def test_verify_default_results_path_and_cli(hf_models, tmp_path, capsys):
    cand = tmp_path / "cand"
    shutil.copytree(hf_models["copy"], cand)
    assert C.main(["verify", "--hf", str(hf_models["ref"]), "--candidate", str(cand)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and out["tolerance"] == C.DEFAULT_EXPORT_TOLERANCE
    assert (tmp_path / "cand.verify.json").is_file()
    bad = tmp_path / "bad"
    shutil.copytree(hf_models["reinit"], bad)
    assert (
        C.main(["verify", "--hf", str(hf_models["ref"]), "--candidate", str(bad), "--tolerance", "0.5"]) == 1
    )
    err = capsys.readouterr().err
    assert "FAILED" in err and "max abs diff" in err and "argmax agreement" in err


def test_verify_rejects_what_is_no_checkpoint(hf_models, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither"):
        C.verify(hf_models["ref"], tmp_path / "empty", tolerance=1e-3)
    with pytest.raises(FileNotFoundError, match="not an HF checkpoint"):
        C.verify(tmp_path / "empty", hf_models["ref"], tolerance=1e-3)
    with pytest.raises(FileNotFoundError):
        C.verify_import(hf_models["ref"], hf_models["copy"])
    with pytest.raises(FileNotFoundError):
        C.verify_export(hf_models["ref"], tmp_path / "empty")


# ============================================================================ Megatron-side bookkeeping
def _fake_megatron(root: Path, iters=(0,), tracker=True) -> Path:
    for it in iters:
        (root / f"iter_{it:07d}").mkdir(parents=True)
    if tracker:
        (root / M.TRACKER_FILE).write_text(str(max(iters)))
    return root


def test_resolve_iter_dir(tmp_path):
    ck = _fake_megatron(tmp_path / "a", iters=(50, 100))
    assert C.resolve_iter_dir(ck).name == "iter_0000100"
    assert C.resolve_iter_dir(ck / "iter_0000050").name == "iter_0000050"
    (ck / M.TRACKER_FILE).write_text("50")
    assert C.resolve_iter_dir(ck).name == "iter_0000050"
    no_tracker = _fake_megatron(tmp_path / "b", iters=(7, 3), tracker=False)
    assert C.resolve_iter_dir(no_tracker).name == "iter_0000007"
    (ck / M.TRACKER_FILE).write_text("70")
    with pytest.raises(FileNotFoundError, match="iter_0000070"):
        C.resolve_iter_dir(ck)
    (tmp_path / "c").mkdir()
    with pytest.raises(FileNotFoundError, match="not a Megatron checkpoint"):
        C.resolve_iter_dir(tmp_path / "c")


def test_weight_manifest_check(hf_models, tmp_path):
    from safetensors.torch import load_file, save_file

    assert C.weight_manifest_check(hf_models["ref"], hf_models["copy"])["ok"]
    cand = tmp_path / "cand"
    shutil.copytree(hf_models["ref"], cand)
    tensors = load_file(cand / "model.safetensors")
    dropped = "model.layers.1.mlp.down_proj.weight"
    tensors.pop(dropped)
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()  # tied: ignored
    tensors["model.norm.weight"] = tensors["model.norm.weight"][:-1].clone()
    tensors["extra.weight"] = tensors["model.norm.weight"].clone()
    save_file(tensors, str(cand / "model.safetensors"), metadata={"format": "pt"})
    res = C.weight_manifest_check(hf_models["ref"], cand)
    assert not res["ok"]  # missing and reshaped tensors are fatal, an extra one is only reported
    assert res["missing"] == [dropped] and res["extra"] == ["extra.weight"]
    assert res["shape_mismatch"] == ["model.norm.weight"]


def test_export_stages_tokenizer_files_and_reads_the_run(tmp_path, hf_models):
    base = hf_models["ref"]  # no tokenizer files
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        C._staged_base(base, None, tmp_path / "stage")
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    (tok / "tokenizer_config.json").write_text("{}")
    staged = C._staged_base(base, tok, tmp_path / "stage")
    assert sorted(p.name for p in staged.iterdir()) == sorted(
        [p.name for p in base.iterdir()] + ["tokenizer.json", "tokenizer_config.json"]
    )
    assert C._staged_base(staged, None, tmp_path / "unused") == staged
    # an iteration inside a run dir: the run's identities go into the export's meta
    run = tmp_path / "run"
    it = M.megatron_iter_dir(run, 100)
    it.mkdir(parents=True)
    (run / "train_config.json").write_text(
        json.dumps(
            {
                "config": {"global_batch_size": 16, "seq_length": 64},
                "model": {"path": "base", "config_sha256": "x"},
                "tokenizer": {"family": "llama"},
                "shard_prefixes": ["a", "b"],
            }
        )
    )
    (run / "metrics.jsonl").write_text('{"step": 100, "loss": 3.5}\n{"step": 100, "val_loss": 3.9}\ncut')
    rec = C._run_record(it)
    assert rec["step"] == 100 and rec["tokens_seen"] == 100 * 16 * 64 and rec["loss"] == 3.5
    assert rec["shard_prefixes"] == ["a", "b"] and rec["base_model"] == "base"
    assert C._run_record(tmp_path / "imp" / "iter_0000000") == {"step": 0}


@pytest.mark.parametrize(
    ("missing", "present", "name"),
    [
        ("transformer_engine", (), "transformer-engine"),
        ("megatron.bridge", ("transformer_engine",), "megatron-bridge"),
    ],
)
def test_megatron_functions_name_the_missing_package(
    monkeypatch, tmp_path, hf_models, missing, present, name
):
    for mod in present:
        monkeypatch.setitem(sys.modules, mod, types.ModuleType(mod))
    monkeypatch.setitem(sys.modules, missing, None)
    ck = _fake_megatron(tmp_path / "ck")
    with pytest.raises(M.MissingEngineError, match=name):
        C.import_checkpoint(hf_models["ref"], tmp_path / "out")
    with pytest.raises(M.MissingEngineError, match=name):
        C.export_checkpoint(ck, hf_models["ref"], tmp_path / "hf")
    with pytest.raises(M.MissingEngineError, match=name):
        C.verify_import(hf_models["ref"], ck)
    assert not (tmp_path / "out").exists() and not (tmp_path / "hf").exists()


def test_cli_help():
    out = subprocess.run(
        [sys.executable, "-m", "filmorph.train.megatron.convert", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for word in ("import", "verify", "export", "argmax agreement", "tolerance"):
        assert word in out
    for cmd, flags in (
        ("import", ("--hf", "--out", "--tensor-parallel")),
        ("verify", ("--candidate", "--tolerance", "--min-argmax-agreement", "--dtype")),
        ("export", ("--megatron", "--hf-base", "--out", "--tokenizer-dir")),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "filmorph.train.megatron.convert", cmd, "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert all(f in out for f in flags), (cmd, out)


# ============================================================================ document masking
DOC_LENGTHS = (40, 30, 20)


def test_packed_documents_layout():
    import torch

    tokens, positions, spans = C.packed_documents(1000, 7, DOC_LENGTHS, seed=3)
    total = sum(DOC_LENGTHS)
    assert tokens.shape == positions.shape == (1, total)
    assert tokens.dtype == positions.dtype == torch.long
    assert spans == [(0, 40), (40, 70), (70, 90)]
    ends = 0
    for (s, e), n in zip(spans, DOC_LENGTHS, strict=True):  # contiguous, in order, cover 0..T
        assert s == ends and e - s == n
        ends = e
        doc = tokens[0, s:e]
        assert int(doc[-1]) == 7 and int((doc == 7).sum()) == 1  # one EOD, the last id
        assert int(doc.min()) >= 0 and int(doc.max()) < 1000
        assert torch.equal(positions[0, s:e], torch.arange(n))  # positions restart per document
    assert ends == total
    assert int((tokens == 7).sum()) == len(DOC_LENGTHS)
    # the ids really are spread over the vocabulary (not constant), around the EOD id too
    assert len(set(tokens[0].tolist())) > 50 and int(tokens.max()) > 7


def test_packed_documents_seeded_and_eod_at_the_vocab_edges():
    import torch

    a = C.packed_documents(1000, 7, DOC_LENGTHS, seed=3)
    b = C.packed_documents(1000, 7, DOC_LENGTHS, seed=3)
    c = C.packed_documents(1000, 7, DOC_LENGTHS, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
    assert not torch.equal(a[0], c[0])
    assert torch.equal(a[1], c[1]) and a[2] == c[2]  # the layout does not depend on the seed
    for eod in (0, 999):
        tokens, _, spans = C.packed_documents(1000, eod, DOC_LENGTHS)
        assert int(tokens.min()) >= 0 and int(tokens.max()) <= 999
        assert int((tokens == eod).sum()) == len(spans)
        assert all(int(tokens[0, e - 1]) == eod for _, e in spans)
    # the smallest vocabulary: the two non-EOD ids and the EOD
    tokens, _, _ = C.packed_documents(3, 1, (50, 50))
    assert set(tokens[0].tolist()) == {0, 1, 2} and int((tokens == 1).sum()) == 2
    assert C.packed_documents(1000, 2)[0].shape == (1, sum(C.DEFAULT_DOC_LENGTHS))


@pytest.mark.parametrize(
    ("vocab", "eod", "lengths"),
    [
        (1000, 7, (40,)),  # one document: nothing to keep apart
        (1000, 7, ()),
        (1000, 7, (40, 1)),  # a document of one token
        (1000, 7, (0, 40)),
        (1000, 1000, (40, 30)),  # EOD outside the vocabulary
        (1000, -1, (40, 30)),
        (2, 0, (40, 30)),  # no ids besides the EOD
    ],
)
def test_packed_documents_rejects(vocab, eod, lengths):
    with pytest.raises(ValueError):
        C.packed_documents(vocab, eod, lengths)


@pytest.mark.parametrize("lengths", [(2, 2), (5, 3, 8), (40, 30, 20), C.DEFAULT_DOC_LENGTHS])
def test_block_causal_mask_is_megatron_cores_mask(lengths):
    """The mask of the "mask" mode is exactly what megatron-core's dataset builds with
    reset_attention_mask (and the positions what it builds with reset_position_ids)."""
    import torch

    pytest.importorskip("megatron.core")
    from megatron.core.datasets.gpt_dataset import _get_ltor_masks_and_position_ids

    eod = 2
    tokens, positions, spans = C.packed_documents(1000, eod, lengths, seed=1)
    t = tokens.shape[1]
    mask = C.block_causal_mask(spans, t)
    assert mask.shape == (1, 1, t, t) and mask.dtype == torch.bool
    core_mask, _, core_pos = _get_ltor_masks_and_position_ids(tokens[0], eod, True, True, True, True)
    assert core_mask.shape == (1, t, t)
    assert torch.equal(core_mask, mask[0])
    assert torch.equal(core_pos, positions[0])
    # and it is not merely causal: a later document may not see an earlier one
    (s0, _), (s1, _) = spans[0], spans[1]
    assert bool(mask[0, 0, s1, s0]) and not bool(mask[0, 0, s1, s1])
    causal = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    assert not torch.equal(mask[0, 0], causal)


def test_block_causal_mask_by_hand_and_rejects_gaps():
    import torch

    got = C.block_causal_mask([(0, 2), (2, 3)], 3)[0, 0]
    want = torch.tensor([[False, True, True], [False, False, True], [True, True, False]])
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="do not cover"):
        C.block_causal_mask([(0, 2), (3, 5)], 5)  # a gap
    with pytest.raises(ValueError, match="do not cover"):
        C.block_causal_mask([(0, 2), (2, 4)], 5)  # short of T


@pytest.fixture(scope="module")
def doc_mask_logits():
    """``(separate, packed, leaky, spans)`` logits ``[T, V]`` of a tiny Llama: each document
    alone; the packed row with reset position ids and no mask (transformers then keeps the
    documents apart); the packed row with an all-ones mask (plain causal: documents leak)."""
    import torch

    model = _tiny_llama(0, vocab_size=1000)
    tokens, positions, spans = C.packed_documents(1000, 2, DOC_LENGTHS, seed=0)
    with torch.no_grad():
        sep = torch.cat([model(input_ids=tokens[:, s:e], use_cache=False).logits[0] for s, e in spans])
        packed = model(input_ids=tokens, position_ids=positions, use_cache=False).logits[0]
        leaky = model(
            input_ids=tokens,
            position_ids=positions,
            attention_mask=torch.ones_like(tokens),
            use_cache=False,
        ).logits[0]
    return sep, packed, leaky, spans


def test_judge_document_masking_passes_real_document_masking(doc_mask_logits):
    sep, packed, leaky, spans = doc_mask_logits
    first = slice(*spans[0])
    # the fixture is what it claims: the first document is identical either way, later ones leak
    assert (leaky[first] - sep[first]).abs().max() < 1e-4
    assert (leaky[spans[1][0] :] - sep[spans[1][0] :]).abs().mean() > 1e-3
    res = C.judge_document_masking(sep, packed, leaky, spans, grad_rel_diff=0.01)
    assert res["passed"] is True and res["reason"] is None
    assert res["positions"] == sum(DOC_LENGTHS)
    assert res["packed_mean_abs_diff"] < 1e-4 < res["unmasked_mean_abs_diff"]
    assert res["argmax_agreement"] == 1.0 and res["grad_rel_diff"] == 0.01
    assert res["leak_ratio"] == C.DEFAULT_DOC_MASK_LEAK_RATIO
    assert res["grad_tolerance"] == C.DEFAULT_DOC_MASK_GRAD_TOLERANCE
    json.dumps(res)  # written as the results JSON
    # no gradient measured: judged on the logits alone
    assert C.judge_document_masking(sep, packed, leaky, spans, grad_rel_diff=None)["passed"]


def test_judge_document_masking_catches_leaks_and_useless_controls(doc_mask_logits):
    import torch

    sep, packed, leaky, spans = doc_mask_logits
    leak = C.judge_document_masking(sep, leaky, leaky, spans, grad_rel_diff=0.01)
    assert leak["passed"] is False and "documents see each other" in leak["reason"]
    # a control that did not leak proves nothing, even though packed == separate
    blind = C.judge_document_masking(sep, packed, sep, spans, grad_rel_diff=0.01)
    assert blind["passed"] is False and "proves nothing" in blind["reason"]
    assert blind["unmasked_mean_abs_diff"] == 0.0
    # gradients: too different, or not measured properly
    for bad in (0.5, float("nan"), float("inf")):
        res = C.judge_document_masking(sep, packed, leaky, spans, grad_rel_diff=bad)
        assert res["passed"] is False and "gradient relative difference" in res["reason"]
    assert C.judge_document_masking(sep, packed, leaky, spans, grad_rel_diff=0.5, grad_tolerance=1.0)[
        "passed"
    ]
    nan = packed.clone()
    nan[50, 3] = float("nan")
    res = C.judge_document_masking(sep, nan, leaky, spans, grad_rel_diff=0.01)
    assert res["passed"] is False and "non-finite" in res["reason"]
    assert res["packed_mean_abs_diff"] == float("inf")
    inf = leaky.clone()
    inf[0, 0] = float("inf")
    assert "non-finite" in C.judge_document_masking(sep, packed, inf, spans, grad_rel_diff=0.01)["reason"]
    # argmax disagreement alone fails, even with small logit differences
    flipped = packed.clone()
    top = sep.argmax(-1)
    other = (top + 1) % sep.shape[1]
    rows = torch.arange(sep.shape[0])
    flipped[rows, other] = sep[rows, top] + 1e-4
    res = C.judge_document_masking(sep, flipped, leaky * 100, spans, grad_rel_diff=0.01)
    assert res["passed"] is False and "argmax agreement" in res["reason"]
    assert "documents see each other" not in res["reason"]


def test_verify_document_masking_checks_dirs_then_needs_a_gpu(tmp_path):
    import torch

    hf = tmp_path / "hf"
    _tiny_llama(0, vocab_size=1000).save_pretrained(hf)
    ck = _fake_megatron(tmp_path / "ck")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not an HF checkpoint"):
        C.verify_document_masking(tmp_path / "empty", ck)
    with pytest.raises(FileNotFoundError, match="not a Megatron checkpoint"):
        C.verify_document_masking(hf, tmp_path / "empty")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the check would run")
    with pytest.raises(RuntimeError, match="needs a GPU"):
        C.verify_document_masking(hf, ck, results_json=tmp_path / "r.json")
    with pytest.raises(RuntimeError, match="needs a GPU"):
        C.verify_document_masking(hf, ck, mode="mask", lengths=DOC_LENGTHS)
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "ck.docmask.json").exists()


def test_cli_verify_doc_mask_help():
    out = subprocess.run(
        [sys.executable, "-m", "filmorph.train.megatron.convert", "verify-doc-mask", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--hf", "--candidate", "--mode", "--lengths", "--eod-id", "--leak-ratio", "--results"):
        assert flag in out, (flag, out)
    assert "thd" in out and "mask" in out
    top = subprocess.run(
        [sys.executable, "-m", "filmorph.train.megatron.convert", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "verify-doc-mask" in top


def test_cli_verify_doc_mask_parses():
    args = C._parser().parse_args(
        ["verify-doc-mask", "--hf", "h", "--candidate", "c", "--mode", "mask", "--lengths", "5", "6"]
    )
    assert (args.command, args.mode, args.lengths, args.eod_id) == ("verify-doc-mask", "mask", [5, 6], None)
    default = C._parser().parse_args(["verify-doc-mask", "--hf", "h", "--candidate", "c"])
    assert default.mode is None and default.lengths == list(C.DEFAULT_DOC_LENGTHS)
    assert default.leak_ratio == C.DEFAULT_DOC_MASK_LEAK_RATIO
    assert default.grad_tolerance == C.DEFAULT_DOC_MASK_GRAD_TOLERANCE
    none = C._parser().parse_args(["verify-doc-mask", "--hf", "h", "--candidate", "c", "--mode", "none"])
    assert none.mode == "none"
    with pytest.raises(SystemExit):
        C._parser().parse_args(["verify-doc-mask", "--hf", "h", "--candidate", "c", "--mode", "none2"])


def test_verify_document_masking_mode_none_records_a_skip_without_a_gpu(tmp_path, capsys):
    """A run without document masking has nothing to check: ``--mode none`` writes a record
    saying so (no GPU, no model loaded), after the same directory checks."""
    hf = tmp_path / "hf"
    _tiny_llama(0, vocab_size=1000).save_pretrained(hf)
    ck = _fake_megatron(tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match="not a Megatron checkpoint"):
        C.verify_document_masking(hf, tmp_path / "nothing", mode="none")
    res = C.verify_document_masking(hf, ck, mode="none", results_json=tmp_path / "r.json")
    assert res["mode"] == "none" and res["passed"] is None and "reset_attention_mask" in res["skipped"]
    assert read_json(tmp_path / "r.json") == res
    # the CLI: exit 0, the record as one JSON line, at the default results path
    assert C.main(["verify-doc-mask", "--hf", str(hf), "--candidate", str(ck), "--mode", "none"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "none" and out["passed"] is None and out["candidate"] == str(ck)
    assert read_json(tmp_path / "ck.docmask.json")["skipped"] == res["skipped"]


def test_judge_document_masking_needs_a_later_document():
    import torch

    sep = torch.randn(10, 7)
    with pytest.raises(ValueError, match=">= 2 documents"):
        C.judge_document_masking(sep, sep + 5, sep + 5, [(0, 10)], grad_rel_diff=None)
