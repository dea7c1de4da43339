"""Command line of the fine-tuning track: ``python -m filmorph.finetune --help``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DESCRIPTION = """\
The fine-tuning track: chat data -> NeMo Automodel LoRA / full SFT -> HF PEFT adapter (and
merged weights) -> held-out chat loss before/after.

  validate         check chat JSONL files (errors name file:line), write counts (+ clean copies)
  synthesize       write a deterministic synthetic chat JSONL (for tests and the tiny config)
  fetch            download a chat JSONL from a URL (login node)
  download-model   download a hub model (weights, config, tokenizer, chat template, code)
  config           print the Automodel recipe YAML a run would use
  train            fine-tune (resumable; exit status 3: stopped early, rerun to resume)
  merge            merge a LoRA adapter into its base model
  evaluate-loss    mean assistant-token loss of a model (+ adapter) on a chat JSONL file
  download-kernels / build-kernels / install-kernels
                   the offline wheelhouse of mamba-ssm and causal-conv1d
"""


def _kv(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, not {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _load_mapping(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a mapping (a finetune run: preset + overrides)")
    return data


def _run_config(args: argparse.Namespace) -> Any:
    from filmorph.finetune.config import FinetuneConfig

    spec = _load_mapping(args.config)
    if args.preset:
        spec["preset"] = args.preset
    spec.update(_kv(args.set))
    return FinetuneConfig.from_run(spec)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m filmorph.finetune",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="validate chat JSONL files and write counts")
    v.add_argument("--train", required=True, type=Path)
    v.add_argument("--validation", type=Path, default=None)
    v.add_argument("--out", required=True, type=Path, help="counts JSON (written only if every file passes)")
    v.add_argument("--on-bad-record", choices=("error", "skip"), default="error")
    v.add_argument(
        "--clean-dir", type=Path, default=None, help="write the valid lines to DIR/{train,validation}.jsonl"
    )

    s = sub.add_parser("synthesize", help="write synthetic chat JSONL")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)

    f = sub.add_parser("fetch", help="download a chat JSONL from a URL")
    f.add_argument("--url", required=True)
    f.add_argument("--out", required=True, type=Path)

    d = sub.add_parser("download-model", help="download a hub model for offline compute nodes")
    d.add_argument("--id", required=True)
    d.add_argument("--revision", default=None)
    d.add_argument("--out", required=True, type=Path)

    for name, helptext in (
        ("config", "print the Automodel recipe YAML"),
        ("train", "fine-tune with Automodel"),
    ):
        t = sub.add_parser(name, help=helptext)
        t.add_argument("--config", type=Path, default=None, help="JSON/YAML run spec: preset + overrides")
        t.add_argument("--preset", default=None, help="preset name (overrides the spec's)")
        t.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="override a run key (JSON value)"
        )
        t.add_argument("--model", default=None, help="local HF dir or hub id (default: the preset's)")
        t.add_argument("--train", required=True, type=Path)
        t.add_argument("--validation", type=Path, default=None)
        t.add_argument("--out", required=True, type=Path, help="the run dir")
        t.add_argument(
            "--trust-remote-code-family",
            action="append",
            default=[],
            metavar="FAMILY",
            help="model families (HF model_type) whose hub code is trusted",
        )
        if name == "train":
            t.add_argument(
                "--wheelhouse", type=Path, default=None, help="install mamba-ssm/causal-conv1d from it"
            )
            t.add_argument(
                "--merge", action="store_true", help="LoRA: also write merged weights to OUT/merged"
            )
            t.add_argument("--on-config-change", choices=("error", "restart"), default="error")
            t.add_argument("--no-progress", action="store_true")

    m = sub.add_parser("merge", help="merge a LoRA adapter into its base model")
    m.add_argument("--model", required=True)
    m.add_argument("--adapter", required=True, type=Path)
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32", "float16"))
    m.add_argument("--trust-remote-code", action="store_true")

    e = sub.add_parser("evaluate-loss", help="mean assistant-token loss on a chat JSONL file")
    e.add_argument("--model", required=True, help="HF checkpoint dir or hub id")
    e.add_argument("--adapter", type=Path, default=None, help="a PEFT adapter dir to apply")
    e.add_argument("--data", required=True, type=Path)
    e.add_argument("--out", type=Path, default=None)
    e.add_argument("--max-length", type=int, default=2048)
    e.add_argument("--max-conversations", type=int, default=None)
    e.add_argument("--dtype", default=None, choices=("bfloat16", "float32", "float16"))
    e.add_argument("--device", default=None)
    e.add_argument(
        "--chat-template",
        default=None,
        help="a template name (llama3), Jinja file or template overriding the tokenizer's",
    )
    e.add_argument("--trust-remote-code", action="store_true")
    e.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")

    k = sub.add_parser("download-kernels", help="login node: sdists of mamba-ssm and causal-conv1d")
    k.add_argument("--mamba-ssm", required=True)
    k.add_argument("--causal-conv1d", required=True)
    k.add_argument("--out", required=True, type=Path)
    b = sub.add_parser("build-kernels", help="compute node: build the wheels")
    b.add_argument("--src", required=True, type=Path)
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--arch-list", required=True, help="TORCH_CUDA_ARCH_LIST, e.g. '8.0;9.0'")
    b.add_argument("--max-jobs", type=int, default=8)
    i = sub.add_parser("install-kernels", help="install the wheels into a target dir")
    i.add_argument("--wheelhouse", required=True, type=Path)
    i.add_argument("--target", required=True, type=Path)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cmd = args.command
    if cmd == "validate":
        from filmorph.finetune.data import ChatDataError, validate_chat_data

        files = {"train": args.train, **({"validation": args.validation} if args.validation else {})}
        try:
            res = validate_chat_data(
                files, args.out, on_bad_record=args.on_bad_record, clean_dir=args.clean_dir
            )
        except (ChatDataError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(
            json.dumps(
                {
                    s: {k: c[k] for k in ("records_in", "conversations", "skipped_total")}
                    for s, c in res["files"].items()
                }
            )
        )
    elif cmd == "synthesize":
        from filmorph.finetune.data import write_synthetic

        write_synthetic(args.out, args.n, args.seed)
    elif cmd == "fetch":
        from filmorph.finetune.data import fetch_url

        print(json.dumps(fetch_url(args.url, args.out)))
    elif cmd == "download-model":
        from filmorph.models import HUB_PATTERNS_WITH_CODE, download_model

        meta = download_model(args.id, args.out, revision=args.revision, patterns=HUB_PATTERNS_WITH_CODE)
        print(json.dumps(meta))
    elif cmd == "config":
        import yaml

        from filmorph.finetune.config import automodel_finetune_config

        cfg = _run_config(args)
        out = automodel_finetune_config(
            cfg,
            train_file=args.train,
            validation_file=args.validation,
            run_dir=args.out,
            model=args.model,
            trust_remote_code_families=args.trust_remote_code_family,
        )
        sys.stdout.write(yaml.safe_dump(out, sort_keys=False))
    elif cmd == "train":
        from filmorph.finetune.run import train
        from filmorph.train.launch import TrainingIncomplete

        cfg = _run_config(args)
        try:
            summary = train(
                cfg,
                train_file=args.train,
                validation_file=args.validation,
                run_dir=args.out,
                model=args.model,
                trust_remote_code_families=args.trust_remote_code_family,
                wheelhouse=args.wheelhouse,
                merge=args.merge,
                progress=not args.no_progress,
                on_config_change=args.on_config_change,
            )
        except TrainingIncomplete as exc:
            print(f"fine-tuning incomplete, rerun to resume: {exc}", file=sys.stderr)
            return 3
        if summary:
            print(
                json.dumps(
                    {k: summary.get(k) for k in ("preset", "steps", "first_loss", "final_loss", "val_loss")}
                )
            )
    elif cmd == "merge":
        from filmorph.finetune.run import merge_adapter

        print(
            json.dumps(
                merge_adapter(
                    args.model,
                    args.adapter,
                    args.out,
                    dtype=args.dtype,
                    trust_remote_code=args.trust_remote_code,
                )
            )
        )
    elif cmd == "evaluate-loss":
        from filmorph.finetune.config import resolve_chat_template
        from filmorph.finetune.loss import evaluate_loss

        template = resolve_chat_template(args.chat_template)
        res = evaluate_loss(
            args.model,
            args.data,
            args.out,
            adapter=args.adapter,
            max_length=args.max_length,
            max_conversations=args.max_conversations,
            dtype=args.dtype,
            device=args.device,
            chat_template=template,
            trust_remote_code=args.trust_remote_code,
            label=_kv(args.label),
        )
        print(json.dumps({k: res[k] for k in ("loss", "perplexity", "tokens", "conversations")}))
    elif cmd == "download-kernels":
        from filmorph.finetune.kernels import download_sources

        versions = {"mamba-ssm": args.mamba_ssm, "causal-conv1d": args.causal_conv1d}
        print(json.dumps(download_sources(versions, args.out)))
    elif cmd == "build-kernels":
        from filmorph.finetune.kernels import build_wheels

        print(json.dumps(build_wheels(args.src, args.out, arch_list=args.arch_list, max_jobs=args.max_jobs)))
    elif cmd == "install-kernels":
        from filmorph.finetune.kernels import install_wheels

        print(install_wheels(args.wheelhouse, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
