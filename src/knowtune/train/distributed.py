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
from datetime import timedelta
from pathlib import Path

from knowtune.errors import KnowtuneError

BARRIER_TIMEOUT = timedelta(hours=6)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _state():
    """accelerate's process state, set up as the Trainer will set it up (on CPU it must be told: without cpu=True it
    sees one process and its barriers wait for nobody)."""
    import torch
    from accelerate import PartialState

    # the first to start the process group sets its timeout: the others wait at a barrier while the main process
    # audits the start model alone, which on a large pack takes longer than torch's default (30 min, NCCL less)
    if torch.cuda.is_available():
        return PartialState(timeout=BARRIER_TIMEOUT)
    return PartialState(cpu=True, backend="gloo", timeout=BARRIER_TIMEOUT)


@contextlib.contextmanager
def all_cores():
    """Work the main process does alone while the others wait: it may use every core meanwhile."""
    if world_size() == 1 or not is_main():
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def use_all_cores() -> None:
    """After training, when the other processes have left: the main process takes every core."""
    if world_size() > 1:
        import torch

        torch.set_num_threads(os.cpu_count() or torch.get_num_threads())


def thread_env(processes: int) -> dict[str, str]:
    """The environment for `processes` processes sharing this machine's cores (unless the user set a count)."""
    threads = str(max(1, (os.cpu_count() or 2) // processes))
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads),
            "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", threads)}


def require_data_parallel(method) -> None:
    """A method (class or instance) that cannot train across processes is refused, before any process starts
    (--processes) or in each one a launcher started."""
    if not method.data_parallel:
        raise KnowtuneError(f"{' '.join(method.words())} trains in one process; --processes and the launchers are "
                            "for methods that train as teach does.", fix="run it as one process (leave out --processes).")


def batch_split(batch_size: int, micro_batch: int | None, processes: int) -> tuple[int, int]:
    """(rows each process takes of a step's batch, rows per forward/backward pass): the global batch stays
    --batch-size whatever the number of processes; the rest of a process's share is gradient accumulation."""
    if batch_size % processes:
        raise KnowtuneError(f"--batch-size {batch_size} does not split evenly across {processes} processes.",
                            fix=f"use a batch size that is a multiple of {processes}.")
    share = batch_size // processes
    micro = min(micro_batch or share, share)
    if share % micro:
        raise KnowtuneError(f"--micro-batch {micro} does not divide --batch-size {batch_size}"
                            + (f" / {processes} processes" if processes > 1 else "") +
                            f": the batch would become {-(-share // micro) * micro * processes}.",
                            fix="choose a micro-batch that divides the batch size.")
    return share, micro


def check_processes(settings) -> None:
    """What would fail in every process, found before any starts: a batch that does not split, more processes
    than GPUs."""
    import torch

    n = settings.processes
    if getattr(settings, "batch_size", None) is not None:
        batch_split(settings.batch_size, getattr(settings, "micro_batch", None), n)
    if torch.cuda.is_available() and n > torch.cuda.device_count():
        raise KnowtuneError(f"--processes {n}: this machine has {torch.cuda.device_count()} GPU(s).",
                            fix="use one process per GPU (or accelerate launch across machines).")


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


def relaunch(words: list[str], settings, resume: bool, verbose: bool) -> int:
    """Run this verb again as `settings.processes` processes (its settings passed whole, as a --config file);
    returns the launcher's exit code."""
    import yaml

    check_processes(settings)
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
        launcher = subprocess.Popen(args, env=thread_env(n))
        try:
            return launcher.wait()
        except KeyboardInterrupt:  # the processes got Ctrl-C too and are saving their checkpoint: let them
            launcher.wait()
            raise
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
