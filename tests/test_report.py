"""research/report.py's statistics: t-test p-values, Holm's correction, the bootstrap over seeds and prompts."""
import math

import numpy as np

from research import report


def test_t_pvalue_against_tabled_values():
    # t = 2.201 at 11 degrees of freedom is the two-sided 5 % point; t = 1 at 4 gives 0.3739
    assert abs(report.t_pvalue({"mean": 2.201, "std": math.sqrt(12), "n": 12}) - 0.05) < 1e-4
    assert abs(report.t_pvalue({"mean": 1.0, "std": math.sqrt(5), "n": 5}) - 0.37390) < 1e-4
    assert report.t_pvalue({"mean": 0.3, "std": None, "n": 1}) is None
    assert report.t_pvalue({"mean": 0.0, "std": 0.0, "n": 3}) == 1.0


def test_t_pvalue_agrees_with_the_interval_verdict():
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = report.mean_std(list(rng.normal(rng.normal(0, 0.5), 1, size=int(rng.integers(2, 15)))))
        assert (report.t_pvalue(s) < 0.05) == (report.verdict(s) != "undecided")


def test_holm_by_hand():
    adj = report.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adj["d"] is None
    assert math.isclose(adj["a"], 0.03) and math.isclose(adj["c"], 0.06) and math.isclose(adj["b"], 0.06)  # 3p, 2p, max(p, before)


def _res(grpo_counts, arm_counts, n=4):
    run = lambda seed, counts: {"seed": seed, "final": {"n": n, "n_correct": counts}}
    return {"eval": {"n": n}, "methods": {"grpo": {"runs": [run(s, c) for s, c in enumerate(grpo_counts)]},
                                          "arm": {"runs": [run(s, c) for s, c in enumerate(arm_counts)]}}}


def test_bootstrap_diff_mean_and_interval():
    res = _res([[0, 2, 4], [1, 1, 1]], [[1, 3, 4], [2, 2, 2]])
    b = report.bootstrap_diff(res, "arm", "pass@1", draws=500)
    assert math.isclose(b["mean"], np.mean([[1, 1, 0], [1, 1, 1]]) / 4)
    assert b["lo"] <= b["mean"] <= b["hi"] and b["lo"] >= 0  # never negative: arm is never worse here
    same = report.bootstrap_diff(_res([[1, 2]], [[1, 2]]), "arm", "pass@4", draws=50)
    assert same == {"mean": 0.0, "lo": 0.0, "hi": 0.0, "draws": 50}
