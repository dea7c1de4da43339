"""The fine-tuning track's rules other than finetune_model: one `python -m filmorph.finetune`
command each (chat data, model download, kernel wheelhouse, merge, chat loss)."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # this checkout's filmorph

from filmorph.finetune.__main__ import main  # noqa: E402
from filmorph.workflow import run_stage  # noqa: E402

rule, inp, out, p, wc = (
    snakemake.rule,
    snakemake.input,
    snakemake.output,
    snakemake.params,
    snakemake.wildcards,
)
if rule == "synthesize_chat_data":
    argv = ["synthesize", "--out", out[0], "--n", p.n, "--seed", p.seed]
elif rule == "fetch_chat_data":
    argv = ["fetch", "--url", p.url, "--out", out[0]]
elif rule == "validate_chat_data":
    argv = [
        "validate",
        "--train",
        inp.train,
        "--validation",
        inp.validation,
        "--out",
        out.counts,
        "--on-bad-record",
        p.on_bad_record,
        "--clean-dir",
        str(Path(out.train).parent),
    ]
elif rule == "download_finetune_model":
    argv = ["download-model", "--id", p.id, "--out", out[0]] + (
        ["--revision", p.revision] if p.revision else []
    )
elif rule == "download_kernel_sources":
    argv = [
        "download-kernels",
        "--mamba-ssm",
        p.mamba_ssm,
        "--causal-conv1d",
        p.causal_conv1d,
        "--out",
        out[0],
    ]
elif rule == "build_kernel_wheels":
    argv = [
        "build-kernels",
        "--src",
        inp[0],
        "--out",
        out[0],
        "--arch-list",
        p.arch_list,
        "--max-jobs",
        snakemake.threads,
    ]
elif rule == "merge_adapter":
    argv = ["merge", "--model", inp.model, "--adapter", inp.adapter, "--out", out[0], "--dtype", p.dtype]
    argv += ["--trust-remote-code"] if p.trust_remote_code else []
elif rule == "chat_loss":
    argv = [
        "evaluate-loss",
        "--model",
        inp.model,
        "--data",
        inp.data,
        "--out",
        out[0],
        "--max-length",
        p.max_length,
        "--label",
        f"run={wc.run}",
        "--label",
        f"stage={wc.stage}",
    ]
    argv += ["--adapter", inp.adapter] if "adapter" in inp.keys() else []
    argv += ["--max-conversations", p.max_conversations] if p.max_conversations else []
    argv += ["--chat-template", p.chat_template] if p.chat_template else []
    argv += ["--trust-remote-code"] if p.trust_remote_code else []
    import torch

    torch.set_num_threads(snakemake.threads)  # the cores this job was given, no more
else:
    raise SystemExit(f"workflow_scripts/finetune.py does not serve rule {rule}")
run_stage(snakemake, main, argv)
