"""Seed derivation: every random choice in the pipeline comes from (seed, purpose, document id).

A document's random stream depends only on the config seed, the purpose (the arm name,
"synth", ...) and the document's stable id, never on chunk count, worker count or the
order documents are processed in. That is what makes shards byte-identical across
re-chunking and parallelism.
"""

from __future__ import annotations

import hashlib
import random
import sys

try:  # the compiled arms helpers (setup.py); absent: the pure-Python reference, same numbers
    from filmorph._native import Rng as _NativeRng

    _NATIVE_ERROR = None
except ImportError as exc:  # pragma: no cover -- exercised where the extension is not built
    _NativeRng = None
    _NATIVE_ERROR = str(exc)


def _digest(seed: int, purpose: str, key: str) -> bytes:
    material = f"{int(seed)}\x1f{purpose}\x1f{key}".encode()
    return hashlib.blake2b(material, digest_size=16).digest()


def derive_seed(seed: int, purpose: str, key: str) -> int:
    """A 128-bit integer seed that is a pure function of (seed, purpose, key)."""
    return int.from_bytes(_digest(seed, purpose, key), "little")


def rng_for(seed: int, purpose: str, key: str) -> random.Random:
    """A fresh `random.Random` seeded from (seed, purpose, key).

    `random.Random` with an integer seed and the methods we use (`random()`,
    `getrandbits()`) is stable across CPython versions, so streams are reproducible.
    """
    return random.Random(derive_seed(seed, purpose, key))


def arm_rng(seed: int, purpose: str, key: str):
    """The random stream a tokenization arm draws from for one document: the same numbers as
    ``rng_for(seed, purpose, key).random()``, from the compiled generator
    (:class:`filmorph._native.Rng`, which also runs the arms' C loops) when it is built, else
    from that `random.Random`. Arms draw only with ``.random()``."""
    if _NativeRng is not None:
        return _NativeRng(_digest(seed, purpose, key))
    return rng_for(seed, purpose, key)


def native_available() -> bool:
    """Whether the compiled arms helpers (:mod:`filmorph._native`) are built."""
    return _NativeRng is not None



def native_notice() -> str | None:
    """None when :mod:`filmorph._native` is built for this Python, else one line for a job's
    log: why it is missing, what that costs and how to build it."""
    if _NativeRng is not None:
        return None
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (f"note: filmorph._native is not built for this Python ({ver}: {_NATIVE_ERROR}); the "
            "arms run their Python loops (the same shards, 2-6x slower). Build it with this "
            "Python: pip install --no-deps -e <checkout>")
