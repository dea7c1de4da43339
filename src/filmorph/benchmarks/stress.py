"""PACUTE's stress and diacritic task families, from a stress-marked lexicon (config
``benchmarks.stress_lexicon``: UP Diksiyonaryong Filipino entries, one JSON object a line with
``word``, ``part_of_speech``, ``etymology``, ``word_sense``; the published PACUTE repository ships
them as ``output_folder/updf_<letter>.jsonl``).

How a headword is read (the marks of the UP Diksiyonaryo; the published PACUTE classifies by the
mark on the last syllable, and so does this module):

* the headword's marks are the acute (á), grave (à) and circumflex (â) on a vowel; its syllables
  are those of :func:`filmorph.syllabify.syllabify` (a mark does not change them);
* exactly one marked vowel is required for the stress tasks, and:

  - **mabilis**: an acute on the last syllable; the last syllable is stressed (``sukób``);
  - **malumi**: a grave on the last vowel; the penult is stressed and the word ends in a glottal
    stop (``batà``);
  - **maragsa**: a circumflex on the last vowel; the last syllable is stressed and the word ends in
    a glottal stop (``kabilâ``);
  - **malumay**: an acute on the penult, the last syllable unmarked; the penult is stressed
    (``úlag``, ``dalísay``);

  any other placement (an acute before the penult, a grave or circumflex not on the last syllable)
  has none of the four classes and the headword is left out of the stress tasks;
* a headword is used when its etymology is Filipino (``none``, or a tag ``Tag`` or ``ST``: the
  published filter), it is one lower-case word of the letters a-z (no ñ, hyphen, space or
  punctuation) and it has at least two syllables;
* **homographs**: the *readings* of a plain spelling are the distinct marked spellings of every
  one-word headword of the lexicon that has it (any etymology, case folded) and of every marked
  word written in the entries' definitions (``word_sense``: the dictionary spells ``íka`` and
  ``iká`` there, so ``ika`` is not asked although ``ikâ`` is its only headword). A task that shows the
  plain spelling (identification, classification, placement) uses only spellings with one
  reading, so no second reading can make a distractor right; the item carries its readings and
  ``python -m filmorph.benchmarks check`` verifies that.

Tasks (group / name; MCQ and GEN ask the same question):

* syllabification / ``stress_identify``: which syllable of the plain word is stressed, as an
  ordinal (MCQ options: the ordinal of every syllable, in order, as the study's stress set; a
  malumi word's stressed syllable is the penult, where the study's set names the marked last
  syllable);
* syllabification / ``stress_classify``: mabilis, malumi, maragsa or malumay (MCQ: the four);
  the pool interleaves the four classes, so all four are asked often (the lexicon's ratio is
  about 15 : 1 : 1.4 : 12);
* syllabification / ``stress_place``: the plain word written with its mark (distractors: the
  other markings of one vowel that are not a reading of the word);
* composition / ``diacritic_exactly``: which of four words has exactly N of a marked letter
  (the published subcategory; the others have another count of it);
* composition / ``diacritic_count``: how many marked letters a word has (published GEN
  ``diacritic``; one-mark and several-mark words interleaved);
* manipulation / ``diacritic_normalize``: the word without its marks (published
  ``diacritic_normalization``; ñ is a letter, not a mark, and such words are not used).
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from pathlib import Path
from typing import Any

from ..io import decode_utf8
from ..syllabify import syllabify
from . import lexicon
from .common import ANSWER, Question, Task, choose, listed_options, listing, near_numbers, ordinal, q

ACUTE, GRAVE, CIRCUMFLEX = "\u0301", "\u0300", "\u0302"
MARK_NAMES = {ACUTE: "acute", GRAVE: "grave", CIRCUMFLEX: "circumflex"}
CLASSES = ("mabilis", "malumi", "maragsa", "malumay")
VOWELS = "aeiou"
FILIPINO_TAGS = frozenset({"Tag", "ST"})
REQUIRED_KEYS = ("word", "part_of_speech", "etymology")
_WORD = re.compile(r"[a-z\u0300\u0301\u0302]+")
_TOKEN = re.compile(r"[^\W\d_]+")
NO_LEXICON = "no stress lexicon (config benchmarks.stress_lexicon is empty)"
TASK_NAMES = (
    "stress_identify",
    "stress_classify",
    "stress_place",
    "diacritic_exactly",
    "diacritic_count",
    "diacritic_normalize",
)


def mark(vowel: str, m: str) -> str:
    """``vowel`` with the combining mark ``m`` (NFC)."""
    return unicodedata.normalize("NFC", vowel + m)


def marks_of(word: str) -> list[tuple[int, str]]:
    """(character index, mark) of every acute/grave/circumflex of ``word`` (NFC indices)."""
    out = []
    for i, ch in enumerate(unicodedata.normalize("NFC", word)):
        d = unicodedata.normalize("NFD", ch)
        out += [(i, c) for c in d[1:] if c in MARK_NAMES]
    return out


def strip_marks(word: str) -> str:
    """``word`` without acute, grave and circumflex marks (other marks, as ñ's tilde, stay)."""
    d = unicodedata.normalize("NFD", word)
    return unicodedata.normalize("NFC", "".join(c for c in d if c not in MARK_NAMES))


def diacritic_count(word: str) -> int:
    """Number of letters of ``word`` carrying an acute, grave or circumflex."""
    return len({i for i, _ in marks_of(word)})


@dataclass(frozen=True)
class Analysis:
    """The stress of one marked headword (see the module docstring for the rules)."""

    word: str
    plain: str
    syllables: tuple[str, ...]
    marked_syllable: int
    mark: str
    stress_index: int
    stress_class: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "word": self.word,
            "plain": self.plain,
            "syllables": list(self.syllables),
            "marked_syllable": self.marked_syllable,
            "mark": MARK_NAMES[self.mark],
            "stress_index": self.stress_index,
            "stressed_syllable": self.syllables[self.stress_index],
            "class": self.stress_class,
        }


def analyse(word: str) -> Analysis | None:
    """The stress analysis of a marked word, or None when it has not exactly one mark, fewer than
    two syllables, or a mark placement none of the four classes has."""
    word = unicodedata.normalize("NFC", word)
    ms = marks_of(word)
    plain = strip_marks(word)
    syl = syllabify(word)
    if len(ms) != 1 or len(syl) < 2 or len(plain) != len(word) or "-" in word:
        return None
    pos, m = ms[0]
    ends, s = [], 0
    for x in syl:
        s += len(x)
        ends.append(s)
    k = next(j for j, e in enumerate(ends) if pos < e)
    n = len(syl)
    plain_syl = tuple(strip_marks(x) for x in syl)
    if k == n - 1:
        last = {ACUTE: ("mabilis", n - 1), GRAVE: ("malumi", n - 2), CIRCUMFLEX: ("maragsa", n - 1)}
        cls, stressed = last[m]
    elif k == n - 2 and m == ACUTE:
        cls, stressed = "malumay", n - 2
    else:
        return None
    return Analysis(word, plain, plain_syl, k, m, stressed, cls)


# --------------------------------------------------------------------------------------- the lexicon


@dataclass(frozen=True)
class Entry:
    """One usable headword: its marked spelling and where it comes from."""

    word: str
    file: str
    line: int
    part_of_speech: str
    etymology: str

    @property
    def plain(self) -> str:
        return strip_marks(self.word)

    def source(self) -> list[str]:
        return [f"stress_lexicon:{self.file}:{self.line}:{self.word}"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "word": self.word,
            "part_of_speech": self.part_of_speech,
            "etymology": self.etymology,
        }


@dataclass
class StressLexicon:
    """The headwords of the configured files: ``entries`` (Filipino, one lower-case word; first
    entry of each marked spelling, most frequent plain spelling first) and the ``readings`` of
    every plain spelling (all one-word headwords and the marked words of the definitions)."""

    entries: tuple[Entry, ...]
    readings: dict[str, tuple[str, ...]]
    files: list[dict[str, Any]] = field(default_factory=list)

    def unambiguous(self, e: Entry) -> bool:
        return self.readings.get(e.plain, ()) == (e.word,)

    @cached_property
    def stress_pool(self) -> tuple[tuple[Entry, Analysis], ...]:
        """(entry, analysis) of the entries with one of the four classes and one reading."""
        out = []
        for e in self.entries:
            a = analyse(e.word)
            if a is not None and self.unambiguous(e):
                out.append((e, a))
        return tuple(out)

    @cached_property
    def class_pool(self) -> tuple[tuple[Entry, Analysis], ...]:
        """The stress pool with the four classes interleaved (each class in pool order)."""
        by = {c: [x for x in self.stress_pool if x[1].stress_class == c] for c in CLASSES}
        out: list[tuple[Entry, Analysis]] = []
        for k in range(max(map(len, by.values()), default=0)):
            out += [by[c][k] for c in CLASSES if k < len(by[c])]
        return tuple(out)

    @cached_property
    def marked_pool(self) -> tuple[Entry, ...]:
        """Entries with at least one mark (any number), for the diacritic tasks."""
        return tuple(e for e in self.entries if marks_of(e.word))

    @cached_property
    def count_pool(self) -> tuple[Entry, ...]:
        """The marked pool with one-mark and several-mark words interleaved (most headwords have
        one mark: a plain frequency order would make nearly every answer 1)."""
        one = [e for e in self.marked_pool if diacritic_count(e.word) == 1]
        more = [e for e in self.marked_pool if diacritic_count(e.word) > 1]
        out: list[Entry] = []
        for k in range(max(len(one), len(more))):
            out += [x[k] for x in (one, more) if k < len(x)]
        return tuple(out)


def is_filipino(etymology: str) -> bool:
    """The published filter: etymology ``none`` or a tag ``Tag``/``ST`` among its tags."""
    tags = set(re.sub(r"[\[\]]", " ", etymology).split())
    return etymology.strip() == "none" or bool(tags & FILIPINO_TAGS)


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = decode_utf8(path.read_bytes(), path)
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not a JSON object: {e.msg}") from None
        if not isinstance(rec, dict) or any(not isinstance(rec.get(k), str) for k in REQUIRED_KEYS):
            raise ValueError(
                f"{path}:{i}: a stress lexicon entry needs the string fields {', '.join(REQUIRED_KEYS)}"
            )
        out.append((i, rec))
    return out


@cache
def load(paths: tuple[str, ...]) -> StressLexicon:
    """The stress lexicon of ``paths`` (UPDF JSONL files). ValueError naming ``file:line`` for a
    line that is not an entry; FileNotFoundError for a missing file."""
    from .sources import sha256_file

    readings: dict[str, set[str]] = {}
    entries: dict[str, Entry] = {}
    files = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"{p}: no such stress lexicon file (config benchmarks.stress_lexicon)")
        recs = _records(path)
        files.append({"file": path.name, "sha256": sha256_file(path), "entries": len(recs)})
        for i, rec in recs:
            for tok in _TOKEN.findall(unicodedata.normalize("NFC", str(rec.get("word_sense") or "")).lower()):
                if marks_of(tok):  # a marked word used in a definition is a reading too
                    readings.setdefault(strip_marks(tok), set()).add(tok)
            word = unicodedata.normalize("NFC", rec["word"].strip())
            if not word or len(word.split()) != 1:
                continue
            low = word.lower()
            readings.setdefault(strip_marks(low), set()).add(low)
            if word != low or not _WORD.fullmatch(unicodedata.normalize("NFD", word)):
                continue
            if not is_filipino(rec["etymology"]) or len(syllabify(word)) < 2:
                continue
            entries.setdefault(word, Entry(word, path.name, i, rec["part_of_speech"], rec["etymology"]))
    order = sorted(entries.values(), key=lambda e: (-lexicon.fil_zipf(e.plain), e.plain, e.word))
    return StressLexicon(tuple(order), {k: tuple(sorted(v)) for k, v in readings.items()}, files)


# ---------------------------------------------------------------------------------------- questions


def _meta(e: Entry, a: Analysis, lex: StressLexicon, **extra) -> dict[str, Any]:
    return {
        "word": a.plain,
        "stress": {**a.as_dict(), "entry": e.as_dict(), "readings": list(lex.readings.get(a.plain, ()))},
        **extra,
    }


def build_identify(lex: StressLexicon, cand: tuple[Entry, Analysis], rng: random.Random) -> Question | None:
    e, a = cand
    opts = [ordinal(i + 1) for i in range(len(a.syllables))]
    prompt = (
        f"Which syllable of {q(a.plain)} is stressed? Answer with its position counted from the "
        f"first syllable (1st, 2nd, ...).{ANSWER}"
    )
    return Question(
        prompt,
        opts[a.stress_index],
        options=opts,
        source=e.source(),
        meta=_meta(e, a, lex),
        words=(a.plain,),
    )


def build_classify(lex: StressLexicon, cand: tuple[Entry, Analysis], rng: random.Random) -> Question | None:
    e, a = cand
    others = [c for c in CLASSES if c != a.stress_class]
    rng.shuffle(others)
    prompt = f"Which stress class does {q(a.plain)} have: {', '.join(CLASSES[:-1])} or {CLASSES[-1]}?{ANSWER}"
    return Question(
        prompt,
        a.stress_class,
        options=listed_options(a.stress_class, others, rng),
        source=e.source(),
        meta=_meta(e, a, lex),
        words=(a.plain,),
    )


def markings(plain: str) -> list[str]:
    """Every spelling of ``plain`` with one mark: an acute on any vowel, a grave or circumflex on
    the last vowel (the placements the UP Diksiyonaryo uses)."""
    vowels = [i for i, ch in enumerate(plain) if ch in VOWELS]
    out = [plain[:i] + mark(plain[i], ACUTE) + plain[i + 1 :] for i in vowels]
    if vowels:
        i = vowels[-1]
        out += [plain[:i] + mark(plain[i], m) + plain[i + 1 :] for m in (GRAVE, CIRCUMFLEX)]
    return out


def build_place(lex: StressLexicon, cand: tuple[Entry, Analysis], rng: random.Random) -> Question | None:
    e, a = cand
    readings = set(lex.readings.get(a.plain, ()))
    wrong = [w for w in markings(a.plain) if w not in readings]
    # near misses first: the same vowel with another mark, then the neighbouring syllables' vowels
    pos = marks_of(a.word)[0][0]
    near = [w for w in wrong if marks_of(w)[0][0] == pos]
    near += [w for w in wrong if w not in near and abs(_syllable_of(w) - a.marked_syllable) == 1]
    d = choose(a.word, near, rng, wrong)
    prompt = (
        f"Write {q(a.plain)} with its stress mark as the UP Diksiyonaryong Filipino spells it "
        f"(á: stressed syllable, à: malumi, â: maragsa).{ANSWER}"
    )
    return d and Question(prompt, a.word, d, source=e.source(), meta=_meta(e, a, lex), words=(a.plain,))


def _syllable_of(word: str) -> int:
    pos = marks_of(word)[0][0]
    s = 0
    for k, x in enumerate(syllabify(word)):
        s += len(x)
        if pos < s:
            return k
    return -1


@cache
def marked_letters(word: str) -> tuple[str, ...]:
    """The marked letters of ``word`` (NFC characters), in order."""
    w = unicodedata.normalize("NFC", word)
    return tuple(w[i] for i in sorted({i for i, _ in marks_of(w)}))


@cache
def _marked_bases(word: str) -> frozenset[str]:
    return frozenset(strip_marks(ch) for ch in marked_letters(word))


def build_diacritic_exactly(lex: StressLexicon, e: Entry, rng: random.Random) -> Question | None:
    c = rng.choice(sorted(set(marked_letters(e.word))))
    n = e.word.count(c)
    base = strip_marks(c)
    pool = lex.marked_pool
    ok = [x for x in pool if x.word != e.word and x.word.count(c) != n]
    near = [x for x in ok if base in _marked_bases(x.word)]
    pick: list[Entry] = []
    for group, upto in ((near, 2), (ok, 3)):
        if not group:
            continue
        start = rng.randrange(len(group))
        for k in range(len(group)):
            if len(pick) >= upto:
                break
            x = group[(start + k * 7919) % len(group)]
            if x not in pick:
                pick.append(x)
    if len(pick) < 3:
        return None
    opts = listed_options(e.word, [x.word for x in pick], rng)
    head = f'Which of these Filipino words contains exactly {n} "{c}"s:'
    return Question(
        f"{head} {listing(opts)}?{ANSWER}",
        e.word,
        options=opts,
        source=sorted({s for x in (e, *pick) for s in x.source()}),
        meta={"word": e.word, "letter": c, "count": n, "candidates": opts, "entry": e.as_dict()},
        words=tuple(strip_marks(o) for o in opts),
        signature=f"{head}|{'|'.join(sorted(opts))}",
    )


def build_diacritic_count(lex: StressLexicon, e: Entry, rng: random.Random) -> Question | None:
    n = diacritic_count(e.word)
    d = near_numbers(n, rng, lo=0)
    prompt = f"How many letters of {q(e.word)} carry a diacritic (á, à, â)?{ANSWER}"
    return Question(
        prompt,
        str(n),
        d,
        source=e.source(),
        meta={"word": e.word, "count": n, "entry": e.as_dict()},
        words=(strip_marks(e.word),),
    )


def build_diacritic_normalize(lex: StressLexicon, e: Entry, rng: random.Random) -> Question | None:
    gold = strip_marks(e.word)
    ms = marks_of(e.word)
    i, m = ms[rng.randrange(len(ms))]
    swapped = e.word[:i] + mark(gold[i], rng.choice([x for x in MARK_NAMES if x != m])) + e.word[i + 1 :]
    free = [j for j, ch in enumerate(gold) if ch in VOWELS and j not in {p for p, _ in ms}]
    extra = None
    if free:
        j = rng.choice(free)
        extra = e.word[:j] + mark(gold[j], rng.choice(list(MARK_NAMES))) + e.word[j + 1 :]
    moved = [w for w in markings(gold) if w != e.word]
    partial_ = None
    if len(ms) > 1:
        k, mk = ms[0]
        partial_ = gold[:k] + mark(gold[k], mk) + gold[k + 1 :]
    d = choose(gold, [e.word, swapped, extra, partial_], rng, moved)
    prompt = f"Remove the diacritics (stress marks) from {q(e.word)}.{ANSWER}"
    return d and Question(
        prompt, gold, d, source=e.source(), meta={"word": e.word, "entry": e.as_dict()}, words=(gold,)
    )


# -------------------------------------------------------------------------------------------- tasks


def _key_pair(cand: tuple[Entry, Analysis]) -> str:
    return cand[0].word


def _key_entry(e: Entry) -> str:
    return e.word


def tasks(lex: StressLexicon) -> tuple[Task, ...]:
    """The six tasks over ``lex`` (in :data:`TASK_NAMES` order)."""

    def stress() -> tuple[tuple[Entry, Analysis], ...]:
        return lex.stress_pool

    def classes() -> tuple[tuple[Entry, Analysis], ...]:
        return lex.class_pool

    def marked() -> tuple[Entry, ...]:
        return lex.marked_pool

    def counted() -> tuple[Entry, ...]:
        return lex.count_pool

    syl, comp, man = "syllabification", "composition", "manipulation"
    return (
        Task("stress_identify", syl, stress, partial(build_identify, lex), key=_key_pair),
        Task("stress_classify", syl, classes, partial(build_classify, lex), key=_key_pair),
        Task("stress_place", syl, stress, partial(build_place, lex), key=_key_pair),
        Task("diacritic_exactly", comp, marked, partial(build_diacritic_exactly, lex), key=_key_entry),
        Task("diacritic_count", comp, counted, partial(build_diacritic_count, lex), key=_key_entry),
        Task("diacritic_normalize", man, marked, partial(build_diacritic_normalize, lex), key=_key_entry),
    )


@cache
def tasks_for(paths: tuple[str, ...]) -> tuple[Task, ...]:
    """The stress tasks of the lexicon files ``paths`` (none without files)."""
    return tasks(load(paths)) if paths else ()


def skipped(paths: Sequence[str]) -> dict[str, str]:
    """{task: why it is not generated}: every stress task without a lexicon, else none."""
    return {} if paths else dict.fromkeys(TASK_NAMES, NO_LEXICON)
