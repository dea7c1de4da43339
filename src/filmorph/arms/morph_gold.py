"""Morpheme-boundary measure of an arm on the hand-segmented gold set (``data/morph_gold.tsv``).

    python -m filmorph.arms.morph_gold --tokenizer-dir gemma=DIR --tokenizer-dir llama=DIR
        [--renderings 5] [--boot 1000] [--seed 0] [--gold FILE] [--out FILE.json]

The gold set (format in ``filmorph/data/README.md``) lists Filipino words with their
morphemes (``nag|sa|salita``) and affix types. For each word, each arm renders it
`renderings` times (rng from (seed, arm, ``gold:<context>:<word>:<r>``)), in two contexts:

- ``sentence``: inside a carrier sentence (:data:`CARRIERS`, chosen by the word's row), so the
  word has a leading space and neighbours, as in running text;
- ``alone``: the word as a whole document.

A *token boundary* inside the word is a byte offset strictly inside it where one output
token ends and the next begins. Figures, micro-averaged over (word, rendering) pairs:
boundary precision (token boundaries inside words that are gold boundaries), recall (gold
boundaries that are token boundaries; the published study's "MorphScore" is this recall),
F1, and MorphScore here = the share of pairs whose gold boundaries are all token
boundaries. Each comes with a 95 % bootstrap interval (words resampled, `boot` times), for
all words and per affix type (prefix, infix, suffix, circumfix, reduplication).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from filmorph.rng import arm_rng

TYPES = ("prefix", "infix", "suffix", "circumfix", "reduplication")
CARRIERS = (
    "Narinig ko ang salitang {w} kanina.",
    "Isinulat ng guro ang {w} sa pisara.",
    "Sabi niya, {w} daw ang tamang sagot.",
    "Hindi ko alam kung {w} ang gusto mo.",
)
CONTEXTS = ("sentence", "alone")


@dataclass(frozen=True)
class GoldWord:
    word: str
    cuts: tuple[int, ...]  # character offsets of the interior morpheme boundaries
    types: tuple[str, ...]


def default_gold_path() -> Path:
    return Path(str(files("filmorph").joinpath("data/morph_gold.tsv")))


def load_gold(path: str | Path | None = None) -> list[GoldWord]:
    """The gold words; raises naming the file and line on a malformed row."""
    path = Path(path) if path else default_gold_path()
    out: list[GoldWord] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if reader.fieldnames != ["word", "segmentation", "types"]:
            raise ValueError(f"{path}:1: header must be word, segmentation, types")
        for lineno, row in enumerate(reader, start=2):
            word, seg = row["word"] or "", row["segmentation"] or ""
            types = tuple(t for t in (row["types"] or "").split(",") if t)
            pieces = seg.split("|")
            if (not word or "".join(pieces) != word or len(pieces) < 2 or not all(pieces)
                    or not types or set(types) - set(TYPES) or word in seen):
                raise ValueError(f"{path}:{lineno}: bad gold row {row!r}")
            seen.add(word)
            cuts, pos = [], 0
            for p in pieces[:-1]:
                pos += len(p)
                cuts.append(pos)
            out.append(GoldWord(word, tuple(cuts), types))
    return out


def render_boundaries(arm: Callable, encode: Callable[[str], list[int]],
                      token_bytes: Sequence[bytes | None], text: str, start: int, end: int,
                      rng: random.Random) -> set[int]:
    """Byte offsets, relative to the word at text bytes [start, end), of the interior token
    boundaries of the arm's rendering of `text`."""
    out_ids = arm(encode(text), rng, None)
    pos, cuts = 0, set()
    for t in out_ids:
        b = token_bytes[t]
        if b:
            pos += len(b)
            if start < pos < end:
                cuts.add(pos - start)
    return cuts


def word_scores(gold: Sequence[GoldWord], arm: Callable, arm_name: str,
                encode: Callable[[str], list[int]], token_bytes: Sequence[bytes | None],
                context: str, renderings: int, seed: int) -> list[tuple[int, int, int, int]]:
    """Per gold word: (true positives, token boundaries, gold boundaries, all-found pairs)
    summed over its renderings."""
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}")
    rows = []
    for i, g in enumerate(gold):
        if context == "alone":
            text, prefix = g.word, ""
        else:
            carrier = CARRIERS[i % len(CARRIERS)]
            text = carrier.format(w=g.word)
            prefix = carrier[:carrier.index("{w}")]
        start = len(prefix.encode("utf-8"))
        end = start + len(g.word.encode("utf-8"))
        gold_b = {len(g.word[:c].encode("utf-8")) for c in g.cuts}
        tp = tok = full = 0
        for r in range(renderings):
            rng = arm_rng(seed, arm_name, f"gold:{context}:{g.word}:{r}")
            got = render_boundaries(arm, encode, token_bytes, text, start, end, rng)
            hit = len(got & gold_b)
            tp += hit
            tok += len(got)
            full += hit == len(gold_b)
        rows.append((tp, tok, len(gold_b) * renderings, full))
    return rows


def _figures(sums, n_pairs):
    """P, R, F1, MorphScore from summed (tp, token boundaries, gold boundaries, all-found)
    columns (numpy arrays or scalars); `n_pairs` = words × renderings."""
    import numpy as np

    tp, tok, gold, full = (np.asarray(sums[..., i], dtype=float) for i in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tok > 0, tp / np.maximum(tok, 1), 0.0)
        r = np.where(gold > 0, tp / np.maximum(gold, 1), 0.0)
        f1 = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    return {"precision": p, "recall": r, "f1": f1, "morphscore": full / max(n_pairs, 1)}


def summarize(rows: Sequence[tuple[int, int, int, int]], renderings: int, boot: int,
              seed: int) -> dict[str, dict[str, float]]:
    """Point figures with 95 % percentile bootstrap intervals (words resampled with
    replacement, `boot` times, numpy generator seeded with `seed`)."""
    import numpy as np

    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    n = len(arr)
    point = _figures(arr.sum(axis=0), n * renderings)
    if boot > 0 and n:
        idx = np.random.default_rng(seed).integers(0, n, size=(boot, n))
        samples = _figures(arr[idx].sum(axis=1), n * renderings)
    out = {}
    for k, v in point.items():
        v = float(v)
        if boot > 0 and n:
            lo, hi = (float(x) for x in np.quantile(samples[k], [0.025, 0.975]))
        else:
            lo = hi = v
        out[k] = {"value": round(v, 4), "lo": round(lo, 4), "hi": round(hi, 4)}
    return out


def measure(gold: Sequence[GoldWord], arms: Mapping[str, Callable],
            encode: Callable[[str], list[int]], token_bytes: Sequence[bytes | None],
            renderings: int = 5, boot: int = 1000, seed: int = 0) -> dict:
    """{arm: {context: {"all" | type: figures with intervals, "words": n}}}."""
    out: dict = {}
    for name, arm in arms.items():
        out[name] = {}
        for context in CONTEXTS:
            rows = word_scores(gold, arm, name.split(":")[0], encode, token_bytes, context,
                               renderings, seed)
            res = {"all": summarize(rows, renderings, boot, seed), "words": len(rows)}
            for t in TYPES:
                sub = [r for r, g in zip(rows, gold, strict=True) if t in g.types]
                if sub:
                    res[t] = summarize(sub, renderings, boot, seed)
            out[name][context] = res
    return out


def arm_gold_summary(tokenizer_dir: str | Path, arm: str, params: Mapping, seed: int,
                     affix_path: str | None = None, renderings: int = 5, boot: int = 1000,
                     gold_path: str | Path | None = None) -> dict:
    """The gold measure of one configured arm of one prepared family (the tokenization
    summary's ``morph_gold``): {context: {"all" | type: figures, "words": n}}."""
    from filmorph.affixes import load_affixes
    from filmorph.arms import make_arm, resolve_arm
    from filmorph.tokenize import PreparedTokenizer

    kind, _ = resolve_arm(arm, params)
    fam = PreparedTokenizer(tokenizer_dir, need_table=kind != "vanilla")
    a = make_arm(arm, params, token_bytes=fam.token_bytes, table=fam.table,
                 encode=fam.encode_batch,
                 affixes=load_affixes(affix_path) if kind == "patok" else None,
                 byte_fallback_ids=fam.byte_fallback_ids)
    res = measure(load_gold(gold_path), {arm: a}, fam.encode_one, fam.token_bytes,
                  renderings, boot, seed)
    return res[arm]


def family_arms(tokenizer_dir: str | Path) -> tuple[dict[str, Callable], Callable, list]:
    """The arms measured for one prepared tokenizer family, at their study / default
    settings: vanilla, stochastok, and patok in each variant."""
    from filmorph.affixes import load_affixes
    from filmorph.arms import PATOK_VARIANTS, make_arm
    from filmorph.tokenize import PreparedTokenizer

    fam = PreparedTokenizer(tokenizer_dir)
    affixes = load_affixes()
    common = dict(token_bytes=fam.token_bytes, table=fam.table, encode=fam.encode_batch,
                  affixes=affixes, byte_fallback_ids=fam.byte_fallback_ids)
    arms = {"vanilla": make_arm("vanilla", {}, **common),
            "stochastok": make_arm("stochastok", {"expand_prop": 0.1}, **common)}
    for v in PATOK_VARIANTS:
        arms[f"patok:{v}"] = make_arm("patok", {"variant": v}, **common)
    return arms, fam.encode_one, fam.token_bytes


def format_table(results: Mapping[str, Mapping]) -> str:
    """A plain-text table: family, arm, context, P / R / F1 / MorphScore with intervals."""
    lines = [f"{'family':7s} {'arm':16s} {'context':9s} {'precision':>18s} {'recall':>18s} "
             f"{'F1':>18s} {'MorphScore':>18s}"]
    for fam, arms in results.items():
        for arm, ctxs in arms.items():
            for ctx, res in ctxs.items():
                cells = []
                for k in ("precision", "recall", "f1", "morphscore"):
                    f = res["all"][k]
                    cells.append(f"{f['value']:.3f} [{f['lo']:.2f},{f['hi']:.2f}]")
                lines.append(f"{fam:7s} {arm:16s} {ctx:9s} " + " ".join(f"{c:>18s}" for c in cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer-dir", action="append", required=True,
                    help="NAME=DIR of a prepared tokenizer family (repeatable)")
    ap.add_argument("--gold", default=None, help="gold TSV (default: the packaged one)")
    ap.add_argument("--renderings", type=int, default=5)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    gold = load_gold(args.gold)
    results = {}
    for spec in args.tokenizer_dir:
        name, sep, d = spec.partition("=")
        if not sep:
            ap.error(f"--tokenizer-dir wants NAME=DIR, got {spec!r}")
        arms, encode, tb = family_arms(d)
        results[name] = measure(gold, arms, encode, tb, args.renderings, args.boot, args.seed)
    print(format_table(results), file=sys.stderr)
    line = json.dumps(results, sort_keys=True)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
