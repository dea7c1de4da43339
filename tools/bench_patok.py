"""Patok side by side: the published implementation against our Patok variants, same text.

    python tools/bench_patok.py --published DIR [--mb 2] [--families gemma,llama]
        [--cache DIR] [--seed 0] [--out FILE.json]

`--published` is a checkout of github.com/raileymontalan/filipino-morphology-llm, or its
bare git directory (as the `fetch` tool leaves it); its `src/tokenization/{base_processor,
patok_morphology}.py` and `data/affixes_filipino/*.txt` are read from there at run time into
a temporary directory and imported (nothing of it is copied into this repository). Its
expansion table, which its own builder takes hours to make for a 262k vocabulary (a list
scan per lookup), is given to it ready-made from the same definition
(:func:`filmorph.arms.intensity.published_expansions`).

The corpus is the embedded Filipino corpus extended by `filmorph.corpus.synthesize` to at
least `--mb` MB. For each tokenizer family (the offline Gemma 3 and Llama 3 tokenizers) it
encodes every document once (vanilla, no specials) and runs, on the same ids: the published
implementation (study settings: contract 0.3, expand 0.3, awareness 0.95 / 0.75, seeded
once with `--seed` as its preprocessing does), and our `patok` arm in variants `published`,
`morph` and `v1` (each seeded per document). Prints a table of windows / affix cuts per
1,000 vanilla tokens, token growth, lone-space tokens per 1,000 and seconds, whether
`published` is within 10 % of the published implementation on each figure, and as its last
line one JSON object
``{family: {arm: figures}}``. One core: tokenizers' thread pool is pinned to 1.
With `--speed` each family's row also gets `speed`: one-core MB/s (CPU time, caches warm) of
the native encoder (`native_mb_s`, tiktoken for Llama 3), vanilla and every arm end to end
(`<arm>_mb_s`), with `<arm>_vs_vanilla` and `vanilla_vs_native`, timed by
`tools.bench.time_arms` as `python -m tools.bench tokenize` does.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

PUBLISHED_FILES = ("src/tokenization/base_processor.py", "src/tokenization/patok_morphology.py",
                   "data/affixes_filipino/prefix.txt", "data/affixes_filipino/infix.txt",
                   "data/affixes_filipino/suffix.txt")
STUDY = {"contract_prop": 0.3, "expand_prop": 0.3, "affix_awareness": 0.95,
         "affix_awareness_if_overlap": 0.75}
SPECS = {"gemma": {"source": "gemma3_gguf_package"}, "llama": {"source": "llama3_tiktoken_package"}}
VARIANTS = ("published", "morph", "v1")


def _read_published(src: Path, rel: str) -> bytes:
    """One file of the published repository: from a checkout, or `git show HEAD:rel`."""
    if (src / rel).is_file():
        return (src / rel).read_bytes()
    res = subprocess.run(["git", "--git-dir", str(src), "show", f"HEAD:{rel}"],
                         capture_output=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"--published {src}: cannot read {rel} "
                         f"({res.stderr.decode(errors='replace').strip()})")
    return res.stdout


def load_published(src: Path, tmp: Path):
    """(MorphologyAwarePatokProcessor, its TokenizerProcessor base, {kind: affix file})."""
    pkg = tmp / "published_tokenization"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    files = {}
    for rel in PUBLISHED_FILES:
        dest = (pkg / Path(rel).name) if rel.endswith(".py") else (tmp / Path(rel).name)
        dest.write_bytes(_read_published(src, rel))
        files[Path(rel).stem] = dest
    sys.path.insert(0, str(tmp))
    try:
        spec = importlib.util.spec_from_file_location(
            "published_tokenization", pkg / "__init__.py", submodule_search_locations=[str(pkg)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["published_tokenization"] = mod
        spec.loader.exec_module(mod)
        from published_tokenization import base_processor, patok_morphology
    finally:
        sys.path.remove(str(tmp))
    return patok_morphology.MorphologyAwarePatokProcessor, base_processor.TokenizerProcessor, {
        k: files[k] for k in ("prefix", "infix", "suffix")}


def make_published(cls, base, affix_files, tokenizer):
    """The published processor with study settings and a ready-made expansion table."""
    from filmorph.arms.intensity import published_expansions

    ranks = base.get_mergeable_ranks(SimpleNamespace(tokenizer=tokenizer))
    table = published_expansions(ranks)
    original = base.set_expansions
    base.set_expansions = lambda self: setattr(self, "expansions", table)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return cls(tokenizer, prefix_file=str(affix_files["prefix"]),
                       infix_file=str(affix_files["infix"]),
                       suffix_file=str(affix_files["suffix"]), **STUDY)
    finally:
        base.set_expansions = original


def corpus_docs(mb: float, cache: Path) -> list[tuple[str, str]]:
    from filmorph.corpus import iter_documents, synthesize

    path = cache / f"bench_patok_{mb:g}mb.jsonl"
    if not path.exists():
        synthesize(path, int(mb * 1e6), seed=0)
    return list(iter_documents(path, id_prefix="bench"))


def run(published: Path, mb: float, families: list[str], cache: Path, seed: int,
        with_speed: bool = False) -> dict:
    import time

    from filmorph.affixes import load_affixes
    from filmorph.arms import make_arm
    from filmorph.arms.intensity import measure_arm, measure_published_impl, within
    from filmorph.tokenize import PreparedTokenizer, prepare

    cache.mkdir(parents=True, exist_ok=True)
    docs = corpus_docs(mb, cache)
    nbytes = sum(len(t.encode("utf-8")) for _, t in docs)
    print(f"corpus: {len(docs)} documents, {nbytes / 1e6:.2f} MB", file=sys.stderr)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cls, base, affix_files = load_published(published, Path(tmp))
        for fam_name in families:
            d = cache / "tokenizers" / fam_name
            if not (d / "tokenizer_meta.json").exists():
                prepare(fam_name, SPECS[fam_name], d)
            fam = PreparedTokenizer(d)
            t0 = time.perf_counter()
            encoded = fam.encode_batch([t for _, t in docs])
            enc_s = time.perf_counter() - t0
            row: dict[str, dict] = {"vanilla": {"seconds": round(enc_s, 3),
                                                "tokens": sum(map(len, encoded))}}
            arms = {}
            proc = make_published(cls, base, affix_files, fam.tokenizer)
            row["published_impl"] = measure_published_impl(
                proc, encoded, seed=seed, contract_prop=STUDY["contract_prop"],
                expand_prop=STUDY["expand_prop"], token_bytes=fam.token_bytes)
            for variant in VARIANTS:
                params = dict(STUDY, variant=variant)
                if variant == "morph":
                    params = {"variant": "morph"}
                arm = arms[f"patok_{variant}"] = make_arm(
                    "patok", params, token_bytes=fam.token_bytes, table=fam.table,
                    encode=fam.encode_batch, affixes=load_affixes(), byte_fallback_ids=fam.byte_fallback_ids)
                row[variant] = measure_arm(arm, variant,
                                           zip((i for i, _ in docs), encoded, strict=True),
                                           seed=seed, token_bytes=fam.token_bytes)
            row["published_within_10pct"] = within(row["published"], row["published_impl"])
            _print_family(fam_name, row)
            if with_speed:
                arms["stochastok"] = make_arm("stochastok", {"expand_prop": 0.1},
                                              token_bytes=fam.token_bytes, table=fam.table)
                row["speed"] = speed(fam, fam_name, docs, arms)
            results[fam_name] = row
    return results


def speed(fam, fam_name: str, docs: list[tuple[str, str]], arms: dict, reps: int = 2) -> dict:
    """One-core MB/s of the native encoder, vanilla and each arm end to end, with ratios:
    :func:`tools.bench.time_arms` (the one home of that timing), caches warm."""
    try:
        from tools.bench import time_arms
    except ModuleNotFoundError:  # run as `python tools/bench_patok.py`: the repo root
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tools.bench import time_arms
    return time_arms(fam, docs, arms, reps=reps, warm=True, label=fam_name)


def _print_family(name: str, row: dict) -> None:
    print(f"\n{name}: {row['vanilla']['tokens']} vanilla tokens", file=sys.stderr)
    print(f"{'arm':16s} {'windows/1k':>11s} {'affix cuts/1k':>14s} {'growth':>8s} "
          f"{'spaces/1k':>10s} {'s':>8s}", file=sys.stderr)
    for arm in ("published_impl", *VARIANTS):
        f = row[arm]
        print(f"{arm:16s} {f['windows_per_1k']:11.1f} {f['affix_cuts_per_1k']:14.1f} "
              f"{f['growth']:8.3f} {f['space_tokens_per_1k']:10.1f} {f['seconds']:8.2f}",
              file=sys.stderr)
    print(f"published within 10 % of the published implementation: "
          f"{row['published_within_10pct']}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--published", required=True, type=Path,
                    help="checkout or bare git dir of raileymontalan/filipino-morphology-llm")
    ap.add_argument("--mb", type=float, default=2.0, help="corpus size in MB (default 2)")
    ap.add_argument("--families", default="gemma,llama")
    ap.add_argument("--cache", type=Path, default=None,
                    help="corpus and tokenizer cache (default: filmorph's cache dir/bench)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--speed", action="store_true",
                    help="also time vanilla, the native encoder and every arm on one core")
    args = ap.parse_args(argv)
    from filmorph.tokenizers import default_cache_dir

    cache = args.cache or default_cache_dir() / "bench"
    fams = [f for f in args.families.split(",") if f]
    unknown = sorted(set(fams) - set(SPECS))
    if unknown:
        ap.error(f"unknown families {unknown}; expected some of {sorted(SPECS)}")
    results = run(args.published, args.mb, fams, cache, args.seed, with_speed=args.speed)
    line = json.dumps(results, sort_keys=True)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
