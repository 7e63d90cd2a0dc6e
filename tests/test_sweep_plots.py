"""The long-run utility gain of a sweep: paired differences against the baseline policy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.sweep_plots import utility_gain


def _metrics() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for sat in (0.0, 1.0):
            for rnd in range(40):
                # greedy's utility depends on the seed; eps adds 0.1 * sat on the last 30 days only
                g = 2.0 + seed
                rows.append(("greedy", sat, seed, rnd, "utility", g))
                rows.append(("eps", sat, seed, rnd, "utility", g + (0.1 * sat if rnd >= 10 else -5.0)))
                rows.append(("eps", sat, seed, rnd, "gini", 0.5))
        for rnd in range(40):  # a policy that does not vary with the swept key (NaN there)
            rows.append(("random", np.nan, seed, rnd, "utility", 1.0 + seed))
    return pd.DataFrame(
        rows, columns=["policy", "users.satiation_strength", "seed", "round", "metric", "value"]
    )


def test_gain_is_paired_by_seed_and_point_over_the_last_days():
    gain = utility_gain(_metrics(), ["users.satiation_strength"], "greedy", days=30)
    eps = gain[gain["policy"] == "eps"].set_index(["users.satiation_strength", "seed"])["gain"]
    # exactly 0.1 * sat: the seed effect cancels in the pairing, the first 10 rounds are outside
    np.testing.assert_allclose(eps.loc[(0.0, 0)], 0.0, atol=1e-12)
    np.testing.assert_allclose(eps.loc[(1.0, 1)], 0.1, atol=1e-12)
    # the unswept policy is compared with the baseline at every swept value
    rnd = gain[gain["policy"] == "random"]
    assert len(rnd) == 4
    np.testing.assert_allclose(rnd["gain"], -1.0)
    assert "greedy" not in set(gain["policy"])
