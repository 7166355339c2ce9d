"""The training loop: epochs over a task's batches, progress lines, history, checkpoints."""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
from typing import Callable

from ..gates import PARAMS_KEY
from .checkpoints import save_checkpoint
from .evaluate import expected_size, live_neurons
from .state import TrainState
from .step import train_step


class Progress:
    """One updating line on a terminal (``\\r``), or a line every ``every`` steps otherwise."""

    def __init__(self, stream=None, every: int = 25, tty: bool | None = None):
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.every = max(1, int(every))
        self._width = 0

    def step(self, state: "TrainState", line: str) -> None:
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()
            self._width = len(line)
        elif state.step % self.every == 0:
            self.stream.write(line + "\n")
            self.stream.flush()

    def message(self, line: str) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(line + "\n")
        self.stream.flush()


def _fmt_count(x: float) -> str:
    x = float(x)
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def status_line(state: TrainState, stats: dict, tok_per_s: float) -> str:
    """The progress line: epoch, step, speed, loss, perplexity (or the last validation
    accuracy), live neurons, E[nonzero]."""
    live = "/".join(str(n) for n in live_neurons(state.params))
    nnz = expected_size(state.model_config, state.params)["expected_nonzero"]
    last = state.history[-1] if state.history else None
    val = f" | val ppl {last['valid_ppl']:.1f}" if last and last.get("valid_ppl") is not None else ""
    if last and last.get("valid_acc") is not None:
        val = f" | val acc {100 * last['valid_acc']:.1f}%"
    loss = stats["loss"]
    quality = f"loss {loss:.3f}" if state.model_config.task == "classify" else f"loss {loss:.3f} ppl {math.exp(min(loss, 50)):.1f}"
    ctrl = state.penalty_weights.record(state.model_config, state.params[PARAMS_KEY], state.fraction)
    target = (f" | target {ctrl['target']:.3f} E[{ctrl['measure']}] {ctrl['expected_fraction']:.3f}"
              if ctrl else "")
    phase = " | fine-tuning" if state.fine_tuning else " | unpruned first" if state.dense_warmup else ""
    return (f"ep {state.epoch + 1}/{state.config.epochs} step {state.step}{phase} | {tok_per_s / 1e3:.1f}k tok/s"
            f" | {quality}{val} | live {live}"
            f" | E[nnz] {_fmt_count(nnz)}{target} | lr {state.lr:.3g}")


def record(state: TrainState, task, since: tuple[float, int]) -> dict:
    """Evaluate (``task.valid_metrics``: the validation perplexity with test-time gates) and
    append one history entry.

    ``since = (wall time, tokens_seen)`` of the previous record, for the speed.
    """
    mc, p, cfg = state.model_config, state.params, state.config
    entry = {"step": state.step, "epoch": state.epoch, "position": state.position,
             "tokens": state.tokens_seen, "lr": state.lr}
    entry["train_loss"] = state.loss_sum / state.loss_count if state.loss_count else None
    entry["train_ppl"] = math.exp(min(entry["train_loss"], 50)) if state.loss_count and mc.task == "lm" else None
    # While a dense start trains the unpruned network, that network is the one evaluated.
    entry.update(task.valid_metrics(mc, p, cfg, open_gates=True) if state.dense_warmup
                 else task.valid_metrics(mc, p, cfg))
    st = expected_size(mc, p)
    entry["live"] = st["live"]
    entry["expected_nonzero"] = st["expected_nonzero"]
    la = p[PARAMS_KEY]
    entry["penalty"] = float(state.penalty_weights.penalty(mc, la, state.fraction)[0])
    entry.update(state.penalty_weights.record(mc, la, state.fraction))
    entry["elapsed"] = state.elapsed
    entry["fine_tuning"] = state.fine_tuning
    entry["dense_warmup"] = state.dense_warmup
    dt = time.perf_counter() - since[0]
    entry["tokens_per_s"] = (state.tokens_seen - since[1]) / dt if dt > 0 else None
    state.history.append(entry)
    state.loss_sum, state.loss_count = 0.0, 0
    return entry


def _phase(entry: dict) -> str:
    return "fine-tuning | " if entry.get("fine_tuning") else "unpruned first | " if entry.get("dense_warmup") else ""


def describe(entry: dict) -> str:
    """A history entry as one log line."""
    val = f"valid ppl {entry['valid_ppl']:8.2f}" if entry.get("valid_ppl") is not None else "valid ppl      n/a"
    tr = f"train ppl {entry['train_ppl']:8.2f}" if entry.get("train_ppl") is not None else "train ppl      n/a"
    if "valid_acc" in entry:           # a classifier
        val = f"valid acc {100 * entry['valid_acc']:5.1f}%" if entry["valid_acc"] is not None else "valid acc   n/a"
        tr = f"train loss {entry['train_loss']:.3f}" if entry.get("train_loss") is not None else "train loss   n/a"
    live = "/".join(str(n) for n in entry["live"])
    target = (f"target {entry['target']:.3f} E[{entry['measure']}] {entry['expected_fraction']:.3f} | "
              if "target" in entry else "")
    return (f"epoch {entry['epoch']:3d} step {entry['step']:6d} | {tr} | {val} | live {live} | "
            f"E[nnz] {_fmt_count(entry['expected_nonzero'])} | {target}{_phase(entry)}lr {entry['lr']:.3g} | {entry['elapsed']:.0f}s")


def fit(state: TrainState, task, *, checkpoint_path=None, progress: Progress | None = None, max_steps: int | None = None,
        max_seconds: float | None = None, save_every_epoch: bool = True,
        on_record: Callable[[TrainState], None] | None = None) -> TrainState:
    """Train until ``config.epochs`` epochs are done, ``max_steps`` more steps were taken, or
    ``max_seconds`` of wall time passed (whichever first; running out of time records a
    last history entry).  Continues from ``state``'s
    epoch and window position (a loaded checkpoint resumes exactly).

    ``task`` (``tasks.py``) gives each epoch's batches in order (for the language model:
    windows of ``bptt`` steps over ``batch_size`` parallel streams; for the classifier,
    documents of similar length, in an order of the epoch's own); a task that
    ``carries_state`` starts every epoch from zero states and carries the final states
    of a batch into the next.
    After every epoch (and every ``eval_every`` steps) the validation perplexity with
    test-time gates is recorded in ``state.history``; after every epoch the learning rate
    may decay and, with ``checkpoint_path``, a checkpoint is written (also at the end).
    ``on_record(state)`` is called after every history record (e.g. to write it out).
    Ctrl-C stops training between two steps: the checkpoint is written (mid-epoch, as
    when the time runs out) and :class:`Interrupted` is raised; a second Ctrl-C stops at once.
    """
    cfg = state.config
    wins = task.batches(cfg, state.epoch)
    if state.position >= len(wins) and state.position > 0:
        raise ValueError(f"the state is at batch {state.position} of an epoch of {len(wins)} batches: the data or "
                         f"the batch settings differ from those it was trained with")
    with _InterruptFlag() as interrupt:
        _fit(state, task, wins, interrupt, checkpoint_path, progress, max_steps, max_seconds, save_every_epoch,
             on_record)
    if interrupt.raised:
        raise Interrupted(checkpoint_path)
    return state


def run_fraction(state, batches_per_epoch: int, elapsed: float, budget: float | None) -> float:
    """How much of the run is done before the next step: its share of all the batches of
    ``config.epochs`` epochs or, with a time budget, of the budget, whichever is larger
    (a size target ramps in over it).  Without a budget it depends on the data position
    alone, so a resumed run computes the same numbers as a straight one."""
    total = state.config.epochs * batches_per_epoch
    done = (state.epoch * batches_per_epoch + state.position) / total if total else 1.0
    return max(done, elapsed / budget) if budget else done


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`fit` between two steps; ``checkpoint`` (when one was being
    kept) holds the state after the last step, mid-epoch, to resume from."""

    def __init__(self, checkpoint):
        super().__init__(checkpoint)
        self.checkpoint = checkpoint


class _InterruptFlag:
    """While active (in the main thread), the first Ctrl-C only sets ``raised``, so that
    the step under way finishes and the state stays consistent; a second one interrupts
    at once."""

    def __init__(self):
        self.raised = False
        self._old = None

    def _handler(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _fit(state, task, wins, interrupt, checkpoint_path, progress, max_steps, max_seconds, save_every_epoch,
         on_record):
    cfg = state.config
    t_start = time.perf_counter()
    elapsed0 = state.elapsed
    since = (t_start, state.tokens_seen)
    speed_t, speed_tok = t_start, state.tokens_seen
    tok_per_s = 0.0
    steps_done = 0

    out_of_time = False

    def stop() -> bool:
        nonlocal out_of_time
        if interrupt.raised or (max_steps is not None and steps_done >= max_steps):
            return True
        out_of_time = max_seconds is not None and time.perf_counter() - t_start >= max_seconds
        return out_of_time

    def log_record():
        nonlocal since
        state.elapsed = elapsed0 + time.perf_counter() - t_start
        entry = record(state, task, since)
        since = (time.perf_counter(), state.tokens_seen)
        if progress is not None:
            progress.message(describe(entry))
        if on_record is not None:
            on_record(state)

    stopped = False
    while state.epoch < cfg.epochs and not stopped:
        if state.position == 0:
            state.hidden = None
            wins = task.batches(cfg, state.epoch)
        while state.position < len(wins):
            if stop():
                stopped = True
                break
            inputs, targets = wins[state.position]
            state.fraction = run_fraction(state, len(wins), elapsed0 + time.perf_counter() - t_start,
                                          None if max_seconds is None else elapsed0 + max_seconds)
            if not task.carries_state:
                state.hidden = None
            stats = train_step(state, inputs, targets, task.loss_and_grads)
            state.position += 1
            steps_done += 1
            state.loss_sum += stats["loss"]
            state.loss_count += 1
            now = time.perf_counter()
            if now - speed_t > 0.5:
                tok_per_s = (state.tokens_seen - speed_tok) / (now - speed_t)
                speed_t, speed_tok = now, state.tokens_seen
            elif tok_per_s == 0.0 and now > speed_t:
                tok_per_s = (state.tokens_seen - speed_tok) / (now - speed_t)
            if progress is not None:
                progress.step(state, status_line(state, stats, tok_per_s))
            if cfg.eval_every and state.step % cfg.eval_every == 0 and state.position < len(wins):
                log_record()
        if stopped:
            if out_of_time and state.loss_count:
                log_record()          # the budget ran out mid-epoch: record where training ended
            break
        # end of an epoch
        state.epoch += 1
        state.position = 0
        state.hidden = None
        log_record()
        if state.epoch >= cfg.lr_decay_start and cfg.lr_decay != 1:
            state.lr = state.lr / cfg.lr_decay
        if checkpoint_path is not None and save_every_epoch:
            state.elapsed = elapsed0 + time.perf_counter() - t_start
            save_checkpoint(checkpoint_path, state)
    state.elapsed = elapsed0 + time.perf_counter() - t_start
    if checkpoint_path is not None and (stopped or not save_every_epoch or interrupt.raised):
        save_checkpoint(checkpoint_path, state)


__all__ = ["Progress", "status_line", "record", "describe", "fit", "Interrupted"]
