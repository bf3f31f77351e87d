"""`knowtune tune`: a hyperparameter search for "learned minus forgotten", with Optuna.

objective  each trial is one teach run (its folder `<study>/trial-NNNN`) with sampled settings over the --config
           ones; it scores the best epoch's dev-probe accuracy minus --retention-weight x the drop on a fixed
           sample of the general questions (the start model's answers measured once per study). The held-out
           test probes are never read: tuning on them would make the audit's figure a tuned one.
pruning    Optuna's percentile pruner reads dev-probe accuracy after every epoch from the second on and stops a trial
           in the bottom quarter of the earlier trials at that epoch. Not the median: the objective also counts
           forgetting, which the pruner cannot see, and a slow learner that forgets little can win (on the example
           pack the median pruner stopped 5 of the first 8 trials at epoch 2, among them such settings).
workers    several processes (`--workers N`, or `knowtune tune` started on other machines with one --storage)
           share one study. A worker asks for a trial only while fewer than --trials are finished or running,
           under a file lock (exact on one machine; across machines an RDB study may run a trial or two more).
killed     a running trial beats every 20 s (a user attribute); one whose beat is older than --stale-after is
           marked failed by the next worker that looks, and its settings queued again (Optuna's own heartbeat
           serves only RDB storages inside `study.optimize`, which cannot count trials across workers).
result     tune.json, best.yaml (`knowtune teach DATA --config best.yaml` repeats the best trial), report.md with
           the history and parameter-importance plots. The defaults are trial 0, so the report can compare.
           `--score RUN` scores a finished teach run with the study's objective (its metrics.jsonl and the same
           general questions) and keeps it in the study: that the found YAML repeats its trial is checked, not assumed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowtune.errors import Interrupted, KnowtuneError

DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
    "epochs": {"low": 2, "high": 8},
    "lora_r": [4, 8, 16, 32],
    "replay_ratio": {"low": 0.0, "high": 1.0},
    "views": ["answer,casual,template,statement,cloze,reverse", "answer,casual,template,cloze",
              "answer,template,statement,cloze,reverse,profile"],
    "batch_size": [4, 8, 16],
}
HEARTBEAT_SECONDS = 20  # at most; a quarter of --stale-after when that is shorter


# --------------------------------------------------------------------------------------------- the search space

def read_space(path: str | None) -> dict[str, Any]:
    """The search space: the default, with a YAML file's entries replacing it key by key (`name: null` drops
    one). An entry is {low, high[, log]} (a number range; whole numbers give an integer range) or a list of
    choices (a list of view names is one choice)."""
    import yaml

    from knowtune.train.methods.teach import TeachSettings

    space = dict(DEFAULT_SPACE)
    if path:
        if not Path(path).exists():
            raise KnowtuneError(f"{path}: no such search-space file.", fix="check the --space path.")
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            raise KnowtuneError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}).",
                                fix="fix the file; `knowtune tune --help` shows the form of an entry.") from exc
        if not isinstance(loaded, dict):
            raise KnowtuneError(f"{path}: a search space is a YAML mapping of teach settings to ranges or choices.",
                                fix="write e.g. `learning_rate: {low: 1e-4, high: 3e-3, log: true}` and `lora_r: [8, 16]`.")
        space.update(loaded)
    space = {k: v for k, v in space.items() if v is not None}
    for name, entry in space.items():
        if name not in TeachSettings.model_fields:
            raise KnowtuneError(f"search space: {name!r} is not a teach setting.",
                                fix="use the names `knowtune teach --help` lists, with underscores (learning_rate).")
        if isinstance(entry, dict):
            space[name] = entry = {**entry, **{k: _number(name, entry.get(k)) for k in ("low", "high")}}
            if not entry["low"] < entry["high"]:
                raise KnowtuneError(f"search space: {name} needs low < high (got {entry}).", fix="give both ends of the range.")
        if isinstance(entry, list) and not entry or not isinstance(entry, (dict, list)):
            raise KnowtuneError(f"search space: {name} is neither a range nor a list of choices.",
                                fix="write {low: A, high: B} or [choice, choice, ...].")
    return space


def _number(name: str, value):
    """A range's end as a number (YAML reads 1e-4 as a string): an int when written as one, else a float."""
    if isinstance(value, bool) or value is None:
        raise KnowtuneError(f"search space: {name} needs numbers for low and high (got {value!r}).",
                            fix="write e.g. {low: 1e-4, high: 3e-3, log: true}.")
    if isinstance(value, (int, float)):
        return value
    try:
        return int(value) if str(value).strip().lstrip("-").isdigit() else float(value)
    except ValueError:
        raise KnowtuneError(f"search space: {name}: {value!r} is not a number.",
                            fix="write e.g. {low: 1e-4, high: 3e-3, log: true}.") from None


def _choice(value):
    """A choice as Optuna stores it (a list of views: one comma-joined string)."""
    return ",".join(value) if isinstance(value, list) else value


def suggest(trial, space: dict[str, Any]) -> dict[str, Any]:
    """The trial's settings: one draw from every entry of the space."""
    out = {}
    for name, entry in space.items():
        if isinstance(entry, list):
            out[name] = trial.suggest_categorical(name, [_choice(c) for c in entry])
        elif all(isinstance(entry[k], int) for k in ("low", "high")):
            out[name] = trial.suggest_int(name, entry["low"], entry["high"], log=bool(entry.get("log")))
        else:
            out[name] = trial.suggest_float(name, float(entry["low"]), float(entry["high"]), log=bool(entry.get("log")))
    return out


def as_settings(params: dict[str, Any]) -> dict[str, Any]:
    """Trial parameters as teach settings (a comma-joined view list back into a list)."""
    return {k: v.split(",") if k == "views" and isinstance(v, str) else v for k, v in params.items()}


def defaults_in(space: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The settings teach would use without tuning (the --config file over teach's defaults), for each entry of
    the space they fall inside: trial 0 measures them."""
    from knowtune.train.methods.teach import TeachSettings

    out = {}
    for name, entry in space.items():
        value = base.get(name, TeachSettings.default_of(name))
        if isinstance(entry, list):
            if _choice(value) in [_choice(c) for c in entry]:
                out[name] = _choice(value)
        elif entry["low"] <= value <= entry["high"]:
            out[name] = value
    return out


# --------------------------------------------------------------------------------------------------- the study

def open_storage(url: str | None, folder: Path):
    """The study's storage: a journal file in the study folder by default, or any Optuna RDB URL (sqlite:///,
    postgresql://, mysql://). An unreachable database is a clear error before any work."""
    import optuna

    if not url or ("://" not in url and url.endswith((".log", ".journal"))):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url) if url else folder / "journal.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:
        raise KnowtuneError(f"--storage {url}: cannot open the study database ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200]}).",
                            fix="check the URL, that the database server runs and accepts this user, and that its "
                                "driver is installed (psycopg2 for postgresql://); or leave --storage out for a "
                                "journal file in the study folder.") from exc


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock between the processes of this machine (released when the holder dies)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_study(storage, a: "TuneArgs", defaults: dict[str, Any]):
    """Create the study (or join it), with the defaults queued as its first trial and the objective's terms
    recorded in it (a worker that joins with others is told, not trusted)."""
    import optuna

    with file_lock(a.folder / "study.lock"):
        study = optuna.create_study(storage=storage, study_name=a.study, direction="maximize", load_if_exists=True,
                                    sampler=optuna.samplers.TPESampler(seed=None),
                                    pruner=pruner())
        if not study.trials:
            for key in OBJECTIVE:
                study.set_user_attr(key, getattr(a, key))
            if defaults:
                study.enqueue_trial(defaults, user_attrs={"defaults": True})
    return objective_from(study, a)


def objective_from(study, a: "TuneArgs"):
    """Read the objective's terms the study's first worker fixed back into `a`; returns the study."""
    for key in OBJECTIVE:
        setattr(a, key, study.user_attrs.get(key, getattr(a, key)))
    return study


def pruner():
    """Stop a trial whose dev-probe accuracy after an epoch (the second on) is in the bottom quarter of the
    completed trials' at that epoch (Optuna's percentile is the share kept: 75)."""
    import optuna

    return optuna.pruners.PercentilePruner(75.0, n_startup_trials=3, n_warmup_steps=2)


OBJECTIVE = ("retention_weight", "retention_questions", "seed", "stale_after")  # fixed by the study's first worker


def reap_stale(study, stale_after: float, log=print) -> int:
    """Running trials whose heartbeat stopped (their worker was killed): marked failed, settings queued again."""
    import optuna

    now, n = time.time(), 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        beat = t.user_attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else now)
        if now - beat <= stale_after:
            continue
        try:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        except Exception:  # it finished, or another worker reaped it first
            continue
        n += 1
        if "retry_of" in t.user_attrs:  # a retry that died too: its settings may be what kills workers
            log(f"Trial {t.number}: no heartbeat for {now - beat:.0f} s; a retry that died again, not queued again.")
            continue
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, **({"defaults": True} if t.user_attrs.get("defaults") else {})})
        log(f"Trial {t.number}: no heartbeat for {now - beat:.0f} s (its worker died); marked failed, its settings queued again.")
    return n


def counted(study) -> tuple[int, int]:
    """(finished, running) trials of the study."""
    import optuna

    S = optuna.trial.TrialState
    return (len(study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED))),
            len(study.get_trials(deepcopy=False, states=(S.RUNNING,))))


@contextlib.contextmanager
def heartbeat(trial, every: float):
    """Write the time into the trial every `every` seconds while it runs."""
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            with contextlib.suppress(Exception):
                trial.set_user_attr("heartbeat", time.time())
            stop.wait(every)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------- one trial

def retention_sample(n: int, seed: int = 0) -> list:
    """A fixed sample of the shipped general questions: the retention figure every trial is scored on."""
    import random

    from knowtune.eval.audit import retention_probes

    probes = retention_probes()
    return random.Random(seed).sample(probes, min(n, len(probes)))


def retention_of(ref: str, probes: list, log) -> float:
    from knowtune.eval.audit import accuracy, score_probes
    from knowtune.models import load_for_answering

    from knowtune.progress import library_output

    with library_output(None, False):  # the libraries' loading bars and warnings stay off the console
        model, tokenizer = load_for_answering(ref, log=log)
    return accuracy(score_probes(model, tokenizer, probes))


def pruning(trial):
    """A TrainerCallback that reports dev-probe accuracy to the trial after each evaluation and stops a trial
    the pruner gives up on."""
    import optuna
    from transformers import TrainerCallback

    class Pruning(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get("eval_dev_accuracy")
            if value is None:
                return
            step = max(1, round(state.epoch or 0))
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"dev-probe accuracy {value:.1%} after epoch {step}")

    return Pruning()


def objective_of(run: Path, retention_weight: float, base_retention: float, probes: list, log) -> dict[str, float]:
    """A finished teach run scored as a trial is: its best epoch's dev-probe accuracy (the run's metrics.jsonl)
    minus the weight x the drop on the study's sample of general questions; with the question counts, for the
    sampling error."""
    from knowtune.io import read_jsonl

    run = Path(run)
    metrics = run / "metrics.jsonl"
    dev = [m["eval_dev_accuracy"] for m in read_jsonl(metrics) if "eval_dev_accuracy" in m] if metrics.exists() else []
    if not dev:
        raise KnowtuneError(f"{run}: the run measured no dev-probe accuracy, so it cannot be scored like a trial.",
                            fix="give facts three or more phrasings (a knowledge pack or several questions per answer), "
                                "and score a finished `knowtune teach` run folder.")
    dev_file = run / "data" / "probes_dev.jsonl"
    retention = retention_of(str(run), probes, log)
    drop = base_retention - retention
    return {"objective": max(dev) - retention_weight * drop, "dev_accuracy": max(dev), "retention": retention,
            "retention_drop": drop, "dev_probes": len(read_jsonl(dev_file)) if dev_file.exists() else None,
            "retention_questions": len(probes)}


def sampling_error(r: dict[str, Any], retention_weight: float) -> float | None:
    """One standard error of the objective from its question counts (binomial): how far the same model could
    score on another sample of dev probes and general questions, the yardstick for "the same within noise"."""
    if not r.get("dev_probes") or not r.get("retention_questions"):
        return None
    d, q = r["dev_accuracy"], r["retention"]
    return math.sqrt(d * (1 - d) / r["dev_probes"] + retention_weight ** 2 * q * (1 - q) / r["retention_questions"])


def run_trial(trial, a: "TuneArgs", base: dict[str, Any], base_retention: float, probes: list, log) -> float:
    """One teach run with the trial's settings; returns its objective."""
    from knowtune.train import lifecycle
    from knowtune.train.methods.teach import Teach, TeachSettings

    params = suggest(trial, a.space)
    out = a.folder / f"trial-{trial.number:04d}"
    trial.set_user_attr("run", str(out))
    s = TeachSettings.from_sources(None, base, as_settings(params), data=a.data, out=str(out), audit=False)
    method = Teach()
    method.callbacks = (pruning(trial),)
    lifecycle.run(method, s, log=log)
    scored = objective_of(out, a.retention_weight, base_retention, probes, log)
    for key, value in scored.items():
        if key != "objective":
            trial.set_user_attr(key, value)
    return scored["objective"]


# --------------------------------------------------------------------------------------------------- a worker

def told(study, trial, outcome, log) -> bool:
    """Report a trial's value (or PRUNED); False when the trial was meanwhile marked failed by another worker
    (its heartbeat was late) and its settings queued again: the result is dropped, the retry will count."""
    import optuna

    try:
        if isinstance(outcome, optuna.trial.TrialState):
            study.tell(trial, state=outcome)
        else:
            study.tell(trial, outcome)
        return True
    except (ValueError, RuntimeError) as exc:  # "Cannot tell a FAIL trial" / UpdateFinishedTrialError
        log(f"Trial {trial.number}: finished after another worker had given it up ({exc}); its retry counts instead.")
        return False


@dataclass
class TuneArgs:
    """What a worker needs: the data, the study and where it lives, the space, the objective's terms."""
    data: list[str]
    trials: int
    storage: str | None
    study: str
    folder: Path
    space: dict[str, Any]
    config: str | None
    retention_weight: float
    retention_questions: int
    stale_after: float
    seed: int = 0

    def __post_init__(self):
        self.data, self.folder = list(self.data), Path(self.folder)


def base_settings(config: str | None) -> dict[str, Any]:
    """The --config file's teach settings every trial starts from ({} without one)."""
    from knowtune.config import read_settings_file

    return read_settings_file(config) if config else {}


def check_inputs(a: TuneArgs) -> None:
    """What would make every trial fail, found before any work: missing data, settings teach refuses."""
    from knowtune.train.methods.teach import TeachSettings

    missing = [d for d in a.data if not Path(d).exists()]
    if missing:
        raise KnowtuneError(f"No such data: {', '.join(missing)}.", fix="check the paths.")
    TeachSettings.from_sources(a.config, data=a.data)


def work(a: TuneArgs, log=print) -> int:
    """Run trials of the study until --trials are finished or running; returns how many this worker ran."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = base_settings(a.config)
    storage = open_storage(a.storage, a.folder)
    study = open_study(storage, a, defaults_in(a.space, base))
    probes = retention_sample(a.retention_questions, a.seed)
    with file_lock(a.folder / "base.lock"):  # one worker measures it, once per study, the others read it
        if "base_retention" not in study.user_attrs:
            from knowtune.models.registry import DEFAULT_MODEL

            study.set_user_attr("base_retention", retention_of(base.get("model", DEFAULT_MODEL), probes, log))
    base_retention = study.user_attrs["base_retention"]
    ran, failures, every = 0, 0, min(HEARTBEAT_SECONDS, a.stale_after / 4)
    while True:
        with file_lock(a.folder / "study.lock"):
            reap_stale(study, a.stale_after, log)
            finished, running = counted(study)
            if finished >= a.trials:
                break
            if finished + running >= a.trials:
                trial = None  # the rest are running elsewhere: wait, and take over a trial whose worker dies
            else:
                trial = study.ask()
                trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
                trial.set_user_attr("heartbeat", time.time())
        if trial is None:
            time.sleep(every)
            continue
        what = ("the defaults" if trial.user_attrs.get("defaults") else
                f"a retry of trial {trial.user_attrs['retry_of']}" if "retry_of" in trial.user_attrs else "new settings")
        log(f"Trial {trial.number}: {what} ...")
        try:
            with heartbeat(trial, every):
                value = run_trial(trial, a, base, base_retention, probes, log)
            if not told(study, trial, value, log):
                continue
            failures = 0
            log(f"Trial {trial.number}: objective {value:.3f} (dev {trial.user_attrs.get('dev_accuracy', math.nan):.1%}, "
                f"retention drop {100 * trial.user_attrs.get('retention_drop', math.nan):+.1f} pts).")
        except optuna.TrialPruned as why:
            if told(study, trial, optuna.trial.TrialState.PRUNED, log):
                log(f"Trial {trial.number}: pruned ({why}).")
        except (Interrupted, KeyboardInterrupt):
            study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            raise
        except Exception as exc:  # a bad setting (diverged, out of memory): this trial fails, the study goes on
            message = exc.message if isinstance(exc, KnowtuneError) else f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("error", message[:2000])
            study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            log(f"Trial {trial.number}: failed: {message}")
            failures += 1
            if failures == 3:
                raise KnowtuneError(f"Three trials in a row failed; the last: {message}",
                                    fix=getattr(exc, "fix", None) or "check the data and the --config settings with one `knowtune teach` run.")
        ran += 1
    return ran


# --------------------------------------------------------------------------------------------------- the result

def summarise(a: TuneArgs) -> dict:
    """tune.json, best.yaml and report.md (with plots/history.png and plots/importance.png) from the study."""
    import optuna
    import yaml

    from knowtune.io import write_json, write_text

    study = existing_study(a)
    S = optuna.trial.TrialState
    # a pruned trial's value is its last dev-probe accuracy, not an objective: kept apart as `pruned_at`
    rows = [{"number": t.number, "state": t.state.name, "objective": t.value if t.state == S.COMPLETE else None,
             "pruned_at": ({"epoch": max(t.intermediate_values), "dev_accuracy": t.intermediate_values[max(t.intermediate_values)]}
                           if t.state == S.PRUNED and t.intermediate_values else None), "params": t.params,
             **{k: t.user_attrs.get(k) for k in ("dev_accuracy", "retention", "retention_drop", "run", "worker",
                                                 "retry_of", "defaults", "error")}} for t in study.trials]
    done = [t for t in study.trials if t.state == S.COMPLETE]
    best = max(done, key=lambda t: t.value) if done else None
    defaults = next((t for t in done if t.user_attrs.get("defaults")), None)
    result = {"study": a.study, "trials": rows, "finished": sum(t.state in (S.COMPLETE, S.PRUNED) for t in study.trials),
              "failed": sum(t.state == S.FAIL for t in study.trials), "retention_weight": a.retention_weight,
              "best": rows[best.number] if best else None, "defaults": rows[defaults.number] if defaults else None,
              "scored": study.user_attrs.get("scored", [])}
    write_json(a.folder / "tune.json", result)
    if best:
        settings = {**base_settings(a.config), **as_settings(best.params)}
        write_text(a.folder / "best.yaml", f"# knowtune tune: trial {best.number} of study {a.study}, objective "
                   f"{best.value:.4f} (dev-probe accuracy minus {a.retention_weight:g} x retention drop)\n"
                   f"# use: knowtune teach {' '.join(a.data)} --config {a.folder / 'best.yaml'}\n"
                   + yaml.safe_dump(settings, sort_keys=False))
    plots = plot_study(study, a.folder / "plots")
    write_text(a.folder / "report.md", report_text(result, a, plots))
    return result


def existing_study(a: TuneArgs):
    """The study the workers made (its objective's terms read back into `a`); a clear error when there is none."""
    import optuna

    storage = open_storage(a.storage, a.folder)
    try:
        study = optuna.load_study(study_name=a.study, storage=storage)
    except KeyError as exc:
        raise KnowtuneError(f"No study named {a.study!r} in {a.storage or a.folder / 'journal.log'}.",
                            fix="give the --study and --storage (or --out) the workers used.") from exc
    return objective_from(study, a)


def score(a: TuneArgs, runs: list[str], log=print) -> list[dict]:
    """Score finished teach runs (e.g. `teach --config best.yaml`) with the study's own objective, on the same
    general questions against the same start-model figure, and keep the scores in the study for its report."""
    study = existing_study(a)
    if "base_retention" not in study.user_attrs:
        raise KnowtuneError(f"Study {a.study!r} has not measured the start model yet.",
                            fix="run at least one trial (`knowtune tune ...` without --score) first.")
    probes = retention_sample(a.retention_questions, a.seed)
    out = []
    for run in runs:
        if not (Path(run) / "config.yaml").exists():
            raise KnowtuneError(f"{run}: not a run folder (no config.yaml).", fix="give the --out folder of a finished "
                                "`knowtune teach` run.")
        out.append({"run": str(run), **objective_of(Path(run), a.retention_weight, study.user_attrs["base_retention"],
                                                     probes, log)})
    with file_lock(a.folder / "study.lock"):  # read again under the lock: another --score may have added its own
        import optuna

        kept = {r["run"]: r for r in optuna.load_study(study_name=a.study, storage=open_storage(a.storage, a.folder))
                .user_attrs.get("scored", [])}
        kept.update({r["run"]: r for r in out})
        study.set_user_attr("scored", list(kept.values()))
    return out


def plot_study(study, folder: Path) -> list[tuple[str, str]]:
    """History (each trial's objective, the best so far) and parameter importance (Optuna's default evaluator),
    as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    from knowtune.io import save_figure

    S = optuna.trial.TrialState
    out = []
    done = [t for t in study.trials if t.state == S.COMPLETE]
    if done:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.scatter([t.number for t in done], [t.value for t in done], label="trial")
        best, line = -math.inf, []
        for t in done:
            best = max(best, t.value)
            line.append(best)
        ax.step([t.number for t in done], line, where="post", color="C1", label="best so far")
        pruned = [t.number for t in study.trials if t.state == S.PRUNED]
        if pruned:
            ax.scatter(pruned, [min(t.value for t in done)] * len(pruned), marker="x", color="grey", label="pruned")
        ax.set_xlabel("trial")
        ax.set_ylabel("objective")
        ax.legend()
        save_figure(fig, folder / "history.png")
        out.append(("Objective of each trial and the best so far", "plots/history.png"))
    if len(done) >= 3:
        import warnings

        try:
            with warnings.catch_warnings():  # "importances will be equal" when the trials barely differ
                warnings.simplefilter("ignore")
                importance = optuna.importance.get_param_importances(study)
        except Exception:  # too few distinct values to estimate them
            importance = {}
        if importance:
            fig, ax = plt.subplots(figsize=(6, 3))
            names = list(importance)[::-1]
            ax.barh(names, [importance[n] for n in names])
            ax.set_xlabel("importance (Optuna's default evaluator: PED-ANOVA)")
            save_figure(fig, folder / "importance.png")
            out.append(("Parameter importance", "plots/importance.png"))
    return out


def report_text(result: dict, a: TuneArgs, plots: list[tuple[str, str]]) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = [f"# Tuning study {a.study}", "",
             f"Objective: dev-probe accuracy minus {a.retention_weight:g} x the drop in general knowledge "
             f"({a.retention_questions} questions); held-out test probes never read. Trials finished: "
             f"{result['finished']}, failed: {result['failed']}.", ""]
    for label, key in (("best", "best"), ("defaults (trial 0)", "defaults")):
        r = result[key]
        if r:
            lines.append(f"- **{label}**: trial {r['number']}, objective {r['objective']:.3f}, dev {pct(r['dev_accuracy'])}, "
                         f"retention drop {100 * (r['retention_drop'] or 0):+.1f} pts; {json.dumps(r['params'])}")
    best = result["best"]
    if best and result["scored"]:
        lines += ["", "Finished teach runs scored with this objective (`--score RUN`), against the best trial:", "",
                  "| run | objective | dev accuracy | retention drop | minus the best trial | sampling error (1 s.e.) |",
                  "|---|---|---|---|---|---|"]
        for r in result["scored"]:
            se = sampling_error(r, a.retention_weight)
            lines.append(f"| {r['run']} | {r['objective']:.3f} | {pct(r['dev_accuracy'])} | "
                         f"{100 * r['retention_drop']:+.1f} pts | {r['objective'] - best['objective']:+.3f} | "
                         f"{'-' if se is None else f'{se:.3f}'} |")
    lines += ["", "| trial | state | objective | dev accuracy | retention drop | settings |", "|---|---|---|---|---|---|"]
    for r in result["trials"]:
        drop = "-" if r["retention_drop"] is None else f"{100 * r['retention_drop']:+.1f} pts"
        obj = "-" if r["objective"] is None else f"{r['objective']:.3f}"
        dev = pct(r["dev_accuracy"]) if r.get("pruned_at") is None else \
            f"{pct(r['pruned_at']['dev_accuracy'])} at epoch {r['pruned_at']['epoch']}"
        lines.append(f"| {r['number']} | {r['state'].lower()} | {obj} | {dev} | {drop} | "
                     f"{json.dumps(r['params'])} |")
    lines.append("")
    lines += [f"![{caption}]({path})" for caption, path in plots]
    return "\n".join(lines) + "\n"
