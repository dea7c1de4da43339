"""filmorph.paths: the evaluation path <-> labels mapping and the report's path patterns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from filmorph import paths as P

REPO = Path(__file__).resolve().parents[1]


def test_eval_path_and_labels_round_trip():
    labels = P.eval_labels("gemma", "patok_morph", "step_0000100", "pacute_affixation_mcq")
    assert P.eval_path(labels) == "results/eval/gemma/patok_morph/step_0000100/pacute_affixation_mcq.json"
    assert P.eval_path(labels, "jsonl").endswith("pacute_affixation_mcq.jsonl")
    for ext in ("json", "jsonl"):
        assert P.labels_of_eval_path("/run/" + P.eval_path(labels, ext)) == labels
    assert P.eval_wildcards(labels) == {"model": "gemma", "arm": "patok_morph", "ckpt": "step_0000100",
                                        "bench": "pacute_affixation_mcq"}  # fmt: skip


@pytest.mark.parametrize("bad", ["results/eval/a/b/c.json", "results/eval/a/b/c/d.tsv", "x/a/b/c/d.json"])
def test_a_path_that_is_no_evaluation_is_refused(bad):
    with pytest.raises(ValueError, match="not a results/eval"):
        P.labels_of_eval_path(bad)


def test_labels_must_be_complete_and_single_components():
    with pytest.raises(ValueError, match="lack checkpoint, benchmark"):
        P.eval_path({"model": "m", "arm": "a"})
    with pytest.raises(ValueError, match="holds '/'"):
        P.eval_labels("m", "a/b", "base", "x")
    with pytest.raises(ValueError, match="extension"):
        P.eval_path(P.eval_labels("m", "a", "base", "x"), "tsv")


def test_lm_eval_file_names_parse_as_lm_eval_parses_them():
    """lm-eval finds ``/results_`` and ``/samples_`` files, takes the task between the first and
    the last ``_`` of a samples name and the stamp after the last ``_``."""
    files = P.lm_eval_files("gemma", "base", "base", ["pacute_mcq", "cute_spell_gen"])
    assert files[0] == "results/lm_eval/gemma/base/base/results_filmorph.json"
    for f, task in zip(files[1:], ["pacute_mcq", "cute_spell_gen"], strict=True):
        name = Path(f).name
        assert "/samples_" in f and name.endswith(".jsonl")
        assert name[name.find("_") + 1 : name.rfind("_")] == task
        assert name[name.rfind("_") + 1 :].replace(".jsonl", "") == P.LM_EVAL_STAMP
    assert P.lm_eval_files("m", "a", "base", []) == []


def test_rules_spell_the_report_and_eval_paths_only_through_paths():
    """rules/report.smk and rules/common.smk take the eval, tables, plots and models patterns
    from filmorph.paths instead of spelling them."""
    for rule in ("report.smk", "common.smk"):
        text = (REPO / "rules" / rule).read_text()
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        spelled = re.findall(r"[\"'](?:results/(?:eval|tables|plots|lm_eval)|resources/models)/", code)
        assert not spelled, (rule, spelled)


def test_no_rule_spells_a_resources_or_results_pattern():
    """Every resources/ and results/ pattern of the workflow is a filmorph.paths constant: no
    string literal in Snakefile or rules/*.smk starts with resources/ or results/ (comments and
    logs/, benchmarks/ paths are not patterns of outputs)."""
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        spelled = re.findall(r"[\"'](?:resources|results)/[^\"']*", code)
        assert not spelled, (path.name, spelled)


def test_training_patterns_name_the_files_evaluation_and_export_read():
    """The training rules' names ({family}) of a checkpoint are the evaluation's ({model})."""
    ckpt = P.CPT_HF_CHECKPOINT.format(family="gemma", arm="patok", ckpt=P.step_name(150))
    assert ckpt == P.HF_CHECKPOINT.format(model="gemma", arm="patok", ckpt="step_0000150")
    it = P.CPT_MEGATRON_ITER.format(family="gemma", arm="patok", iter=P.step_digits(150))
    assert it.endswith("/megatron/" + P.iter_name(150))
    assert P.TRAIN_SUMMARY.format(family="g", arm="a") == "results/checkpoints/g/a/train_summary.json"
    with pytest.raises(ValueError):
        P.step_digits(10_000_000)
    assert P.SHARD_FILE.format(family="g", arm="a", chunk="chunk_0001", ext="idx") == P.SHARD_IDX.format(
        family="g", arm="a", chunk="chunk_0001"
    )
