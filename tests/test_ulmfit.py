"""ULMFiT's schedules against numbers worked out by hand from the paper's equations."""

from __future__ import annotations

import pytest

from knowtune.train.ulmfit import group_rates, slanted_triangular, trainable_groups


@pytest.mark.parametrize("step, fraction", [
    (0, 1 / 32),          # p = 0: the peak / ratio
    (5, 16.5 / 32),       # warm-up, p = 5 / 10 = 0.5: (1 + 0.5 * 31) / 32
    (10, 1.0),            # cut = floor(100 * 0.1) = 10: the peak
    (55, 16.5 / 32),      # decay, p = 1 - 45 / (10 * 9) = 0.5
    (82, 7.2 / 32),       # p = 1 - 72 / 90 = 0.2: (1 + 0.2 * 31) / 32
    (100, 1 / 32),        # p = 0 at the last step
])
def test_slanted_triangular_rate(step, fraction):
    assert slanted_triangular(step, 100, cut_frac=0.1, ratio=32) == pytest.approx(fraction)
    assert 0.01 * slanted_triangular(5, 100) == pytest.approx(0.00515625)


def test_discriminative_rates_divide_by_2_6_per_group():
    assert group_rates(0.01, 4) == pytest.approx([0.01 / 17.576, 0.01 / 6.76, 0.01 / 2.6, 0.01])
    assert group_rates(0.01, 4)[0] == pytest.approx(0.000568958)
    assert group_rates(1e-3, 1) == [1e-3]


def test_gradual_unfreezing_adds_one_group_from_the_top_each_epoch():
    assert trainable_groups(0, 4) == [False, False, False, True]
    assert trainable_groups(1, 4) == [False, False, True, True]
    assert trainable_groups(3, 4) == [True, True, True, True]
    assert trainable_groups(7, 4) == [True, True, True, True]


def test_layer_groups_unfreeze_from_the_top_with_lower_rates_below(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from knowtune.train.ulmfit import GradualUnfreezing, discriminative_param_groups, layer_groups

    model = AutoModelForCausalLM.from_pretrained(tiny_model)  # 2 blocks, tied embeddings
    groups = layer_groups(model)
    assert len(groups) == 4  # embeddings, block 0, block 1, final norm (+ the tied head, counted with the embeddings)
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)) == len({id(p) for p in model.parameters()})
    assert groups[0][0] is model.get_input_embeddings().weight
    assert len(layer_groups(model, blocks_per_group=2)) == 3

    unfreeze = GradualUnfreezing(groups)
    for epoch, want in [(0, [False, False, False, True]), (1, [False, False, True, True]), (3, [True] * 4)]:
        assert unfreeze.apply(epoch) == want
        assert [all(p.requires_grad == on for p in g) for g, on in zip(groups, want)] == [True] * 4

    opt = torch.optim.AdamW(discriminative_param_groups(groups, 1e-3))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-3 / 2.6 ** 3, 1e-3 / 2.6 ** 2, 1e-3 / 2.6, 1e-3])
    unfreeze.apply(0)  # only the top group trains: a step leaves every lower weight as it was
    before = [p.detach().clone() for g in groups[:3] for p in g]
    inputs = torch.randint(3, model.config.vocab_size, (2, 8))
    model(input_ids=inputs, labels=inputs).loss.backward()
    opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, [p for g in groups[:3] for p in g]))
    assert all(p.grad is not None for p in groups[3])
