"""Human feedback end to end on the default model, with a fixed rule standing in for the raters:
ratings -> reward model -> PPO and DPO, each stage timed, each alignment audited.

The start model is SmolLM2-135M-Instruct taught the example pack (`examples/brindlemoor_kite_works.yaml`)
for 1 epoch at learning rate 6e-4 instead of the default 6 at 1e-3, so that it knows little of the pack (6% of
its held-out answers right on 2245d82; 2 epochs gave 72% since the pack gained views, 44% before): fully
taught, it already gives the answers the rule prefers and feedback has nothing left to improve. (Taught 2 epochs at 1e-3 it already stated the fact in 88% of its answers to
PPO's held-out prompts, and the reward model scored even the pack's own statements of the facts only 0.38
standard deviations above those answers: PPO had almost nothing to climb.) Taught here unless --start names a
taught run. The prompts are the pack's training and dev phrasings (its held-out phrasings stay out: they are
the knowledge audit's probes).

ratings  the rating store of `knowtune feedback` (a real SQLite file): the prompts imported, four answers
         per prompt written by the start model as the app writes them (the first greedy, three sampled),
         paired into two comparisons per prompt, each rated by the rule below, exported as preference pairs
         by the app's own export
reward   `knowtune reward train` on the pairs: accuracy on held-out pairs (prompts it never saw)
ppo      `knowtune ppo` with that reward model: mean reward of greedy answers to held-out prompts before and
         after, in standard deviations of the reward before; KL to the start model; the audit
dpo      `knowtune dpo` on the same pairs: the rule's preferred-answer rate of the tuned model's answer over
         the start model's on held-out prompts; the audit

The rule (one simulated rater, deterministic):
  1. an answer "states the fact" when the fact's answer key or an alias appears in it as whole words
     (the audit's scorer);
  2. if exactly one of the two answers states the fact, it is better;
  3. otherwise the shorter answer (in words) is better; the same length is a tie;
  scores: 5 = states the fact in at most 12 words, 4 = states it in more, 2 = does not; an answer that does
  not state the fact is flagged wrong; when neither does, the rater writes the pack's statement of the fact
  as the correction.

    python benchmarks/feedback.py [--start RUN] [--out runs/bench/feedback] [--set-ppo NAME=VALUE] ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "examples" / "brindlemoor_kite_works.yaml"
LIMIT_MIN = 30  # the bound on each stage, on 2 CPU cores
# The start model's teaching (each --set-teach overrides one, --teach-epochs the epochs): see the module docstring.
# One epoch: since the pack gained views and casual probes (issue 15), 2 epochs at 6e-4 already answered 71-72% of
# the held-out questions (in bf16 and in fp32 alike), and feedback had little left to teach.
TEACH = {"epochs": 1, "learning_rate": 6e-4}
# PPO as tuned for this benchmark (each --set-ppo overrides one): 4 answers per prompt, each scored against its
# siblings' mean; short answers (the pack's are one sentence); 30 steps of 40-46 s took 26-29 minutes with the
# measurements and audits, inside the 30-minute bound (40 steps would take ~33; slower machine: --set-ppo steps=25).
# (replay_coef=1.0 costs a third more time per step and kept no more general knowledge: see README.)
PPO = {"samples_per_prompt": 4, "learning_rate": 3e-4, "ppo_epochs": 4, "minibatch_size": 16, "init_kl_coef": 0.05,
       "max_new_tokens": 32, "steps": 30, "lam": 0.95}
# DPO (each --set-dpo overrides one): one epoch at half the default learning rate keeps general knowledge
# (on a start model taught at 1e-3, 2 epochs at 5e-5 dropped retention 5.8 points, 1 epoch at 5e-5 4.2, this one 2.5)
DPO = {"epochs": 1, "learning_rate": 2.5e-5}


# --- the simulated rater ------------------------------------------------------------------------------
def states_fact(answer: str, fact: dict) -> bool:
    from knowtune.text import matches

    return matches(answer, fact["answer"], fact["aliases"])


def prefer(a: str, b: str, fact: dict) -> str:
    """'a', 'b' or 'tie' by the rule in the module docstring."""
    sa, sb = states_fact(a, fact), states_fact(b, fact)
    if sa != sb:
        return "a" if sa else "b"
    la, lb = len(a.split()), len(b.split())
    return "tie" if la == lb else ("a" if la < lb else "b")


def rule_rating(a: str, b: str, fact: dict) -> dict:
    score = lambda x: (5 if len(x.split()) <= 12 else 4) if states_fact(x, fact) else 2
    wrong_a, wrong_b = not states_fact(a, fact), not states_fact(b, fact)
    return {"choice": prefer(a, b, fact), "score_a": score(a), "score_b": score(b), "wrong_a": wrong_a,
            "wrong_b": wrong_b, "correction": fact["statement"] if wrong_a and wrong_b else None}


def preferred_rate(rows: list[dict], facts: dict) -> dict:
    """How often the rule prefers the `after` answer to the `before` answer (ties count half)."""
    verdicts = [prefer(r["after"], r["before"], facts[r["prompt"]]) for r in rows]
    wins, ties = verdicts.count("a"), verdicts.count("tie")
    return {"n": len(rows), "wins": wins, "ties": ties, "losses": len(rows) - wins - ties,
            "preferred_rate": (wins + 0.5 * ties) / len(rows) if rows else None,
            "states_fact_before": sum(states_fact(r["before"], facts[r["prompt"]]) for r in rows) / max(1, len(rows)),
            "states_fact_after": sum(states_fact(r["after"], facts[r["prompt"]]) for r in rows) / max(1, len(rows))}


# --- stages -------------------------------------------------------------------------------------------
def teach(out: Path, extra: dict, log) -> Path:
    from knowtune.train import lifecycle
    from knowtune.train.methods.teach import Teach, TeachSettings

    run = out / "taught"
    if not (run / "audit.json").exists():
        lifecycle.run(Teach(), TeachSettings(**{"data": [str(PACK)], "out": str(run), **TEACH, **extra}),
                      resume=(run / "config.yaml").exists(), log=log)
    return run


def pack_prompts(start: Path, out: Path) -> tuple[dict, Path, Path]:
    """{prompt: fact} for the training and dev phrasings, a prompts file, and the held-out probes as Q&A."""
    from knowtune.io import read_jsonl, write_jsonl

    facts = {}
    for f in read_jsonl(start / "data" / "facts.jsonl"):
        fact = {"answer": f["answer"], "aliases": f["aliases"], "statement": (f["statements"] or [f["answer"]])[0]}
        for p in f["phrasings"]:
            if p["split"] in ("train", "dev") and isinstance(p["prompt"], list):
                facts[p["prompt"][-1]["content"]] = fact
    prompts = write_jsonl(out / "prompts.jsonl", [{"prompt": p, "reference": f["answer"]} for p, f in facts.items()])
    probes = write_jsonl(out / "probes.jsonl", [{"question": r["prompt"][-1]["content"], "answer": r["answer"],
                                                 "aliases": r["aliases"]} for r in read_jsonl(start / "data" / "probes_test.jsonl")])
    return facts, prompts, probes


def collect_ratings(start: Path, facts: dict, prompts: Path, out: Path, log) -> dict:
    from knowtune.data.preference import agreement, parse_prompt_lines, preference_pairs
    from knowtune.io import write_json, write_jsonl
    from knowtune.models.load import load_for_answering
    from knowtune.web.auth import hash_password
    from knowtune.web.generate import write_answers
    from knowtune.web.store import Store

    store = Store(str(out / "ratings.db"))
    if store.user_by_name("rule-rater") is None:
        store.add_user("rule-rater", "rater", hash_password("not-used-for-sign-in"))
    rater = store.user_by_name("rule-rater").id
    store.import_prompts(parse_prompt_lines(prompts.read_text(), str(prompts)), source=prompts.name)
    waiting = store.prompts_without_comparison()
    if waiting:
        from tqdm.auto import tqdm

        model, tokenizer = load_for_answering(str(start), log=log)
        with tqdm(total=len(waiting), desc="Writing 4 answers per prompt", unit="prompt") as bar:
            write_answers(store, model, tokenizer, str(start), waiting, per_prompt=4, batch_size=16, progress=bar.update)
    while (comp := store.next_comparison(rater)) is not None:
        store.save_rating(rater, comp["id"], **rule_rating(comp["a"], comp["b"], facts[comp["prompt"]]))
    ratings = store.rating_rows()
    pairs = preference_pairs(ratings)
    write_jsonl(out / "pairs.jsonl", [p.to_row() for p in pairs])
    choices = [r["choice"] for r in ratings]
    summary = {"comparisons": len(ratings), "a": choices.count("a"), "b": choices.count("b"), "ties": choices.count("tie"),
               "corrections": sum(bool(r["correction"]) for r in ratings), "pairs": len(pairs),
               "agreement": agreement(ratings)["pairwise_agreement"]}
    write_json(out / "ratings.json", summary)
    return summary


def timed(name: str, fn, times: dict, done: Path, record: Path):
    """Run a stage and record its minutes in `record` (OUT/times.json); a stage finished by an earlier
    invocation (its JSON result file `done` exists) is read back, with the minutes it took then."""
    from knowtune.io import write_json

    if done.exists():
        times[name] = (json.loads(record.read_text()) if record.exists() else {}).get(name)
        print(f"[{name}] done earlier ({times[name]} min)", flush=True)
        return json.loads(done.read_text())
    t0 = time.time()
    value = fn()
    times[name] = round((time.time() - t0) / 60, 1)
    write_json(record, (json.loads(record.read_text()) if record.exists() else {}) | {name: times[name]})
    print(f"[{name}] {times[name]} min", flush=True)
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", help="a run taught the example pack (default: teach one into OUT/taught)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "feedback"))
    ap.add_argument("--teach-epochs", type=int, help=f"epochs of the start model's teaching (default {TEACH['epochs']})")
    ap.add_argument("--stop-after", choices=["teach", "ratings", "reward", "ppo"], help="end after this stage")
    ap.add_argument("--skip-ppo", action="store_true", help="leave PPO out (the longest stage); its rows show n/a")
    for stage in ("teach", "reward", "ppo", "dpo"):
        ap.add_argument(f"--set-{stage}", action="append", default=[], metavar="NAME=VALUE", help=f"override a {stage} setting")
    args = ap.parse_args()

    import yaml

    from knowtune.io import write_json
    from knowtune.train import lifecycle
    from knowtune.train.methods import dpo, ppo, reward

    def stage(method, s, resume=False) -> dict:
        """Run a method through the lifecycle; its audit.json is the stage's result."""
        lifecycle.run(method, s, resume=resume, log=log)
        return json.loads((s.run_dir() / "audit.json").read_text())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, flush=True)
    extra = {st: {k: yaml.safe_load(v) for k, v in (x.split("=", 1) for x in getattr(args, f"set_{st}"))}
             for st in ("teach", "reward", "ppo", "dpo")}
    if args.teach_epochs is not None:
        extra["teach"]["epochs"] = args.teach_epochs
    times: dict[str, float] = {}
    record = out / "times.json"
    if args.start:
        start = Path(args.start)
    else:  # the stage's result is the run's audit; what the next stages need is the run itself
        timed("teach", lambda: teach(out, extra["teach"], log), times, out / "taught" / "audit.json", record)
        start = out / "taught"
    if args.stop_after == "teach":
        return
    facts, prompts, probes = pack_prompts(start, out)
    ratings = timed("ratings", lambda: collect_ratings(start, facts, prompts, out, log), times, out / "ratings.json", record)
    log(f"Ratings: {ratings}")
    if args.stop_after == "ratings":
        return

    rs = reward.RewardSettings(**{"data": [str(out / "pairs.jsonl")], "model": str(start), "out": str(out / "reward"),
                                  **extra["reward"]})
    rm = timed("reward", lambda: stage(reward.Reward(), rs), times, out / "reward" / "audit.json", record)
    rm_scale = json.loads((out / "reward" / "reward.json").read_text())
    if args.stop_after == "reward":
        return

    if not args.skip_ppo:
        ps = ppo.PPOSettings(**{"model": str(start), "reward": str(out / "reward"), "prompts": [str(prompts)],
                                "probes": str(probes), "out": str(out / "ppo"), **PPO, **extra["ppo"]})
        pp = timed("ppo", lambda: stage(ppo.PPO(), ps, resume=(out / "ppo" / "config.yaml").exists()), times,
                   out / "ppo" / "audit.json", record)
    if args.stop_after == "ppo":
        return

    ds = dpo.DPOSettings(**{"data": [str(out / "pairs.jsonl")], "model": str(start), "probes": str(probes),
                            "reward": str(out / "reward"), "out": str(out / "dpo"), **DPO, **extra["dpo"]})
    dp = timed("dpo", lambda: stage(dpo.DPO(), ds), times, out / "dpo" / "audit.json", record)
    measure = lambda audit, start: next((m for m in audit["measures"] if m["name"].startswith(start)), {})  # noqa: E731
    dpo_pref = preferred_rate(json.loads((out / "dpo" / "answers.json").read_text()), facts)
    summary = {"times_min": times, "ratings": ratings,
               "reward": {"heldout_accuracy": rm_scale["heldout_after"]["accuracy"], "heldout_pairs": rm_scale["heldout_after"]["n"],
                          "before_training": rm["summary"]["probe_accuracy_before"]},
               "ppo": None if args.skip_ppo else ppo_summary(out, pp, facts),
               "dpo": {"heldout_preference_accuracy": measure(dp, "Held-out pairs").get("after"), "rule_preferred": dpo_pref,
                       "reward": measure(dp, "Mean reward"), "audit": dp["summary"]}}
    write_json(out / "feedback.json", summary)
    print_table(summary)


def ppo_summary(out: Path, pp: dict, facts: dict) -> dict:
    pp_reward = json.loads((out / "ppo" / "ppo.json").read_text())
    rb, ra = pp_reward["reward_before"], pp_reward["reward_after"]
    ppo_answers = json.loads((out / "ppo" / "answers.json").read_text())
    ppo_pref = preferred_rate([{"prompt": b["prompt"], "before": b["answer"], "after": a["answer"]}
                               for b, a in zip(ppo_answers["before"], ppo_answers["after"])], facts)
    return {"reward_before": rb, "reward_after": ra,
            "gain_in_std": (ra["reward_mean"] - rb["reward_mean"]) / (rb["reward_std"] or 1.0),
            "sampled_gain_in_std": (ra["sampled_reward_mean"] - rb["sampled_reward_mean"]) / (rb["sampled_reward_std"] or 1.0),
            "stopped": pp_reward["stopped"], "steps": pp["training"]["steps"],
            "kl_stop": pp["settings"]["kl_stop"], "rule_preferred": ppo_pref, "audit": pp["summary"]}


def print_table(s: dict) -> None:
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"
    p, d, t = s["ppo"], s["dpo"], s["times_min"]
    ok = lambda cond: "yes" if cond else "NO"
    rule = lambda r: f"{pct(r['preferred_rate'])} (W {r['wins']} / T {r['ties']} / L {r['losses']})"
    facts = lambda r: f"{pct(r['states_fact_before'])} -> {pct(r['states_fact_after'])}"
    ppo_rows = [] if p is None else [
        ("PPO: reward gain, greedy answers to held-out prompts", (f"{p['gain_in_std']:+.2f} std ({p['reward_before']['reward_mean']:+.2f} -> "
         f"{p['reward_after']['reward_mean']:+.2f})"), ">= +0.5 std", ok(p["gain_in_std"] >= 0.5)),
        # what PPO optimises (answers sampled at its temperature), shown beside the measure: the greedy answers `ask` gives
        ("PPO: reward gain, sampled answers (reference)", (f"{p['sampled_gain_in_std']:+.2f} std "
         f"({p['reward_before']['sampled_reward_mean']:+.2f} -> {p['reward_after']['sampled_reward_mean']:+.2f})"), "", ""),
        ("PPO: KL to start model (nats/answer)", f"{p['reward_after']['kl_mean']:.2f}", f"reported, < {p['kl_stop']:g}", ok(p["reward_after"]["kl_mean"] < p["kl_stop"])),
        ("PPO: rule prefers tuned answer", rule(p["rule_preferred"]), "", ""),
        ("PPO: answers stating the fact", facts(p["rule_preferred"]), "", ""),
        ("PPO: retention drop (points)", f"{p['audit']['retention_drop_points']}", "<= 3", ok(p["audit"]["retention_drop_points"] <= 3)),
    ]
    rows = [
        ("stage minutes (2 CPU cores)", ", ".join(f"{k} {v}" for k, v in t.items()), f"each < {LIMIT_MIN}",
         ok(all(v is not None and v < LIMIT_MIN for v in t.values()))),
        ("ratings: comparisons / pairs", f"{s['ratings']['comparisons']} / {s['ratings']['pairs']}", "", ""),
        ("reward model: held-out pair accuracy", f"{pct(s['reward']['heldout_accuracy'])} ({s['reward']['heldout_pairs']} pairs)",
         ">= 75%", ok(s["reward"]["heldout_accuracy"] >= 0.75)),
        *ppo_rows,
        ("DPO: rule prefers tuned answer", rule(d["rule_preferred"]), "> 50%", ok(d["rule_preferred"]["preferred_rate"] > 0.5)),
        ("DPO: answers stating the fact", facts(d["rule_preferred"]), "", ""),
        ("DPO: held-out preference accuracy", pct(d["heldout_preference_accuracy"]), "", ""),
        ("DPO: retention drop (points)", f"{d['audit']['retention_drop_points']}", "<= 3", ok(d["audit"]["retention_drop_points"] <= 3)),
    ]
    w = [max(len(str(r[i])) for r in rows) for i in range(4)]
    print("\nHuman feedback benchmark (rule-based rater), SmolLM2-135M-Instruct taught the example pack\n")
    for r in [("measure", "knowtune", "target", "met")] + rows:
        print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)))


if __name__ == "__main__":
    main()
