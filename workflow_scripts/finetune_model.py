"""rule finetune_model: one fine-tuning run with NeMo Automodel (resumable)."""

import json
import os
import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
SRC = Path(snakemake.scriptdir).parent / "src"
sys.path.insert(0, str(SRC))  # this checkout's filmorph

from filmorph.finetune.config import FinetuneConfig  # noqa: E402
from filmorph.finetune.run import launcher_argv  # noqa: E402
from filmorph.io import atomic_path  # noqa: E402
from filmorph.train.launch import engine_pythonpath, run_training_command  # noqa: E402
from filmorph.workflow import job_log, job_provenance  # noqa: E402

# the log first: a failure of any step below lands in it and on the console
with job_log(snakemake) as log:
    p, inp = snakemake.params, snakemake.input
    run_dir = Path(snakemake.output.summary).parent
    request = run_dir / "finetune_request.json"  # the run this job was given
    with atomic_path(request) as tmp:
        tmp.write_text(p.run + "\n")
    cfg = FinetuneConfig.from_run(json.loads(p.run))
    # A changed run is a new run (Snakemake reruns the job; the run dir starts afresh); the same
    # run resumes from Automodel's newest complete checkpoint after a time limit or preemption.
    args = [
        "train",
        "--config",
        str(request),
        "--model",
        inp.model,
        "--train",
        inp.train,
        "--validation",
        inp.validation,
        "--out",
        str(run_dir),
        "--on-config-change",
        "restart",
        "--no-progress",
    ]
    if p.trust_remote_code:
        args += ["--trust-remote-code-family", cfg.family]
    if inp.wheelhouse:
        args += ["--wheelhouse", inp.wheelhouse]
    cmd = launcher_argv(cfg, args)  # once per node: it starts torchrun with the ranks itself
    env = dict(os.environ)
    # NeMo Automodel's own packages where a machine without conda keeps them apart
    env["PYTHONPATH"] = engine_pythonpath("automodel", env, first=[SRC])
    with job_provenance(snakemake, log=log):
        print("command:", " ".join(cmd), file=log, flush=True)
        # outlives a Slurm stop signal (finetune.slurm.extra: --signal=TERM@SECONDS) until
        # Automodel has checkpointed and stopped (exit 3: rerun to resume); torchrun gets room
        # for that checkpoint (TORCH_ELASTIC_SHUTDOWN_TIMEOUT)
        rc = run_training_command(cmd, log, env)
        if rc:
            sys.exit(rc)  # no provenance record for a failed run
