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
