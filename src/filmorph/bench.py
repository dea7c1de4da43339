"""Benchmarks that print figures (never asserted in tests).

    python -m filmorph.bench tokenize [--mb 5] [--families gemma,llama] [--cache DIR]

`tokenize`: synthesizes a deterministic Filipino corpus of at least `--mb` MB, then for
each tokenizer family times, on one core (one process, tokenizers' thread pool pinned to 1):
the expansion-table build, and each arm end to end on the whole corpus (batch encode +
arm). Prints a table, then as its last line one JSON object:
``{"gemma": {"vanilla_mb_s", "stochastok_mb_s", "patok_mb_s", "expansion_build_s",
"stochastok_vs_vanilla", "patok_vs_vanilla"}, "llama": {...}}``.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one core, before tokenizers is imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

ARM_DEFAULTS = {"vanilla": {}, "stochastok": {"expand_prop": 0.1},
                "patok": {"contract_prop": 0.3, "expand_prop": 0.3, "affix_awareness": 0.95}}
SPECS = {"gemma": {"source": "gemma3_gguf_package"}, "llama": {"source": "llama3_tiktoken_package"}}


def bench_tokenize(mb: float, families: list[str], cache: Path, batch: int = 64) -> dict:
    """Time every arm of every family on one synthesized corpus; return the figures."""
    from filmorph.affixes import load_affixes
    from filmorph.arms import make_arm
    from filmorph.arms.expansions import ExpansionTable
    from filmorph.corpus import iter_documents, synthesize
    from filmorph.rng import rng_for
    from filmorph.tokenize import Family, prepare

    cache.mkdir(parents=True, exist_ok=True)
    corpus = cache / f"synthetic_{mb:g}mb.jsonl"
    if not corpus.exists():
        synthesize(corpus, int(mb * 1e6), seed=0)
    docs = list(iter_documents(corpus, id_prefix="bench"))
    nbytes = sum(len(t.encode("utf-8")) for _, t in docs)
    print(f"corpus: {len(docs)} documents, {nbytes / 1e6:.2f} MB", file=sys.stderr)
    results: dict[str, dict] = {}
    for fam_name in families:
        d = cache / "tokenizers" / fam_name
        if not (d / "tokenizer_meta.json").exists():
            prepare(fam_name, SPECS[fam_name], d)
        fam = Family(d)
        t0 = time.perf_counter()
        ExpansionTable.build(fam.token_bytes, fam.secondary)
        build_s = time.perf_counter() - t0
        row: dict[str, float] = {"expansion_build_s": round(build_s, 3)}
        affixes = load_affixes()
        for arm_name, params in ARM_DEFAULTS.items():
            arm = make_arm(arm_name, params, token_bytes=fam.token_bytes, table=fam.table,
                           encode=fam.encode_batch, affixes=affixes, secondary_ids=fam.secondary)
            counters: Counter = Counter()
            t0 = time.perf_counter()
            n_out = 0
            for i in range(0, len(docs), batch):
                part = docs[i:i + batch]
                for (doc_id, _), ids in zip(part, fam.encode_batch([t for _, t in part]),
                                            strict=True):
                    n_out += len(arm(ids, rng_for(0, arm_name, doc_id), counters))
            secs = time.perf_counter() - t0
            row[f"{arm_name}_mb_s"] = round(nbytes / 1e6 / secs, 3)
            row[f"{arm_name}_tokens"] = n_out
            print(f"{fam_name:6s} {arm_name:10s} {secs:7.2f} s  {nbytes / 1e6 / secs:6.2f} MB/s  "
                  f"{n_out} tokens", file=sys.stderr)
        row["stochastok_vs_vanilla"] = round(row["stochastok_mb_s"] / row["vanilla_mb_s"], 3)
        row["patok_vs_vanilla"] = round(row["patok_mb_s"] / row["vanilla_mb_s"], 3)
        results[fam_name] = row
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m filmorph.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokenize", help="arm throughput on one core, both families")
    t.add_argument("--mb", type=float, default=5.0, help="corpus size (default 5 MB)")
    t.add_argument("--families", default="gemma,llama")
    t.add_argument("--cache", default=str(Path.home() / ".cache" / "filmorph" / "bench"))
    args = ap.parse_args(argv)
    res = bench_tokenize(args.mb, args.families.split(","), Path(args.cache))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
