"""Checks of the workflow config that a JSON schema cannot express, run when the config is read
(``snakemake -n`` fails), each naming the key at fault.

- :func:`refuse_credentials` runs *before* the schema validation (a schema error message quotes
  the offending mapping, values included): a credential-like key anywhere in the config
  (``token``, ``hf_token``, ``api_key``, ``password``, ``secret``...) or a value shaped like an
  access token is refused, naming the key and never the value. Credentials come from the
  environment (``HF_TOKEN``), which no job writes anywhere.
- :func:`check_config` runs after it, on the validated config (defaults filled): the report's
  baseline arm is enabled; every arm's name, type and parameters are valid
  (:func:`filmorph.arms.check_arm`) and the affix file is usable; the ``train:``
  section passes :class:`filmorph.train.TrainConfig` (split format, batch divisibility by
  micro batch x data-parallel ranks) and, for Megatron, its tensor-parallel split; a config
  with a model to evaluate has at least one benchmark file; the embedded corpus fills every
  chunk.

Both raise :class:`ConfigError` listing every problem found.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "check_config",
    "family_engines",
    "refuse_credentials",
    "train_settings",
]


class ConfigError(ValueError):
    """A config mistake, naming the key."""


# words of a key name (snake_case, kebab-case, camelCase) that mark a credential
_SECRET_WORDS = frozenset({"token", "secret", "password", "passwd", "apikey", "credential",
                           "credentials", "auth", "authtoken", "bearer"})
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"),
                           ("secret", "key")})
# values shaped like access tokens (Hugging Face, GitHub, OpenAI-style keys)
_SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{30,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{30,}"
                           r"|sk-[A-Za-z0-9_-]{20,})$")
_URL_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]+:[^/@\s]*@", re.IGNORECASE)

_ENV_HINT = ("credentials never go into the config (it is copied into job logs and Snakemake's "
             "metadata): put the token in the environment instead, HF_TOKEN for the Hugging "
             "Face hub (huggingface_hub reads it itself)")


def _words(key: str) -> list[str]:
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", key.lower()) if w]


def is_credential_key(key: Any) -> bool:
    """Whether a config key names a credential (``hf_token``, ``apiKey``, ``password``...);
    ``max_new_tokens`` or ``tokenizer`` do not."""
    words = _words(str(key))
    return bool(_SECRET_WORDS.intersection(words)) or any(
        pair in _SECRET_PAIRS for pair in zip(words, words[1:], strict=False))


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, key, value) of every mapping entry and list item below `node`."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            sub = f"{path}.{k}" if path else str(k)
            yield sub, k, v
            yield from _walk(v, sub)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            sub = f"{path}[{i}]"
            yield sub, None, v
            yield from _walk(v, sub)


def refuse_credentials(config: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` naming every credential-like key, or key whose value looks like
    an access token or a URL with a password, anywhere in `config`; the values are never shown.
    """
    bad = []
    for path, key, value in _walk(config, ""):
        if key is not None and is_credential_key(key):
            bad.append(f"{path}: a credential-like key")
        elif isinstance(value, str) and _SECRET_VALUE.match(value.strip()):
            bad.append(f"{path}: the value looks like an access token")
        elif isinstance(value, str) and _URL_USERINFO.match(value.strip()):
            bad.append(f"{path}: the value is a URL with a user name and password")
    if bad:
        raise ConfigError("config refused (values not shown):\n  " + "\n  ".join(bad)
                          + f"\n{_ENV_HINT}")


def train_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``train:`` section as the engines read it (:class:`filmorph.train.TrainConfig`'s
    fields): engine-specific blocks removed, the seed from the root seed unless set."""
    cfg = {k: v for k, v in dict(config.get("train") or {}).items() if k not in ("megatron",)}
    if cfg.get("seed") is None:
        cfg["seed"] = config["seed"]
    return cfg


def family_engines(config: Mapping[str, Any]) -> dict[str, str]:
    """The training engine of each family: ``families.<name>.engine``, else ``train.engine``
    (its schema default ``hf`` when the ``train:`` section is absent)."""
    default = (config.get("train") or {}).get("engine") or "hf"
    return {f: (spec or {}).get("engine") or default
            for f, spec in (config.get("families") or {}).items()}


def _problems(config: Mapping[str, Any]) -> Iterator[str]:
    arms = dict(config.get("arms") or {})
    baseline = (config.get("report") or {}).get("baseline_arm")
    if baseline is not None and baseline not in arms:
        yield (f"report.baseline_arm: {baseline!r} is not among the enabled arms {sorted(arms)}: "
               "every delta is measured against it (enable it under arms: or choose another)")

    from filmorph.arms import check_arm

    kinds = {}
    for name, params in arms.items():
        try:
            kinds[name] = check_arm(name, params)[0]
        except (TypeError, ValueError) as exc:
            yield exc.args[0] if str(exc).startswith(f"arms.{name}") else f"arms.{name}: {exc}"
    if "patok" in kinds.values():
        affixes = config.get("patok_affixes")
        if affixes:
            from filmorph.affixes import load_affixes

            if not Path(affixes).is_file():
                yield (f"patok_affixes: {affixes} is not a file (relative paths are read from the "
                       f"working directory {Path.cwd()})")
            else:
                try:
                    load_affixes(affixes)
                except (OSError, ValueError) as exc:
                    yield f"patok_affixes: {exc}"

    if "train" in config:
        from filmorph.train.config import TrainConfig

        try:
            tc = TrainConfig.from_dict(train_settings(config))
        except ValueError as exc:
            yield str(exc)  # "train: <key> ...", from the one home of these rules
        else:
            if "megatron" in family_engines(config).values():
                tp = int((config["train"].get("megatron") or {}).get("tensor_parallel", 1))
                world = tc.world_size
                if world % tp:
                    yield (f"train.megatron.tensor_parallel: {tp} does not divide the world size "
                           f"{world} (train.gpus_per_node x train.nodes)")
                elif tc.global_batch_size % (tc.micro_batch_size * (world // tp)):
                    yield (f"train.global_batch_size: {tc.global_batch_size} is not a multiple of "
                           f"micro_batch_size {tc.micro_batch_size} x {world // tp} data-parallel "
                           f"ranks (world {world} / tensor_parallel {tp})")

    bench = config.get("benchmarks") or {}
    models = [f"families.{f}.model" for f, spec in (config.get("families") or {}).items()
              if (spec or {}).get("model")]
    models += [f"evaluate.reference_models.{m}"
               for m in ((config.get("evaluate") or {}).get("reference_models") or {})]
    if models and not bench.get("items_per_task") and not bench.get("external"):
        yield (f"benchmarks.items_per_task: empty, and benchmarks.external names no file, but "
               f"{models[0]}{' and others' if len(models) > 1 else ''} is to be evaluated: "
               "there would be no scores and no results table (list at least one task, e.g. "
               "pacute: 100, or drop the models for a tokenization-only run)")

    corpus = config.get("corpus") or {}
    if corpus.get("source") == "embedded":
        from filmorph.corpus import check_chunk_count, embedded_corpus_path, iter_documents

        docs = sum(1 for _ in iter_documents(embedded_corpus_path(), id_prefix="x"))
        try:
            check_chunk_count(docs, int(corpus["num_chunks"]), "the embedded corpus")
        except ValueError as exc:
            yield str(exc)


def check_config(config: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` listing every cross-field mistake in the (schema-validated)
    `config`, each naming its key."""
    problems = list(_problems(config))
    if problems:
        raise ConfigError("config refused:\n  " + "\n  ".join(problems))
