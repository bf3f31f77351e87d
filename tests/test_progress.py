"""The console during a run: library noise goes to the log file, progress is shown as bars and readable lines,
and every global switch touched is put back afterwards."""

from __future__ import annotations

import logging
import re
import warnings

import pytest

from knowtune import progress
from knowtune.progress import library_output, phase, quiet_trainer, say

DICT_LINE = re.compile(r"\{'\w+': ")


@pytest.fixture
def console(monkeypatch):
    """Make this test's stderr the console, as in a real run. Under pytest, warnings are recorded instead of
    shown, and transformers' console handler keeps the stderr of whichever test first used it."""
    import sys

    from transformers.utils import logging as tl

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    monkeypatch.setattr(warnings, "showwarning", show)
    tl.get_verbosity()
    handler = tl._default_handler
    monkeypatch.setattr(handler, "stream", sys.stderr)
    monkeypatch.setattr(handler, "flush", sys.stderr.flush)


def _global_state():
    """Everything library_output touches, as comparable values."""
    import importlib

    import datasets.utils.logging as dl
    import torch  # noqa: F401  (importing torch installs its loggers' handlers: do it before the snapshot)
    import transformers.utils.logging as tl

    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
    tl.get_verbosity()  # let transformers install its default handler before the snapshot
    loggers = {}
    for name in ("", "transformers", "datasets", "huggingface_hub", "torch", "torch._dynamo", "peft", "trl"):
        lg = logging.getLogger(name)
        loggers[name] = (tuple(lg.handlers), lg.level, lg.propagate)
    return {
        "showwarning": warnings.showwarning,
        "loggers": loggers,
        "tf_bars": tl.is_progress_bar_enabled(),
        "ds_bars": dl.is_progress_bar_enabled(),
        "hub_bars": dict(hub_tqdm.progress_bar_states),
    }


def _tiny_dataset(n: int = 8, length: int = 12, vocab: int = 64):
    import torch

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            x = torch.randint(0, vocab, (length,), generator=g)
            return {"input_ids": x, "labels": x.clone()}

    return DS()


def _trainer(tmp_path, disable_tqdm: bool):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=2,
                             per_device_eval_batch_size=4, eval_strategy="steps", eval_steps=2, logging_steps=1,
                             report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=disable_tqdm)
    return Trainer(model=model, args=args, train_dataset=_tiny_dataset(), eval_dataset=_tiny_dataset(4))


# ------------------------------------------------------------------------------------------------- console


def test_phase_shows_a_bar_and_leaves_a_done_line(capfd):
    with phase("Auditing the base model", total=3) as advance:
        for _ in range(3):
            advance()
    out, err = capfd.readouterr()
    assert re.search(r"^Auditing the base model: done in [\d.]+ s$", out, re.M), out
    assert "Auditing the base model" in err  # the bar itself (tqdm writes to stderr)


def test_phase_says_when_it_failed(capfd):
    with pytest.raises(RuntimeError):
        with phase("Saving", unit="file") as advance:
            advance(2)
            raise RuntimeError("disk full")
    assert "Saving: failed after" in capfd.readouterr().out


def test_say_prints_one_line(capfd):
    say("Summary: 3 of 4 right")
    assert capfd.readouterr().out == "Summary: 3 of 4 right\n"


def test_format_duration():
    assert progress.format_duration(0.42) == "0.4 s"
    assert progress.format_duration(12.2) == "12 s"
    assert progress.format_duration(185) == "3 min 05 s"
    assert progress.format_duration(3720) == "1 h 02 min"


def test_eval_line_is_a_sentence_not_a_dict():
    class State:
        epoch, global_step = 2.0, 40

    line = progress.eval_line({"eval_loss": 1.23449, "eval_dev_accuracy": 0.625, "eval_runtime": 0.1}, State())
    assert line == "epoch 2: validation loss 1.234, dev accuracy 62.5%"
    State.epoch = 0.5
    assert progress.eval_line({"eval_loss": 2.0}, State()) == "epoch 0.50 (step 40): validation loss 2.000"


def test_importing_progress_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys, knowtune.progress; print('transformers' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ------------------------------------------------------------------------------------------- library noise


def test_warnings_and_library_logging_go_to_the_log_file(tmp_path, capfd, console):
    from transformers.utils import logging as tl

    log = tmp_path / "run" / "log.txt"
    before = _global_state()
    with library_output(log, verbose=False):
        warnings.warn("knowtune-test: old argument name", FutureWarning)
        warnings.warn("knowtune-test: a user warning", UserWarning)
        tl.get_logger("transformers.modeling_utils").warning("knowtune-test: tf warning")
        tl.get_logger("transformers.trainer").info("knowtune-test: tf info")
        logging.getLogger("peft.tuners").warning("knowtune-test: peft warning")
        logging.getLogger("torch._dynamo").warning("knowtune-test: torch warning")
        logging.warning("knowtune-test: root warning")
    out, err = capfd.readouterr()
    assert "knowtune-test" not in out + err, out + err
    text = log.read_text()
    for what in ("FutureWarning: knowtune-test: old argument name", "UserWarning: knowtune-test: a user warning",
                 "WARNING transformers.modeling_utils: knowtune-test: tf warning",
                 "INFO transformers.trainer: knowtune-test: tf info", "peft.tuners: knowtune-test: peft warning",
                 "torch._dynamo: knowtune-test: torch warning", "root: knowtune-test: root warning"):
        assert what in text, (what, text)
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", text, re.M)  # timestamped
    assert _global_state() == before

    # Afterwards the libraries speak as before: the warning and transformers' handler reach stderr again.
    warnings.warn("knowtune-test: after the run", FutureWarning)
    tl.get_logger("transformers.modeling_utils").warning("knowtune-test: tf after")
    err = capfd.readouterr().err
    assert "knowtune-test: after the run" in err and "knowtune-test: tf after" in err
    assert "after" not in log.read_text()


def test_log_file_is_appended_not_replaced(tmp_path, capfd):
    log = tmp_path / "log.txt"
    with library_output(log):
        warnings.warn("knowtune-test: first run", UserWarning)
    with library_output(log):
        warnings.warn("knowtune-test: second run", UserWarning)
    text = log.read_text()
    assert "first run" in text and "second run" in text


def test_without_a_log_file_noise_is_dropped(tmp_path, capfd, console):
    before = _global_state()
    with library_output(None):
        warnings.warn("knowtune-test: dropped", FutureWarning)
        logging.getLogger("transformers.x").warning("knowtune-test: dropped too")
    out, err = capfd.readouterr()
    assert "knowtune-test" not in out + err
    assert list(tmp_path.iterdir()) == []
    assert _global_state() == before


def test_verbose_shows_everything_and_still_keeps_the_log(tmp_path, capfd, console):
    from transformers.utils import logging as tl

    log = tmp_path / "log.txt"
    before = _global_state()
    with library_output(log, verbose=True):
        assert tl.is_progress_bar_enabled() == before["tf_bars"]
        warnings.warn("knowtune-test: verbose warning", FutureWarning)
        tl.get_logger("transformers.modeling_utils").warning("knowtune-test: verbose tf")
    err = capfd.readouterr().err
    assert "knowtune-test: verbose warning" in err and "knowtune-test: verbose tf" in err
    text = log.read_text()
    assert "knowtune-test: verbose warning" in text and "knowtune-test: verbose tf" in text
    assert text.count("knowtune-test: verbose tf") == 1  # no double logging
    assert _global_state() == before


def test_state_is_restored_after_an_error(tmp_path, capfd):
    before = _global_state()
    with pytest.raises(ValueError):
        with library_output(tmp_path / "log.txt"):
            raise ValueError("knowtune-test: boom")
    assert _global_state() == before
    assert "knowtune-test: boom" in (tmp_path / "log.txt").read_text()  # the traceback is kept in the log


def test_loading_a_model_shows_no_weights_bar(tiny_model, tmp_path, capfd):
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tiny_model)
    out, err = capfd.readouterr()
    assert "Loading weights" in out + err  # what transformers 5 prints by default ...

    with library_output(tmp_path / "log.txt"):
        AutoModelForCausalLM.from_pretrained(tiny_model)
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err, err  # ... and not inside library_output

    AutoModelForCausalLM.from_pretrained(tiny_model)
    assert "Loading weights" in capfd.readouterr().err  # bars back on afterwards


# ---------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_trainer_prints_dicts_by_default(tmp_path, capfd, disable_tqdm):
    """The problem being solved: ProgressCallback / PrinterCallback print the raw log dicts."""
    _trainer(tmp_path, disable_tqdm).train()
    out, err = capfd.readouterr()
    assert DICT_LINE.search(out + err)


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_quiet_trainer_prints_readable_lines_only(tmp_path, capfd, disable_tqdm):
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    log = tmp_path / "log.txt"
    with library_output(log):
        trainer = _trainer(tmp_path, disable_tqdm)
        added = quiet_trainer(trainer)
        names = [type(cb).__name__ for cb in trainer.callback_handler.callbacks]
        assert not any(isinstance(cb, (PrinterCallback, ProgressCallback)) for cb in trainer.callback_handler.callbacks)
        assert names.count("TrainingProgress") == 1
        assert quiet_trainer(trainer) is added  # a second call adds nothing
        trainer.train()
    out, err = capfd.readouterr()
    assert not DICT_LINE.search(out + err), out + err
    assert re.search(r"^epoch 0\.50 \(step 2\): validation loss \d+\.\d{3}$", out, re.M), out
    assert re.search(r"^epoch 1: validation loss \d+\.\d{3}$", out, re.M), out
    done = r"^Training: done in .* \(4 steps, mean loss \d+\.\d{3}, last val loss \d+\.\d{3}\)$"
    assert re.search(done, out, re.M), out
    assert "Running training" in log.read_text()  # transformers' INFO lines are kept in the log


def test_training_progress_shows_dev_accuracy_and_resumes_from_the_step(capfd):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    cb = progress.TrainingProgress()
    args = TrainingArguments(output_dir="unused", report_to="none", use_cpu=True)
    state = TrainerState(max_steps=10, global_step=4)
    control = TrainerControl()
    cb.on_train_begin(args, state, control)
    assert cb.bar.n == 4 and cb.bar.total == 10
    state.global_step, state.epoch = 5, 1.0
    cb.on_step_end(args, state, control)
    cb.on_log(args, state, control, logs={"loss": 0.5, "grad_norm": 1.0, "learning_rate": 1e-4})
    cb.on_evaluate(args, state, control, metrics={"eval_loss": 0.75, "eval_dev_accuracy": 0.625})
    assert cb.bar.n == 5
    assert cb.bar.postfix == "loss 0.500, dev accuracy 62.5%"
    cb.on_train_end(args, state, control)
    out = capfd.readouterr().out
    assert "epoch 1: validation loss 0.750, dev accuracy 62.5%" in out
    assert re.search(r"^Training: done in .* \(5 steps, last loss 0\.500, last dev accuracy 62\.5%\)$", out, re.M)


def test_quiet_trainer_verbose_leaves_the_trainer_alone(tmp_path):
    from transformers.trainer_callback import ProgressCallback

    trainer = _trainer(tmp_path, disable_tqdm=False)
    before = list(trainer.callback_handler.callbacks)
    assert quiet_trainer(trainer, verbose=True) is None
    assert trainer.callback_handler.callbacks == before
    assert any(isinstance(cb, ProgressCallback) for cb in before)


def test_in_a_plain_interpreter(tmp_path):
    """End to end, outside pytest's warning capture: quiet without verbose, everything on stderr with it."""
    import subprocess
    import sys

    code = """if True:
        import sys, warnings
        from pathlib import Path
        from transformers.utils import logging as tl
        from knowtune.progress import library_output, say
        for verbose in (False, True):
            with library_output(Path(sys.argv[1]), verbose=verbose):
                warnings.warn(f"knowtune-test: warning verbose={verbose}", FutureWarning)
                tl.get_logger("transformers.trainer").warning(f"knowtune-test: logger verbose={verbose}")
                say(f"knowtune-test: ours verbose={verbose}")
        warnings.warn("knowtune-test: warning after", FutureWarning)
        """
    log = tmp_path / "log.txt"
    run = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True, check=True)
    assert "knowtune-test: ours verbose=False" in run.stdout and "knowtune-test: ours verbose=True" in run.stdout
    assert "verbose=False" not in run.stderr, run.stderr
    for line in ("FutureWarning: knowtune-test: warning verbose=True",
                 "[transformers] knowtune-test: logger verbose=True", "FutureWarning: knowtune-test: warning after"):
        assert line in run.stderr, run.stderr
    text = log.read_text()
    for line in ("warning verbose=False", "logger verbose=False", "warning verbose=True", "logger verbose=True"):
        assert line in text
    assert "after" not in text and "ours" not in text
