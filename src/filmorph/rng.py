"""Seed derivation: every random choice in the pipeline comes from (seed, purpose, document id).

A document's random stream depends only on the config seed, the purpose (the arm name,
"synth", ...) and the document's stable id, never on chunk count, worker count or the
order documents are processed in. That is what makes shards byte-identical across
re-chunking and parallelism.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, purpose: str, key: str) -> int:
    """A 128-bit integer seed that is a pure function of (seed, purpose, key)."""
    material = f"{int(seed)}\x1f{purpose}\x1f{key}".encode()
    return int.from_bytes(hashlib.blake2b(material, digest_size=16).digest(), "little")


def rng_for(seed: int, purpose: str, key: str) -> random.Random:
    """A fresh `random.Random` seeded from (seed, purpose, key).

    `random.Random` with an integer seed and the methods we use (`random()`,
    `getrandbits()`) is stable across CPython versions, so streams are reproducible.
    """
    return random.Random(derive_seed(seed, purpose, key))
