"""What a person sees on the console during a run: one progress bar per phase, readable training lines,
and the libraries' own noise (logging, warnings, their progress bars) kept in the run's log file.

    with library_output(run_dir / "log.txt", verbose=args.verbose):
        with phase("Preparing", total=len(items)) as advance:
            for item in items:
                ...
                advance()
        quiet_trainer(trainer, verbose=args.verbose)
        trainer.train()
    say("Summary: ...")

A bottom-layer module: it imports nothing from knowtune, and transformers only when a Trainer callback is
actually needed (`TrainingProgress` and `quiet_trainer` load it on first use), so importing it is cheap.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["Phase", "phase", "library_output", "TrainingProgress", "quiet_trainer", "say", "format_duration",
           "eval_line", "LIBRARY_LOGGERS"]

# Loggers whose records are library noise: they go to the log file, not the console, unless verbose.
LIBRARY_LOGGERS = ("transformers", "ContinuousBatchingLogger", "peft", "trl", "accelerate", "datasets", "torch",
                   "huggingface_hub", "urllib3", "matplotlib", "filelock", "fsspec", "httpx", "httpcore", "PIL",
                   "tokenizers", "safetensors", "bitsandbytes", "sentence_transformers", "dill", "py.warnings")
# Of those, the ones whose INFO records are worth keeping in the log file (the run's settings, what was loaded).
_INFO_INTO_FILE = ("transformers", "peft", "trl", "accelerate", "datasets", "huggingface_hub")
_NONTTY_MININTERVAL = 5.0  # seconds between bar refreshes when stderr is a file or a CI log
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# ---------------------------------------------------------------------------------------------------- console


def say(message: str) -> None:
    """Print one line to the console (stdout) without breaking an active progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(str(message))


def format_duration(seconds: float) -> str:
    """'0.4 s', '12 s', '3 min 05 s', '1 h 02 min'."""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _interactive() -> bool:
    try:
        return _console_stderr().isatty()
    except (AttributeError, ValueError):
        return False


_REAL_STDERR: list = []  # the console's stderr while library_output sends sys.stderr to the log


def _console_stderr():
    return _REAL_STDERR[-1] if _REAL_STDERR else sys.stderr


def _bar(**kwargs):
    """A tqdm bar (tqdm.auto) that refreshes rarely when stderr is not a terminal, so CI logs stay short."""
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("file", _console_stderr())  # the terminal, also while library_output holds sys.stderr
    if not _interactive():
        kwargs.setdefault("mininterval", _NONTTY_MININTERVAL)
    return tqdm(**kwargs)


class Phase:
    """One phase of a run (preparing, auditing, saving...) shown as one progress bar.

    `with Phase("Auditing the base model", total=40) as advance: ... advance()` - the bar goes when the
    phase ends and one line stays: "Auditing the base model: done in 12 s".
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "q", initial: int = 0):
        self.desc = desc
        self.total = total
        self.unit = unit
        self.initial = initial  # items already done (a resumed run)
        self.bar = None
        self.started = 0.0
        self.elapsed: float | None = None

    def advance(self, n: int = 1, **figures) -> None:
        """Move the bar on by n items, showing the latest figures (e.g. reward=...) beside it (a no-op outside
        the `with` block)."""
        if self.bar is None and self.started and self.elapsed is None:
            self.bar = self._open()  # a phase of unknown length shows a bar once something moves
        if self.bar is not None:
            if figures:
                self.bar.set_postfix(figures, refresh=False)
            self.bar.update(n)

    def _open(self):
        return _bar(total=self.total, initial=self.initial, desc=self.desc, unit=self.unit, leave=False)

    def __enter__(self) -> Callable[..., None]:
        self.started, self.elapsed = time.monotonic(), None
        self.bar = self._open() if self.total is not None else None
        return self.advance

    def __exit__(self, exc_type, exc, tb) -> None:
        self.elapsed = time.monotonic() - self.started
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        took = format_duration(self.elapsed)
        if exc_type is None:
            say(f"{self.desc}: done in {took}")
        elif issubclass(exc_type, KeyboardInterrupt):
            say(f"{self.desc}: interrupted after {took}")
        else:
            say(f"{self.desc}: failed after {took}")


def phase(desc: str, total: int | None = None, unit: str = "q", initial: int = 0) -> Phase:
    """A context manager for one phase: yields `advance(n=1, **figures)`; prints "desc: done in 12 s" at the end."""
    return Phase(desc, total=total, unit=unit, initial=initial)


# ---------------------------------------------------------------------------------------------- library noise


def _is_console_handler(handler: logging.Handler, any_stream: bool) -> bool:
    """A handler that writes to the terminal. `any_stream`: count every plain StreamHandler (library loggers
    only write to the terminal that way); otherwise only those on stdout/stderr (the root logger may carry
    test-capture handlers writing into memory)."""
    if type(handler).__name__ == "RichHandler":
        return True
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    if any_stream:
        return True
    stream = getattr(handler, "stream", None)
    if stream is None:
        return False
    if any(stream is s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)):
        return True
    try:
        return stream.fileno() in (1, 2)
    except Exception:  # StringIO and friends
        return False


def _library_loggers() -> list[logging.Logger]:
    """The existing loggers of LIBRARY_LOGGERS and their children, parents first."""
    names = set(LIBRARY_LOGGERS)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and any(name.startswith(p + ".") for p in LIBRARY_LOGGERS):
            names.add(name)
    return [logging.getLogger(n) for n in sorted(names)]


def _configure_library_defaults() -> None:
    """Let the libraries install their default console handlers now, so that none appears mid-run after
    ours were taken off (transformers does it on first use; datasets, huggingface_hub and torch on import)."""
    try:
        import transformers.utils.logging as tl

        tl.get_verbosity()
    except Exception:
        pass
    for module in ("torch", "datasets", "huggingface_hub"):
        with contextlib.suppress(Exception):
            __import__(module)


class _ProgressBarState:
    """Disables transformers', datasets' and huggingface_hub's own progress bars; restores them exactly."""

    def __init__(self):
        self.restore: list[Callable[[], None]] = []

    def disable(self) -> None:
        # (Where an environment variable such as HF_HUB_DISABLE_PROGRESS_BARS=0 forbids it, the library
        # warns; that warning goes to the log file like any other.)
        self._hub()
        self._transformers()
        self._datasets()

    def _hub(self) -> None:
        try:
            import importlib

            import huggingface_hub.utils as hub

            hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")  # the module (`.tqdm` is the class)
        except Exception:
            return
        states = getattr(hub_tqdm, "progress_bar_states", None)
        if isinstance(states, dict):
            saved = dict(states)

            def restore():
                states.clear()
                states.update(saved)
        else:
            was_disabled = hub.are_progress_bars_disabled()

            def restore():
                if not was_disabled:
                    hub.enable_progress_bars()
        hub.disable_progress_bars()
        self.restore.append(restore)

    def _transformers(self) -> None:
        try:
            import transformers.utils.logging as tl
        except Exception:
            return
        was_enabled = tl.is_progress_bar_enabled()
        tl.disable_progress_bar()  # also disables huggingface_hub's; restored before the hub's own state

        def restore():
            if was_enabled:
                tl.enable_progress_bar()  # it enables huggingface_hub's too: the hub's own restore runs after

        self.restore.append(restore)

    def _datasets(self) -> None:
        try:
            from datasets.utils import logging as dl
        except Exception:
            return
        was_enabled = dl.is_progress_bar_enabled()
        dl.disable_progress_bar()

        def restore():
            if was_enabled:
                dl.enable_progress_bar()

        self.restore.append(restore)

    def undo(self) -> None:
        for restore in reversed(self.restore):
            with contextlib.suppress(Exception):
                restore()
        self.restore.clear()


class _LibraryOutput:
    def __init__(self, log_file: Path | None, verbose: bool):
        self.log_file = Path(log_file) if log_file is not None else None
        self.verbose = verbose
        self.handler: logging.Handler | None = None
        self.saved_loggers: list[tuple[logging.Logger, list, int, bool]] = []
        self.saved_root: tuple[list, int] | None = None
        self.saved_showwarning = None
        self.bars = _ProgressBarState()

    # -- set up

    def __enter__(self):
        try:
            self._open_file()
            _configure_library_defaults()
            self._route_logging()
            self._route_warnings()
            if not self.verbose:
                self.bars.disable()
                self._hold_stderr()
        except BaseException:
            self._restore()
            raise
        return self

    def _open_file(self) -> None:
        if self.log_file is None:
            # Nothing is kept, but the root logger needs a handler or logging's last resort prints warnings.
            self.handler = logging.NullHandler()
            return
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.log_file, mode="a", encoding="utf-8")
        self.handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        self._write("knowtune.progress", logging.INFO,
                    f"--- library output {'(verbose: also on screen)' if self.verbose else 'starts'} ---")

    def _write(self, name: str, level: int, message: str) -> None:
        """One record into our file only (not through the loggers: nothing else must see it)."""
        if self.log_file is None or self.handler is None:
            return
        record = logging.LogRecord(name, level, __file__, 0, message, None, None)
        with contextlib.suppress(Exception):
            self.handler.handle(record)

    def _route_logging(self) -> None:
        root = logging.getLogger()
        self.saved_root = (root.handlers[:], root.level)
        loggers = _library_loggers()
        for logger in loggers:
            self.saved_loggers.append((logger, logger.handlers[:], logger.level, logger.propagate))
        if self.verbose:
            # Change nothing the console shows; copy what the loggers pass on into the file as well.
            if self.log_file is not None:
                root.addHandler(self.handler)
                for logger in loggers:
                    if not logger.propagate:
                        logger.addHandler(self.handler)
            return
        for handler in root.handlers[:]:
            if _is_console_handler(handler, any_stream=False):
                root.removeHandler(handler)
        root.addHandler(self.handler)
        for logger in loggers:
            for handler in logger.handlers[:]:
                if _is_console_handler(handler, any_stream=True):
                    logger.removeHandler(handler)
            logger.propagate = True  # up to the root logger, whose only console-facing handler is now ours
            if self.log_file is not None and logger.name in _INFO_INTO_FILE:
                logger.setLevel(logging.INFO)  # transformers' set_verbosity_info(), into the file only

    def _route_warnings(self) -> None:
        self.saved_showwarning = warnings.showwarning
        shown_before = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            try:
                text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
            except Exception:
                text = f"{getattr(category, '__name__', category)}: {message}"
            self._write("py.warnings", logging.WARNING, text)
            if self.verbose:
                shown_before(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning

    # -- tear down

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            self._write("knowtune.progress", logging.ERROR,
                        "run stopped by an error:\n" + "".join(traceback.format_exception(exc_type, exc, tb)).rstrip())
        self._restore()

    def _hold_stderr(self) -> None:
        """What libraries write straight to sys.stderr (bars drawn with tqdm itself, such as transformers' GGUF
        dequantising or trl's reference log-probabilities, and stray prints) goes to the log file; our own
        bars keep the console's stderr (`_console_stderr`)."""
        import os

        self.stderr_sink = open(self.log_file if self.log_file is not None else os.devnull, "a", encoding="utf-8")
        _REAL_STDERR.append(sys.stderr)
        sys.stderr = self.stderr_sink

    def _restore(self) -> None:
        if getattr(self, "stderr_sink", None) is not None:
            sys.stderr = _REAL_STDERR.pop()
            with contextlib.suppress(Exception):
                self.stderr_sink.close()
            self.stderr_sink = None
        self.bars.undo()
        if self.saved_showwarning is not None:
            warnings.showwarning = self.saved_showwarning
            self.saved_showwarning = None
        for logger, handlers, level, propagate in reversed(self.saved_loggers):
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        self.saved_loggers.clear()
        if self.saved_root is not None:
            root = logging.getLogger()
            root.handlers[:] = self.saved_root[0]
            root.setLevel(self.saved_root[1])
            self.saved_root = None
        if self.handler is not None:
            with contextlib.suppress(Exception):
                self.handler.close()
            self.handler = None


@contextlib.contextmanager
def library_output(log_file: Path | None, verbose: bool = False) -> Iterator[None]:
    """For the length of a run: library logging, warnings and progress bars go to `log_file` (appended, with
    timestamps), not the console. verbose=True: the console shows everything as usual, and logging and
    warnings are also copied into `log_file`. log_file=None: nothing is written (noise is just dropped).
    All global state (logging handlers and levels, warnings.showwarning, the libraries' bar switches) is
    restored on exit."""
    with _LibraryOutput(log_file, verbose):
        yield


# --------------------------------------------------------------------------------------------------- training


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# (metric key, label, formatter): what an evaluation line reports, in this order, when present.
_EVAL_PARTS = (
    ("eval_loss", "validation loss", lambda v: f"{v:.3f}"),
    ("eval_dev_accuracy", "dev accuracy", _pct),
    ("eval_accuracy", "accuracy", _pct),
    ("eval_rewards/accuracies", "preference accuracy", _pct),
)


def _number(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _when(state) -> str:
    epoch = _number(getattr(state, "epoch", None))
    step = getattr(state, "global_step", 0)
    if epoch is None:
        return f"step {step}"
    if abs(epoch - round(epoch)) < 1e-3:
        return f"epoch {round(epoch)}"
    return f"epoch {epoch:.2f} (step {step})"


def dev_figure(metrics: dict) -> str | None:
    """The dev metric early stopping follows, readable: 'dev accuracy 62.5%' (teach's dev probes), or a task
    run's `eval_dev_<metric>` ('dev f1 41.3%'; 0-100 scales such as chrF as they are)."""
    for key, value in metrics.items():
        value = _number(value)
        if key.startswith("eval_dev_") and value is not None:
            return f"dev {key[9:].replace('_', ' ')} {_pct(value) if value <= 1 else f'{value:.1f}'}"
    return None


def eval_line(metrics: dict, state=None) -> str:
    """One readable line for a dict of evaluation metrics, e.g.
    'epoch 2: validation loss 1.234, dev accuracy 62.5%'."""
    parts = []
    for key, label, fmt in _EVAL_PARTS:
        value = _number(metrics.get(key))
        if value is not None:
            parts.append(f"{label} {fmt(value)}")
    dev = dev_figure(metrics)
    if dev and "eval_dev_accuracy" not in metrics:
        parts.append(dev)
    if not parts:  # some other trainer's metrics: name the first few plainly
        for key, value in metrics.items():
            value = _number(value)
            if key.startswith("eval_") and value is not None and not key.endswith(("runtime", "per_second")):
                parts.append(f"{key[5:].replace('_', ' ')} {value:.4g}")
            if len(parts) == 3:
                break
    head = _when(state) if state is not None else "evaluation"
    return f"{head}: {', '.join(parts) if parts else 'evaluated'}"


def _make_training_progress():
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        """One progress bar over the optimiser steps, with the latest training loss, dev accuracy (or
        validation loss) and the time left; one readable line per evaluation; one line at the end."""

        bar_format = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps "
                      "[{elapsed}, {remaining} left{postfix}]")

        def __init__(self, desc: str = "Training"):
            self.desc = desc
            self.bar = None
            self.eval_bar = None
            self.loss: float | None = None
            self.dev: str | None = None  # "dev accuracy 62.5%" or "val loss 1.234"
            self.train_loss: float | None = None
            self.started = None

        def _postfix(self) -> None:
            if self.bar is None:
                return
            parts = []
            if self.loss is not None:
                parts.append(f"loss {self.loss:.3f}")
            if self.dev is not None:
                parts.append(self.dev)
            self.bar.set_postfix_str(", ".join(parts), refresh=False)

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            self.started = time.monotonic()
            total = state.max_steps if state.max_steps and state.max_steps > 0 else None
            self.bar = _bar(total=total, initial=state.global_step, desc=self.desc, unit="step", leave=False,
                            bar_format=self.bar_format if total else None)
            self._postfix()

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None and state.global_step > self.bar.n:
                self.bar.update(state.global_step - self.bar.n)

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            if not state.is_world_process_zero or not _interactive():
                return  # in a CI log a bar per evaluation is only noise
            if self.eval_bar is None:
                try:
                    total = len(eval_dataloader)
                except TypeError:
                    total = None
                self.eval_bar = _bar(total=total, desc="Validating", unit="batch", leave=False)
            self.eval_bar.update(1)

        def _close_eval_bar(self):
            if self.eval_bar is not None:
                self.eval_bar.close()
                self.eval_bar = None

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self._close_eval_bar()
            if not state.is_world_process_zero or not metrics:
                return
            dev = dev_figure(metrics)
            loss = _number(metrics.get("eval_loss"))
            if dev is not None:
                self.dev = dev
            elif loss is not None:
                self.dev = f"val loss {loss:.3f}"
            self._postfix()
            say(eval_line(metrics, state))

        def on_predict(self, args, state, control, **kwargs):
            self._close_eval_bar()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            loss = _number(logs.get("loss"))
            if loss is not None:
                self.loss = loss
                self._postfix()
            if "train_runtime" in logs:
                self.train_loss = _number(logs.get("train_loss"))

        def on_train_end(self, args, state, control, **kwargs):
            self._close_eval_bar()
            if self.bar is None:
                return
            self.bar.close()
            self.bar = None
            took = format_duration(time.monotonic() - self.started) if self.started is not None else "?"
            details = [f"{state.global_step} steps"]
            if self.train_loss is not None:
                details.append(f"mean loss {self.train_loss:.3f}")
            elif self.loss is not None:
                details.append(f"last loss {self.loss:.3f}")
            if self.dev is not None:
                details.append(f"last {self.dev}")
            say(f"{self.desc}: done in {took} ({', '.join(details)})")

    TrainingProgress.__module__ = __name__
    TrainingProgress.__qualname__ = "TrainingProgress"
    return TrainingProgress


def __getattr__(name: str):
    # `TrainingProgress` subclasses transformers.TrainerCallback: built on first use so that importing this
    # module does not import transformers (and torch).
    if name == "TrainingProgress":
        cls = _make_training_progress()
        globals()["TrainingProgress"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _progress_callback_classes() -> list[type]:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    classes = [ProgressCallback, PrinterCallback]
    # Only where already loaded: a trainer cannot hold one of these callbacks otherwise, and importing them
    # costs (the notebook one needs IPython, trl's needs rich).
    notebook = sys.modules.get("transformers.utils.notebook")
    if notebook is not None and hasattr(notebook, "NotebookProgressCallback"):
        classes.append(notebook.NotebookProgressCallback)
    trl_callbacks = sys.modules.get("trl.trainer.callbacks")
    if trl_callbacks is not None and hasattr(trl_callbacks, "RichProgressCallback"):
        classes.append(trl_callbacks.RichProgressCallback)
    return classes


def quiet_trainer(trainer, verbose: bool = False, desc: str = "Training"):
    """Take transformers' dict-printing progress callbacks (ProgressCallback, PrinterCallback, the notebook
    one) off any Trainer (SFTTrainer, DPOTrainer, RewardTrainer...) and add a TrainingProgress instead.
    verbose=True leaves the trainer as it is. Returns the TrainingProgress added (or None)."""
    if verbose:
        return None
    cls = globals().get("TrainingProgress") or __getattr__("TrainingProgress")
    for old in _progress_callback_classes():
        while trainer.pop_callback(old) is not None:
            pass
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, cls):
            return cb
    progress = cls(desc=desc)
    trainer.add_callback(progress)
    return progress
