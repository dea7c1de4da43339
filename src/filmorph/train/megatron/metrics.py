"""The ``megatron`` engine's per-step metrics: :class:`MetricsRecorder` turns Megatron-Bridge's
logging callback into ``metrics.jsonl`` rows (loss, lr, grad norm, tokens/s, MFU), and
:func:`hf_flops_per_token` counts a model's FLOPs from its HF config."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filmorph.train.common import (
    MetricsWriter,
    eval_steps,
    mfu,
    model_flops_per_token,
)
from filmorph.train.config import TrainConfig
from filmorph.train.megatron.settings import LOSS_KEY


class MetricsRecorder:
    """Megatron-Bridge callbacks that append one record per logged step to ``metrics.jsonl``.

    Register :meth:`on_train_start`, :meth:`on_train_step_start`, :meth:`on_train_step_end`,
    :meth:`on_eval_end` and :meth:`on_train_end` with a ``CallbackManager`` (they only read
    ``context.state.train_state.step``, ``context.loss_dict``, ``context.grad_norm``,
    ``context.optimizer.param_groups``, ``context.total_loss_dict``). A record is written every
    ``log_interval`` steps, at every evaluation step and at the last step: ``step``, ``loss``
    (token-weighted over the global batch), ``val_loss``, ``lr`` (after the step's scheduler
    update: Megatron's convention), ``grad_norm``, ``tokens``,
    ``tokens_per_s`` and ``mfu`` (over the steps since the last record, counting only the
    time inside steps: checkpoint saving and evaluation are excluded), ``step_time_s``,
    ``peak_memory_gib``, ``skipped``, ``elapsed_s``. On (re)start the lines after the
    resume step are dropped. ``writer`` is ``None`` on ranks other than 0.
    """

    def __init__(
        self,
        writer: MetricsWriter | None,
        cfg: TrainConfig,
        *,
        world_size: int,
        flops_per_token: float | None,
        peak_flops_per_device: float | None,
        clock: Callable[[], float] = time.perf_counter,
        memory_gib: Callable[[], float | None] | None = None,
    ):
        self.writer = writer
        self.cfg = cfg
        self.world_size = world_size
        self.flops_per_token = flops_per_token
        self.peak = peak_flops_per_device
        self.clock = clock
        self.memory_gib = memory_gib or (lambda: None)
        self.eval_steps = set(eval_steps(cfg))
        self.tokens_per_step = cfg.tokens_per_step
        self._pending: dict[str, Any] | None = None
        self._t_step = 0.0
        self._window_s = 0.0
        self._window_tokens = 0
        self._t0 = clock()
        self.train_seconds = 0.0
        self.records = 0
        self.start_step = 0

    # -- events
    def on_train_start(self, context: Any) -> None:
        self.start_step = int(context.state.train_state.step)
        if self.writer is not None:
            self.writer.truncate_after(self.start_step)
        self._t0 = self.clock()

    def on_train_step_start(self, context: Any) -> None:
        self._flush()
        self._t_step = self.clock()

    def on_train_step_end(self, context: Any) -> None:
        loss = _scalar((context.loss_dict or {}).get(LOSS_KEY))  # a device sync: the step is done
        dt = self.clock() - self._t_step
        step = int(context.state.train_state.step) + 1
        self.train_seconds += dt
        self._window_s += dt
        self._window_tokens += self.tokens_per_step
        if not (step % self.cfg.log_interval == 0 or step == self.cfg.max_steps or step in self.eval_steps):
            return
        tps = self._window_tokens / self._window_s if self._window_s > 0 else None
        self._pending = {
            "step": step,
            "loss": loss,
            "val_loss": None,
            "lr": _lr(context.optimizer),
            "grad_norm": _scalar(context.grad_norm),
            "tokens": step * self.tokens_per_step,
            "tokens_per_s": tps,
            "mfu": mfu(tps, self.flops_per_token, self.peak, self.world_size)
            if tps and self.flops_per_token
            else None,
            "step_time_s": self._window_s / max(1, self._window_tokens // self.tokens_per_step),
            "peak_memory_gib": self.memory_gib(),
            "skipped": bool(context.skipped_iter),
            "elapsed_s": self.clock() - self._t0,
        }
        self._window_s, self._window_tokens = 0.0, 0

    def on_eval_end(self, context: Any) -> None:
        step = int(context.state.train_state.step)
        val = _scalar((context.total_loss_dict or {}).get(LOSS_KEY))
        if self._pending is not None and self._pending["step"] == step and self._pending["val_loss"] is None:
            self._pending["val_loss"] = val
            self._flush()
        else:
            self._flush()
            self._write({"step": step, "val_loss": val, "elapsed_s": self.clock() - self._t0})

    def on_train_end(self, context: Any) -> None:
        self._flush()

    # -- helpers
    def register(self, manager: Any) -> Any:
        """Register the five callbacks with a Megatron-Bridge ``CallbackManager``."""
        for event in (
            "on_train_start",
            "on_train_step_start",
            "on_train_step_end",
            "on_eval_end",
            "on_train_end",
        ):
            manager.register(event, getattr(self, event))
        return manager

    def _flush(self) -> None:
        if self._pending is not None:
            self._write(self._pending)
            self._pending = None

    def _write(self, record: dict[str, Any]) -> None:
        self.records += 1
        if self.writer is not None:
            self.writer.log(record)


def _scalar(x: Any) -> float | None:
    if x is None:
        return None
    if hasattr(x, "item"):
        x = x.item()
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v


def _lr(optimizer: Any) -> float | None:
    for group in getattr(optimizer, "param_groups", None) or []:
        if group and not group.get("is_decoupled_lr", False):
            return float(group["lr"])
    return None


def hf_flops_per_token(hf_model_dir: str | Path, seq_length: int) -> float:
    """Training FLOPs per token of the HF model in ``hf_model_dir`` (the same count the other
    engines use, :func:`filmorph.train.common.model_flops_per_token`), from its config alone:
    the model is built on the ``meta`` device, no weights are read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(hf_model_dir), local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model_flops_per_token(model, seq_length)
