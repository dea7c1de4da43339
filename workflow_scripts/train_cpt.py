"""rule train_cpt: continue pretraining one family's base model on one arm's shards."""

import json
import os
import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake
SRC = Path(snakemake.scriptdir).parent / "src"
sys.path.insert(0, str(SRC))  # this checkout's filmorph

from filmorph.io import atomic_path  # noqa: E402
from filmorph.train.config import TrainConfig  # noqa: E402
from filmorph.train.launch import engine_pythonpath, launch_argv, run_training_command  # noqa: E402
from filmorph.train.versions import ALLOW_ENV  # noqa: E402
from filmorph.workflow import job_log, job_provenance  # noqa: E402

# the log first: a failure of any step below lands in it and on the console
with job_log(snakemake) as log:
    p, inp = snakemake.params, snakemake.input
    run_dir = Path(snakemake.output.summary).parent
    prefixes = sorted({str(f)[: -len(".bin")] for f in inp.shards if str(f).endswith(".bin")})
    request = run_dir / "train_request.json"  # the train: section this job was given
    with atomic_path(request) as tmp:
        tmp.write_text(p.train_config + "\n")
    cfg = TrainConfig.from_dict(json.loads(p.train_config))
    # A changed config is a new run (Snakemake reruns the job; the engine starts the run dir
    # afresh); the same config resumes from the newest complete state after a time limit,
    # preemption or crash.
    args = ["--config", str(request), "--engine", p.engine, "--model", inp.model,
            "--shards", *prefixes, "--run-dir", str(run_dir), "--tokenizer-dir", inp.tokenizer,
            "--on-config-change", "restart", "--no-progress"]
    if p.engine == "megatron":
        args += ["--pretrained-checkpoint", inp.imported, "--tensor-parallel", str(p.tp)]
    if p.engine == "automodel":  # one process per node: it starts torchrun with its ranks itself
        from filmorph.train.automodel import launcher_argv

        cmd = launcher_argv(cfg, args)
    else:  # one process per GPU (torchrun on one node, srun across nodes)
        cmd = launch_argv(cfg, args)
    env = dict(os.environ)
    # this checkout's filmorph, then the engine's own packages where a machine without conda
    # keeps them apart ($FILMORPH_ENGINE_PATH_<ENGINE>, see filmorph.train.launch)
    env["PYTHONPATH"] = engine_pythonpath(p.engine, env, first=[SRC])
    if p.engine == "megatron":  # train.megatron.allow_untested_versions, for its version check
        env[ALLOW_ENV] = "1" if p.allow_untested_versions else "0"
    if cfg.world_size == 1:  # CPU threads: the cores this job was given, no more
        env.setdefault("OMP_NUM_THREADS", str(snakemake.threads))
    with job_provenance(snakemake, log=log):
        print("command:", " ".join(cmd), file=log, flush=True)
        # outlives a Slurm stop signal (profiles/slurm: --signal=TERM@300) until the engine has
        # saved its state and exited (3: rerun to resume)
        rc = run_training_command(cmd, log, env)
        if rc:
            sys.exit(rc)  # no provenance record for a failed run
