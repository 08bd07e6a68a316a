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
    # sign test on the 5 decided pairs, b winning 4: P(|X - 2.5| >= 1.5) for X ~ Bin(5, 1/2) = 12/32
    assert c.p_value == pytest.approx(sps.binomtest(4, 5, 0.5).pvalue) == pytest.approx(12 / 32)
    assert c.ci_low <= c.speedup <= c.ci_high
    # restricted means: mean of min(steps, budget)
    assert c.restricted_mean_a == pytest.approx((100 + 200 + 300 + 400 + 150) / 5)
    assert c.winner is None and c.verdict.startswith("inconclusive") and "5 seeds cannot reach p < 0.05" in c.verdict


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
    assert c.verdict.startswith("leaky reached the target first: 2") and "10 of 10 decided pairs" in c.verdict
    flipped = compare_steps("leaky", "relu", b, a, budget=1000)
    assert flipped.speedup == pytest.approx(1 / c.speedup, rel=0.05)
    assert flipped.verdict.startswith("leaky reached the target first")


def test_ties_and_nothing_reached():
    tie = compare_steps("a", "b", [10, 20, None], [10, 20, None], budget=50)
    assert tie.ties == 3 and tie.p_value is None and tie.speedup == 1.0
    none = compare_steps("a", "b", [None] * 4, [None] * 4, budget=50)
    assert none.speedup is None and none.p_value is None and "neither" in none.verdict
    assert none.verdict.startswith("inconclusive")
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
    assert mixed.winner is None and mixed.verdict.startswith("inconclusive") and "p=1" in mixed.verdict


def test_censoring_does_not_hide_a_win():
    """Most pairs tied (both never reached); leaky wins every decided pair: a winner, not "no difference"."""
    relu = [None] * 12 + [None] * 8
    leaky = [None] * 12 + [300, 250, 400, 350, 320, 280, 310, 330]
    c = compare_steps("relu", "leaky", relu, leaky, budget=1000)
    assert (c.decided, c.wins_b, c.ties) == (8, 8, 12)
    assert c.speedup == pytest.approx(1.0)  # the median ratio over all 20 seeds still sits at 1 ...
    assert c.p_value == pytest.approx(2 / 2 ** 8) and c.winner == "leaky"  # ... the decided pairs do not
    assert c.verdict.startswith("leaky reached the target first") and "lower bound" in c.verdict
    assert "sign test" in c.test


def test_too_few_seeds_is_inconclusive_not_no_difference():
    c = compare_steps("relu", "leaky", [700, 680, 720, 690, 710], [100, 105, 98, 101, 99], budget=1000)
    assert c.wins_b == 5 and c.speedup > 6 and c.winner is None  # 2 / 2**5 = 0.0625: cannot reach 0.05
    assert c.verdict.startswith("inconclusive at the target (5 seeds cannot reach p < 0.05)")
    assert "no clear difference" not in c.verdict and "no difference" not in c.verdict
    few_decided = compare_steps("a", "b", [None] * 16 + [9, 9, 9, 9], [None] * 16 + [5, 5, 5, 5], budget=50)
    assert few_decided.winner is None and "only 4 of 20 seed pairs decided" in few_decided.verdict


def test_headline_names_who_leads_at_which_target():
    """A crossover: b is ahead at the loose targets, a on the plateau; final losses cannot tell them apart."""
    from probe.compare.stats import compare_losses, paired_comparison

    n = 10
    loose = compare_steps("relu", "leaky:0.3", [100] * n, [60] * n, budget=1000, target=0.1)
    tight = compare_steps("relu", "leaky:0.3", [300] * n, [450] * n, budget=1000, target=0.05)
    unreached = compare_steps("relu", "leaky:0.3", [None] * n, [None] * n, budget=1000, target=0.01)
    rng = np.random.default_rng(0)
    final = compare_losses("final_loss", "relu", "leaky:0.3", list(0.01 + 0.001 * rng.normal(size=n)),
                           list(0.01 + 0.001 * rng.normal(size=n)))
    c = paired_comparison(tight, [unreached, tight, loose], [final])
    assert c.verdict.startswith("relu reaches 0.05 first; leaky:0.3 reaches 0.1 first; neither reached 0.01")
    assert "final loss: inconclusive" in c.verdict
    d = c.to_dict()
    assert [t["target"] for t in d["by_target"]] == [0.01, 0.05, 0.1]
    assert {"target", "speedup", "ci_low", "ci_high", "wins_a", "wins_b", "p_value", "winner"} <= set(d["by_target"][0])
    assert d["losses"]["final_loss"]["test"].startswith("two-sided Wilcoxon")


def test_loss_comparison_matches_scipy():
    from probe.compare.stats import compare_losses

    a = [0.10, 0.12, 0.11, 0.13, 0.09, 0.14, 0.12, 0.10]
    b = [0.08, 0.09, 0.10, 0.10, 0.07, 0.11, 0.09, 0.08]
    c = compare_losses("final_loss", "relu", "leaky", a, b)
    assert c.p_value == pytest.approx(sps.wilcoxon(np.array(a) - np.array(b)).pvalue)
    assert c.winner == "leaky" and c.wins_b == 8 and c.verdict.startswith("final loss: leaky lower")


def _regimes(rng: np.random.Generator):
    """Differences in every regime of scipy's ``method="auto"``: exact, permutation (ties, zeros), normal."""
    for n in list(range(1, 16)) + [20, 30, 49, 50, 51, 60, 120]:
        for trial in range(12):
            kind = trial % 3
            if kind == 0:
                yield rng.normal(0.2, 1.0, n)  # no ties: the exact distribution up to 50
            elif kind == 1:
                yield rng.integers(-3, 4, n).astype(float)  # zeros and heavy ties
            else:
                yield np.round(rng.normal(0.3, 1.0, n), 1)  # a few ties


def test_own_signed_rank_and_sign_tests_equal_scipy_in_every_regime():
    """probe computes both p-values itself (no scipy.stats import); scipy is the reference."""
    import warnings

    from probe.compare.exact_tests import sign_test_p, signed_rank_p

    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on small samples with ties
        for d in _regimes(np.random.default_rng(0)):
            if not np.any(d != 0):
                assert signed_rank_p(d) is None
                continue
            assert signed_rank_p(d) == pytest.approx(float(sps.wilcoxon(d).pvalue), rel=1e-9, abs=1e-15), d
            checked += 1
    assert checked > 200
    for n in range(1, 40):
        for k in range(n + 1):
            assert sign_test_p(k, n - k) == pytest.approx(sps.binomtest(n - k, n, 0.5).pvalue, rel=1e-12)
    assert sign_test_p(0, 0) is None


def test_signed_rank_by_hand():
    """d = (1, -2, 3): ranks 1, 2, 3; T+ = 1 + 3 = 4.

    The 8 sign patterns give T+ = 0, 1, 2, 3, 3, 4, 5, 6: P(T+ >= 4) = 3/8, P(T+ <= 4) = 6/8, p = 2 * 3/8.
    """
    from probe.compare.exact_tests import signed_rank_p

    assert signed_rank_p([1.0, -2.0, 3.0]) == pytest.approx(0.75)
    # (1, 2, 3, 4, 5) all positive: T+ = 15 is the single most extreme pattern of 32: p = 2 / 32
    assert signed_rank_p([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2 / 32)
