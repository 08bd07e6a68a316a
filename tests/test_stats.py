"""Paired statistics on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from probe.compare.summaries import summarize_variant
from probe.compare.stats import (bootstrap_median_ci, compare_steps, median_steps,
                         wilcoxon_p)


def test_hand_computed_comparison_with_never_reached():
    a = [100, 200, 300, None, 150]
    b = [50, 100, 100, 200, None]
    c = compare_steps("relu", "leaky", a, b, budget=400)
    # never-reached counts as budget + 1 = 401: ratios a/b = 2, 2, 3, 401/200, 150/401
    assert c.speedup == pytest.approx(2.0)
    assert (c.wins_a, c.wins_b, c.ties) == (1, 4, 0)
    assert (c.reached_a, c.reached_b, c.seeds) == (4, 4, 5)
    sa, sb = np.array([100, 200, 300, 401, 150.0]), np.array([50, 100, 100, 200, 401.0])
    assert c.p_value == pytest.approx(sps.wilcoxon(np.log(sa) - np.log(sb)).pvalue)
    assert c.ci_low <= c.speedup <= c.ci_high
    assert "no clear difference" in c.verdict and "too few seeds" in c.verdict


def test_never_reached_is_slower_than_any_reached():
    c = compare_steps("a", "b", [None, None], [400, 1], budget=400)
    assert c.wins_b == 2 and c.wins_a == 0


def test_clear_win_verdict():
    a = [200, 220, 180, 210, 260, 240, 190, 230, 205, 215]
    b = [100, 110, 90, 105, 130, 120, 95, 115, 100, 110]
    c = compare_steps("relu", "leaky", a, b, budget=1000)
    assert c.speedup == pytest.approx(2.0, abs=0.06)
    assert c.wins_b == 10 and c.p_value == pytest.approx(2 / 2 ** 10)  # exact two-sided
    assert c.ci_low > 1
    assert c.verdict.startswith("leaky reached the target 2") and "10/10 seeds" in c.verdict
    flipped = compare_steps("leaky", "relu", b, a, budget=1000)
    assert flipped.speedup == pytest.approx(1 / c.speedup, rel=0.05)
    assert flipped.verdict.startswith("leaky reached the target")


def test_ties_and_nothing_reached():
    tie = compare_steps("a", "b", [10, 20, None], [10, 20, None], budget=50)
    assert tie.ties == 3 and tie.p_value is None and tie.speedup == 1.0
    none = compare_steps("a", "b", [None] * 4, [None] * 4, budget=50)
    assert none.speedup is None and none.p_value is None and "neither" in none.verdict
    with pytest.raises(ValueError):
        compare_steps("a", "b", [1], [1, 2], budget=5)


def test_bootstrap_is_deterministic_and_wilcoxon_matches_scipy():
    x = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    assert bootstrap_median_ci(x, seed=3) == bootstrap_median_ci(x, seed=3)
    lo, hi = bootstrap_median_ci(x)
    assert 1.0 <= lo <= 3.0 <= hi <= 10.0
    d = np.array([0.5, -0.2, 1.1, 0.9, 0.3, -0.4, 0.8])
    assert wilcoxon_p(d) == pytest.approx(sps.wilcoxon(d).pvalue)
    assert wilcoxon_p(np.zeros(4)) is None


def test_median_steps_and_summary():
    assert median_steps([10, 30, None]) == 30
    assert median_steps([10, None, None]) is None
    assert median_steps([]) is None
    s = summarize_variant("relu", 0.0, final_loss=[0.1, None, 0.3], steps=[5, None, 7],
                          loss_auc=[1.0, 2.0, 3.0], diverged=[False, True, False],
                          born_dead=[True, False, False], dead_rate_init=[0.0, 0.5, 1.0],
                          dead_rate_final=[None, None, None], grad_ratio=[0.0, 0.0, 0.0],
                          route_share=[None, 0.2, 0.4])
    assert (s.runs, s.reached, s.diverged, s.born_dead) == (3, 2, 1, 1)
    assert s.median_final_loss == pytest.approx(0.2) and s.median_steps_to_target == 7
    assert s.dead_rate_final is None and s.activation_route_share == pytest.approx(0.3)
    assert s.to_dict()["variant"] == "relu"


def test_winner_is_called_only_on_clear_evidence() -> None:
    from probe.compare.stats import compare_steps

    # b needs half the steps of a on every one of 10 seeds: ratio 2, all wins, p = 0.002.
    clear = compare_steps("relu", "leaky", [200] * 10, [100] * 10, budget=1000)
    assert clear.winner == "leaky" and clear.speedup == 2.0
    slower = compare_steps("relu", "leaky", [100] * 10, [200] * 10, budget=1000)
    assert slower.winner == "relu"
    # alternating wins: no winner
    mixed = compare_steps("relu", "leaky", [100, 200] * 5, [200, 100] * 5, budget=1000)
    assert mixed.winner is None and "no clear difference" in mixed.verdict
