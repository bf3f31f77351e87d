"""Experiment tracking: every run's training metrics in TensorBoard (by default) and MLflow (when asked), live.

Every method, whatever trains it (a transformers Trainer, trl, our DP-SGD or PPO loop), logs its metrics to the
run's metrics.jsonl; the lifecycle starts a Tracker beside the training that reads the new lines of that file
every few seconds and hands them to TensorBoard's SummaryWriter and MLflow's client. Methods know nothing of it.
At the end it adds the settings, the audit's summary figures, audit.json and the report. A resumed run continues
the same TensorBoard history (events after the checkpoint's step are dropped) and the same MLflow run.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from knowtune.errors import KnowtuneError
from knowtune.io import read_jsonl

POLL_SECONDS = 5.0
NOT_METRICS = {"step", "seconds"}


def mlflow_uri(setting: str, run_dir: Path) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment): "local" is a SQLite store beside the run folders
    (MLflow's file store is in maintenance mode and refuses to open unless told to); a file: URI the user gives
    is honoured."""
    if setting == "local":
        home = run_dir.resolve().parent
        return f"sqlite:///{home / 'mlflow.db'}", (home / "mlartifacts").as_uri()
    if "://" not in setting and not setting.startswith("file:"):  # a folder: a file store there
        setting = Path(setting).resolve().as_uri()
    if setting.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # asked for by name: a file store it is
    return setting, None


class Tracker:
    """Mirrors metrics.jsonl into the trackers the settings turn on; `finish` adds the audit; `close` always."""

    def __init__(self, run_dir: Path, settings, resume: bool, log=print):
        self.dir, self.log = Path(run_dir), log
        self.metrics = self.dir / "metrics.jsonl"
        self.offset = self.metrics.stat().st_size if resume and self.metrics.exists() else 0
        self.last_step = max((r.get("step", 0) for r in read_jsonl(self.metrics)), default=0) if self.offset else 0
        self.tb = self.ml = None
        if getattr(settings, "mlflow", None):  # first: an unreachable server stops the run before anything opens
            self.ml = _MlflowRun(settings, self.dir, resume)
            if not resume or not self.ml.resumed:
                self.ml.params(settings.model_dump())
        if getattr(settings, "tensorboard", False):
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: on resume, events the killed run logged after its checkpoint are dropped
            self.tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=self.last_step + 1 if resume else None)
        self.lock = threading.Lock()  # the poller thread and finish() never read the file at once
        self.warned = False
        self.stop = threading.Event()
        self.thread = None
        if self.tb or self.ml:
            self.thread = threading.Thread(target=self._loop, name="knowtune-tracking", daemon=True)
            self.thread.start()

    def _loop(self):
        while not self.stop.wait(POLL_SECONDS):
            self._safely(self.poll)

    def _safely(self, action, *args) -> None:
        """Tracking never fails a run: an error (a tracking server gone, a full disk) is said once, in the log."""
        try:
            action(*args)
        except Exception as exc:
            if not self.warned:
                self.warned = True
                self.log(f"Tracking: {type(exc).__name__}: {str(exc)[:300]} (the run goes on; its metrics.jsonl has everything).")

    def poll(self) -> int:
        """Forward the complete lines written since the last call; returns how many rows."""
        with self.lock:
            return self._poll()

    def _poll(self) -> int:
        if not self.metrics.exists():
            return 0
        with open(self.metrics, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next poll
        rows = [json.loads(line) for line in chunk[:end].decode().splitlines() if line.strip()]
        self.offset += end
        for row in rows:
            step = int(row.get("step", 0))
            values = {_tag(k): float(v) for k, v in row.items()
                      if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
            if self.tb:
                for tag, value in values.items():
                    self.tb.add_scalar(tag, value, step)
            if self.ml:
                self.ml.metrics(values, step)
            self.last_step = max(self.last_step, step)
        return len(rows)

    def finish(self, audit: dict) -> None:
        """The audit's summary figures at the last step, the settings and the report."""
        self.stop.set()
        if self.thread:
            self.thread.join(timeout=30)
        self._safely(self._finish, audit)

    def _finish(self, audit: dict) -> None:
        self.poll()
        figures = {f"audit/{k}": float(v) for k, v in (audit.get("summary") or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.tb:
            for tag, value in figures.items():
                self.tb.add_scalar(tag, value, self.last_step)
            self.tb.add_text("settings", "```\n" + json.dumps(audit.get("settings", {}), indent=1) + "\n```", self.last_step)
            if (self.dir / "report.md").exists():
                self.tb.add_text("report", (self.dir / "report.md").read_text(), self.last_step)
        if self.ml:
            self.ml.metrics(figures, self.last_step)
            for name in ("audit.json", "report.md", "report.html", "config.yaml"):
                if (self.dir / name).exists():
                    self.ml.artifact(self.dir / name)
            if (self.dir / "plots").exists():
                self.ml.artifact(self.dir / "plots")
            self.ml.end("FINISHED")
            self.log(f"MLflow: run {self.ml.run_id} in experiment {self.ml.experiment!r} at {self.ml.uri}.")

    def close(self, status: str | None = None) -> None:
        """Stop the poller and close the writers; `status` (FAILED, KILLED) ends an MLflow run the run left."""
        self.stop.set()
        if self.thread and self.thread.is_alive():
            self.thread.join(timeout=30)
        if self.tb:
            self._safely(self.tb.close)
        if self.ml and status:
            self._safely(self.ml.end, status)


def _tag(key: str) -> str:
    """metrics.jsonl keys as tracker names: eval_loss -> eval/loss, loss -> train/loss."""
    return f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"


class _MlflowRun:
    """One MLflow run through its client (thread-safe, no global active run); its id kept in RUN/mlflow.json so
    --resume continues it."""

    def __init__(self, settings, run_dir: Path, resume: bool):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise KnowtuneError("--mlflow needs MLflow, which is not installed.",
                                fix='install it: pip install -e ".[tracking]" (or pip install mlflow-skinny).') from exc
        self.uri, artifacts = mlflow_uri(settings.mlflow, run_dir)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")  # a server that is down: an error in ~15 s, not minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        self.experiment = settings.mlflow_experiment
        try:
            self.client = MlflowClient(self.uri)
            experiment_id = self._experiment(artifacts)
        except ImportError as exc:  # a store whose driver is missing (SQLite stores need sqlalchemy and alembic)
            raise KnowtuneError(f"--mlflow {settings.mlflow}: MLflow cannot open {self.uri}: {exc.name or exc} is missing.",
                                fix='install the tracking extra: pip install -e ".[tracking]".') from exc
        except Exception as exc:
            raise KnowtuneError(f"--mlflow {settings.mlflow}: cannot reach the tracking store {self.uri} "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}).",
                                fix="check the URI and that the MLflow server runs, or use --mlflow local.") from exc
        marker = run_dir / "mlflow.json"
        self.resumed = False
        if resume and marker.exists():
            known = json.loads(marker.read_text())
            if known.get("uri") == self.uri:
                self.run_id, self.resumed = known["run_id"], True
                self.client.update_run(self.run_id, status="RUNNING")
        if not self.resumed:
            self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name,
                                                 tags={"knowtune.run_dir": str(run_dir.resolve())}).info.run_id
            from knowtune.io import write_json

            write_json(marker, {"uri": self.uri, "run_id": self.run_id, "experiment": self.experiment})

    def _experiment(self, artifacts: str | None) -> str:
        """The experiment's id, made if missing (two runs starting at once: the one that loses the race reads it)."""
        found = self.client.get_experiment_by_name(self.experiment)
        if found:
            return found.experiment_id
        try:
            return self.client.create_experiment(self.experiment, artifact_location=artifacts)
        except Exception:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def params(self, settings: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, (json.dumps(v) if isinstance(v, (list, dict)) else str(v))[:500]) for k, v in settings.items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        if values:
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def artifact(self, path: Path) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
        else:
            self.client.log_artifact(self.run_id, str(path))

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)
