"""Tokenization summary per family × arm, and the cross-arm table and plot.

    python -m filmorph.summary arm --family F --arm A --shard-dir D --corpus-dir C \
        --tokenizer-dir T --chunks chunk_0001 ... --sample N --seed S --out F_A.json
    python -m filmorph.summary table --out-tsv summary.tsv --out-png summary.png IN.json...

Per family × arm: documents, tokens, tokens per word, the achieved token ratio against
vanilla (expansion > 1, contraction < 1), the arm's counters, and the share of Filipino
affix boundaries that fall on token boundaries, measured on a seeded sample of documents.

It also measures the arm, as configured for the shards (their stats' `arm_params` and seed),
on the hand-segmented gold words (:mod:`filmorph.arms.morph_gold`): boundary precision,
recall, F1 and MorphScore in sentence context (`gold_*`) and recall of a word alone
(`gold_recall_alone`); the JSON's `morph_gold` has them per affix type with bootstrap
intervals.

Affix boundaries come from :class:`BoundaryAnalyzer`, which is deliberately *not* Patok's
detector: a boundary counts only when stripping the affix leaves a word found in a Tagalog
lexicon (tglstemmer's word list and wordfreq's `fil` list), e.g. ``nag|luto``,
``k|um|ain``, ``basa|hin``, ``ga|ganda``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from filmorph.io import read_json, write_json_atomic
from filmorph.palette import arm_color
from filmorph.phonology import VOWEL_LETTERS
from filmorph.rng import derive_seed

WORD = re.compile(r"[^\W\d_]+")


@lru_cache(maxsize=1)
def default_lexicon() -> frozenset[str]:
    """Tagalog word forms: tglstemmer's word list plus wordfreq's top 50k `fil` words."""
    from importlib.resources import files

    from wordfreq import top_n_list

    words = set(top_n_list("fil", 50000))
    path = Path(str(files("tglstemmer").joinpath("resources/tgl_wordlist.txt")))
    words.update(w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines())
    return frozenset(w for w in words if w)


class BoundaryAnalyzer:
    """Interior morpheme boundaries (character offsets) of a word, validated by a lexicon."""

    def __init__(self, affixes: Mapping[str, Iterable[str]], lexicon: frozenset[str],
                 min_root: int = 3):
        self.prefixes = sorted(set(affixes.get("prefix", ())), key=len, reverse=True)
        self.infixes = sorted(set(affixes.get("infix", ())))
        self.suffixes = sorted(set(affixes.get("suffix", ())), key=len, reverse=True)
        self.lex = lexicon
        self.min_root = min_root
        self._cache: dict[str, tuple[int, ...]] = {}

    def _root_ok(self, root: str) -> bool:
        return len(root) >= self.min_root and root in self.lex

    @staticmethod
    def _redup(w: str) -> int | None:
        if len(w) >= 4 and w[0] not in VOWEL_LETTERS and w[1] in VOWEL_LETTERS and w[:2] == w[2:4]:
            return 2
        if len(w) >= 3 and w[0] in VOWEL_LETTERS and w[0] == w[1]:
            return 1
        return None

    def boundaries(self, word: str) -> tuple[int, ...]:
        """Sorted interior boundary offsets of `word` (empty if no validated analysis)."""
        got = self._cache.get(word)
        if got is not None:
            return got
        w = word.lower()
        cuts: set[int] = set()
        if len(w) == len(word) and w not in self.lex or len(w) > self.min_root:
            for p in self.prefixes:
                if w.startswith(p) and len(w) > len(p):
                    rest = w[len(p):]
                    r = self._redup(rest)
                    if self._root_ok(rest):
                        cuts.add(len(p))
                        break
                    if r is not None and self._root_ok(rest[r:]):
                        cuts.update((len(p), len(p) + r))
                        break
            for i in self.infixes:
                if len(w) > len(i) + 2 and w[0] not in VOWEL_LETTERS and w[1:1 + len(i)] == i \
                        and self._root_ok(w[0] + w[1 + len(i):]):
                    cuts.update((1, 1 + len(i)))
                    break
            for s in self.suffixes:
                if w.endswith(s) and len(w) > len(s) and self._root_ok(w[:-len(s)]):
                    cuts.add(len(w) - len(s))
                    break
            r = self._redup(w)
            if r is not None and self._root_ok(w[r:]):
                cuts.add(r)
        got = tuple(sorted(c for c in cuts if 0 < c < len(w)))
        if len(self._cache) < 500_000:
            self._cache[word] = got
        return got

    def text_boundaries(self, text: str) -> list[int]:
        """Byte offsets (in UTF-8 `text`) of every validated morpheme boundary."""
        out: list[int] = []
        byte_pos, char_pos = 0, 0
        for m in WORD.finditer(text):
            byte_pos += len(text[char_pos:m.start()].encode("utf-8"))
            char_pos = m.start()
            word = m.group()
            for c in self.boundaries(word):
                out.append(byte_pos + len(word[:c].encode("utf-8")))
        return out


def token_boundaries(ids: Sequence[int], token_bytes: Sequence[bytes | None]) -> set[int]:
    """Byte offsets between consecutive tokens (specials contribute no bytes)."""
    pos, out = 0, set()
    for t in ids:
        b = token_bytes[t]
        if b:
            pos += len(b)
            out.add(pos)
    return out


def summarize_arm(family: str, arm: str, shard_dir: str | Path, corpus_dir: str | Path,
                  tokenizer_dir: str | Path, sample: int, seed: int,
                  affix_path: str | None = None, *,
                  chunks: Sequence[str]) -> dict[str, Any]:
    """Aggregate a family × arm's chunk stats and measure affix-boundary alignment.

    Reads exactly the named `chunks` (the rule's inputs), never a glob of `shard_dir`: a
    chunk file left there by an earlier run with more chunks is not counted."""
    from filmorph.affixes import load_affixes
    from filmorph.arms.morph_gold import arm_gold_summary
    from filmorph.corpus import read_chunk
    from filmorph.shards import read_shard
    from filmorph.tokenize import PreparedTokenizer

    shard_dir, corpus_dir = Path(shard_dir), Path(corpus_dir)
    if not chunks:
        raise ValueError("summarize_arm: no chunks named")
    stats_files = [shard_dir / f"{c}.stats.json" for c in sorted(chunks)]
    missing = [str(f) for f in stats_files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"chunk stats missing: {', '.join(missing)}")
    totals: Counter = Counter()
    counters: Counter = Counter()
    for f in stats_files:
        st = read_json(f)
        for k in ("documents_in", "documents_out", "documents_skipped", "text_bytes", "words",
                  "vanilla_tokens", "tokens", "tokens_written"):
            totals[k] += st[k]
        counters.update(st["arm_counters"])
        totals["seconds"] += st["seconds"]
    # Seeded sample of document ids across chunks (independent of chunking).
    ranked = []
    for f in stats_files:
        chunk = f.name.split(".")[0]
        ids = (shard_dir / f"{chunk}.doc_ids.txt").read_text(encoding="utf-8").split()
        ranked.extend((derive_seed(seed, "summary", d), d, chunk, i) for i, d in enumerate(ids))
    ranked.sort()
    chosen = ranked[:sample]
    by_chunk: dict[str, dict[str, int]] = {}
    for _, d, chunk, i in chosen:
        by_chunk.setdefault(chunk, {})[d] = i
    tb = PreparedTokenizer(tokenizer_dir, need_table=False).token_bytes
    analyzer = BoundaryAnalyzer(load_affixes(affix_path), default_lexicon())
    gold = hit = 0
    for chunk, wanted in sorted(by_chunk.items()):
        ds = read_shard(shard_dir / chunk)
        for doc_id, text in read_chunk(corpus_dir / f"{chunk}.jsonl"):
            if doc_id in wanted:
                ids = ds[wanted[doc_id]].tolist()
                tbounds = token_boundaries(ids, tb)
                gb = analyzer.text_boundaries(text)
                gold += len(gb)
                hit += sum(1 for b in gb if b in tbounds)
    first = read_json(stats_files[0])
    gold_fig = arm_gold_summary(tokenizer_dir, arm, first.get("arm_params") or {},
                                int(first.get("seed", seed)), affix_path)
    v, t = totals["vanilla_tokens"], totals["tokens"]
    return {
        "family": family, "arm": arm, "chunks": len(stats_files),
        **{k: totals[k] for k in ("documents_in", "documents_out", "documents_skipped",
                                  "text_bytes", "words", "vanilla_tokens", "tokens",
                                  "tokens_written")},
        "tokens_per_word": round(t / totals["words"], 6) if totals["words"] else None,
        "token_ratio_vs_vanilla": round(t / v, 6) if v else None,
        "expansion_rate": round(counters["expansions"] / v, 6) if v else 0.0,
        "contracted_window_rate": round(counters["windows_contracted"] / v, 6) if v else 0.0,
        "sample_documents": len(chosen), "affix_boundaries": gold,
        "affix_boundaries_on_token_boundary": hit,
        "affix_boundary_alignment": round(hit / gold, 6) if gold else None,
        "arm_counters": dict(sorted(counters.items())),
        "tokenize_seconds": round(totals["seconds"], 3),
        **{f"gold_{k}": gold_fig["sentence"]["all"][k]["value"]
           for k in ("precision", "recall", "f1", "morphscore")},
        "gold_recall_alone": gold_fig["alone"]["all"]["recall"]["value"],
        "morph_gold": gold_fig,
    }


COLUMNS = ("family", "arm", "documents_out", "words", "vanilla_tokens", "tokens",
           "tokens_per_word", "token_ratio_vs_vanilla", "expansion_rate",
           "contracted_window_rate", "affix_boundaries", "affix_boundary_alignment",
           "documents_skipped", "gold_precision", "gold_recall", "gold_f1", "gold_morphscore",
           "gold_recall_alone")


def write_table(summaries: Sequence[Mapping[str, Any]], out_tsv: str | Path,
                out_png: str | Path) -> None:
    """One TSV row per family × arm, and a two-panel bar plot (tokens/word, alignment)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from filmorph.arms import arm_names
    from filmorph.io import atomic_path

    order = arm_names(dict.fromkeys(s["arm"] for s in summaries))
    rows = sorted(summaries, key=lambda s: (s["family"], order.index(s["arm"])))
    with atomic_path(out_tsv) as tmp:
        lines = ["\t".join(COLUMNS)]
        lines += ["\t".join("" if r.get(c) is None else str(r.get(c)) for c in COLUMNS)
                  for r in rows]
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    families = sorted({r["family"] for r in rows})
    arms = order
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / max(1, len(arms))
    for ax, key, title in ((axes[0], "tokens_per_word", "tokens per word"),
                           (axes[1], "affix_boundary_alignment",
                            "affix boundaries on token boundaries")):
        for j, arm in enumerate(arms):
            vals = [next((r.get(key) or 0 for r in rows if r["family"] == f and r["arm"] == arm),
                         0) for f in families]
            ax.bar([i + j * width for i in range(len(families))], vals, width, label=arm,
                   color=arm_color(arm))
        ax.set_xticks([i + width * (len(arms) - 1) / 2 for i in range(len(families))])
        ax.set_xticklabels(families)
        ax.set_title(title)
    axes[1].set_ylim(0, 1)
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m filmorph.summary", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("arm", help="summarize one family x arm")
    for opt in ("--family", "--arm", "--shard-dir", "--corpus-dir", "--tokenizer-dir", "--out"):
        a.add_argument(opt, required=True)
    a.add_argument("--chunks", nargs="+", required=True,
                   help="chunk names (chunk_0001 ...) to aggregate; no other file is read")
    a.add_argument("--sample", type=int, default=300)
    a.add_argument("--seed", type=int, required=True)
    a.add_argument("--affixes", default=None)
    t = sub.add_parser("table", help="combine per-arm summaries into a TSV and a plot")
    t.add_argument("--out-tsv", required=True)
    t.add_argument("--out-png", required=True)
    t.add_argument("inputs", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "arm":
        s = summarize_arm(args.family, args.arm, args.shard_dir, args.corpus_dir,
                          args.tokenizer_dir, args.sample, args.seed, args.affixes,
                          chunks=args.chunks)
        write_json_atomic(args.out, s)
        print(json.dumps({k: s[k] for k in ("tokens_per_word", "affix_boundary_alignment")}),
              file=sys.stderr)
    else:
        write_table([read_json(p) for p in args.inputs], args.out_tsv, args.out_png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
