"""The method table: every training method knowtune has, by name. The CLI makes one verb per entry (a test
keeps the two in sync); each method is a recipe in its own module, run by `knowtune.train.lifecycle`."""

from __future__ import annotations

from knowtune.train.lifecycle import Method
from knowtune.train.methods.distill import Distill
from knowtune.train.methods.dpo import DPO, KTO
from knowtune.train.methods.ppo import PPO
from knowtune.train.methods.reward import Reward
from knowtune.train.methods.task import TaskMethod
from knowtune.train.methods.teach import Teach

METHODS: dict[str, type[Method]] = {m.name: m for m in (Teach, Reward, DPO, KTO, PPO, TaskMethod, Distill)}
