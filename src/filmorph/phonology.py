"""Filipino vowel letters, written once for the arms, the syllabifier, the tokenization summary
and the benchmark generators."""

from __future__ import annotations

__all__ = ["ACCENTED_VOWELS", "VOWELS", "VOWEL_LETTERS"]

#: The five vowel letters, lower case.
VOWELS: frozenset[str] = frozenset("aeiou")
#: The vowels with the diacritics Filipino writes (acute, grave, circumflex), lower case.
ACCENTED_VOWELS = "áàâéèêíìîóòôúùû"
#: Lower-case vowel letters, bare or accented.
VOWEL_LETTERS: frozenset[str] = VOWELS | frozenset(ACCENTED_VOWELS)
