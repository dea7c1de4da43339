"""Shards: megatron-core's own reader and GPTDataset accept what ShardWriter writes."""

import os
import subprocess
import sys

import numpy as np
import pytest

from filmorph.io import atomic_path
from filmorph.shards import ShardWriter, read_shard, shard_dtype


def test_dtype_follows_megatron_rule():
    assert shard_dtype(32000) == np.uint16
    assert shard_dtype(128256) == np.int32 and shard_dtype(262144) == np.int32


def test_roundtrip_with_indexed_dataset(tmp_path):
    docs = [[5, 6, 7, 1], [8, 1], list(range(10, 300)) + [1]]
    with ShardWriter(tmp_path / "s", 262144) as w:
        for d in docs:
            w.add(d)
    ds = read_shard(tmp_path / "s")
    assert len(ds) == 3 and ds.index.dtype == np.int32
    assert [ds[i].tolist() for i in range(3)] == docs
    assert ds.document_indices.tolist() == [0, 1, 2, 3]
    assert not list(tmp_path.glob(".s.tmp*"))


def test_failed_writer_leaves_no_final_files(tmp_path):
    with pytest.raises(ValueError), ShardWriter(tmp_path / "s", 100) as w:
        w.add([1, 2])
        w.add([500])  # out of range
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_atomic_path_on_exception(tmp_path):
    final = tmp_path / "x.json"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_gpt_dataset_builds_over_shards(tmp_path):
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.megatron_tokenizer import MegatronLegacyTokenizer

    class Tok(MegatronLegacyTokenizer):
        def __init__(self):
            super().__init__("filmorph-test", vocab=1000, eod=1)

        def tokenize(self, text):  # pragma: no cover - never called
            raise NotImplementedError

        @property
        def vocab(self):
            return {}

        @property
        def inv_vocab(self):
            return {}

        @property
        def vocab_size(self):
            return 1000

        @property
        def eod(self):
            return 1

        @property
        def pad(self):
            return 0

    rng = np.random.default_rng(0)
    prefixes = []
    for k in range(2):
        with ShardWriter(tmp_path / f"chunk_{k + 1:04d}", 1000) as w:
            for _ in range(20):
                w.add(list(rng.integers(2, 1000, size=int(rng.integers(5, 40)))) + [1])
        prefixes.append(str(tmp_path / f"chunk_{k + 1:04d}"))
    cfg = GPTDatasetConfig(
        random_seed=7,
        sequence_length=16,
        blend=(prefixes, None),
        split="100,0,0",
        tokenizer=Tok(),
        reset_position_ids=True,
        reset_attention_mask=True,
        eod_mask_loss=True,
        path_to_cache=str(tmp_path / "cache"),
        mid_level_dataset_surplus=0.005,
    )
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [10, None, None], lambda: True, cfg).build()
    finally:
        dist.destroy_process_group()
    item = train[0]
    assert item["tokens"].shape[0] == 16
    # EOD positions are masked out of the loss, and position ids restart after them
    eod = (item["tokens"] == 1).nonzero().flatten().tolist()
    for p in eod:
        assert item["loss_mask"][p] == 0
        if p + 1 < 16:
            assert item["position_ids"][p + 1] == 0


def test_atomic_path_replaces_a_directory(tmp_path):
    final = tmp_path / "tok"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]  # no leftovers


def test_replace_path_restores_the_old_directory_on_failure(tmp_path, monkeypatch):
    import os

    from filmorph import io

    final = tmp_path / "ckpt"
    final.mkdir()
    (final / "weights").write_text("old")
    new = tmp_path / "new"
    new.mkdir()
    real_replace = os.replace

    def flaky(src, dst):
        if str(src) == str(new):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", flaky)
    with pytest.raises(OSError):
        io.replace_path(new, final)
    assert (final / "weights").read_text() == "old"


def test_writer_removes_temp_files_of_killed_writers(tmp_path):
    """A SIGKILLed writer leaves hidden temp files; the next writer of the prefix removes those
    of dead processes and keeps those of live ones."""
    import subprocess

    prefix = tmp_path / "chunk_0001"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [tmp_path / f".chunk_0001.tmp-{dead.pid}{ext}" for ext in (".bin", ".idx")]
    live = tmp_path / f".chunk_0001.tmp-{os.getppid()}.bin"
    other = tmp_path / f".chunk_0002.tmp-{dead.pid}.bin"
    for f in (*stale, live, other):
        f.write_bytes(b"partial")
    with ShardWriter(prefix, vocab_size=100) as w:
        w.add([1, 2, 0])
    assert not any(f.exists() for f in stale)
    assert live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.glob("chunk_0001.*")) == ["chunk_0001.bin", "chunk_0001.idx"]


def test_writing_a_shard_logs_no_megatron_kernel_warnings(tmp_path):
    """A tokenize job's log holds its own lines: megatron-core's import-time warnings about
    Transformer Engine / Apex kernels (irrelevant to writing files) are kept out, in a fresh
    process with every warning shown."""
    code = (
        "import sys; from filmorph.shards import ShardWriter, read_shard\n"
        "w = ShardWriter(sys.argv[1], 300000); w.add([5, 7, 1]); w.commit()\n"
        "print(len(read_shard(sys.argv[1])))\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "default", "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s")], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "1"
    assert "Transformer Engine and Apex" not in res.stderr, res.stderr
