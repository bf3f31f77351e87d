"""PPO's arithmetic against numbers worked out by hand (the working is in each comment)."""

from __future__ import annotations

import math

import pytest
import torch

from knowtune.train.methods import ppo_losses as L

t = lambda *rows: torch.tensor(rows, dtype=torch.float32)  # noqa: E731


def test_gae_by_hand():
    # gamma 1, lam 0.5, V = 0.5 everywhere, reward 1 on the last token:
    # t=2: delta = 1 + 0 - 0.5 = 0.5, A = 0.5; t=1: delta = 0, A = 0.5 * 0.5 = 0.25; t=0: A = 0.125
    adv, ret = L.gae(t([0, 0, 1]), t([0.5, 0.5, 0.5]), t([1, 1, 1]), gamma=1.0, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.125, 0.25, 0.5])
    assert ret[0].tolist() == pytest.approx([0.625, 0.75, 1.0])
    # a padded answer: the value after its last token is 0 whatever the padding holds
    # t=1: delta = 2 + 0 - 1 = 1, A = 1; t=0: delta = 0 + 1 - 1 = 0, A = 0.5 * 1
    adv, ret = L.gae(t([0, 2, 0]), t([1, 1, 9]), t([1, 1, 0]), gamma=1.0, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.5, 1.0, 0.0]) and ret[0].tolist() == pytest.approx([1.5, 2.0, 0.0])


def test_kl_penalised_rewards_by_hand():
    # kl = (log pi - log pi_ref) * mask = [0.5, 0, 0]; rewards = -0.5 * kl, plus the score 2 on token 1 (the last)
    rewards, kl = L.kl_penalised_rewards(torch.tensor([2.0]), t([-1, -2, -3]), t([-1.5, -2, -2]), t([1, 1, 0]), beta=0.5)
    assert kl[0].tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert rewards[0].tolist() == pytest.approx([-0.25, 2.0, 0.0])


def test_policy_loss_by_hand():
    # ratios 1.5 (A = +1) and 0.5 (A = -1), clip 0.2:
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(0.5, 0.8) = 0.8 (clipped); loss = -0.2
    loss, clip_frac, approx_kl = L.policy_loss(t([math.log(1.5), math.log(0.5)]), t([0, 0]), t([1, -1]), t([1, 1]), clip=0.2)
    assert float(loss) == pytest.approx(-0.2)
    assert float(clip_frac) == pytest.approx(1.0)
    assert float(approx_kl) == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 2)
    # inside the clip range nothing is clipped and the loss is -A * ratio
    loss, clip_frac, _ = L.policy_loss(t([math.log(1.1)]), t([0]), t([2]), t([1]), clip=0.2)
    assert float(loss) == pytest.approx(-2.2) and float(clip_frac) == 0.0


def test_value_loss_by_hand():
    # token 0: V 2, V_old 1 -> clipped V 1.5; errors (2-3)^2 = 1 and (1.5-3)^2 = 2.25 -> 2.25
    # token 1: V 0 = V_old; both errors 1 -> 1.  loss = 0.5 * (2.25 + 1) / 2 = 0.8125
    loss, clip_frac = L.value_loss(t([2.0, 0.0]), t([1.0, 0.0]), t([3.0, 1.0]), t([1, 1]), clip=0.5)
    assert float(loss) == pytest.approx(0.8125) and float(clip_frac) == pytest.approx(0.5)


def test_whiten_entropy_logprobs_and_adaptive_kl():
    assert L.masked_whiten(t([1, 3, 99]), t([1, 1, 0]))[0].tolist() == pytest.approx([-1, 1, 0], abs=1e-4)
    assert L.entropy_from_logits(torch.zeros(1, 1, 4)).item() == pytest.approx(math.log(4))
    logits = torch.log(torch.tensor([[[0.25, 0.75]]]))
    assert L.token_logprobs(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.75))
    kl = L.AdaptiveKL(beta=0.1, target=3.0, horizon=100)
    assert kl.update(6.0, 16) == pytest.approx(0.1 * (1 + 0.2 * 16 / 100))  # error clipped at +0.2
    assert kl.update(3.0, 16) == pytest.approx(0.1032)  # on target: unchanged
    assert kl.update(0.0, 16) == pytest.approx(0.1032 * (1 - 0.2 * 16 / 100))


def test_group_baseline_by_hand():
    # two prompts, three answers each: each score minus the mean of its two siblings
    scores = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    out = L.group_baseline(scores, 3)
    # 1 - (2+6)/2 = -3; 2 - (1+6)/2 = -1.5; 6 - (1+2)/2 = 4.5; 0 - 1.5 = -1.5; 0 - 1.5 = -1.5; 3 - 0 = 3
    assert torch.allclose(out, torch.tensor([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]))
    assert torch.equal(L.group_baseline(scores, 1), scores)
