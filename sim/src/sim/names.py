"""Pronounceable synthetic names from a seeded syllable generator.

Names are built from consonant-vowel(-coda) syllables so they read like words
without being real artists or songs. Everything is vectorised over numpy index
arrays: a million titles cost a couple of seconds, not minutes.
"""

from __future__ import annotations

import numpy as np

_ONSETS = [
    "b", "br", "c", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "kr", "l", "m",
    "n", "p", "pr", "r", "s", "sh", "st", "t", "tr", "v", "w", "z", "th", "ch", "",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y", "ae", "ia"]
_CODAS = ["", "", "", "n", "r", "l", "s", "th", "x", "m", "nd", "rk"]


def _syllable_table() -> np.ndarray:
    """All onset+vowel+coda combinations (about 4,300 distinct syllables)."""
    out = sorted({o + v + c for o in _ONSETS for v in _VOWELS for c in _CODAS})
    return np.array(out, dtype=object)


_SYLLABLES = _syllable_table()
# Open syllables (no coda) read better inside words; codas close a word.
_OPEN = np.array([s for s in _SYLLABLES if s[-1] in "aeiouy"], dtype=object)


def words(rng: np.random.Generator, n: int, min_syl: int = 2, max_syl: int = 3) -> np.ndarray:
    """n pronounceable capitalised pseudo-words of min_syl..max_syl syllables."""
    if n <= 0:
        return np.array([], dtype=object)
    n_syl = rng.integers(min_syl, max_syl + 1, size=n)
    out = np.full(n, "", dtype=object)
    for j in range(max_syl):
        last = n_syl == j + 1
        inner = n_syl > j + 1
        live = last | inner
        pick_open = _OPEN[rng.integers(0, len(_OPEN), size=n)]
        pick_any = _SYLLABLES[rng.integers(0, len(_SYLLABLES), size=n)]
        out[inner] = out[inner] + pick_open[inner]
        out[last] = out[last] + pick_any[last]
        if not live.any():
            break
    return np.array([w.capitalize() for w in out], dtype=object)


def person_names(rng: np.random.Generator, n: int) -> np.ndarray:
    """n artist names: 'First Last' or a one-word stage name (1 in 6)."""
    first = words(rng, n, 2, 2)
    last = words(rng, n, 2, 3)
    solo = rng.random(n) < 1 / 6
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = first[i] if solo[i] else f"{first[i]} {last[i]}"
    return out


_TITLE_VOCAB = 6000


def titles(rng: np.random.Generator, n: int) -> np.ndarray:
    """n song titles of 1-3 pseudo-words from a shared vocabulary.

    A shared vocabulary makes titles feel like a language (words recur) while
    6,000^2 two-word combinations keep them mostly unique.
    """
    vocab = words(rng, _TITLE_VOCAB, 1, 3)
    vocab_low = np.array([w.lower() for w in vocab], dtype=object)
    n_words = rng.choice(np.array([1, 2, 3]), size=n, p=[0.25, 0.5, 0.25])
    idx = rng.integers(0, _TITLE_VOCAB, size=(n, 3))
    w0 = vocab[idx[:, 0]]
    w1 = vocab_low[idx[:, 1]]
    w2 = vocab_low[idx[:, 2]]
    out = np.empty(n, dtype=object)
    for i in range(n):
        k = n_words[i]
        if k == 1:
            out[i] = w0[i]
        elif k == 2:
            out[i] = f"{w0[i]} {w1[i]}"
        else:
            out[i] = f"{w0[i]} {w1[i]} {w2[i]}"
    return out
