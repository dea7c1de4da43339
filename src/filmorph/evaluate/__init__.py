"""Benchmark scoring: a causal LM answers the items of benchmark files (:mod:`filmorph.items`).

    python -m filmorph.evaluate --model DIR_OR_HUB_ID \
        --benchmark A.jsonl --scores A.json --predictions A.jsonl \
        [--benchmark B.jsonl --scores B.json --predictions B.jsonl ...] \
        [--label family=gemma ...] [--benchmark-label benchmark] \
        [--batch-size auto] [--max-new-tokens 32] [--dtype auto] [--device auto] [--max-items N]

The model is loaded once; the Nth ``--benchmark`` writes the Nth ``--scores`` and
``--predictions``, each file's outputs atomically as soon as it is scored (a run that stops
part-way leaves the files before complete and the rest unwritten; a rerun scores every file
again). Every benchmark file is read before the model loads: a missing file or a bad line fails
the run at once, naming ``file:line``.

**MCQ** items follow lm-evaluation-harness's log-likelihood convention.  Context = ``prompt``,
continuation = ``delimiter + option``; whitespace at the end of the context moves to the
continuation; the context and context + continuation are each encoded the way the tokenizer
does by default (Gemma adds ``<bos>``, SmolLM2 adds nothing); the continuation tokens are the
tail of the whole encoding after as many tokens as the context encoding has.  An option's score
is the summed log-probability of its continuation tokens.  Metrics:

* ``acc``: the option with the highest summed log-probability is the gold one;
* ``acc_norm``: the same after dividing each score by the continuation's length in UTF-8
  **bytes** (``delimiter + option``).  This is lm-eval's ``acc_bytes`` for choices that carry
  their delimiter; lm-eval's own ``acc_norm`` divides by the option's length in characters.

Ties go to the lowest option index, never to the gold option (the published scorer counted
every tie as correct), and are counted (``tie`` / ``tie_norm`` per item, ``ties`` per table).

**GEN** items: greedy decoding after ``prompt`` (no delimiter), batched with left padding, until
``max_new_tokens``, an end-of-sequence token or one of the item's ``stop`` strings; the decoded
new tokens are cut at the first stop string after their leading whitespace (a newline before
the answer does not end it).  The answer is extracted and compared per benchmark as
:mod:`filmorph.scoring` writes down (``exact_match``, ``exact_match_strict``, ``edit_sim``, the
study's ``contains_match`` and ``prefix_match``); the generated benchmarks compare
:func:`normalize_answer` of prediction and answer (NFC, casefold, whitespace collapsed, trailing
periods and surrounding whitespace stripped).

Requests are sorted by length and batched; padding is on the left with explicit position ids,
so scores do not depend on the batch size beyond float rounding, and predictions come back in
item order.  The batch size counts sequences (an MCQ item with four options is four sequences).
An MCQ context is run once and its options are scored on copies of its KV cache (the same
log-probs as whole sequences up to float rounding; 2.5x faster on CPU, 1.4x on an H100 for the
generated benchmarks); a model that returns no cache gets whole sequences.

Checked against lm-evaluation-harness 0.4.13 (``HFLM``, the task :func:`export_lm_eval_task`
writes): on 200 generated MCQ items with SmolLM2-135M every item's ``acc`` and ``acc_norm``
(= lm-eval ``acc_bytes``) agreed, option log-probs within 2.1e-4, in 39 s against 113 s.
"""

from filmorph.evaluate.batching import CPU_BATCH_SIZE, CUDA_START_BATCH_SIZE, run_batched
from filmorph.evaluate.cli import main
from filmorph.evaluate.files import (
    VERSIONED_PACKAGES,
    BenchmarkFileError,
    EvalFile,
    evaluate_file,
    evaluate_files,
    export_lm_eval_task,
    read_benchmarks,
    resolve_device,
    resolve_dtype,
    summary_line,
)
from filmorph.evaluate.generate import truncate_at_stop
from filmorph.evaluate.metrics import (
    ACC_NORM_DEFINITION,
    edit_similarity,
    levenshtein,
    normalize_answer,
    summarize,
)
from filmorph.evaluate.scorer import score

__all__ = [
    "ACC_NORM_DEFINITION",
    "CPU_BATCH_SIZE",
    "CUDA_START_BATCH_SIZE",
    "VERSIONED_PACKAGES",
    "BenchmarkFileError",
    "EvalFile",
    "edit_similarity",
    "evaluate_file",
    "evaluate_files",
    "export_lm_eval_task",
    "levenshtein",
    "main",
    "normalize_answer",
    "read_benchmarks",
    "resolve_device",
    "resolve_dtype",
    "run_batched",
    "score",
    "summarize",
    "summary_line",
    "truncate_at_stop",
]
