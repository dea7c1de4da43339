"""Base models of the fine-tuning track, downloaded on the login node for offline compute nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from filmorph.io import atomic_path

# weights, configs, tokenizer files, chat templates (chat_template.jinja) and the model code a
# trust_remote_code family needs (configuration_*.py / modeling_*.py)
PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja", "*.py"]
META_FILENAME = "filmorph_model.json"


def download_model(repo_id: str, out_dir: str | Path, *, revision: str | None = None) -> dict[str, Any]:
    """Download a hub model into ``out_dir`` atomically. The token, where one is needed, is read by
    huggingface_hub from ``HF_TOKEN``; it is never passed or written here."""
    from huggingface_hub import snapshot_download

    with atomic_path(out_dir) as tmp:
        snapshot_download(repo_id, revision=revision, local_dir=str(tmp), allow_patterns=PATTERNS)
        meta = {"name": repo_id, "source": "hf", "revision": revision}
        (tmp / META_FILENAME).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return meta
