"""Data-parallel teach on CPU: two processes (gloo) reach the loss one process reaches at the same global batch,
and the run folder is written once (one metrics line per step, one audit, the other process's output under
ranks/); the shipped accelerate configs are ones accelerate reads; methods that cannot split are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import small_pack

ROOT = Path(__file__).resolve().parents[1]
# Final validation loss of 2 processes against 1, relative. The global batch and steps are equal; what differs
# is which rows meet in a step (the distributed sampler splits them), so the curves are close, not identical.
TOLERANCE = 0.01


def _teach(pack, model, out, *extra):
    cmd = [sys.executable, "-m", "knowtune.cli", "teach", str(pack), "--model", str(model), "--out", str(out),
           "--epochs", "3", "--learning-rate", "5e-3", "--batch-size", "8", "--set", "unknown_questions=0", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout + done.stderr


def _evals(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return rows, [r["eval_loss"] for r in rows if "eval_loss" in r]


def test_two_processes_reach_the_loss_of_one(tmp_path, tiny_model):
    pack = small_pack(tmp_path / "pack.yaml")
    _teach(pack, tiny_model, tmp_path / "one")
    console = _teach(pack, tiny_model, tmp_path / "two", "--processes", "2")
    one_rows, one = _evals(tmp_path / "one")
    two_rows, two = _evals(tmp_path / "two")
    assert "2 processes" in console and console.count("before and after") == 1
    assert len(one) == len(two) == 3 and two[-1] < two[0]
    assert abs(two[-1] - one[-1]) / one[-1] < TOLERANCE, (one, two)
    steps = [r["step"] for r in two_rows if "loss" in r]
    assert steps == sorted(set(steps)) == [r["step"] for r in one_rows if "loss" in r]  # one line per step
    assert (tmp_path / "two" / "audit.json").exists() and (tmp_path / "two" / "adapter").exists()
    assert (tmp_path / "two" / "ranks" / "log-rank1.txt").exists()
    assert not list((tmp_path / "two").glob(".launch.*"))


def test_refusals(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from knowtune.cli import app

    pack = small_pack(tmp_path / "pack.yaml")
    got = CliRunner().invoke(app, ["distill", str(tmp_path), "--student", "layers=1", "--processes", "2"])
    assert got.exit_code == 1 and "trains in one process" in got.output, got.output
    cmd = [sys.executable, "-m", "knowtune.cli", "teach", str(pack), "--model", str(tiny_model), "--out",
           str(tmp_path / "odd"), "--batch-size", "7", "--processes", "2", "--epochs", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0 and "does not split evenly across 2 processes" in done.stdout + done.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_accelerate_configs_are_ones_accelerate_reads(path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    config = ClusterConfig.from_yaml_file(str(path))  # unknown top-level keys raise
    options = {a.dest for a in launch_command_parser()._actions}
    raw = yaml.safe_load(path.read_text())
    for group in ("fsdp_config", "deepspeed_config"):
        unknown = set(raw.get(group, {})) - options
        assert not unknown, f"{path.name}: accelerate launch has no option for {unknown}"
    assert config.num_processes >= 2 and "accelerate launch --config_file configs/accelerate/" in path.read_text()


def test_qlora_is_refused_without_a_gpu_and_runs_on_one(tmp_path, tiny_model):
    """On CPU: a clear error before any work. With CUDA (marked gpu): a QLoRA teach of the tiny model finishes."""
    import torch
    from typer.testing import CliRunner

    from knowtune.cli import app

    pack = small_pack(tmp_path / "pack.yaml", n_facts=3)
    got = CliRunner().invoke(app, ["teach", str(pack), "--model", str(tiny_model), "--out", str(tmp_path / "q"),
                                   "--method", "qlora", "--epochs", "1", "--batch-size", "4"])
    if not torch.cuda.is_available():
        assert got.exit_code == 1 and "needs a CUDA GPU" in got.output and not (tmp_path / "q").exists()
    else:  # pragma: no cover - the GPU machine
        assert got.exit_code == 0, got.output
        assert (tmp_path / "q" / "adapter").exists() and (tmp_path / "q" / "audit.json").exists()
