"""rule finetune_model: one fine-tuning run with NeMo Automodel (resumable)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
SRC = Path(snakemake.scriptdir).parent / "src"
sys.path.insert(0, str(SRC))  # this checkout's filmorph

from filmorph.finetune.config import FinetuneConfig  # noqa: E402
from filmorph.finetune.run import launcher_argv  # noqa: E402
from filmorph.io import atomic_path  # noqa: E402
from filmorph.workflow import job_provenance  # noqa: E402

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
env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
# torchrun, on a stop signal, kills its ranks this many seconds after passing it on (default
# 30): room for Automodel's preemption checkpoint (finetune.slurm.extra: --signal=TERM@SECONDS)
env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "240")
with open(snakemake.log[0], "w") as log, job_provenance(snakemake, log=log):
    print("command:", " ".join(cmd), file=log, flush=True)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    # Slurm's SIGTERM reaches every process of the job step: Automodel checkpoints and stops
    # (exit 3: rerun to resume). Outlive it, or the step would end and kill it mid-save.
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, lambda *_: None)
    rc = proc.wait()
    if rc:
        sys.exit(rc)  # no provenance record for a failed run
