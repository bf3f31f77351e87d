"""The runs dashboard's side of the web app: what the run folders hold, and teach runs started from the page.

Runs are read from their folders (config.yaml, metrics.jsonl, audit.json) each time a page asks: the folders are
the truth, whoever started the run. A teach started from the page is a `knowtune teach` process of its own (its
console in RUN/console.txt), recorded as a job in the app's database; a thread follows its metrics.jsonl into
the job's progress and sets the job done or failed when the process ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from knowtune.web.store import Store

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
RESERVED = {"compare", "new"}  # the pages under /runs/
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".yaml", ".yml", ".parquet", ".txt", ".md")


@dataclass
class RunRow:
    """One line of the runs list."""
    name: str
    method: str
    data: str
    status: str  # done | running | stopped (no audit.json and no process)
    held_out_before: float | None = None
    held_out_after: float | None = None
    retention_drop: float | None = None  # points
    seconds: float | None = None
    started: float = 0.0
    facts: dict = field(default_factory=dict)  # verdict -> count


def valid_name(name: str) -> bool:
    return bool(NAME.fullmatch(name or "")) and ".." not in name


def run_folder(root: Path, name: str, starting=()) -> Path | None:
    """The folder of run `name` directly under `root`, or None (a name that is not a plain folder name, or no run).
    `starting`: names of runs started here that may not have written their settings yet."""
    if not valid_name(name):
        return None
    folder = root / name
    # a run started from the page has its console.txt from the start, so it shows even if it fails before its settings
    known = (folder / "config.yaml").exists() or (folder / "console.txt").exists() or name in starting and folder.is_dir()
    return folder if known and folder.resolve().parent == root.resolve() else None


def _settings(folder: Path) -> dict:
    path = folder / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _metrics(folder: Path) -> list[dict]:
    rows = []
    if (folder / "metrics.jsonl").exists():
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line still being written
                pass
    return rows


def _recent(folder: Path, seconds: float = 120) -> bool:
    """A run started elsewhere (the command line) counts as running while its folder keeps changing."""
    newest = max((p.stat().st_mtime for p in (folder / "metrics.jsonl", folder / "log.txt") if p.exists()), default=0)
    return time.time() - newest < seconds


def svg_points(points: list[tuple[float, float]], width: int = 320, height: int = 120, pad: int = 6) -> str:
    """A curve as the `points` of an SVG polyline in a width x height box (y grows upwards)."""
    if len(points) < 2:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 2 * pad) / ((x1 - x0) or 1)
    sy = (height - 2 * pad) / ((y1 - y0) or 1)
    return " ".join(f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}" for x, y in points)


def row_of(folder: Path, running: set[str]) -> RunRow:
    settings = _settings(folder)
    audit = _read_json(folder / "audit.json")
    data = settings.get("data") or []
    metrics = _metrics(folder)
    row = RunRow(folder.name, (audit or {}).get("method") or settings.get("method") or "?",
                 ", ".join(Path(str(d)).name for d in (data if isinstance(data, list) else [data])),
                 "done" if audit else "running" if folder.name in running or _recent(folder) else "stopped",
                 seconds=max((m.get("seconds", 0) for m in metrics), default=None),
                 started=folder.stat().st_mtime)
    summary = (audit or {}).get("summary") or {}
    row.held_out_before, row.held_out_after = summary.get("probe_accuracy_before"), summary.get("probe_accuracy_after")
    row.retention_drop = summary.get("retention_drop_points")
    for f in (audit or {}).get("facts", []):
        row.facts[f["verdict"]] = row.facts.get(f["verdict"], 0) + 1
    return row


def list_runs(root: Path, running: set[str] = frozenset()) -> list[RunRow]:
    """Every run folder directly under `root`, newest first."""
    if not root.exists():
        return []
    rows = [row_of(f, running) for f in root.iterdir() if f.is_dir() and valid_name(f.name) and (f / "config.yaml").exists()]
    return sorted(rows, key=lambda r: r.started, reverse=True)


def run_detail(folder: Path, running: set[str] = frozenset()) -> dict:
    """What the run page shows: the list row, the audit's figures and per-fact table, the curves, the settings,
    the plots the report drew."""
    audit = _read_json(folder / "audit.json") or {}
    metrics = _metrics(folder)
    return {"row": row_of(folder, running), "summary": audit.get("summary") or {}, "facts": audit.get("facts", []),
            "measures": audit.get("measures", []), "settings": _settings(folder),
            "loss": [(m["step"], m["loss"]) for m in metrics if "loss" in m],
            "eval_loss": [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m],
            "dev_accuracy": [(m.get("epoch") or m["step"], m["eval_dev_accuracy"]) for m in metrics if "eval_dev_accuracy" in m],
            "plots": plots_of(folder),
            "console": (folder / "console.txt").read_text(errors="replace")[-4000:] if (folder / "console.txt").exists() else ""}


def plots_of(folder: Path) -> list[str]:
    """The PNG files the run's report drew (the only files of a run the pages serve)."""
    return sorted(p.name for p in (folder / "plots").glob("*.png")) if (folder / "plots").exists() else []


def compare(a: dict, b: dict) -> dict:
    """Two run details side by side: the figures both have, the facts joined by id, the settings that differ."""
    keys = [k for k in a["summary"] if isinstance(a["summary"][k], (int, float)) and k in b["summary"]]
    facts_b = {f["fact_id"]: f for f in b["facts"]}
    facts = [(f, facts_b.get(f["fact_id"])) for f in a["facts"]]
    facts += [(None, f) for f in b["facts"] if f["fact_id"] not in {x["fact_id"] for x in a["facts"]}]
    settings = sorted(k for k in set(a["settings"]) | set(b["settings"]) if a["settings"].get(k) != b["settings"].get(k))
    return {"figures": [(k, a["summary"][k], b["summary"][k]) for k in keys], "facts": facts, "settings": settings}


def progress(folder: Path) -> dict:
    """Where a run is: its phase, and steps done of the steps planned once training has started."""
    settings = _settings(folder)
    metrics = _metrics(folder)
    step = max((m.get("step", 0) for m in metrics), default=0)
    total = 0
    if (folder / "data" / "train.jsonl").exists():
        n = sum(1 for _ in (folder / "data" / "train.jsonl").open())
        total = -(-n // max(1, int(settings.get("batch_size", 8)))) * int(settings.get("epochs", 1))
    if (folder / "audit.json").exists():
        phase = "done"
    elif (folder / "adapter").exists() or (folder / "model").exists():
        phase = "auditing the saved model"
    elif step or (folder / "data" / "train.jsonl").exists():
        phase = "training"
    elif (folder / "config.yaml").exists():
        phase = "auditing the start model"
    else:
        phase = "preparing the data"
    return {"phase": phase, "step": step, "total": max(total, step)}


class TeachLauncher:
    """Starts `knowtune teach` runs for the dashboard, one at a time, each followed into a job of the store."""

    def __init__(self, store: Store, root: Path, base_config: str | None = None, poll: float = 1.0):
        self.store, self.root, self.base_config, self.poll = store, Path(root), base_config, poll
        self._lock = threading.Lock()  # one run started here at a time
        self._names = threading.Lock()
        self.running: dict[str, int] = {}  # run name -> job id

    def busy(self) -> bool:
        return self._lock.locked()

    def start(self, name: str, upload_name: str, content: bytes, settings: dict) -> int:
        """Save the uploaded file (under ROOT/.uploads/NAME/), start teach on it into ROOT/NAME; returns the job
        id. ValueError with the reason when the name or file cannot be used, or a run is already going."""
        if not valid_name(name) or name in RESERVED:
            raise ValueError("the run name may hold letters, digits, '.', '_' and '-' (up to 80, not starting with '.').")
        if (self.root / name).exists():
            raise ValueError(f"a run named {name} already exists; choose another name.")
        filename = Path(upload_name or "").name
        if not filename or not filename.lower().endswith(DATA_SUFFIXES) or not valid_name(filename):
            raise ValueError(f"choose a data file ({', '.join(DATA_SUFFIXES)}) with a plain file name.")
        if not self._lock.acquire(blocking=False):
            raise ValueError("a run started here is still going; wait for it to finish.")
        try:
            folder = self.root / ".uploads" / name
            folder.mkdir(parents=True, exist_ok=True)
            data = folder / filename
            data.write_bytes(content)
            out = self.root / name
            out.mkdir(parents=True)
            args = [sys.executable, "-m", "knowtune.cli", "teach", str(data), "--out", str(out),
                    *(["--config", self.base_config] if self.base_config else [])]
            for key, value in settings.items():
                args += [f"--{key.replace('_', '-')}", str(value)]
            job = self.store.create_job("teach", 0, f"{name}: started")
            with open(out / "console.txt", "w") as console:  # the child holds its own copy of the handle
                proc = subprocess.Popen(args, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env={**os.environ, "COLUMNS": "100"})
            with self._names:
                self.running[name] = job
            threading.Thread(target=self._follow, args=(name, out, proc, job), daemon=True).start()
            return job
        except BaseException:
            self._lock.release()
            raise

    def names(self) -> set[str]:
        """The runs started here that are still going (a copy, safe while the follower threads change it)."""
        with self._names:
            return set(self.running)

    def _follow(self, name: str, out: Path, proc, job: int) -> None:
        try:
            while proc.poll() is None:
                p = progress(out)
                with contextlib.suppress(Exception):  # a busy database skips one update, never the follow
                    self.store.update_job(job, done=p["step"], total=p["total"], message=f"{name}: {p['phase']}")
                time.sleep(self.poll)
            p = progress(out)
            if proc.returncode == 0 and p["phase"] == "done":
                self.store.update_job(job, status="done", done=p["total"], total=p["total"], message=f"{name}: done")
            else:
                tail = (out / "console.txt").read_text(errors="replace").strip().splitlines()[-3:]
                self.store.update_job(job, status="failed", message=f"{name}: failed (exit {proc.returncode}): "
                                                                     + " ".join(tail)[-500:])
        finally:
            with self._names:
                self.running.pop(name, None)
            self._lock.release()
