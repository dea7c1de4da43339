"""Lexical data the generators draw from, loaded once per process.

- **Filipino vocabulary**: words of wordfreq's ``fil`` list that are also in tglstemmer's Tagalog word
  list, made of the letters a-z, accepted by :func:`filmorph.syllabify.is_valid_filipino_word`, and
  not more frequent in English than in Filipino (drops loans such as *post*, *team*). Ordered by
  wordfreq frequency (most frequent first).
- **Roots**: vocabulary words of 3-8 native letters (the abakada: a b d e g h i k l m n o p r s t u w y)
  with 2-3 syllables that do not themselves parse as affix + vocabulary word (so *kumain*, *kainan*,
  *tahanan* are not roots). Used with the rules of :mod:`filmorph.benchmarks.morph`.
- **English words**: the first 1000 alphabetic 3-10 letter words of wordfreq's ``en`` top list.
- **Sentences** of the packaged embedded corpus and the packaged semantic groups
  (``data/semantic_groups.tsv``).

Sampling is frequency-weighted and without replacement: a pool ordered by frequency gets the weight
``0.75 / (rank + 1) + 0.25 / N`` per entry (the published generators' ``freq_weight`` of 0.75) and is
drawn by Efraimidis-Spirakis keys from one seeded stream, so a larger draw extends a smaller one.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TypeVar

from ..phonology import VOWELS
from ..syllabify import count_syllables, is_valid_filipino_word

T = TypeVar("T")

FREQ_WEIGHT = 0.75
NATIVE_LETTERS = frozenset("abdeghiklmnoprstuwy")
_ALPHA = re.compile(r"[a-z]+")
#: Function words that are never roots: pronouns, demonstratives, question words, particles,
#: conjunctions, prepositions, markers, modals and time adverbs.
STOP_WORDS = frozenset(
    """
    ako ikaw ka siya kami tayo kayo sila ko mo niya namin natin ninyo nila akin iyo kanya kaniya amin
    atin inyo kanila ito iyan iyon yan yun nito niyan niyon dito diyan doon rito riyan roon ganito
    ganyan ganoon ganun ano sino saan kailan bakit paano gaano ilan alin kanino nasaan nasa hindi
    huwag mayroon meron may oo opo rin din na pa lang lamang naman nga kasi yata pala sana daw raw ba
    po ho man muna tuloy kaya pero ngunit subalit at o kung kapag pag kahit dahil upang para sapagkat
    kundi habang hanggang bago saka tsaka tungkol ayon laban sa ng ang mga si ni kay sina nina kina
    parang baka siguro talaga dapat kailangan maaari puwede pwede lahat bawat ilang ibang walang
    kanyang taong naging maging nang noon ngayon kanina mamaya kahapon agad lalo higit halos masyado
    medyo basta pati tapos sabay yung mas pinaka
    """.split()
)
_ROOT_PREFIXES = (
    "mag nag pag ma na pa ka maka naka i ipa ipag magpa nagpa pagka paki maki naki makipag nakipag "
    "taga pinaka napaka mang nang pang man nan pan mam nam pam ika um in"
).split()


def zipf(freq: float) -> float:
    """wordfreq's Zipf scale (log10 of frequency per billion words), 0 for unseen words."""
    return math.log10(freq * 1e9) if freq > 0 else 0.0


@cache
def fil_freq() -> dict[str, float]:
    """wordfreq's Filipino frequencies (word -> frequency)."""
    from wordfreq import get_frequency_dict

    return get_frequency_dict("fil")


@cache
def en_freq() -> dict[str, float]:
    """wordfreq's English frequencies."""
    from wordfreq import get_frequency_dict

    return get_frequency_dict("en")


@cache
def tgl_words() -> frozenset[str]:
    """tglstemmer's Tagalog word list (read directly; importing tglstemmer would load nltk)."""
    path = files("tglstemmer").joinpath("resources/tgl_wordlist.txt")
    with path.open(encoding="utf-8") as fh:
        return frozenset(w.strip().lower() for w in fh if w.strip())


def fil_zipf(word: str) -> float:
    return zipf(fil_freq().get(word, 0.0))


def en_zipf(word: str) -> float:
    return zipf(en_freq().get(word, 0.0))


def attestation(form: str) -> float:
    """How well a derived ``form`` is attested in use: its Zipf frequency in wordfreq ``fil``
    (for a hyphenated form, that of the form without hyphens, as wordfreq splits at hyphens, and
    the hyphenated spelling must be in tglstemmer's list); 0 when wordfreq does not know it or
    when it is at least as frequent in English (*imaging* is not i- + *maging*)."""
    joined = form.replace("-", "")
    z = fil_zipf(joined)
    if z <= 0 or ("-" in form and form not in tgl_words()) or en_zipf(joined) > z - 0.5:
        return 0.0
    return z


@cache
def vocabulary() -> tuple[str, ...]:
    """The Filipino vocabulary (see the module docstring), most frequent first."""
    fil, en, tgl = fil_freq(), en_freq(), tgl_words()
    out = []
    for w, f in fil.items():
        if w not in tgl or not _ALPHA.fullmatch(w) or not 2 <= len(w) <= 14:
            continue
        if not is_valid_filipino_word(w) or zipf(en.get(w, 0.0)) > zipf(f) - 0.5:
            continue
        out.append((-f, w))
    out.sort()
    return tuple(w for _, w in out)


@cache
def vocabulary_set() -> frozenset[str]:
    return frozenset(vocabulary())


def _decomposes(word: str, known: frozenset[str]) -> bool:
    """Whether ``word`` parses as a common affix + a known word of >= 2 syllables."""

    def ok(rest: str) -> bool:
        return len(rest) >= 3 and rest in known and count_syllables(rest) >= 2

    for p in _ROOT_PREFIXES:
        if word.startswith(p) and ok(word[len(p) :]):
            return True
    if len(word) > 4 and word[1:3] in ("um", "in") and ok(word[0] + word[3:]):
        return True
    for s in ("han", "hin", "an", "in"):
        if word.endswith(s):
            stem = word[: -len(s)]
            if ok(stem) or ok(_lower_last_u(stem)):
                return True
            if len(stem) >= 3 and stem[-1] not in VOWELS:  # syncope: bigay+an -> bigyan, gawa+in -> gawin
                if any(ok(stem + v) or ok(stem[:-1] + v + stem[-1]) for v in "aiou"):
                    return True
    if len(word) > 4 and word[:2] == word[2:4] and ok(word[2:]):
        return True
    return False


def _lower_last_u(stem: str) -> str:
    i = stem.rfind("u")
    return stem[:i] + "o" + stem[i + 1 :] if i >= 0 else stem


_AFFIX_STRINGS = frozenset(
    "paka pala taga mala kapag maka naka pagka paki maki naki napa mapa ipa ipag pina pinag".split()
)


@cache
def roots() -> tuple[str, ...]:
    """Filipino roots (see the module docstring), most frequent first."""
    known = vocabulary_set()
    out = []
    for w in vocabulary():
        if not 3 <= len(w) <= 8 or not set(w) <= NATIVE_LETTERS or w in STOP_WORDS:
            continue
        if w in _AFFIX_STRINGS or (w.endswith("ng") and (w[:-2] in known or w[:-1] in known)):
            continue  # an affix, or a word + linker (taong, kanyang)
        if not 2 <= count_syllables(w) <= 3 or _decomposes(w, known):
            continue
        out.append(w)
    return tuple(out)


@cache
def english_words() -> tuple[str, ...]:
    """The first 1000 alphabetic ASCII 3-10 letter words of wordfreq's English top list."""
    from wordfreq import top_n_list

    out = [w for w in top_n_list("en", 5000) if w.isascii() and w.isalpha() and 3 <= len(w) <= 10]
    return tuple(out[:1000])


def fil_sources(word: str) -> list[str]:
    """Source ids of a vocabulary word."""
    return [f"tglstemmer:{word}", f"wordfreq:fil:{word}"]


def data_path(name: str) -> Path:
    return Path(str(files("filmorph").joinpath(f"data/{name}")))


@dataclass(frozen=True)
class Sentence:
    """A clean sentence of the embedded corpus: 4-12 space-separated words, no punctuation inside,
    the final period dropped."""

    id: str
    text: str

    @property
    def words(self) -> list[str]:
        return self.text.split(" ")


_SENT_WORD = re.compile(r"[A-Za-zñÑ]+(?:-[A-Za-zñÑ]+)*")


@cache
def sentences() -> tuple[Sentence, ...]:
    """Clean sentences of ``data/embedded_corpus.jsonl`` (ids ``embedded_corpus:<doc>:<sentence>``,
    0-based), in corpus order, without repeats."""
    out, seen = [], set()
    with data_path("embedded_corpus.jsonl").open(encoding="utf-8") as fh:
        for doc, line in enumerate(fh):
            text = json.loads(line)["text"]
            for k, sent in enumerate(re.split(r"(?<=[.!?])\s+", text.strip())):
                if not sent.endswith(".") or sent.endswith(".."):
                    continue
                words = sent[:-1].split()
                if not 4 <= len(words) <= 12 or not all(_SENT_WORD.fullmatch(w) for w in words):
                    continue
                body = " ".join(words)
                if body not in seen:
                    seen.add(body)
                    out.append(Sentence(f"embedded_corpus:{doc}:{k}", body))
    return tuple(out)


@dataclass(frozen=True)
class SemanticWord:
    word: str
    group: str
    domain: str
    gloss: str


@cache
def semantic_groups() -> tuple[SemanticWord, ...]:
    """Rows of ``data/semantic_groups.tsv`` (word, group, domain, gloss), in file order."""
    path = data_path("semantic_groups.tsv")
    out, seen = [], set()
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        for lineno, row in enumerate(reader, start=2):
            word = (row.get("word") or "").strip()
            group = (row.get("group") or "").strip()
            domain = (row.get("domain") or "").strip()
            if not word or not group or not domain or word in seen or not is_valid_filipino_word(word):
                raise ValueError(f"{path}:{lineno}: bad semantic group row {row!r}")
            seen.add(word)
            out.append(SemanticWord(word, group, domain, (row.get("gloss") or "").strip()))
    return tuple(out)


def weighted_order(pool: Sequence[T], rng: random.Random) -> list[T]:
    """``pool`` (most frequent first) in a frequency-weighted random order, without replacement:
    entry ``r`` has weight ``0.75 / (r + 1) + 0.25 / N``; its key ``log(u) / weight`` (u uniform in
    (0, 1]) is drawn in pool order, and entries are returned by decreasing key."""
    n = len(pool)
    keys = [math.log(1.0 - rng.random()) / (FREQ_WEIGHT / (r + 1) + (1 - FREQ_WEIGHT) / n) for r in range(n)]
    order = sorted(range(n), key=lambda r: (-keys[r], r))
    return [pool[r] for r in order]
