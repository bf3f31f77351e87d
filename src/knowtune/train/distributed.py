"""Data-parallel training through torch.distributed and accelerate, with one run folder and one audit.

launch   `--processes N` starts N copies of the same command with torch's launcher (`python -m
         torch.distributed.run --standalone`); `accelerate launch [--config_file configs/accelerate/...] -m
         knowtune.cli teach ...` does the same across GPUs and machines (DDP, FSDP, DeepSpeed). Either way each
         process sees WORLD_SIZE and RANK; the Trainer's accelerate backend then splits every batch across them
         (gloo on CPU, NCCL on GPUs) and averages the gradients.
one run  the main process (rank 0) alone writes the run folder, audits before and after, saves and reports; the
         others prepare the same data, wait for it, train, and leave. Work every process needs but only one
         should do (the start model's replay answers) runs on the main process first and is read back by the rest.
console  only the main process's output reaches the console; the others' goes to RUN/ranks/.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from knowtune.errors import KnowtuneError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _state():
    """accelerate's process state, set up as the Trainer will set it up (on CPU it must be told: without cpu=True it
    sees one process and its barriers wait for nobody)."""
    import torch
    from accelerate import PartialState

    return PartialState() if torch.cuda.is_available() else PartialState(cpu=True, backend="gloo")


@contextlib.contextmanager
def main_first():
    """The main process runs the block first (e.g. computing and caching a file); the others run it after."""
    if world_size() == 1:
        yield
        return
    with _state().main_process_first():
        yield


def wait_for_everyone() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


def per_process_batch(batch_size: int) -> int:
    """The rows each process takes of a step's batch: the global batch stays --batch-size whatever N is."""
    n = world_size()
    if batch_size % n:
        raise KnowtuneError(f"--batch-size {batch_size} does not split evenly across {n} processes.",
                            fix=f"use a batch size that is a multiple of {n}.")
    return batch_size // n


def relaunch(words: list[str], settings, resume: bool, verbose: bool) -> int:
    """Run this verb again as `settings.processes` processes (its settings passed whole, as a --config file);
    returns the launcher's exit code."""
    import yaml

    n = settings.processes
    run_dir = settings.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, dir=run_dir, prefix=".launch.") as f:
        yaml.safe_dump(settings.model_dump(), f, sort_keys=False)
    try:
        args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
                "--log-dir", str(run_dir / "ranks"), "--redirects", ",".join(f"{i}:3" for i in range(1, n)),
                "-m", "knowtune.cli", *words, "--config", f.name, *(["--resume"] if resume else []),
                *(["--verbose"] if verbose else [])]
        threads = str(max(1, (os.cpu_count() or 2) // n))
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}
        return subprocess.run(args, env=env).returncode
    finally:
        Path(f.name).unlink(missing_ok=True)


class _GatheredFolder:
    """What the lifecycle saves when the weights were sharded across processes: the folder every process helped
    write (Trainer.save_model gathers FSDP or ZeRO-3 shards), copied into the run's save."""

    def __init__(self, folder: Path):
        self.folder = folder

    def save_pretrained(self, target, **_):
        import shutil

        shutil.copytree(self.folder, target, dirs_exist_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def to_save(trainer, tokenizer, run_dir: Path) -> tuple:
    """The objects the lifecycle saves after a Trainer's training. Under FSDP or DeepSpeed ZeRO-3 no process
    holds whole weights, so every process takes part in the Trainer's own gathering save (into a hidden folder
    the main process then saves from); otherwise the model and tokenizer themselves."""
    sharded = trainer.is_fsdp_enabled or (trainer.is_deepspeed_enabled and
                                          trainer.accelerator.state.deepspeed_plugin.zero_stage == 3)
    if not sharded:
        return trainer.model, tokenizer
    folder = run_dir / ".gathered"
    trainer.save_model(str(folder))  # collective: every process must call it; the main one writes
    if is_main():
        tokenizer.save_pretrained(folder)
    return (_GatheredFolder(folder),)
