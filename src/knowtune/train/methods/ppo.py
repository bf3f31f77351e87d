"""`knowtune ppo`: reinforcement learning from a reward model with PPO (Schulman et al. 2017), the way
Ziegler et al. (2019) and Ouyang et al. (2022) apply it to language models. Our own: trl 1.x no longer
ships a PPO trainer.

policy     the start model (a base or a taught run) + a new LoRA adapter, and a value head on its last
           hidden state
reference  the same model with the adapter switched off: exactly the model before PPO, at no extra memory
each step  roll out answers to a batch of prompts (sampled at `temperature`); score them with the reward
           model; per-token reward -beta * (log pi - log pi_ref) plus the score on the last token; advantages
           by GAE; a few epochs of minibatch updates on the clipped objective + the value loss; beta adapts
           toward a target KL; training stops if the KL runs away (the last step within bounds is kept)
replay     (PPO-ptx, Ouyang et al. 2022) each minibatch update also fits a few of the start model's own answers
           to general prompts (a language-model loss weighted by replay_coef), so steering answers on the
           knowledge prompts does not drift what the model says elsewhere; off unless replay_coef > 0 (on the
           feedback benchmark it did not reduce the retention drop)
measure    mean reward of greedy answers to held-out prompts before and after (in the reward model's
           standard units) and KL to the reference on them

The lifecycle (`train/lifecycle.py`) does the rest: run folder, the knowledge audits before and after,
saving, audit.json, the report, --resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from knowtune.config import AuditSettings, GenerationGroup, LoraSettings, OptimSettings, RunSettings
from knowtune.errors import KnowtuneError
from knowtune.eval.audit import AuditSet, probes_file
from knowtune.io import append_jsonl, cached_rows, read_jsonl, write_json
from knowtune.train.lifecycle import Measure, Method, Prepared, Run, Trained
from knowtune.train.replay import general_answers


class PPOSettings(RunSettings, OptimSettings, LoraSettings, AuditSettings, GenerationGroup):
    DEFAULTS = {"batch_size": 16, "learning_rate": 1e-4, "lr_scheduler": "constant", "warmup_ratio": 0.0,
                "checkpoint_every": 10, "max_new_tokens": 48}
    reward: str = Field("", description="The reward model: a `knowtune reward train` run folder.")
    prompts: list[str] = Field(default_factory=list, description="Prompts to practise on: JSONL of {prompt} or Q&A rows (the rating app's import format).")
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="Share of prompts held out to measure the reward before and after.")
    steps: int = Field(60, ge=1, description="PPO steps: each rolls out one batch of answers and updates on it.")
    samples_per_prompt: int = Field(1, ge=1, description="Answers per prompt in a step (batch_size / this many prompts); above 1 each answer's score is taken relative to its siblings' mean before the KL penalty and GAE, so an easy prompt no longer looks like a good answer.")
    minibatch_size: int = Field(8, ge=1, description="Answers per gradient update.")
    ppo_epochs: int = Field(2, ge=1, description="Passes over each step's answers.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature of the rollouts; the policy's and the reference's log-probabilities are taken at the same temperature.")
    init_kl_coef: float = Field(0.1, ge=0, description="Starting beta: weight of the KL penalty to the reference model.")
    target_kl: float = Field(3.0, gt=0, description="KL to the reference (nats per answer) that the adaptive beta steers toward.")
    adaptive_kl: bool = Field(True, description="Adapt beta toward target_kl (Ziegler et al. 2019); else keep it fixed.")
    kl_horizon: int = Field(10000, ge=1, description="How fast beta adapts (larger: slower).")
    kl_stop: float = Field(12.0, gt=0, description="Stop when the mean KL of a step passes this (nats per answer): the KL has run away.")
    replay_coef: float = Field(0.0, ge=0, description="Weight of a replay loss: the language-model loss on the start model's answers to general prompts, added to every minibatch update against forgetting (PPO-ptx); try 1.0. Off by default: on the feedback benchmark it cost a third more time per step and kept no more general knowledge (the policy memorised the 81 replay answers instead).")
    replay_batch: int = Field(4, ge=1, description="Replay answers per minibatch update.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount of GAE.")
    lam: float = Field(0.95, ge=0, le=1, description="Lambda of GAE.")
    cliprange: float = Field(0.2, gt=0, description="Clip range of the policy ratio.")
    cliprange_value: float = Field(0.2, gt=0, description="Clip range of the value update.")
    vf_coef: float = Field(0.1, ge=0, description="Weight of the value loss.")

    def default_run_name(self) -> str:
        return "ppo-" + Path(self.prompts[0]).stem if self.prompts else "ppo"


def replay_answers(s: PPOSettings, model, tokenizer, run_dir: Path) -> list[dict]:
    """The replay set: a taught start run's own (its base model's answers to the general prompts, which its
    teaching kept), else the start model's greedy answers to them, written once into the run folder."""
    if not s.replay_coef:
        return []
    taught = Path(s.model) / "data" / "replay.jsonl"
    if taught.exists():
        return read_jsonl(taught)
    return cached_rows(run_dir / "data" / "replay.jsonl", lambda: general_answers(model, tokenizer))


def load_prompts(paths: list[str]) -> list[str]:
    from knowtune.data.preference import parse_prompt_lines
    from knowtune.data.privacy import scrub_if_on

    out: list[str] = []
    for path in paths:
        if not Path(path).exists():
            raise KnowtuneError(f"{path}: no such file.", fix="check the --prompts path.")
        out += [r["prompt"] for r in parse_prompt_lines(Path(path).read_text(encoding="utf-8-sig"), path)]
    return list(dict.fromkeys(scrub_if_on(p) for p in out))  # --scrub-pii: each prompt is a record


@dataclass
class PromptData:
    train: list[str]
    held: list[str]


class PPO(Method):
    name = "ppo"
    argument = "model"
    help = ("Reinforcement learning from the reward model (PPO with a LoRA policy, a value head, GAE, a clipped "
            "ratio and an adaptive KL penalty to the start model). Reports reward before/after on held-out prompts, "
            "the KL to the start model, and the knowledge audit.")
    Settings = PPOSettings

    def prepare(self, s: PPOSettings, log) -> Prepared:
        from knowtune.data.preference import split_prompts

        if not s.reward:
            raise KnowtuneError("No reward model given.", fix="pass --reward RUN (a `knowtune reward train` run).")
        if not s.prompts:
            raise KnowtuneError("No prompts given.", fix="pass --prompts FILE (JSONL of {prompt} or Q&A rows).")
        train, held = split_prompts(load_prompts(s.prompts), s.eval_fraction, s.seed)
        if s.batch_size % s.samples_per_prompt:
            raise KnowtuneError(f"batch_size {s.batch_size} is not a multiple of samples_per_prompt {s.samples_per_prompt}.",
                                fix="make batch_size a multiple of samples_per_prompt.")
        if len(train) < s.batch_size // s.samples_per_prompt:
            raise KnowtuneError(f"Only {len(train)} training prompts for a batch of {s.batch_size}.",
                                fix="add prompts, or lower --batch-size.")
        return Prepared(AuditSet(probes_file(s.probes)), PromptData(train, held),
                        {"prompts_train": [{"prompt": p} for p in train], "prompts_heldout": [{"prompt": p} for p in held]},
                        f"PPO on {len(train)} prompts ({len(held)} held out), {s.steps} steps of {s.batch_size} answers; "
                        f"reward model {s.reward}.")

    def train(self, s: PPOSettings, prep: Prepared, run: Run) -> Trained:
        from safetensors.torch import save_file

        from knowtune.models.load import load_for_inference
        from knowtune.progress import phase
        from knowtune.train.methods.ppo_policy import PPOTrainer, measure_reward, prompt_batches
        from knowtune.train.methods.reward import RewardModel

        d: PromptData = prep.data
        reward_model = RewardModel.load(s.reward, log=run.log)
        model, tokenizer = load_for_inference(s.model, log=run.log)
        trainer = PPOTrainer(s, model, tokenizer, run.log, replay=replay_answers(s, model, tokenizer, run.dir))
        before = run.cached("before.json", lambda: measure_reward(trainer, reward_model, d.held)) if d.held else None
        ckpt = run.checkpoint()
        if ckpt:
            trainer.load_checkpoint(Path(ckpt))
        k = s.samples_per_prompt
        batches = ([p for p in b for _ in range(k)] for b in prompt_batches(d.train, s.batch_size // k, s.seed))
        for _ in range(trainer.step):
            next(batches)
        stopped, trainer.last_good = "", trainer.snapshot()
        with phase("PPO", s.steps, unit="step", initial=trainer.step) as advance:
            while trainer.step < s.steps:
                row = trainer.train_step(next(batches), reward_model)
                if row.pop("stopped"):
                    stopped = (f"KL to the reference ran away at step {row['step']} ({row['kl']:.1f} nats per answer > "
                               f"kl_stop {s.kl_stop}); kept the policy of step {trainer.last_good['step']}.")
                    trainer.restore(trainer.last_good)
                    run.log(stopped)
                    break
                append_jsonl(run.metrics, row)
                advance(1, reward=f"{row['reward']:+.2f}", kl=f"{row['kl']:.2f}", beta=f"{row['beta']:.3f}")
                if trainer.step % s.checkpoint_every == 0 or trainer.step == s.steps:
                    trainer.save_checkpoint(run.checkpoints / f"checkpoint-{trainer.step}")
        after = measure_reward(trainer, reward_model, d.held) if d.held else None
        measures = []
        if before and after:
            write_json(run.dir / "answers.json", {"before": before["answers"], "after": after["answers"]})
            measures = [Measure("Mean reward of greedy held-out answers (std units)", before["reward_mean"], after["reward_mean"]),
                        Measure(f"Mean reward of sampled answers (temperature {s.temperature})", before["sampled_reward_mean"],
                                after["sampled_reward_mean"]),
                        Measure("KL to the start model (nats per answer)", before["kl_mean"], after["kl_mean"])]
        write_json(run.dir / "ppo.json", {"reward_before": _brief(before), "reward_after": _brief(after), "stopped": stopped})
        head = trainer.value_head.state_dict()
        return Trained("adapter", (trainer.policy, tokenizer), trainer.step, None, measures=measures, note=stopped,
                       extra_files=lambda tmp: save_file(head, str(tmp / "value_head.safetensors")))

    def plots(self, run: Run) -> list[tuple[str, Path]]:
        rows = read_jsonl(run.metrics) if run.metrics.exists() else []
        if not rows:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from knowtune.io import save_figure

        fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
        steps = [r["step"] for r in rows]
        for ax, key, title in zip(axes, ("reward", "kl", "beta"), ("mean reward (std units)", "KL to reference (nats/answer)", "beta (KL weight)")):
            ax.plot(steps, [r[key] for r in rows])
            ax.set_title(title)
            ax.set_xlabel("step")
        return [("PPO curves", save_figure(fig, run.dir / "plots" / "ppo.png"))]


def _brief(m: dict | None) -> dict | None:
    return None if m is None else {k: v for k, v in m.items() if k != "answers"}
