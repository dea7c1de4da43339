"""Tokenize stage: one corpus chunk × one arm × one tokenizer family → one Megatron shard.

    python -m filmorph.tokenize prepare --family NAME --spec JSON --out DIR
    python -m filmorph.tokenize chunk --chunk CHUNK.jsonl --tokenizer-dir DIR --arm ARM \
        --arm-params JSON --seed N --workers N --out-prefix PREFIX

`prepare` writes the family's tokenizer as an ordinary HF tokenizer dir (from a hub id,
a local dir, or the offline packaged Gemma 3 / Llama 3 tokenizers) together with its
StochasTok expansion table (`DIR/expansions.npz`), atomically: later jobs only read it. `chunk` encodes
every document of the chunk, applies the arm with `random.Random`'s stream seeded from
(seed, arm, document id) (drawn in C by `filmorph._native` when it is built), appends the
EOD id and writes `PREFIX.{bin,idx}` (megatron-core format), `PREFIX.doc_ids.txt` (document
id of each entry, in order) and
`PREFIX.stats.json` (documents, tokens, words, bytes, arm counters, seconds, MB/s).
Documents are processed in batches by `--workers` processes and written in chunk order,
so the output does not depend on the worker count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from filmorph.arms import make_arm, resolve_arm
from filmorph.arms.expansions import ExpansionTable, tables_fingerprint
from filmorph.io import atomic_path, read_json, write_json_atomic

_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
TABLES_FILE = "expansions.npz"
_WORDS = re.compile(r"\S+")


def byte_fallback_ids(tokenizer) -> list[int]:
    """Ids of SentencePiece byte-fallback pieces (`<0x0A>`...); empty for byte-level BPE."""
    return [i for tok, i in tokenizer.get_vocab().items() if _BYTE_FALLBACK.match(tok)]


TOKEN_BYTES_FILE = "token_bytes.npz"


def save_token_bytes(tb: Sequence[bytes | None], path: str | Path) -> None:
    """Store per-id token bytes (None = special) as lengths (-1 for None) + one byte blob."""
    lengths = np.array([-1 if b is None else len(b) for b in tb], dtype=np.int32)
    blob = np.frombuffer(b"".join(b for b in tb if b is not None), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, lengths=lengths, blob=blob)


def load_token_bytes(path: str | Path) -> list[bytes | None]:
    """Inverse of :func:`save_token_bytes`."""
    with np.load(path) as z:
        lengths = z["lengths"].tolist()
        blob = z["blob"].tobytes()
    out: list[bytes | None] = []
    pos = 0
    for n in lengths:
        if n < 0:
            out.append(None)
        else:
            out.append(blob[pos:pos + n])
            pos += n
    return out


class PreparedTokenizer:
    """A prepared tokenizer family for the arms: fast encoder, token bytes, table, EOD id.

    Loads only the `tokenizers` backend and the cached token bytes (about 1 s for Gemma's
    262k vocabulary); the transformers wrapper (`.tokenizer`, ~4 s) is loaded on first use.
    Where the family's source has a native encoder (:func:`filmorph.tokenizers.native_encoder`:
    tiktoken for the Llama 3 package, same ids, about 5x faster on one core) `encode_batch`
    and `encode_one` use it; `native=False` keeps to the HF backend.
    """

    def __init__(self, tokenizer_dir: str | Path, *, need_table: bool = True, native: bool = True):
        from tokenizers import Tokenizer

        from filmorph.tokenizers import native_encoder

        self.dir = Path(tokenizer_dir)
        self.meta = read_json(self.dir / "tokenizer_meta.json")
        self.backend = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        # raw text: special-looking strings stay text (same as tokenizers.encode_texts)
        self.backend.encode_special_tokens = True
        self.token_bytes = load_token_bytes(self.dir / TOKEN_BYTES_FILE)
        self.vocab_size = len(self.token_bytes)
        if self.vocab_size != int(self.meta["vocab_size"]):
            raise ValueError(f"{self.dir}: token_bytes has {self.vocab_size} ids, "
                             f"meta says {self.meta['vocab_size']}")
        self.native = native_encoder(self.meta.get("source") or {}) if native else None
        self.byte_fallback_ids = list(self.meta["byte_fallback_ids"])
        self.eod_id = int(self.meta["eos_id"])
        self._tokenizer = None
        self.table: ExpansionTable | None = None
        if need_table:
            self.table = ExpansionTable.load(self.dir / TABLES_FILE,
                                             expect_fingerprint=tables_fingerprint(self.token_bytes))

    @property
    def tokenizer(self):
        """The transformers fast tokenizer (loaded lazily)."""
        if self._tokenizer is None:
            from filmorph.tokenizers import load_tokenizer

            self._tokenizer = load_tokenizer({"source": "local", "path": str(self.dir)})
        return self._tokenizer

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of raw texts (no bos/eos; special-looking text stays ordinary text)."""
        if self.native is not None:
            return self.native(texts)
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def encode_one(self, text: str) -> list[int]:
        if self.native is not None:
            return self.native([text])[0]
        return self.backend.encode(text, add_special_tokens=False).ids


def prepare(family: str, spec: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Write tokenizer files + tokenizer_meta.json + expansions.npz into `out_dir` atomically."""
    from filmorph.tokenizers import load_tokenizer, save_tokenizer, token_bytes

    out_dir = Path(out_dir)
    tok = load_tokenizer(spec)
    with atomic_path(out_dir) as tmp:
        meta = save_tokenizer(spec, tmp, tokenizer=tok)
        tb = token_bytes(tok)
        fallback = byte_fallback_ids(tok)
        save_token_bytes(tb, tmp / TOKEN_BYTES_FILE)
        meta.update(family=family, byte_fallback_ids=fallback,
                    expansion_table=build_tables(tb, fallback, tmp / TABLES_FILE))
        write_json_atomic(tmp / "tokenizer_meta.json", meta)
    return meta


def build_tables(tb: Sequence[bytes | None], fallback_ids: Sequence[int],
                 out_path: str | Path) -> dict[str, Any]:
    """Build the family's expansion table, save it to `out_path`; return its stats."""
    t0 = time.perf_counter()
    table = ExpansionTable.build(tb, fallback_ids)
    seconds = time.perf_counter() - t0
    with atomic_path(out_path) as tmp:
        table.save(tmp)
    expandable = sum(1 for t in range(table.vocab_size)
                     if table.offsets[t + 1] > table.offsets[t])
    return {"vocab_size": table.vocab_size, "pairs": table.num_pairs,
            "expandable_tokens": expandable, "build_seconds": round(seconds, 3),
            "fingerprint": table.fingerprint}


# ------------------------------------------------------------------ workers
_STATE: dict[str, Any] = {}


class WorkerStartError(RuntimeError):
    """A tokenization worker could not start (bad arm parameters, a missing affix file...);
    carries the worker's own message and traceback to the parent."""


def _init_worker(tokenizer_dir: str, arm: str, arm_params: Mapping[str, Any],
                 affix_path: str | None) -> None:
    from filmorph.affixes import load_affixes

    kind, _ = resolve_arm(arm, arm_params)
    fam = PreparedTokenizer(tokenizer_dir, need_table=kind != "vanilla")
    affixes = load_affixes(affix_path) if kind == "patok" else None
    _STATE.update(family=fam, arm_name=arm, arm=make_arm(
        arm, arm_params, token_bytes=fam.token_bytes, table=fam.table, encode=fam.encode_batch,
        affixes=affixes, byte_fallback_ids=fam.byte_fallback_ids))


def _init_pool_worker(*init_args: Any) -> None:
    """The process pool's initializer: an error is kept, not raised, so that the worker stays
    up and hands it to the parent with its first task (a raising initializer makes a
    ``multiprocessing.Pool`` restart workers for ever, and a ``ProcessPoolExecutor`` report
    only that a process died)."""
    import traceback

    _STATE.pop("start_error", None)
    try:
        _init_worker(*init_args)
    except Exception as exc:  # noqa: BLE001 -- handed to the parent by _worker_ready
        _STATE["start_error"] = (f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _worker_ready() -> None:
    """Raise :class:`WorkerStartError` in the worker if its initializer failed."""
    if "start_error" in _STATE:
        msg, tb = _STATE["start_error"]
        raise WorkerStartError(f"tokenization worker {os.getpid()} failed to start: {msg}\n"
                               f"worker traceback:\n{tb}")


def _pool_batch(batch: list[tuple[str, str]], seed: int) -> tuple[list[bytes], dict]:
    _worker_ready()
    return _process_batch(batch, seed)


def _ordered_results(pool: Any, work: Any, batches: Iterator[Any], ahead: int) -> Iterator[Any]:
    """`work(batch)` for every batch, run by `pool` (a ProcessPoolExecutor), in input order,
    with at most `ahead` batches in flight (memory stays bounded whatever the chunk size)."""
    from collections import deque

    pending: deque = deque()
    for batch in batches:
        pending.append(pool.submit(work, batch))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _process_batch(batch: list[tuple[str, str]], seed: int) -> tuple[list[bytes], dict]:
    from filmorph.rng import arm_rng

    fam: PreparedTokenizer = _STATE["family"]
    arm = _STATE["arm"]
    name = _STATE["arm_name"]
    counters: Counter = Counter()
    out: list[bytes] = []
    encoded = fam.encode_batch([t for _, t in batch])
    for (doc_id, text), ids in zip(batch, encoded, strict=True):
        new = arm(ids, arm_rng(seed, name, doc_id), counters)
        counters["vanilla_tokens"] += len(ids)
        counters["tokens"] += len(new)
        counters["text_bytes"] += len(text.encode("utf-8"))
        counters["words"] += len(_WORDS.findall(text))
        new.append(fam.eod_id)
        out.append(np.asarray(new, dtype=np.int64).tobytes())
    return out, dict(counters)


def tokenize_documents(docs: Sequence[tuple[str, str]], tokenizer_dir: str | Path, arm: str,
                       arm_params: Mapping[str, Any], seed: int, *,
                       affix_path: str | None = None) -> list[np.ndarray]:
    """The token ids (EOD appended) :func:`tokenize_chunk` writes for these (doc id, text)
    documents, whatever chunk they sit in: the same worker code, one process (an audit
    re-tokenizes a sample with it)."""
    resolve_arm(arm, arm_params)  # a bad arm name or type fails here, not in a worker
    _init_worker(str(tokenizer_dir), arm, dict(arm_params), affix_path)
    out, _ = _process_batch(list(docs), seed)
    return [np.frombuffer(raw, dtype=np.int64) for raw in out]


def _batches(docs: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def tokenize_chunk(chunk: str | Path, tokenizer_dir: str | Path, arm: str,
                   arm_params: Mapping[str, Any], seed: int, out_prefix: str | Path, *,
                   workers: int = 1, batch_size: int = 64, affix_path: str | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Tokenize one chunk with one arm into `out_prefix`.{bin,idx,doc_ids.txt,stats.json}."""
    from filmorph.corpus import read_chunk
    from filmorph.progress import progress_bar
    from filmorph.rng import native_available, native_notice
    from filmorph.shards import ShardWriter

    kind, _ = resolve_arm(arm, arm_params)  # a bad arm name or type fails here, not in a worker
    notice = native_notice() if kind != "vanilla" else None
    if notice:
        print(notice, file=sys.stderr, flush=True)
    out_prefix = Path(out_prefix)
    t0 = time.perf_counter()
    meta = read_json(Path(tokenizer_dir) / "tokenizer_meta.json")
    counts = Counter()
    bar = progress_bar(None, f"{arm} {Path(chunk).name}", progress)
    doc_ids: list[str] = []  # chunk order = shard order; its length counts documents in

    def id_tracked() -> Iterator[tuple[str, str]]:
        for doc in read_chunk(chunk):
            doc_ids.append(doc[0])
            yield doc

    init_args = (str(tokenizer_dir), arm, dict(arm_params), affix_path)
    writer = ShardWriter(out_prefix, int(meta["vocab_size"]))
    try:
        with contextlib.ExitStack() as stack:
            if workers <= 1:
                _init_worker(*init_args)
                results: Iterator = map(partial(_process_batch, seed=seed),
                                        _batches(id_tracked(), batch_size))
            else:
                import multiprocessing as mp
                from concurrent.futures import ProcessPoolExecutor

                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                # A worker that cannot start fails the job with its own error (first task);
                # one that dies (OOM kill) breaks the pool: BrokenProcessPool, never a hang.
                pool = stack.enter_context(ProcessPoolExecutor(
                    workers, mp_context=mp.get_context("fork"), initializer=_init_pool_worker,
                    initargs=init_args))
                stack.callback(pool.shutdown, wait=True, cancel_futures=True)
                pool.submit(_worker_ready).result()  # even a chunk with no batch checks this
                results = _ordered_results(pool, partial(_pool_batch, seed=seed),
                                           _batches(id_tracked(), batch_size), 2 * workers)
            for docs_bytes, c in results:
                for raw in docs_bytes:
                    writer.add(np.frombuffer(raw, dtype=np.int64))
                counts.update(c)
                bar.update(len(docs_bytes))
        if writer.documents == 0:
            raise ValueError(f"{chunk}: no documents to tokenize; an empty shard would only fail "
                             "training later (the corpus stage never writes an empty chunk)")
        with atomic_path(Path(f"{out_prefix}.doc_ids.txt")) as tmp:
            tmp.write_text("".join(f"{d}\n" for d in doc_ids), encoding="utf-8")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    bar.close()
    seconds = time.perf_counter() - t0
    text_bytes = counts.pop("text_bytes", 0)
    vanilla_tokens = counts.pop("vanilla_tokens", 0)
    tokens = counts.pop("tokens", 0)
    words = counts.pop("words", 0)
    stats = {
        "chunk": str(chunk), "arm": arm, "arm_params": dict(arm_params), "seed": seed,
        "tokenizer": {k: meta.get(k) for k in ("family", "vocab_size", "eos_id",
                                                "tokenizer_json_sha256")},
        "eod_id": int(meta["eos_id"]), "dtype": np.dtype(writer.dtype).name,
        "documents_in": len(doc_ids), "documents_out": writer.documents,
        "documents_skipped": len(doc_ids) - writer.documents,
        "text_bytes": text_bytes, "words": words, "vanilla_tokens": vanilla_tokens,
        "tokens": tokens, "eod_tokens": writer.documents, "tokens_written": writer.tokens,
        "token_ratio": round(tokens / vanilla_tokens, 6) if vanilla_tokens else None,
        "tokens_per_word": round(tokens / words, 6) if words else None,
        "arm_counters": dict(sorted(counts.items())),
        "seconds": round(seconds, 3), "workers": workers,
        # the same ids either way; "python" (extension not built) is only slower
        "arm_loops": "compiled" if native_available() else "python",
        "mb_per_s": round(text_bytes / 1e6 / seconds, 4) if seconds > 0 else None,
    }
    if stats["documents_in"] != stats["documents_out"] + stats["documents_skipped"]:
        raise RuntimeError("document counts do not reconcile")  # pragma: no cover
    if writer.tokens != tokens + writer.documents:
        raise RuntimeError("token counts do not reconcile")  # pragma: no cover
    write_json_atomic(Path(f"{out_prefix}.stats.json"), stats)
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m filmorph.tokenize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("prepare", help="save a family's tokenizer + expansion table to a dir")
    t.add_argument("--family", required=True)
    t.add_argument("--spec", required=True, help="JSON tokenizer spec from the config")
    t.add_argument("--out", required=True)
    c = sub.add_parser("chunk", help="tokenize one corpus chunk with one arm into a shard")
    c.add_argument("--chunk", required=True, help="chunk JSONL written by the corpus stage")
    c.add_argument("--tokenizer-dir", required=True, help="dir written by prepare_tokenizer")
    c.add_argument("--arm", required=True,
                   help="arm name (paths and seeds carry it); its type is the params' `type`, "
                        "else the name: vanilla, stochastok, patok")
    c.add_argument("--arm-params", default="{}",
                   help="JSON object of the arm's parameters (config arms.<name>)")
    c.add_argument("--affixes", default=None, help="affix inventory TSV (default: packaged)")
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--out-prefix", required=True, help="writes PREFIX.{bin,idx,...}")
    c.add_argument("--progress", action="store_true", help="show a progress bar")
    args = ap.parse_args(argv)
    if args.cmd == "prepare":
        meta = prepare(args.family, json.loads(args.spec), args.out)
        print(json.dumps(meta["expansion_table"]))
    else:
        stats = tokenize_chunk(args.chunk, args.tokenizer_dir, args.arm,
                               json.loads(args.arm_params), args.seed, args.out_prefix,
                               workers=args.workers, batch_size=args.batch_size,
                               affix_path=args.affixes, progress=args.progress)
        print(json.dumps({k: stats[k] for k in ("documents_out", "tokens", "seconds",
                                                "mb_per_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
