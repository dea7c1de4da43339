"""Corpus stage: read a source, validate records, give each document a stable id, split into chunks.

Sources (config `corpus.source`):

- ``embedded``: the Filipino corpus shipped in ``filmorph/data/embedded_corpus.jsonl``.
- ``local``: a JSONL, JSONL.gz or plain-text file (``corpus.path``). Plain text holds one
  document per paragraph (paragraphs are separated by blank lines).
- ``hf``: a Hugging Face dataset, streamed (``corpus.hf``: dataset, config, split,
  text_field). It is first materialised as a local JSONL.gz by :func:`fetch_hf` (the
  login-node rule), then read like ``local``. The HF token comes from the environment
  only (``HF_TOKEN``), read by ``huggingface_hub`` itself; it is never logged or written.
- ``synthetic``: a deterministic Filipino-like corpus of a given size, scaled up from the
  embedded corpus and the ``wordfreq`` ``fil`` list (:func:`synthesize`), for throughput tests.

Document ids are ``{id_prefix}-{record_number:09d}``, where ``record_number`` counts the
source's records from 0 (skipped records keep their numbers), so an id names the same
text whatever the chunk count or skip policy.

Bad records (invalid UTF-8, invalid JSON, not an object, missing or non-string text, empty
text) raise :class:`BadRecordError` naming the file and line (and, for bad UTF-8, the byte
offset) under ``on_bad_record: error``, or are counted per reason, with their line numbers,
under ``skip``. Every run writes counts with ``records_in == documents_out + skipped_total``.
A UTF-8 byte-order mark at the start of a file is not part of its first record. A truncated
or corrupt compressed file raises :class:`CorpusFileError` (file, line, byte offset) under
either policy.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from filmorph.io import atomic_path, bad_utf8_detail, write_json_atomic
from filmorph.paths import chunk_name
from filmorph.progress import progress_bar
from filmorph.rng import rng_for

BAD_REASONS = ("invalid_utf8", "invalid_json", "not_an_object", "missing_text", "non_string_text",
               "empty_text")


class BadRecordError(ValueError):
    """A corpus record that cannot be used, with the file and line it came from."""


class CorpusFileError(BadRecordError):
    """A corpus file that cannot be read on (truncated or corrupt compression), with the file,
    the line and the byte offset where it broke off; never skipped."""


@dataclass(frozen=True)
class Record:
    """One raw source record: its 0-based number, 1-based line, and text or bad reason."""

    number: int
    line: int
    text: str | None
    reason: str | None = None
    detail: str = ""


@dataclass
class Counts:
    """Documents in and out of a stage; `records_in == documents_out + skipped_total`."""

    records_in: int = 0
    documents_out: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_lines: dict[str, list[int]] = field(default_factory=dict)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        assert self.records_in == self.documents_out + self.skipped_total, self
        return {
            "records_in": self.records_in,
            "documents_out": self.documents_out,
            "skipped_total": self.skipped_total,
            "skipped": {r: self.skipped.get(r, 0) for r in BAD_REASONS},
            "skipped_lines": {r: list(self.skipped_lines.get(r, [])) for r in BAD_REASONS},
        }


def embedded_corpus_path() -> Path:
    """Path of the Filipino corpus shipped with the package."""
    return Path(str(files("filmorph").joinpath("data/embedded_corpus.jsonl")))


def _open_binary(path: Path) -> io.BufferedReader:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        return "jsonl"
    if name.endswith((".txt", ".txt.gz")):
        return "text"
    raise ValueError(f"{path}: cannot tell the format from the name; use .jsonl[.gz] or .txt[.gz]")


_BOM = b"\xef\xbb\xbf"


def _lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(1-based line number, byte offset of the line in the (uncompressed) file, raw line) of
    every line; a UTF-8 byte-order mark at the start of the file is dropped. A compressed file
    that is truncated or corrupt raises :class:`CorpusFileError` naming the file, the line it
    was reading and the byte offset where it broke off (whatever `on_bad_record` says: the rest
    of the file is lost, not one record)."""
    lineno, offset = 0, 0
    with _open_binary(path) as fh:
        while True:
            try:
                raw = fh.readline()
            except (EOFError, OSError, zlib.error) as exc:
                raise CorpusFileError(
                    f"{path}:{lineno + 1}: cannot read past byte {offset} of the uncompressed "
                    f"data, the file is truncated or corrupt ({type(exc).__name__}: {exc})"
                ) from exc
            if not raw:
                return
            lineno += 1
            if lineno == 1 and raw.startswith(_BOM):
                yield lineno, offset + len(_BOM), raw[len(_BOM):]
            else:
                yield lineno, offset, raw
            offset += len(raw)


def _utf8_detail(raw: bytes, offset: int, exc: UnicodeDecodeError) -> str:
    """Where a line is not UTF-8: the byte, its column and its byte offset in the file."""
    return bad_utf8_detail(raw[exc.start], exc.start + 1, offset + exc.start, exc.reason)


def _json_detail(line: str, exc: json.JSONDecodeError) -> str:
    """The whole JSON error (``exc.msg`` alone is cut: "Invalid control character at")."""
    msg = exc.msg.removesuffix(" at")
    if msg.startswith("Invalid control character") and exc.pos < len(line):
        msg += f" {line[exc.pos]!r}"
    return f"{msg} at column {exc.colno}"


def _jsonl_records(path: Path, text_field: str) -> Iterator[Record]:
    number = 0
    for lineno, offset, raw in _lines(path):
        if not raw.strip():
            continue  # blank lines are separators, not records
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Record(number, lineno, None, "invalid_utf8", _utf8_detail(raw, offset, exc))
            number += 1
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Record(number, lineno, None, "invalid_json", _json_detail(line, exc))
            number += 1
            continue
        if not isinstance(obj, dict):
            yield Record(number, lineno, None, "not_an_object", type(obj).__name__)
        elif text_field not in obj:
            yield Record(number, lineno, None, "missing_text", f"no field {text_field!r}")
        elif not isinstance(obj[text_field], str):
            yield Record(number, lineno, None, "non_string_text",
                         type(obj[text_field]).__name__)
        elif not obj[text_field].strip():
            yield Record(number, lineno, None, "empty_text", "")
        else:
            yield Record(number, lineno, obj[text_field])
        number += 1


def _text_records(path: Path) -> Iterator[Record]:
    """Paragraphs (runs of non-blank lines) of a plain-text file, one record each."""
    number, start, buf, bad = 0, 0, [], None

    def flush() -> Record:
        if bad is not None:
            return Record(number, start, None, "invalid_utf8", bad)
        return Record(number, start, "\n".join(buf))

    for lineno, offset, raw in _lines(path):
        stripped = raw.rstrip(b"\r\n")
        if not stripped.strip():
            if buf or bad is not None:
                yield flush()
                number, buf, bad = number + 1, [], None
            continue
        if not buf and bad is None:
            start = lineno
        try:
            buf.append(stripped.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad = bad or f"line {lineno}: {_utf8_detail(stripped, offset, exc)}"
    if buf or bad is not None:
        yield flush()


def read_records(path: str | Path, fmt: str = "auto", text_field: str = "text") -> Iterator[Record]:
    """Every record of a local corpus file, good or bad, in file order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus file not found: {path}")
    fmt = _detect_format(path) if fmt == "auto" else fmt
    if fmt == "jsonl":
        return _jsonl_records(path, text_field)
    if fmt == "text":
        return _text_records(path)
    raise ValueError(f"unknown corpus format {fmt!r} (jsonl, text or auto)")


def iter_documents(path: str | Path, *, id_prefix: str, on_bad_record: str = "error",
                   fmt: str = "auto", text_field: str = "text",
                   counts: Counts | None = None) -> Iterator[tuple[str, str]]:
    """(doc_id, text) for every good record; bad ones raise or are counted in `counts`."""
    if on_bad_record not in ("error", "skip"):
        raise ValueError(f"on_bad_record must be 'error' or 'skip', not {on_bad_record!r}")
    counts = counts if counts is not None else Counts()
    for rec in read_records(path, fmt, text_field):
        counts.records_in += 1
        if rec.reason is not None:
            if on_bad_record == "error":
                raise BadRecordError(
                    f"{path}:{rec.line}: bad record ({rec.reason}{': ' + rec.detail if rec.detail else ''}); "
                    "set corpus.on_bad_record: skip to count and skip such records")
            counts.skipped[rec.reason] += 1
            counts.skipped_lines.setdefault(rec.reason, []).append(rec.line)
            continue
        counts.documents_out += 1
        yield f"{id_prefix}-{rec.number:09d}", rec.text  # type: ignore[misc]


def chunk_sizes(documents: int, num_chunks: int) -> list[int]:
    """Documents per chunk when :func:`split_corpus` splits `documents` into `num_chunks`:
    ``ceil(D/N)`` each, the last one what is left."""
    per_chunk = max(1, math.ceil(documents / num_chunks))
    sizes, left = [], documents
    for k in range(num_chunks):
        n = left if k == num_chunks - 1 else min(per_chunk, left)
        sizes.append(n)
        left -= n
    return sizes


def check_chunk_count(documents: int, num_chunks: int, where: str = "the corpus") -> None:
    """Refuse a chunk count that would leave a chunk empty (its 0-byte shard would only fail
    training hours later), naming both numbers and the nearest counts that work (with
    ``ceil(D/N)`` per chunk, the split of the published study, these are not all counts up to
    D: 183 documents fill 19 and 21 chunks but not 20)."""
    sizes = chunk_sizes(documents, num_chunks)
    if min(sizes) > 0:
        return
    empty = chunk_name(sizes.index(0))
    if documents == 0:
        raise ValueError(f"corpus.num_chunks: {where} has no documents to split into "
                         f"{num_chunks} chunk(s)")
    fits = [n for n in (next((n for n in range(num_chunks - 1, 0, -1)
                              if min(chunk_sizes(documents, n)) > 0), None),
                        next((n for n in range(num_chunks + 1, documents + 1)
                              if min(chunk_sizes(documents, n)) > 0), None)) if n]
    raise ValueError(
        f"corpus.num_chunks: {num_chunks} chunks for {documents} documents of {where} leave "
        f"{empty} empty (chunks hold ceil({documents}/{num_chunks}) = "
        f"{math.ceil(documents / num_chunks)} documents each, the last one the rest); the "
        f"nearest chunk counts that fill every chunk: {' or '.join(map(str, fits))}")


def split_corpus(path: str | Path, out_dir: str | Path, num_chunks: int, *, id_prefix: str,
                 on_bad_record: str = "error", fmt: str = "auto", text_field: str = "text",
                 progress: bool = False) -> dict[str, Any]:
    """Split a corpus into `num_chunks` contiguous JSONL chunks of `{"id", "text"}`.

    Chunk k holds documents [k*ceil(D/N), (k+1)*ceil(D/N)) in source order, where D counts
    good documents. Writes `chunk_NNNN.jsonl` files and `counts.json` (with per-chunk
    document counts and the line numbers of skipped records) atomically and returns the
    counts. A chunk count that would leave a chunk empty is refused before anything is
    written (:func:`check_chunk_count`).
    """
    if num_chunks < 1:
        raise ValueError("num_chunks must be >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Pass 1: validate everything and count documents (fails before writing anything).
    first = Counts()
    total = sum(1 for _ in iter_documents(path, id_prefix=id_prefix, on_bad_record=on_bad_record,
                                          fmt=fmt, text_field=text_field, counts=first))
    where = str(path)
    if first.skipped_total:
        where += f" after skipping {first.skipped_total} bad record(s)"
    check_chunk_count(total, num_chunks, where)
    per_chunk = max(1, math.ceil(total / num_chunks))
    counts = Counts()
    docs = iter_documents(path, id_prefix=id_prefix, on_bad_record=on_bad_record, fmt=fmt,
                          text_field=text_field, counts=counts)
    bar = progress_bar(total, "split", progress)
    chunk_docs, chunk_bytes = [], []
    for k in range(num_chunks):
        n = nbytes = 0
        with atomic_path(out_dir / f"{chunk_name(k)}.jsonl") as tmp, open(tmp, "w",
                                                                         encoding="utf-8") as fh:
            for doc_id, text in docs:
                line = json.dumps({"id": doc_id, "text": text}, ensure_ascii=False)
                fh.write(line + "\n")
                n += 1
                nbytes += len(text.encode("utf-8"))
                bar.update(1)
                if n == per_chunk and k < num_chunks - 1:
                    break
        chunk_docs.append(n)
        chunk_bytes.append(nbytes)
    bar.close()
    result = counts.as_dict()
    if result != first.as_dict():
        raise RuntimeError("corpus changed between passes")  # pragma: no cover
    result.update({"source": str(path), "num_chunks": num_chunks, "chunk_documents": chunk_docs,
                   "chunk_text_bytes": chunk_bytes, "text_bytes": sum(chunk_bytes)})
    write_json_atomic(out_dir / "counts.json", result)
    return result


def read_chunk(path: str | Path) -> Iterator[tuple[str, str]]:
    """(doc_id, text) pairs of a chunk file written by :func:`split_corpus`."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                obj = json.loads(line)
                yield obj["id"], obj["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise BadRecordError(f"{path}:{lineno}: malformed chunk line ({exc})") from exc


# --------------------------------------------------------------------------- sources


def fetch_hf(dataset: str, out_path: str | Path, *, config: str | None = None,
             split: str = "train", text_field: str = "text", revision: str | None = None,
             max_documents: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Stream a Hugging Face dataset's text field into a local JSONL.gz (atomically).

    Records keep their order; non-string/empty texts are written as-is so that the split
    stage applies the configured bad-record policy and counts them.
    """
    from datasets import load_dataset  # lazy: only the fetch rule needs it

    stream = load_dataset(dataset, name=config, split=split, streaming=True, revision=revision)
    n = 0
    bar = progress_bar(max_documents, f"fetch {dataset}", progress)
    with atomic_path(Path(out_path)) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as fh:
        for row in stream:
            fh.write(json.dumps({"text": row.get(text_field)}, ensure_ascii=False) + "\n")
            n += 1
            bar.update(1)
            if max_documents is not None and n >= max_documents:
                break
    bar.close()
    return {"dataset": dataset, "config": config, "split": split, "revision": revision,
            "records": n}


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def synthesize(out_path: str | Path, target_bytes: int, *, seed: int = 0,
               vocab_size: int = 20000) -> dict[str, Any]:
    """Write a deterministic Filipino-like JSONL corpus of at least `target_bytes` of text.

    Each synthetic document starts from a document of the embedded corpus and continues
    with sentences whose words are drawn by frequency from the `wordfreq` `fil` list
    (Zipf weights), mixed with words of the embedded document so that affixed forms stay
    frequent. The output depends only on (seed, target_bytes, vocab_size).
    """
    from wordfreq import top_n_list, word_frequency

    words = top_n_list("fil", vocab_size)
    weights = [word_frequency(w, "fil") for w in words]
    cum, acc = [], 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    base = [t for _, t in iter_documents(embedded_corpus_path(), id_prefix="emb")]
    import bisect

    written = n = 0
    with atomic_path(Path(out_path)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        while written < target_bytes:
            rng = rng_for(seed, "synth", str(n))
            seed_doc = base[n % len(base)]
            local = [w for w in _WORD.findall(seed_doc) if w.isalpha()]
            sentences = [seed_doc]
            for _ in range(3 + int(rng.random() * 6)):
                length = 6 + int(rng.random() * 14)
                toks = []
                for _ in range(length):
                    if local and rng.random() < 0.35:
                        toks.append(local[int(rng.random() * len(local))].lower())
                    else:
                        toks.append(words[bisect.bisect(cum, rng.random() * acc)])
                sent = " ".join(toks)
                sentences.append(sent[:1].upper() + sent[1:] + rng.choice([".", ".", ".", "?", "!"]))
            text = " ".join(sentences)
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(text.encode("utf-8"))
            n += 1
    return {"documents": n, "text_bytes": written, "seed": seed}


def main(argv: list[str] | None = None) -> int:
    """`python -m filmorph.corpus {split,fetch,synthesize}`: the corpus stage's entry point."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m filmorph.corpus",
                                 description="Corpus stage: fetch/synthesize a source, split it "
                                             "into validated chunks with stable document ids.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="validate a source and split it into chunk_NNNN.jsonl")
    s.add_argument("--source", default="local", choices=["embedded", "local", "hf", "synthetic"])
    s.add_argument("--input", default="", help="source file (not needed for embedded)")
    s.add_argument("--format", default="auto", choices=["auto", "jsonl", "text"])
    s.add_argument("--text-field", default="text")
    s.add_argument("--id-prefix", default="doc")
    s.add_argument("--on-bad-record", default="error", choices=["error", "skip"])
    s.add_argument("--num-chunks", type=int, required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--progress", action="store_true")
    f = sub.add_parser("fetch", help="stream a Hugging Face dataset into a local JSONL.gz")
    f.add_argument("--hf", required=True, help='JSON: {"dataset", "config", "split", '
                                               '"text_field", "revision", "max_documents"}')
    f.add_argument("--out", required=True)
    y = sub.add_parser("synthesize", help="write a deterministic synthetic Filipino corpus")
    y.add_argument("--target-mb", type=float, required=True)
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "split":
        path = embedded_corpus_path() if args.source == "embedded" else Path(args.input)
        try:
            result = split_corpus(path, args.out_dir, args.num_chunks, id_prefix=args.id_prefix,
                                  on_bad_record=args.on_bad_record, fmt=args.format,
                                  text_field=args.text_field, progress=args.progress)
        except (BadRecordError, FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({k: result[k] for k in ("records_in", "documents_out",
                                                  "skipped_total")}), file=sys.stderr)
    elif args.cmd == "fetch":
        hf = json.loads(args.hf)
        result = fetch_hf(hf["dataset"], args.out, config=hf.get("config"),
                          split=hf.get("split", "train"), text_field=hf.get("text_field", "text"),
                          revision=hf.get("revision"), max_documents=hf.get("max_documents"))
        print(json.dumps(result), file=sys.stderr)
    else:
        result = synthesize(args.out, int(args.target_mb * 1e6), seed=args.seed)
        print(json.dumps(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
