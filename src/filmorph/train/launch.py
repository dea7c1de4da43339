"""Launching training processes and handling their signals, for every engine and the
fine-tuning track: where a process sits in a distributed launch (torchrun or Slurm), the
command that starts ``python -m MODULE`` on this host's GPUs or across nodes, the job script's
wait that outlives a stop signal, the process-tree kill and signal forwarding around a
torchrun child, and :class:`TrainingIncomplete`, what a run that stopped early raises.

Nothing here imports torch at module import time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filmorph.train.config import TrainConfig

__all__ = [
    "STOP_SIGNALS",
    "TORCHRUN_SHUTDOWN_S",
    "StopRequest",
    "ENGINE_PATH_ENV",
    "DistEnv",
    "TrainingIncomplete",
    "descendants",
    "detect_dist_env",
    "engine_pythonpath",
    "first_host",
    "forward_signals",
    "ignore_stop_signals",
    "kill_group",
    "launch_argv",
    "module_argv",
    "node_rank",
    "per_node_argv",
    "restore_signals",
    "with_package_path",
    "run_streamed",
    "run_training_command",
]


class TrainingIncomplete(RuntimeError):
    """Training stopped before ``max_steps`` (a stop signal, an exit interval, a killed run)
    with a resumable state saved: rerunning the same command continues it. ``python -m
    filmorph.train`` exits with 3 on it."""


# ============================================================================ distributed env
@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a (possibly distributed) launch."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single"  # single | torchrun | slurm
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def first_host(nodelist: str) -> str:
    """First host of a Slurm node list (``gpu[03-05,07],cpu1`` -> ``gpu03``)."""
    m = re.match(r"^([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        return nodelist
    base, rng = m.group(1), m.group(2)
    if not rng:
        return base
    return base + rng.split(",")[0].split("-")[0]


def detect_dist_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Rank and world size from the launcher's variables.

    torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) wins;
    else an ``srun`` step (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` or ``SLURM_NTASKS``,
    ``SLURM_LOCALID``; only inside a step, i.e. with ``SLURM_STEP_ID`` set, so a batch script
    with ``--ntasks=8`` that starts one process is not mistaken for eight), with the master
    address from ``MASTER_ADDR`` or the first host of ``SLURM_STEP_NODELIST`` /
    ``SLURM_JOB_NODELIST`` and the port from ``MASTER_PORT`` or the job id; else one process.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            launcher="torchrun",
            master_addr=env.get("MASTER_ADDR"),
            master_port=int(env["MASTER_PORT"]) if env.get("MASTER_PORT") else None,
        )
    if "SLURM_PROCID" in env and ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env):
        world = int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or 1)
        if world > 1:
            nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "localhost"
            port = env.get("MASTER_PORT")
            job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or "0"
            return DistEnv(
                rank=int(env["SLURM_PROCID"]),
                world_size=world,
                local_rank=int(env.get("SLURM_LOCALID", 0)),
                launcher="slurm",
                master_addr=env.get("MASTER_ADDR") or first_host(nodes),
                master_port=int(port) if port else 20000 + int(re.sub(r"\D", "", job) or 0) % 20000,
            )
    return DistEnv()


def launch_argv(cfg: TrainConfig, module_args: Sequence[str], python: str | None = None) -> list[str]:
    """The command that starts ``python -m filmorph.train MODULE_ARGS`` with ``cfg``'s ranks.

    One process when ``gpus_per_node`` × ``nodes`` is 1; ``torchrun --standalone
    --nproc-per-node G`` on one node; on several nodes one task per GPU through ``srun``
    (each reads its rank from ``SLURM_PROCID``, see :func:`detect_dist_env`)."""
    if cfg.nodes == 1:
        return module_argv("filmorph.train", module_args, nproc=cfg.world_size, python=python)
    cmd = module_argv("filmorph.train", module_args, python=python)
    return ["srun", f"--nodes={cfg.nodes}", f"--ntasks-per-node={cfg.gpus_per_node}", *cmd]


def with_package_path(env: Mapping[str, str], first: Sequence[str | Path] = ()) -> dict[str, str]:
    """``env`` with the directory that holds this ``filmorph`` package on ``PYTHONPATH`` (after
    the paths ``first``, before what was there), so that child processes (torchrun's ranks)
    import the same code."""
    root = str(Path(__file__).resolve().parents[2])  # src/filmorph/train/launch.py -> src
    paths = (*map(str, first), root, env.get("PYTHONPATH"))
    return {**env, "PYTHONPATH": os.pathsep.join(x for x in paths if x)}


# A machine without conda or containers runs every rule in one Python, but the engines pin
# conflicting packages (Megatron-Bridge 0.6.2: transformers <= 5.12.1; NeMo Automodel 0.7.0:
# transformers 5.18.0). Then each engine's own packages sit in a directory of their own, named by
# this variable ({engine} upper-case: FILMORPH_ENGINE_PATH_AUTOMODEL, ..._MEGATRON, ..._HF), which
# goes in front of PYTHONPATH for that engine's training processes only.
ENGINE_PATH_ENV = "FILMORPH_ENGINE_PATH_{engine}"


def engine_pythonpath(engine: str, env: Mapping[str, str], first: Sequence[str | Path] = ()) -> str:
    """``PYTHONPATH`` for a training process of ``engine``: ``first``, then the paths in
    ``$FILMORPH_ENGINE_PATH_<ENGINE>`` (unset: none), then ``env``'s ``PYTHONPATH``."""
    own = env.get(ENGINE_PATH_ENV.format(engine=engine.upper()), "")
    paths = (*map(str, first), *own.split(os.pathsep), env.get("PYTHONPATH"))
    return os.pathsep.join(x for x in paths if x)


def per_node_argv(
    module: str, module_args: Sequence[str] = (), *, nodes: int = 1, python: str | None = None
) -> list[str]:
    """``python -m MODULE ARGS`` once per node, for a process that starts torchrun itself: plain
    on one node, under ``srun --ntasks-per-node=1`` on several."""
    cmd = [python or sys.executable, "-m", module, *module_args]
    if nodes == 1:
        return cmd
    return ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", *cmd]


def node_rank(environ: Mapping[str, str] | None = None) -> int:
    """This node's rank (``SLURM_NODEID`` inside a Slurm step, else 0)."""
    env = os.environ if environ is None else environ
    return int(env.get("SLURM_NODEID", "0") or 0)


def module_argv(
    module: str, args: Sequence[str] = (), *, nproc: int = 1, python: str | None = None
) -> list[str]:
    """``python -m MODULE ARGS`` as one process, or under ``torchrun --standalone
    --nproc-per-node NPROC`` (as ``python -m torch.distributed.run``) on this host's GPUs."""
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, not {nproc}")
    py = python or sys.executable
    cmd = ["-m", module, *args]
    if nproc == 1:
        return [py, *cmd]
    return [py, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *cmd]


# seconds torchrun waits, after passing a stop signal on to its ranks, before it kills them
# (torch's default: 30): room for their checkpoint within the slurm profile's --signal=TERM@300
TORCHRUN_SHUTDOWN_S = 240


def run_training_command(cmd: Sequence[str], log: Any, env: Mapping[str, str]) -> int:
    """Run a training command to its end, its stdout and stderr into the open file ``log``, and
    return its exit status (for the job script that starts it).

    Under Slurm a stop signal (SIGTERM at the time limit, or from ``--signal=TERM@SECONDS``)
    reaches every process of the job step: the engine saves a resumable state and exits (3:
    incomplete). Meanwhile this process ignores SIGTERM and SIGUSR1 and waits: were it to die
    first, the step would end and kill the engine mid-save. torchrun gets
    ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` = :data:`TORCHRUN_SHUTDOWN_S` unless ``env`` sets it."""
    import signal
    import subprocess

    env = {"TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(TORCHRUN_SHUTDOWN_S), **env}
    proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ============================================================================ process tree, signals
def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from ``/proc``; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_group(proc: subprocess.Popen, sig: int, *, workers_only: bool = False) -> None:
    """Send ``sig`` to the launcher and everything below it. torchrun starts each rank in a new
    session, so its process group alone misses them; each rank's group (its data-loader
    workers) is signalled too. ``workers_only``: spare torchrun itself (SIGTERM to the ranks
    lets Automodel save a checkpoint; torchrun then exits with them)."""
    pids = descendants(proc.pid)
    if not workers_only:
        pids.append(proc.pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig == signal.SIGKILL or not workers_only:
                os.killpg(os.getpgid(pid), sig)
            else:
                os.kill(pid, sig)
    if not workers_only:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def forward_signals(proc: subprocess.Popen) -> dict[int, Any]:
    """Pass SIGTERM and SIGINT on to the ranks below ``proc`` (not to torchrun itself); returns
    the handlers it replaced, for :func:`restore_signals`. Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}

    def forward(signum: int, _frame: Any) -> None:
        kill_group(proc, signum, workers_only=True)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, forward)
    return previous


def restore_signals(previous: Mapping[int, Any]) -> None:
    """Put back the handlers :func:`forward_signals` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)


# signals that end a run after the current step with a resumable state (Slurm: SIGTERM at the
# time limit or from --signal=TERM@SECONDS; SIGUSR1 from --signal=USR1@SECONDS)
STOP_SIGNALS = ("SIGTERM", "SIGUSR1")


class StopRequest:
    """Records the first of :data:`STOP_SIGNALS` received between :meth:`install` and
    :meth:`restore` (handlers only in the main thread; ``restore`` puts the previous ones back)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is None:
            self.signum = signum

    @property
    def name(self) -> str:
        if self.signum is None:
            return "a stop signal on another rank"
        return signal.Signals(self.signum).name

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()


def ignore_stop_signals(_worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a worker outlives a stop signal (its parent ends it)."""
    for name in STOP_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def run_streamed(
    cmd: Sequence[str],
    log: Any,
    env: Mapping[str, str],
    *,
    progress: bool,
    started: Callable[[subprocess.Popen], Callable[[], None]] | None = None,
    echo: Callable[[str], bool] | None = None,
) -> int:
    """Run a launcher (torchrun) in its own session to its end and return its exit status: its
    output appended to the open file ``log`` (and to stderr: every line with ``progress``, else
    the lines ``echo`` picks, e.g. one per logged step), SIGTERM/SIGINT
    to this process passed on to its ranks (:func:`forward_signals`), and the whole process
    tree killed when this returns early. ``started(proc)``, called once the process runs,
    returns what to call after it is gone (e.g. to stop a watcher thread)."""
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        start_new_session=True,
        text=True,
        errors="replace",
        bufsize=1,
    )
    stop = started(proc) if started is not None else None
    previous = forward_signals(proc)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if progress or (echo is not None and echo(line)):
                sys.stderr.write(line)
                sys.stderr.flush()
        return proc.wait()
    finally:
        restore_signals(previous)
        if proc.poll() is None:
            kill_group(proc, signal.SIGKILL)
            proc.wait()
        if stop is not None:
            stop()
