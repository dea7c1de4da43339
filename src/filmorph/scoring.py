"""How a generated answer is read and compared with the gold answer, per benchmark.

An item's ``meta.scoring`` names its profile (set by :mod:`filmorph.benchmarks.convert` for the
published files; the generated benchmarks carry none and use ``filmorph``). Every model's output
goes through the same two steps:

1. **Extraction** (the answer out of the generated text, already cut at the item's stop string):

   - ``answer_prefix`` (PACUTE, hierarchical, stress, LangGame, addition, ``filmorph``): the
     stripped text, without a leading ``Answer:`` (any case) if the model wrote one;
   - ``cute`` (CUTE): CUTE's own rule. The text after the last ``Answer:`` in the generated text
     (if any); if the prompt ends with CUTE's cue ``Answer: "``, the output already stands inside
     the quotes; a quoted answer is the text up to the closing ``"`` (the whole rest if it is
     never closed). Then stripped.

2. **Normalization** before ``exact_match``: Unicode NFC, whitespace runs collapsed to one space
   and surrounding whitespace stripped, always. Case is folded only where case is not the point:

   ================  ===============================================================
   profile           case folded
   ================  ===============================================================
   ``pacute``        every task except ``uppercasing`` and ``lowercasing``
   ``hierarchical``  all tasks
   ``stress``        all tasks (the accents are kept: they are the point)
   ``cute``          CUTE's word tasks only (``contains_word``, ``ins_word``,
                     ``del_word``, ``sub_word``, ``swap_word``), as CUTE compares
   ``langgame``      all tasks
   ``addition``      all tasks (digits)
   ``filmorph``      :func:`filmorph.evaluate.normalize_answer`: casefold, whitespace,
                     trailing periods (the generated benchmarks, unchanged)
   ================  ===============================================================

Metrics of a GEN record: ``exact_match`` (normalized extraction == normalized gold; the
record's ``correct``), ``exact_match_strict`` (extraction == stripped gold, nothing folded),
``edit_sim`` (of the normalized strings), and the study's two lenient metrics on the raw
generated text: ``contains_match`` (the gold, stripped and lower-cased, occurs in the stripped,
lower-cased output) and ``prefix_match`` (the output starts with it). The study generated 50
tokens without stop strings; here the output ends at the item's stop string, so these two can
only be lower than the study's on the same output.

MCQ items are scored in :mod:`filmorph.evaluate` (``acc``: summed log-probability of the option
text after the prompt, options not shown: the protocol whose accuracy the study reported, with
its ties counted as correct there and as wrong here; ``acc_norm`` per byte). PACUTE's lettered
variant (choices listed in the prompt, the letters A-D scored) is a conversion option
(``mcq_style: lettered``) whose items go through the same MCQ scorer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GEN_FIELDS",
    "PROFILES",
    "Profile",
    "extract",
    "gen_summary",
    "levenshtein",
    "normalize",
    "profile_of",
    "score_gen",
]

_LEADING_ANSWER = re.compile(r"\s*answer\s*:", re.IGNORECASE)
_CUTE_CUE = 'Answer: "'
_CUTE_CASE_INSENSITIVE = frozenset({"contains_word", "ins_word", "del_word", "sub_word", "swap_word"})


@dataclass(frozen=True)
class Profile:
    """A benchmark's scoring: the extraction rule and whether a task's answers are case-folded."""

    name: str
    extraction: str  # "answer_prefix" | "cute"
    casefold: Callable[[str], bool]


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("pacute", "answer_prefix", lambda task: task not in ("uppercasing", "lowercasing")),
        Profile("hierarchical", "answer_prefix", lambda task: True),
        Profile("stress", "answer_prefix", lambda task: True),
        Profile("cute", "cute", lambda task: task.removesuffix("_rand") in _CUTE_CASE_INSENSITIVE),
        Profile("langgame", "answer_prefix", lambda task: True),
        Profile("addition", "answer_prefix", lambda task: True),
        Profile("filmorph", "answer_prefix", lambda task: True),
    )
}
# the fields :func:`score_gen` adds beyond those every record has
GEN_FIELDS = ("contains_match", "prefix_match", "extracted", "scoring")


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of code points) between a and b."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def profile_of(item: Any) -> Profile:
    """The profile named by ``item.meta['scoring']`` (``filmorph`` when absent); ValueError for
    an unknown name."""
    name = (item.meta or {}).get("scoring") or "filmorph"
    if name not in PROFILES:
        raise ValueError(f"item {item.id!r}: unknown scoring profile {name!r}; known: {', '.join(PROFILES)}")
    return PROFILES[name]


def _unquote(s: str) -> str:
    """The text inside a leading double quote, up to the closing one (or the end)."""
    s = s.lstrip()
    if s.startswith('"'):
        s = s[1:]
        end = s.find('"')
        return s if end < 0 else s[:end]
    return s


def extract(profile: Profile, prompt: str, generated: str) -> str:
    """The answer in ``generated`` under ``profile``'s extraction rule (see the module docstring)."""
    if profile.extraction == "cute":
        at = generated.rfind("Answer:")
        if at >= 0:
            return _unquote(generated[at + len("Answer:") :]).strip()
        if prompt.rstrip(" ").endswith(_CUTE_CUE):
            return _unquote('"' + generated).strip()
        return _unquote(generated).strip()
    m = _LEADING_ANSWER.match(generated)
    return (generated[m.end() :] if m else generated).strip()


def normalize(text: str, casefold: bool) -> str:
    """NFC, whitespace runs collapsed, stripped; case folded when ``casefold``."""
    s = unicodedata.normalize("NFC", text)
    if casefold:
        s = unicodedata.normalize("NFC", s.casefold())
    return " ".join(s.split())


def score_gen(item: Any, generated: str) -> dict[str, Any]:
    """The GEN metrics of one item's generated text (cut at its stop string): ``pred`` (the
    extracted answer), ``extracted``, ``exact_match``, ``exact_match_strict``, ``edit_sim``,
    ``contains_match``, ``prefix_match``, ``correct`` (= exact_match), ``scoring`` (profile)."""
    from filmorph.evaluate import edit_similarity, normalize_answer

    prof = profile_of(item)
    pred = extract(prof, item.prompt, generated)
    if prof.name == "filmorph":
        pred_n, gold_n = normalize_answer(pred), normalize_answer(item.answer)
    else:
        fold = prof.casefold(item.task)
        pred_n, gold_n = normalize(pred, fold), normalize(item.answer, fold)
    em = pred_n == gold_n
    raw, gold_l = generated.strip().lower(), item.answer.strip().lower()
    return {
        "pred": pred,
        "extracted": pred,
        "exact_match": em,
        "exact_match_strict": pred == item.answer.strip(),
        "edit_sim": edit_similarity(pred_n, gold_n),
        "contains_match": gold_l in raw,
        "prefix_match": raw.startswith(gold_l),
        "correct": em,
        "scoring": prof.name,
    }


def gen_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means of the study's lenient GEN metrics over the GEN ``records`` that carry them
    (empty when none does, e.g. records written before they existed)."""
    scored = [r for r in records if r.get("contains_match") is not None]
    if not scored:
        return {}
    return {
        "contains_match": sum(bool(r["contains_match"]) for r in scored) / len(scored),
        "prefix_match": sum(bool(r["prefix_match"]) for r in scored) / len(scored),
    }
