"""The audit's provenance checks (``records``, ``complete``, ``manifest``, ``hash``,
``lineage``, ``inputs``; see :mod:`filmorph.audit`), a mixin of :class:`filmorph.audit.Auditor`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filmorph.audit_common import MANIFEST, SELF_RULES, listed, progress_bar, short_hash
from filmorph.provenance import PROVENANCE_DIR, hash_path, record_name

__all__ = ["ProvenanceChecks"]


class ProvenanceChecks:
    """Checks of the job records against the files on disk (needs :class:`~filmorph.audit.Auditor`'s
    state and helpers)."""

    # -------------------------------------------------------------- records, manifest
    def check_records(self) -> None:
        root = self.run / PROVENANCE_DIR
        files = sorted(p for p in root.rglob("*.json") if not p.name.startswith(".")) \
            if root.is_dir() else []
        bad = 0
        for p in files:
            rec = self._read_json("records", p)
            if rec is None:
                bad += 1
                continue
            if not isinstance(rec, dict) or not {"rule", "inputs", "outputs"} <= rec.keys():
                self.add("records", self.rel(p), False, "not a provenance record (no rule, "
                         "inputs or outputs)")
                bad += 1
                continue
            if rec["rule"] in SELF_RULES:
                continue
            self.records[(rec["rule"], record_name(rec.get("wildcards") or {}))] = (p, rec)
        if not self.records:
            self.add("records", PROVENANCE_DIR, False,
                     "no provenance records (a run made before provenance, or not a run dir)")
        elif not bad:
            self.add("records", PROVENANCE_DIR, True, f"{len(self.records)} job records")
        for (_rule, _name), (_p, rec) in sorted(self.records.items(),
                                                  key=lambda kv: kv[1][1].get("end") or ""):
            for path, h in rec["outputs"].items():
                self.outputs[path] = h  # the newest record of a path wins
        if self.records:
            self._check_coverage()

    def _check_coverage(self) -> None:
        """Every shard file, training run output and evaluation result lies in (or is) an
        output some record names."""
        found: list[Path] = []
        for pattern in ("results/shards/*/*/*", "results/checkpoints/*/*/train_summary.json",
                        "results/checkpoints/*/*/hf/step_*", "results/eval/**/*.json*"):
            found += [p for p in self.run.glob(pattern) if not p.name.startswith(".")]
        recorded = {Path(self.rel(self.path(p))) for p in self.outputs}
        missing = []
        for p in sorted(found):
            rel = Path(self.rel(p))
            if not any(a in recorded for a in (rel, *rel.parents)):
                missing.append(rel.as_posix())
        self.add("records", "coverage", not missing,
                 f"outputs no record names: {listed(missing)}" if missing
                 else f"{len(found)} shard, checkpoint and evaluation outputs all recorded")

    def check_manifest(self) -> None:
        path = self.run / MANIFEST
        if not path.is_file():
            self.add("manifest", MANIFEST, False, "missing (snakemake manifest builds it)")
            return
        man = self._read_json("manifest", path)
        if man is None:
            return
        listed = {}
        for e in man.get("jobs") or []:
            listed[(e.get("rule"), record_name(e.get("wildcards") or {}))] = {
                k: v for k, v in e.items() if k != "record"}
        problems = []
        for key, (p, rec) in sorted(self.records.items()):
            if key[0] == "manifest":
                continue  # written after the manifest: it cannot hold itself
            if key not in listed:
                problems.append(f"{self.rel(p)} not in the manifest")
            elif listed[key] != rec:
                problems.append(f"{self.rel(p)} differs from its manifest entry")
        for key in sorted(set(listed) - set(self.records)):
            if key[0] not in SELF_RULES:
                problems.append(f"manifest entry {key[0]}/{key[1]} has no record")
        self.add("manifest", MANIFEST, not problems,
                 listed(problems) if problems else f"{len(listed)} records, all match")

    # -------------------------------------------------------------- re-hash, lineage
    def check_hashes(self) -> None:
        total = sum(int(h.get("bytes") or 0) for h in self.outputs.values())
        with progress_bar(total, "re-hash", self.progress, unit="B") as bar:
            for path in sorted(self.outputs):
                self.now[path] = hash_path(self.path(path), progress=bar)
                self._compare(path, self.outputs[path], self.now[path])

    def _compare(self, path: str, was: Mapping[str, Any], now: Mapping[str, Any]) -> None:
        kind = was.get("type")
        if kind == "missing":
            self.add("hash", path, False, "the job recorded this output as missing")
        elif now.get("type") == "missing":
            self.add("hash", path, False, f"missing (recorded sha256 {short_hash(was.get('sha256'))})")
        elif kind != now.get("type"):
            self.add("hash", path, False, f"recorded as a {kind}, now a {now.get('type')}")
        elif now.get("sha256") == was.get("sha256"):
            n = len(was.get("files") or {}) if kind == "dir" else 1
            self.add("hash", path, True, f"sha256 {short_hash(was.get('sha256'))} ({n} file"
                     f"{'s' if n != 1 else ''})")
        elif kind == "file":
            self.add("hash", path, False,
                     f"changed: recorded sha256 {short_hash(was.get('sha256'))} ({was.get('bytes')} "
                     f"bytes), now {short_hash(now.get('sha256'))} ({now.get('bytes')} bytes)")
        else:
            a, b = was.get("files") or {}, now.get("files") or {}
            changed = [f"{path}/{f}" for f in sorted(set(a) & set(b))
                       if a[f].get("sha256") != b[f].get("sha256")]
            parts = [f"changed: {listed(changed)}" if changed else "",
                     f"missing: {listed([f'{path}/{f}' for f in sorted(set(a) - set(b))])}"
                     if set(a) - set(b) else "",
                     f"new: {listed([f'{path}/{f}' for f in sorted(set(b) - set(a))])}"
                     if set(b) - set(a) else ""]
            self.add("hash", path, False, "; ".join(x for x in parts if x))

    def check_lineage(self) -> None:
        for (rule, name), (_p, rec) in sorted(self.records.items()):
            n, stale = 0, []
            for path, h in sorted(rec["inputs"].items()):
                made = self.outputs.get(path)
                if made is None:
                    continue  # not made by a recorded job (the corpus source, a local model)
                n += 1
                if h.get("sha256") != made.get("sha256"):
                    stale.append(f"{path} (read {short_hash(h.get('sha256'))}, producer recorded "
                                 f"{short_hash(made.get('sha256'))})")
            if n:
                self.add("lineage", f"{rule}/{name}", not stale,
                         f"inputs differ from what their jobs made: {listed(stale)}" if stale
                         else f"{n} inputs as their producers recorded")

    def check_inputs(self) -> None:
        """Every input a job recorded is still there with the sha256 it read; a job whose
        input is gone or changed is named stale (its outputs no longer follow from what is on
        disk)."""
        for (rule, name), (_p, rec) in sorted(self.records.items()):
            stale = []
            for path, h in sorted(rec["inputs"].items()):
                if path not in self.now:
                    self.now[path] = hash_path(self.path(path))
                now = self.now[path]
                if h.get("type") == "missing":
                    continue  # recorded as missing when read (an optional input)
                if now.get("type") == "missing":
                    stale.append(f"{path} is gone")
                elif now.get("sha256") != h.get("sha256"):
                    stale.append(f"{path} changed (read {short_hash(h.get('sha256'))}, now "
                                 f"{short_hash(now.get('sha256'))})")
            if rec["inputs"]:
                self.add("inputs", f"{rule}/{name}", not stale,
                         f"stale: {listed(stale)}; rerun the job (snakemake reruns it once "
                         "the input is rebuilt)" if stale
                         else f"{len(rec['inputs'])} inputs as the job read them")

    def check_complete(self) -> None:
        """Every expected output exists and a record names it (or a directory holding it)."""
        if self.expected is None:
            return
        recorded = {Path(self.rel(self.path(p))) for p, h in self.outputs.items()
                    if h.get("type") != "missing"}
        missing, unrecorded = [], []
        for path in sorted(set(self.expected)):
            rel = Path(self.rel(self.path(path)))
            if not self.path(path).exists():
                missing.append(rel.as_posix())
            elif not any(a in recorded for a in (rel, *rel.parents)):
                unrecorded.append(rel.as_posix())
        for path in missing:
            self.add("complete", path, False, "missing: the config implies it (rebuild it "
                     "with snakemake)")
        for path in unrecorded:
            self.add("complete", path, False, "exists, but no provenance record names it")
        if not missing and not unrecorded:
            self.add("complete", "expected outputs", True,
                     f"{len(set(self.expected))} outputs the config implies, all present and "
                     "recorded")

