"""Orthographic syllabification of Filipino (Tagalog) words.

Used by the benchmark generators (syllable counting, splitting/extraction, reduplication, stress).
Pure Python; results are memoised per ``(word, ng_digraph)``.

Rules (after the *pagpapantig* section of KWF's *Ortograpiyang Pambansa* and the standard grammars;
stated here in our own words)
-----------------------------------------------------------------------------------------------
1. **Vowels and consonants.** The vowels are ``a e i o u`` in either case, also when they carry a
   diacritic (``á à â é è ê í ì î ó ò ô ú ù û``; more generally any character whose canonical
   decomposition is one of the five vowels plus combining marks). Every other character is a
   consonant, *including* ``y`` and ``w`` (``baboy`` -> ba-boy, ``araw`` -> a-raw), ``ñ``, and
   anything that is not a letter at all (an apostrophe in ``ako'y``, a digit): the function is total
   on strings, it never raises on odd input. A combining mark (decomposed input) belongs to the
   character before it.
2. **One vowel, one syllable.** Each vowel letter is the nucleus of its own syllable. The glottal
   stop is not written, so adjacent vowels always fall in different syllables (``maaga`` ->
   ma-a-ga, ``paaralan`` -> pa-a-ra-lan, ``buo`` -> bu-o, ``kaibigan`` -> ka-i-bi-gan). There are
   no written diphthongs: ``aw``/``ay``/``iw``/``oy``/``uy`` are vowel + consonant. Hence the number of
   syllables of a word part equals its number of vowel letters.
3. **``ng`` is one consonant.** The digraph ``ng`` (any case) is a single consonant (the letter
   *enye-ji* of the alphabet): ``ngayon`` -> nga-yon, ``sanga`` -> sa-nga, ``tingnan`` -> ting-nan,
   ``pinggan`` -> ping-gan. Every ``n`` immediately followed by ``g`` is read this way, scanning left
   to right; an ``n``+``g`` sequence across a morpheme boundary (e.g. ``pan+galing``, written
   without a hyphen) is out of scope and is still read as the digraph. ``ng_digraph=False`` turns
   this off (``n`` and ``g`` are then two consonants; see below).
4. **Consonants at the edges** of a word part belong to the nearest syllable: all consonants
   before the first vowel form its onset (``trabaho`` -> tra-ba-ho, ``mga`` -> mga), all consonants
   after the last vowel form the coda of the last syllable (``dyip``).
5. **Between two vowels**, with ``k`` consonants in between:

   - ``k = 0``: split between the vowels (rule 2).
   - ``k = 1``: the consonant starts the next syllable (``ba-ta``, ``sa-nga``).
   - ``k = 2``: split between them (``sun-dan``, ``ak-lat``, ``it-log``), *even when the pair could
     begin a word* (``sob-re``, ``kap-re``, ``kut-sa-ra``), as the orthography prescribes.
   - ``k >= 3``: the last consonant starts the next syllable (``eks-per-to``, ``trans-por-tas-yon``)
     unless the last two form an onset cluster of :data:`ONSET_CLUSTERS`; then both start it
     (``eks-tra``, ``sen-tro``, ``a-sam-ble-ya``, ``es-kwe-la``, ``plan-tsa``, ``ins-tru-men-to``).

   :data:`ONSET_CLUSTERS` is: obstruent + liquid (``bl br cl cr dr fl fr gl gr kl kr pl pr tr``,
   Spanish/English loans); ``ts`` (the native spelling of /tʃ/: ``tsinelas``, ``plantsa``);
   obstruent + ``w`` (``bw dw gw kw pw sw tw``: ``kwento``, ``sweldo``, ``lenggwahe``) and
   obstruent + ``y`` (``by dy gy ky py sy ty``: ``dyip``, ``kompyuter``, ``konsyerto``), the glide
   clusters that result from spelling ``kuwento``/``diyaryo`` as ``kwento``/``dyaryo``.
   ``s`` + stop (``sp st sk``) is deliberately *not* a cluster: Filipino resolves it with a vowel
   (``eskwela``, ``estudyante``), so ``eksperto`` is eks-per-to, not ek-sper-to.
6. **Hyphens** (``mag-aral``, ``araw-araw``, ``pag-ibig``) are boundaries: the word is split on
   ``-``, each non-empty part is syllabified on its own, and the syllables of the parts are
   concatenated; the hyphen itself appears in no syllable (``mag-aral`` -> mag, a, ral). Empty
   parts (a leading, trailing or doubled hyphen, as in word-list entries like ``ika-``) contribute
   nothing. So for every string ``w``: ``"".join(syllabify(w)) == w.replace("-", "")``; syllables
   are substrings of the input, in order, with the input's case.
7. **Vowel-less parts** (``ng``, a lone consonant, a number) are returned whole as one syllable.
   The plural marker ``mga`` (read *manga*) does have a vowel and is written as one syllable:
   ``["mga"]`` (rule 4: ``mg`` is its onset).

The ``ng_digraph`` flag
-----------------------
With ``ng_digraph=False`` the letters ``n`` and ``g`` are separate consonants. The syllable
*count* never changes (it is the number of vowel letters, rule 2), but the *split* can::

    syllabify("sanga")                     -> ["sa", "nga"]     (1 consonant between the vowels)
    syllabify("sanga", ng_digraph=False)   -> ["san", "ga"]     (2 consonants: split)
    syllabify("Inglatera")                 -> ["Ing", "la", "te", "ra"]
    syllabify("Inglatera", ng_digraph=False) -> ["In", "gla", "te", "ra"]   ("gl" is a cluster)
    syllabify("ngayon") == syllabify("ngayon", ng_digraph=False) == ["nga", "yon"]
    count_syllables("sanga") == count_syllables("sanga", ng_digraph=False) == 2

Aspect reduplication
--------------------
:func:`reduplicate_first_syllable` copies the first consonant and the first vowel of the root
(``kain`` -> kakain, ``sulat`` -> susulat, ``hintay`` -> hihintay: only CV, never the coda), just the
vowel for vowel-initial roots (``alis`` -> aalis), and for a cluster onset only its first consonant
(``trabaho`` -> tatrabaho, ``prito`` -> piprito). ``ng`` counts as one consonant (``ngiti`` ->
ngingiti). Two refinements follow usage: a ``ts`` onset is one sound and is copied whole
(``tsismis`` -> tsitsismis), and in a consonant + glide onset the glide's vowel is copied
(``kwento`` -> kukwento, as from *kuwento*; ``sweldo`` -> susweldo; ``dyaryo`` -> didyaryo).
"""

from __future__ import annotations

import string
import unicodedata
from functools import cache, lru_cache

from filmorph.phonology import ACCENTED_VOWELS, VOWELS

__all__ = [
    "ONSET_CLUSTERS",
    "VALID_LETTERS",
    "count_syllables",
    "first_syllable",
    "is_valid_filipino_word",
    "is_vowel",
    "last_syllable",
    "reduplicate_first_syllable",
    "syllabify",
]

_VOWEL_BASES = VOWELS | {v.upper() for v in VOWELS}

#: Two-consonant sequences that may begin a syllable inside a word (rule 5, ``k >= 3``). Lower case;
#: the check ignores case and diacritics.
ONSET_CLUSTERS: frozenset[str] = frozenset(
    # obstruent + liquid (loans)
    ["bl", "br", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "kl", "kr", "pl", "pr", "tr"]
    # the /tʃ/ digraph
    + ["ts"]
    # obstruent + glide (kwento < kuwento, dyaryo < diyaryo)
    + ["bw", "dw", "gw", "kw", "pw", "sw", "tw"]
    + ["by", "dy", "gy", "ky", "py", "sy", "ty"]
)

#: The characters :func:`is_valid_filipino_word` accepts (besides internal hyphens): the 26 Latin
#: letters, ``ñ``, and the accented vowels, in both cases.
VALID_LETTERS: frozenset[str] = frozenset(
    string.ascii_letters + "ñÑ" + ACCENTED_VOWELS + ACCENTED_VOWELS.upper()
)


@cache
def is_vowel(ch: str) -> bool:
    """Whether the single character ``ch`` is a vowel letter: a, e, i, o, u in either case, bare or
    with diacritics (anything whose NFD form is one of them followed by combining marks)."""
    if ch in _VOWEL_BASES:
        return True
    if ch.isascii() or len(ch) != 1:
        return False
    d = unicodedata.normalize("NFD", ch)
    return len(d) > 1 and d[0] in _VOWEL_BASES and all(unicodedata.combining(c) for c in d[1:])


@cache
def _combining(ch: str) -> bool:
    return not ch.isascii() and unicodedata.combining(ch) != 0


def _units(part: str, ng_digraph: bool) -> tuple[list[int], list[bool]]:
    """Segment ``part`` into letter units: (start offsets, is-vowel flags). A unit is one character
    plus any combining marks after it, or the digraph ``ng`` when ``ng_digraph``."""
    starts: list[int] = []
    vowel: list[bool] = []
    i, n = 0, len(part)
    while i < n:
        ch = part[i]
        if starts and _combining(ch):
            i += 1
            continue
        starts.append(i)
        if ng_digraph and (ch == "n" or ch == "N") and i + 1 < n and part[i + 1] in "gG":
            vowel.append(False)
            i += 2
        else:
            vowel.append(is_vowel(ch))
            i += 1
    return starts, vowel


def _base(text: str) -> str:
    """Lower-cased ``text`` without combining marks (for cluster look-ups)."""
    if text.isascii():
        return text.lower()
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)).lower()


def _syllabify_part(part: str, ng_digraph: bool) -> tuple[str, ...]:
    starts, vowel = _units(part, ng_digraph)
    vidx = [k for k, v in enumerate(vowel) if v]
    if len(vidx) <= 1:
        return (part,)
    ends = starts[1:] + [len(part)]
    cuts = [0]
    for a, b in zip(vidx, vidx[1:], strict=False):
        k = b - a - 1  # consonant units between the two vowels
        if k == 0:
            cut = b
        elif k == 1:
            cut = a + 1
        elif k >= 3 and (
            _base(part[starts[b - 2] : ends[b - 2]]) + _base(part[starts[b - 1] : ends[b - 1]])
            in ONSET_CLUSTERS
        ):
            cut = b - 2
        else:
            cut = b - 1
        cuts.append(starts[cut])
    cuts.append(len(part))
    return tuple(part[x:y] for x, y in zip(cuts, cuts[1:], strict=False))


@lru_cache(maxsize=1 << 18)
def _syllabify(word: str, ng_digraph: bool) -> tuple[str, ...]:
    if "-" not in word:
        return _syllabify_part(word, ng_digraph) if word else ()
    out: tuple[str, ...] = ()
    for part in word.split("-"):
        if part:
            out += _syllabify_part(part, ng_digraph)
    return out


def syllabify(word: str, ng_digraph: bool = True) -> list[str]:
    """The orthographic syllables of ``word``, in order (see the module docstring for the rules).

    Syllables are substrings of ``word`` with its case, and ``"".join(syllabify(w)) ==
    w.replace("-", "")``: hyphens separate parts that are syllabified independently and are dropped.
    A part with no vowel is one syllable (``"ng"`` -> ``["ng"]``); ``""`` gives ``[]``.
    ``ng_digraph=False`` treats ``n`` and ``g`` as two consonants (``"sanga"`` -> ``["san", "ga"]``
    instead of ``["sa", "nga"]``). Never raises for a ``str``; returns a fresh list."""
    if not isinstance(word, str):
        raise TypeError(f"syllabify expects a str, got {type(word).__name__}")
    return list(_syllabify(word, bool(ng_digraph)))


def count_syllables(word: str, ng_digraph: bool = True) -> int:
    """Number of syllables of ``word``: its number of vowel letters, plus one for each hyphen-separated
    part that has none (``"ng"`` -> 1, ``"mga"`` -> 1, ``"araw-araw"`` -> 4, ``""`` -> 0).

    ``ng_digraph`` is accepted for symmetry with :func:`syllabify`; the count does not depend on it
    (only the split does), which is exactly what an "ng-aware counting" item checks: reading ``ng``
    as ``n`` + ``g`` must not add a syllable."""
    if not isinstance(word, str):
        raise TypeError(f"count_syllables expects a str, got {type(word).__name__}")
    return len(_syllabify(word, bool(ng_digraph)))


def first_syllable(word: str, ng_digraph: bool = True) -> str:
    """The first syllable of ``word`` (``"ngayon"`` -> ``"nga"``); ValueError if it has none."""
    syl = syllabify(word, ng_digraph)
    if not syl:
        raise ValueError(f"{word!r} has no syllables")
    return syl[0]


def last_syllable(word: str, ng_digraph: bool = True) -> str:
    """The last syllable of ``word`` (``"araw-araw"`` -> ``"raw"``); ValueError if it has none."""
    syl = syllabify(word, ng_digraph)
    if not syl:
        raise ValueError(f"{word!r} has no syllables")
    return syl[-1]


def reduplicate_first_syllable(root: str) -> str:
    """The root with its first syllable's CV (or V) copied in front, as in the contemplated and
    progressive aspects: ``kain`` -> ``kakain``, ``sulat`` -> ``susulat``, ``alis`` -> ``aalis``,
    ``trabaho`` -> ``tatrabaho`` (cluster onset: first consonant only), ``ngiti`` -> ``ngingiti``,
    ``tsismis`` -> ``tsitsismis`` (``ts`` is one sound), ``kwento`` -> ``kukwento`` (consonant + glide
    onset: the glide's vowel, u for w and i for y, is copied).

    The copy is made from the root's first hyphen-separated part; letters are copied verbatim
    (diacritics included). Case: an all-caps root gives an all-caps copy, a capitalised root gives
    ``Kakain``-style title case. ValueError if the root is empty, starts with a hyphen, or its first
    part has no vowel."""
    if not isinstance(root, str):
        raise TypeError(f"reduplicate_first_syllable expects a str, got {type(root).__name__}")
    part = root.split("-", 1)[0]
    if not part:
        raise ValueError(f"cannot reduplicate {root!r}: empty first part")
    starts, vowel = _units(part, True)
    if True not in vowel:
        raise ValueError(f"cannot reduplicate {root!r}: no vowel")
    v = vowel.index(True)
    ends = starts[1:] + [len(part)]
    nucleus = part[starts[v] : ends[v]]
    if v == 0:
        copy = nucleus
    else:
        first = part[starts[0] : ends[0]]
        if v == 2:
            second = part[starts[1] : ends[1]]
            pair = _base(first) + _base(second)
            if pair == "ts":
                first = part[starts[0] : ends[1]]
            elif pair in ONSET_CLUSTERS and pair[1] in "wy":
                glide_vowel = "u" if pair[1] == "w" else "i"
                nucleus = glide_vowel.upper() if second.isupper() else glide_vowel
        copy = first + nucleus
    if part[0].isupper() and not part.isupper():
        return copy[:1].upper() + copy[1:].lower() + root[:1].lower() + root[1:]
    return copy + root


def is_valid_filipino_word(word: str) -> bool:
    """Whether ``word`` is made only of letters of :data:`VALID_LETTERS` (Latin letters, ``ñ``, the
    accented vowels ``á à â é è ê í ì î ó ò ô ú ù û``, either case; decomposed accents are accepted
    via NFC) and hyphens strictly inside it, never doubled: ``"mag-aral"`` yes; ``"ika-"``,
    ``"di--katulad"``, ``"ako'y"``, ``"tv5"``, ``""`` no."""
    if not isinstance(word, str) or not word:
        return False
    w = unicodedata.normalize("NFC", word)
    for part in w.split("-"):
        if not part or not all(ch in VALID_LETTERS for ch in part):
            return False
    return True
