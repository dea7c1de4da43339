"""The audit's checks of what the stages made (``shard``, ``retokenize``, ``config``,
``checkpoint``, ``evaluation``; see :mod:`filmorph.audit`), a mixin of
:class:`filmorph.audit.Auditor`."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from filmorph.audit_common import listed, progress_bar, short_hash
from filmorph.io import read_json
from filmorph.paths import (
    CHUNK_GLOB,
    EVAL_DIR,
    HF_CHECKPOINT,
    STEP_GLOB,
    STEP_RE,
    TOKENIZER_DIR,
    eval_path,
)
from filmorph.provenance import sha256_file, sha256_tree
from filmorph.shards import check_shard

__all__ = ["ArtifactChecks"]


class ArtifactChecks:
    """Checks of shards, re-tokenization, training runs and evaluations (needs
    :class:`~filmorph.audit.Auditor`'s state and helpers)."""

    # -------------------------------------------------------------- shards
    def check_shards(self) -> None:
        for family, arm, d in self.shard_dirs():
            for prefix in self.prefixes(d):
                stats_path = Path(f"{prefix}.stats.json")
                stats = None
                if stats_path.is_file():
                    stats = self._read_json("shard", stats_path)
                problems = check_shard(prefix, stats=stats)
                if stats is None:
                    problems.append(f"{stats_path}: missing or unreadable")
                problems = [p.replace(str(self.run) + "/", "") for p in problems]
                self.add("shard", self.rel(prefix), not problems,
                         "; ".join(problems) if problems else
                         f"{(stats or {}).get('documents_out')} entries, "
                         f"{(stats or {}).get('tokens_written')} tokens, sizes and EODs consistent")
            if self.config is not None:
                self._check_shard_config(family, arm, d)

    def _check_shard_config(self, family: str, arm: str, d: Path) -> None:
        cfg = self.config or {}
        want_params = (cfg.get("arms") or {}).get(arm)
        if arm not in (cfg.get("arms") or {}):
            self.add("config", f"{family}/{arm}", False, f"arm {arm} is not in the config")
            return
        want = {"arm_params": dict(want_params or {}), "seed": cfg.get("seed")}
        problems = []
        for prefix in self.prefixes(d):
            stats_path = Path(f"{prefix}.stats.json")
            if not stats_path.is_file():
                continue
            stats = read_json(stats_path)
            for key, value in want.items():
                if stats.get(key) != value:
                    problems.append(f"{self.rel(stats_path)}: {key} {stats.get(key)!r}, the "
                                    f"config says {value!r}")
        self.add("config", f"{family}/{arm}", not problems,
                 listed(problems) if problems else "shards made with the config's arm "
                 "parameters and seed")

    # -------------------------------------------------------------- re-tokenization
    def sample_documents(self) -> list[tuple[str, int, str, str]]:
        """(chunk stem, line index, doc id, text) of ``sample_size`` corpus documents chosen by
        ``seed`` over all chunks (the same documents for every family x arm)."""
        from filmorph.rng import rng_for

        corpus = self.run / "resources/corpus"
        chunks = sorted(corpus.glob(f"{CHUNK_GLOB}.jsonl")) if corpus.is_dir() else []
        counts_file = corpus / "counts.json"
        counts = None
        if counts_file.is_file():
            counts = read_json(counts_file).get("chunk_documents")
        if not counts or len(counts) != len(chunks):
            counts = []
            for c in chunks:
                with open(c, "rb") as fh:
                    counts.append(sum(block.count(b"\n") for block in iter(
                        lambda fh=fh: fh.read(1 << 20), b"")))
        total = sum(counts)
        picks = sorted(rng_for(self.seed, "audit", "sample").sample(
            range(total), min(self.sample_size, total)))
        wanted: dict[int, set[int]] = defaultdict(set)
        start = 0
        for k, n in enumerate(counts):
            for g in picks:
                if start <= g < start + n:
                    wanted[k].add(g - start)
            start += n
        out = []
        for k, lines in sorted(wanted.items()):
            last = max(lines)
            with open(chunks[k], encoding="utf-8") as fh:
                for i, line in enumerate(fh):
                    if i in lines:
                        try:
                            obj = json.loads(line)
                            out.append((chunks[k].stem, i, obj["id"], obj["text"]))
                        except (ValueError, KeyError, TypeError) as exc:
                            raise ValueError(f"{chunks[k]}:{i + 1}: malformed chunk line "
                                             f"({exc})") from exc
                    if i >= last:
                        break
        return out

    def _affix_path(self) -> str | None:
        if self.config is not None:
            p = self.config.get("patok_affixes")
            return str(self.path(p)) if p else None
        for (rule, _n), (_p, rec) in sorted(self.records.items()):
            if rule == "tokenize_chunk":  # every arm's job records the config's patok_affixes
                p = ((rec.get("config") or {}).get("values") or {}).get("affixes")
                return str(self.path(p)) if p else None
        return None

    def _arm_settings(self, arm: str, stats: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        if self.config is not None:
            return dict((self.config.get("arms") or {}).get(arm) or {}), int(self.config["seed"])
        return dict(stats.get("arm_params") or {}), int(stats["seed"])

    def check_retokenize(self) -> None:
        from filmorph.shards import read_shard
        from filmorph.tokenize import tokenize_documents

        dirs = self.shard_dirs()
        if not dirs:
            self.add("retokenize", "results/shards", False, "no shards")
            return
        try:
            self.sample = self.sample_documents()
        except (OSError, ValueError) as exc:
            self.add("retokenize", "resources/corpus", False, f"cannot sample documents: {exc}")
            return
        if not self.sample:
            self.add("retokenize", "resources/corpus", False, "no corpus documents to sample")
            return
        affixes = self._affix_path()
        with progress_bar(len(self.sample) * len(dirs), "re-tokenize", self.progress, "doc") as bar:
            for family, arm, d in dirs:
                problems = self._retokenize_one(family, arm, d, affixes, read_shard,
                                                tokenize_documents)
                bar.update(len(self.sample))
                self.add("retokenize", f"{family}/{arm}", not problems,
                         listed(problems) if problems else
                         f"{len(self.sample)} sampled documents re-tokenized to the shards' ids")

    def _retokenize_one(self, family, arm, d, affixes, read_shard, tokenize_documents) -> list[str]:
        tok_dir = self.run / TOKENIZER_DIR.format(family=family)
        if not (tok_dir / "tokenizer_meta.json").is_file():
            return [f"{self.rel(tok_dir)}: no prepared tokenizer"]
        problems: list[str] = []
        groups: dict[str, list[tuple[str, int, str, str, int]]] = defaultdict(list)
        settings: dict[str, tuple[dict[str, Any], int]] = {}
        for chunk, line, doc_id, text in self.sample:
            prefix = d / chunk
            try:
                stats = read_json(f"{prefix}.stats.json")
                ids = Path(f"{prefix}.doc_ids.txt").read_text(encoding="utf-8").split()
            except (OSError, ValueError) as exc:
                problems.append(f"{self.rel(prefix)}: cannot read ({exc})")
                continue
            try:
                entry = ids.index(doc_id)
            except ValueError:
                problems.append(f"{doc_id}: not in {self.rel(prefix)}.doc_ids.txt")
                continue
            params, seed = self._arm_settings(arm, stats)
            key = json.dumps([params, seed], sort_keys=True)
            settings[key] = (params, seed)
            groups[key].append((chunk, line, doc_id, text, entry))
        for key, docs in sorted(groups.items()):
            params, seed = settings[key]
            try:
                fresh = tokenize_documents([(doc_id, text) for _c, _l, doc_id, text, _e in docs],
                                           tok_dir, arm, params, seed, affix_path=affixes)
            except Exception as exc:  # a broken tokenizer dir or arm config: named, not raised
                problems.append(f"{family}/{arm}: re-tokenization failed ({exc})")
                continue
            by_chunk: dict[str, Any] = {}
            for (chunk, _line, doc_id, _text, entry), want in zip(docs, fresh, strict=True):
                prefix = d / chunk
                try:
                    if chunk not in by_chunk:
                        by_chunk[chunk] = read_shard(prefix)
                    have = np.asarray(by_chunk[chunk][entry], dtype=np.int64)
                except Exception as exc:  # a corrupt shard megatron-core cannot read
                    problems.append(f"{doc_id}: cannot read entry {entry} of "
                                    f"{self.rel(prefix)}.bin/.idx ({type(exc).__name__}: {exc})")
                    continue
                if not np.array_equal(have, want):
                    n = min(len(have), len(want))
                    diff = np.flatnonzero(have[:n] != want[:n])
                    at = int(diff[0]) if diff.size else n
                    what = (f"token {at}: shard {int(have[at])}, re-tokenized {int(want[at])}"
                            if diff.size else f"length: shard {len(have)}, re-tokenized {len(want)}")
                    problems.append(f"{doc_id} ({self.rel(prefix)}.bin entry {entry}) differs at "
                                    f"{what}")
        return problems

    # -------------------------------------------------------------- checkpoints
    def check_checkpoints(self) -> None:
        root = self.run / "results/checkpoints"
        if not root.is_dir():
            return
        for fam in sorted(p for p in root.iterdir() if p.is_dir()):
            for run in sorted(p for p in fam.iterdir() if p.is_dir() and p.name != "base"):
                if (run / "train_config.json").is_file() or (run / "train_summary.json").is_file() \
                        or (run / "hf").is_dir():
                    problems = self._checkpoint_problems(fam.name, run.name, run)
                    self.add("checkpoint", self.rel(run), not problems,
                             listed(problems) if problems else
                             "trained on this arm's shards, unchanged, with the family's tokenizer")
                    if self.config is not None and not problems:
                        self._check_train_config(run)

    def _checkpoint_problems(self, family: str, arm: str, run: Path) -> list[str]:
        from filmorph.train.common import RunLayout

        layout = RunLayout(run)
        if not layout.train_config.is_file():
            return [f"{self.rel(layout.train_config)}: missing"]
        try:
            rec = read_json(layout.train_config)
        except ValueError as exc:
            return [f"{self.rel(layout.train_config)}: unreadable ({exc})"]
        problems: list[str] = []
        tc = self.rel(layout.train_config)
        tok = dict(rec.get("tokenizer") or {})
        # the family's prepared tokenizer
        tok_dir = self.run / TOKENIZER_DIR.format(family=family)
        if (tok_dir / "tokenizer.json").is_file():
            sha = sha256_file(tok_dir / "tokenizer.json")
            if tok.get("tokenizer_json_sha256") != sha:
                problems.append(f"{tc}: tokenizer sha256 {short_hash(tok.get('tokenizer_json_sha256'))}"
                                f", {self.rel(tok_dir)}/tokenizer.json is {short_hash(sha)}")
            meta = read_json(tok_dir / "tokenizer_meta.json")
            for key in ("vocab_size", "eos_id"):
                if tok.get(key) != meta.get(key):
                    problems.append(f"{tc}: tokenizer {key} {tok.get(key)}, "
                                    f"{self.rel(tok_dir)} has {meta.get(key)}")
        else:
            problems.append(f"{self.rel(tok_dir)}/tokenizer.json: missing")
        if tok.get("family") not in (None, family):
            problems.append(f"{tc}: tokenizer family {tok.get('family')}, run dir of {family}")
        # the shards it names: exactly this arm's, unchanged, from the same tokenizer
        shard_dir = self.run / "results/shards" / family / arm
        have = sorted(self.rel(p) for p in self.prefixes(shard_dir)) if shard_dir.is_dir() else []
        named = sorted(str(s.get("prefix")) for s in rec.get("shards") or [])
        if [self.rel(self.path(p)) for p in named] != have:
            problems.append(f"{tc}: trained on {listed(named)}; {family}/{arm} has "
                            f"{listed(have) or 'no shards'}")
        for s in rec.get("shards") or []:
            prefix = self.path(str(s.get("prefix")))
            if s.get("arm") != arm:
                problems.append(f"{tc}: shard {s.get('prefix')} recorded as arm {s.get('arm')}, "
                                f"run dir of arm {arm}")
            if s.get("tokenizer") != tok:
                problems.append(f"{tc}: shard {s.get('prefix')} tokenizer differs from the run's")
            stats_path = Path(f"{prefix}.stats.json")
            if stats_path.is_file():
                stats = read_json(stats_path)
                if stats.get("arm") != arm:
                    problems.append(f"{self.rel(stats_path)}: arm {stats.get('arm')}, run dir of "
                                    f"arm {arm}")
                if stats.get("tokenizer") != tok:
                    had = stats.get("tokenizer") or {}
                    problems.append(f"{self.rel(stats_path)}: tokenizer "
                                    f"{short_hash(had.get('tokenizer_json_sha256'))}"
                                    f" / vocab {had.get('vocab_size')}, "
                                    f"the run recorded {short_hash(tok.get('tokenizer_json_sha256'))} / "
                                    f"vocab {tok.get('vocab_size')}")
            idx = Path(f"{prefix}.idx")
            if not idx.is_file():
                problems.append(f"{self.rel(idx)}: missing")
            elif s.get("idx_sha256") != sha256_file(idx):
                problems.append(f"{self.rel(idx)}: changed since training (sha256 "
                                f"{short_hash(sha256_file(idx))}, trained on "
                                f"{short_hash(s.get('idx_sha256'))})")
        # checkpoints and summary say the same
        hf = sorted(layout.hf_root.glob(STEP_GLOB)) if layout.hf_root.is_dir() else []
        if not hf:
            problems.append(f"{self.rel(layout.hf_root)}: no checkpoints")
        for ckpt in hf:
            meta_path = ckpt / "filmorph_train_meta.json"
            if meta_path.is_file():
                meta = read_json(meta_path)
                if meta.get("tokenizer") not in (None, tok):
                    problems.append(f"{self.rel(meta_path)}: tokenizer differs from {tc}")
                if meta.get("shard_prefixes") not in (None, rec.get("shard_prefixes")):
                    problems.append(f"{self.rel(meta_path)}: shard prefixes differ from {tc}")
            cfg_path = ckpt / "config.json"
            if cfg_path.is_file():
                cfg = read_json(cfg_path)
                rows = cfg.get("vocab_size") or (cfg.get("text_config") or {}).get("vocab_size")
                if rows is not None and tok.get("vocab_size") is not None \
                        and int(rows) < int(tok["vocab_size"]):
                    problems.append(f"{self.rel(cfg_path)}: vocab_size {rows} < the tokenizer's "
                                    f"{tok['vocab_size']}")
            else:
                problems.append(f"{self.rel(cfg_path)}: missing")
        if layout.summary.is_file():
            summ = read_json(layout.summary)
            if summ.get("tokenizer") not in (None, tok):
                problems.append(f"{self.rel(layout.summary)}: tokenizer differs from {tc}")
            named_summary = [s.get("prefix") for s in summ.get("shards") or []]
            if named_summary and named_summary != [s.get("prefix") for s in rec.get("shards") or []]:
                problems.append(f"{self.rel(layout.summary)}: shards differ from {tc}")
        return problems

    def _check_train_config(self, run: Path) -> None:
        from filmorph.config_checks import family_engines, train_settings
        from filmorph.train.config import TrainConfig

        cfg = self.config or {}
        want = train_settings({"seed": None, **cfg})
        # the family's engine (families.<name>.engine, default train.engine)
        engine = family_engines(cfg).get(run.parent.name)
        if engine is not None:
            want["engine"] = engine
        rec = read_json(run / "train_config.json")
        try:
            a = TrainConfig.from_dict(want).semantic_dict()
            b = TrainConfig.from_dict(rec["config"]).semantic_dict()
        except (KeyError, TypeError, ValueError) as exc:
            self.add("config", self.rel(run), False, f"cannot compare train configs: {exc}")
            return
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        self.add("config", self.rel(run), not diff,
                 f"trained with other {', '.join(diff)} than the config" if diff
                 else "trained with the config's train settings")

    # -------------------------------------------------------------- evaluation
    def _label_problems(self, path: Path, labels: Mapping[str, Any]) -> list[str]:
        """The scores JSON's labels name this file (:func:`filmorph.paths.eval_path`, the one
        mapping the rules use): the report reads labels, the rules wrote paths."""
        rel = self.rel(path)
        try:
            want = eval_path(dict(labels))
        except ValueError as exc:
            return [f"labels {dict(labels)}: {exc}"]
        if rel != want:
            return [f"labels {dict(labels)} name {want}, not this file"]
        return []

    def check_evaluations(self) -> None:
        root = self.run / EVAL_DIR
        files = sorted(p for p in root.rglob("*.json") if not p.name.startswith(".")) \
            if root.is_dir() else []
        trees: dict[str, str] = {}
        for path in files:
            scores = self._read_json("evaluation", path)
            if scores is None:
                continue
            problems: list[str] = []
            model = scores.get("model")
            labels = scores.get("labels") or {}
            problems += self._label_problems(path, labels)
            if not model:
                problems.append("names no model")
            else:
                mdir = self.path(model)
                if not mdir.is_dir():
                    problems.append(f"model {model}: missing")
                elif not scores.get("model_sha256"):
                    problems.append("records no model_sha256 (scored before it was recorded)")
                else:
                    key = str(mdir.resolve())
                    if key not in trees:
                        trees[key] = sha256_tree(mdir)
                    if trees[key] != scores["model_sha256"]:
                        problems.append(f"model {model}: sha256 now {short_hash(trees[key])}, scored "
                                        f"{short_hash(scores['model_sha256'])}")
                ckpt = labels.get("checkpoint")
                # a trained checkpoint (step_NNNNNNN; fine-tuning's "final" lives elsewhere)
                if labels.get("arm") not in (None, "base") and STEP_RE.match(str(ckpt)):
                    want = HF_CHECKPOINT.format(model=labels.get("model"), arm=labels["arm"], ckpt=ckpt)
                    if self.rel(self.path(model)) != want:
                        problems.append(f"model {model} is not the checkpoint its labels name "
                                        f"({want})")
            bench = scores.get("benchmark_file")
            if not bench:
                problems.append("names no benchmark file")
            elif not self.path(bench).is_file():
                problems.append(f"benchmark {bench}: missing")
            elif sha256_file(self.path(bench)) != scores.get("benchmark_sha256"):
                problems.append(f"benchmark {bench}: sha256 now "
                                f"{short_hash(sha256_file(self.path(bench)))}, scored "
                                f"{short_hash(scores.get('benchmark_sha256'))}")
            self.add("evaluation", self.rel(path), not problems,
                     "; ".join(problems) if problems else
                     "labels name this file; model and benchmark exist with the sha256 that was scored")

