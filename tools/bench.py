"""Benchmarks that print figures (never asserted in tests).

    python -m tools.bench tokenize [--mb 5] [--families gemma,llama] [--cache DIR]
        [--config FILE] [--reps 2] [--cold] [--python]
    python -m tools.bench digest [--mb 5] [--families gemma,llama] [--cache DIR] [--config FILE]
        [--python]
    python -m tools.bench evaluate [--model DIR] [--items FILE.jsonl] [--mcq 500] [--gen 200]
        [--batch-size auto] [--max-new-tokens 32] [--device auto] [--dtype auto] [--threads N]

`tokenize`: synthesizes a deterministic Filipino corpus of at least `--mb` MB, then for
each tokenizer family times, on one core (one process, tokenizers' thread pool pinned to 1,
CPU time, best of `--reps` after one untimed pass that warms the arms' memos unless
`--cold`): the expansion-table build, the family's native encoder alone (`native_mb_s`:
tiktoken for Llama 3, the HF `tokenizers` fast backend otherwise), and each named arm end to
end on the whole corpus (batch encode as the tokenize stage does + the arm, seeded per
document from (0, arm name, document id) by `filmorph.rng.arm_rng`, as the tokenize stage
does: the compiled generator and C loops of `filmorph._native` when built; `--python` hands
the arms a `random.Random` instead, i.e. times the pure-Python reference code). The arms are
named instances (`arms.<name>`, with `type` where the name is not the type):
:data:`BENCH_ARMS` (vanilla, stochastok, patok = variant v1, patok_published, patok_morph,
study settings) or a config's `arms:` (`--config`). Prints each arm against vanilla and
vanilla against the native encoder, then as
its last line one JSON object ``{"gemma": {"vanilla_mb_s", "native_mb_s",
"vanilla_vs_native", "<arm>_mb_s", "<arm>_vs_vanilla", "<arm>_tokens" for every named arm,
"expansion_build_s"}, "llama": {...}}``.

`digest`: the same corpus, arms and seeds; prints, as its last line, ``{family: {arm: sha256
of every document's output ids and the arm's counters}}``, to check that a change to an arm's code keeps its
outputs byte-identical (run it once with `PYTHONPATH` at each tree and compare; with and
without `--python` it checks the C loops against the Python reference).

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
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402

STUDY_PATOK = {"contract_prop": 0.3, "expand_prop": 0.3, "affix_awareness": 0.95,
               "affix_awareness_if_overlap": 0.75}
# Named arm instances timed by default (arms.<name>; `type` where the name is not the type).
BENCH_ARMS = {
    "vanilla": {},
    "stochastok": {"expand_prop": 0.1},
    "patok": {"variant": "v1", **STUDY_PATOK},
    "patok_published": {"type": "patok", "variant": "published", **STUDY_PATOK},
    "patok_morph": {"type": "patok", "variant": "morph"},
}
SPECS = {"gemma": {"source": "gemma3_gguf_package"}, "llama": {"source": "llama3_tiktoken_package"}}


def bench_corpus(mb: float, cache: Path) -> list[tuple[str, str]]:
    """(document id, text) of the deterministic synthetic corpus of at least `mb` MB."""
    from filmorph.corpus import iter_documents, synthesize

    cache.mkdir(parents=True, exist_ok=True)
    corpus = cache / f"synthetic_{mb:g}mb.jsonl"
    if not corpus.exists():
        synthesize(corpus, int(mb * 1e6), seed=0)
    return list(iter_documents(corpus, id_prefix="bench"))


@lru_cache(maxsize=4)
def bench_family(name: str, cache: Path):
    """The prepared `filmorph.tokenize.PreparedTokenizer` `name` (prepared into `cache` when absent;
    loaded once per process)."""
    from filmorph.tokenize import PreparedTokenizer, prepare

    d = cache / "tokenizers" / name
    if not (d / "tokenizer_meta.json").exists():
        prepare(name, SPECS[name], d)
    return PreparedTokenizer(d)


def config_arms(path: str | Path) -> dict:
    """A config file's `arms:` (named instances)."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        arms = (yaml.safe_load(fh) or {}).get("arms")
    if not isinstance(arms, dict) or not arms:
        raise SystemExit(f"{path}: no `arms:` mapping")
    return {k: dict(v or {}) for k, v in arms.items()}


def build_arms(fam, arms: dict) -> dict:
    """{name: arm function} for the named instances `arms` on family `fam`."""
    from filmorph.affixes import load_affixes
    from filmorph.arms import make_arm

    affixes = load_affixes()
    return {
        name: make_arm(name, params, token_bytes=fam.token_bytes, table=fam.table,
                       encode=fam.encode_batch, affixes=affixes, byte_fallback_ids=fam.byte_fallback_ids)
        for name, params in arms.items()
    }


def native_encode(fam):
    """(label, batch encoder) of the family's native encoder: tiktoken where the source has
    one (:func:`filmorph.tokenizers.native_encoder`), else the HF `tokenizers` fast backend."""
    if fam.native is not None:
        return "tiktoken", fam.native
    backend = fam.backend
    return "hf-tokenizers", lambda texts: [
        e.ids for e in backend.encode_batch(list(texts), add_special_tokens=False)]


def arm_stream(python: bool = False):
    """The per-document stream factory: `filmorph.rng.arm_rng` (the tokenize stage's), or with
    `python` `rng_for` (a `random.Random`: the arms' pure-Python reference loops)."""
    from filmorph.rng import arm_rng, rng_for

    return rng_for if python else arm_rng


def time_arms(fam, docs: list[tuple[str, str]], arms: dict, *, reps: int = 2, warm: bool = True,
              batch: int = 64, seed: int = 0, label: str = "", python: bool = False) -> dict:
    """One-core MB/s (CPU time, best of `reps`; after one untimed pass when `warm`, i.e. the
    steady state of a long corpus with the arms' memos filled): the native encoder alone, and
    each named arm in `arms` ({name: arm function}) end to end (`fam.encode_batch` per batch of
    `batch` documents + the arm, seeded from (seed, name, document id)). Returns
    ``native_mb_s``, ``vanilla_mb_s`` (the vanilla arm, timed here even if `arms` lacks it),
    ``vanilla_vs_native``, and per arm ``<name>_mb_s``, ``<name>_vs_vanilla``,
    ``<name>_tokens``; prints the figures to stderr."""
    stream = arm_stream(python)
    texts = [t for _, t in docs]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    if "vanilla" not in arms:
        arms = {"vanilla": lambda ids, rng, counters: list(ids), **arms}

    def best(fn) -> tuple[float, object]:
        out = fn() if warm else None
        times = []
        for _ in range(max(1, reps)):
            t0 = time.process_time()
            out = fn()
            times.append(time.process_time() - t0)
        return mb / min(times), out

    native_name, native = native_encode(fam)
    row: dict = {}
    row["native_mb_s"], _ = best(lambda: native(texts))
    print(f"{label:6s} {'native':16s} {row['native_mb_s']:7.2f} MB/s  ({native_name})",
          file=sys.stderr)
    for name, arm in arms.items():

        def run_arm(name=name, arm=arm) -> int:
            n_out = 0
            for i in range(0, len(docs), batch):
                part = docs[i:i + batch]
                for (doc_id, _), ids in zip(part, fam.encode_batch([t for _, t in part]),
                                            strict=True):
                    n_out += len(arm(ids, stream(seed, name, doc_id), None))
            return n_out

        row[f"{name}_mb_s"], row[f"{name}_tokens"] = best(run_arm)
        if name == "vanilla":
            row["vanilla_vs_native"] = row["vanilla_mb_s"] / row["native_mb_s"]
            vs = f"{row['vanilla_vs_native']:5.2f} x native"
        else:
            row[f"{name}_vs_vanilla"] = row[f"{name}_mb_s"] / row["vanilla_mb_s"]
            vs = f"{row[f'{name}_vs_vanilla']:5.2f} x vanilla"
        print(f"{label:6s} {name:16s} {row[f'{name}_mb_s']:7.2f} MB/s  {vs}  "
              f"{row[f'{name}_tokens']} tokens", file=sys.stderr)
    return {k: v if k.endswith("_tokens") else round(v, 3) for k, v in row.items()}


def bench_tokenize(mb: float, families: list[str], cache: Path, batch: int = 64,
                   arms: dict | None = None, reps: int = 2, warm: bool = True,
                   python: bool = False) -> dict:
    """Time every named arm of every family on one synthesized corpus; return the figures."""
    from filmorph.arms.expansions import ExpansionTable

    docs = bench_corpus(mb, cache)
    nbytes = sum(len(t.encode("utf-8")) for _, t in docs)
    from filmorph.rng import native_available

    code = "pure Python" if python or not native_available() else "compiled (filmorph._native)"
    print(f"corpus: {len(docs)} documents, {nbytes / 1e6:.2f} MB; one core, CPU time, best of "
          f"{reps}{', warm' if warm else ', first pass'}; arms' loops: {code}", file=sys.stderr)
    results: dict[str, dict] = {}
    for fam_name in families:
        fam = bench_family(fam_name, cache)
        t0 = time.perf_counter()
        ExpansionTable.build(fam.token_bytes, fam.byte_fallback_ids)
        row = {"expansion_build_s": round(time.perf_counter() - t0, 3)}
        row.update(time_arms(fam, docs, build_arms(fam, arms or BENCH_ARMS), reps=reps,
                             warm=warm, batch=batch, label=fam_name, python=python))
        results[fam_name] = row
    return results


def bench_digest(mb: float, families: list[str], cache: Path, arms: dict | None = None,
                 seed: int = 0, python: bool = False) -> dict:
    """{family: {arm: sha256 of every document's output ids and the arm's nonzero counters}}
    on the bench corpus."""
    import hashlib

    stream = arm_stream(python)
    docs = bench_corpus(mb, cache)
    results: dict[str, dict] = {}
    for fam_name in families:
        fam = bench_family(fam_name, cache)
        encoded = fam.encode_batch([t for _, t in docs])
        row = {}
        for name, arm in build_arms(fam, arms or BENCH_ARMS).items():
            h = hashlib.sha256()
            counters: Counter = Counter()
            for (doc_id, _), ids in zip(docs, encoded, strict=True):
                out = arm(ids, stream(seed, name, doc_id), counters)
                h.update(doc_id.encode() + b"\0" + ",".join(map(str, out)).encode() + b"\n")
            h.update(json.dumps(sorted((k, v) for k, v in counters.items() if v)).encode())
            row[name] = h.hexdigest()
            print(f"{fam_name:6s} {name:16s} {row[name]}", file=sys.stderr)
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
    g = sub.add_parser("digest", help="sha256 of every arm's output ids (byte-identity check)")
    for p in (t, g):
        p.add_argument("--mb", type=float, default=5.0, help="corpus size (default 5 MB)")
        p.add_argument("--families", default="gemma,llama")
        p.add_argument("--cache", default=str(Path.home() / ".cache" / "filmorph" / "bench"))
        p.add_argument("--config", default=None,
                       help="time this config file's `arms:` instead of the built-in set")
        p.add_argument("--python", action="store_true",
                       help="hand the arms a random.Random: their pure-Python reference loops "
                            "instead of filmorph._native's (same output)")
    t.add_argument("--reps", type=int, default=2, help="timed passes, best kept (default 2)")
    t.add_argument("--cold", action="store_true",
                   help="no untimed warm-up pass (first pass: memos empty)")
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
    if args.cmd in ("tokenize", "digest"):
        fams = [f for f in args.families.split(",") if f]
        unknown = sorted(set(fams) - set(SPECS))
        if unknown:
            ap.error(f"unknown families {unknown}; expected some of {sorted(SPECS)}")
        arms = config_arms(args.config) if args.config else None
    if args.cmd == "tokenize":
        res = bench_tokenize(args.mb, fams, Path(args.cache), arms=arms, reps=args.reps,
                             warm=not args.cold, python=args.python)
    elif args.cmd == "digest":
        res = bench_digest(args.mb, fams, Path(args.cache), arms=arms, python=args.python)
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
