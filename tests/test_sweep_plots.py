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


def test_sweep_figures_wrap_their_panels_at_three_per_row():
    import matplotlib.pyplot as plt

    from simulator.sweep_plots import (
        HEADLINE,
        PANEL_COLUMNS,
        plot_final_vs_parameter,
        plot_sweep_trajectories,
    )

    keys = ["users.satiation_strength", "catalog.n_items"]
    rows = []
    for metric in HEADLINE:
        for sat in (0.0, 1.0):
            for n in (100, 200):
                for seed in (0, 1):
                    rows.append(("eps", sat, n, seed, metric, sat + n / 100 + seed))
    final = pd.DataFrame(rows, columns=["policy", *keys, "seed", "metric", "value"])
    fig = plot_final_vs_parameter(final, keys, {"eps": "C0"})
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(visible) == len(keys) * len(HEADLINE)  # every (key, metric) panel, none lost
    assert fig.get_size_inches()[0] <= 3.6 * PANEL_COLUMNS + 1e-9
    titles = [ax.get_title() for ax in visible]
    assert len(set(titles)) == len(HEADLINE) and titles[:3] == titles[len(HEADLINE) : len(HEADLINE) + 3]
    plt.close(fig)

    traj = pd.DataFrame(
        [("eps", n, seed, rnd, "gini", 0.5) for n in range(7) for seed in (0, 1) for rnd in range(3)],
        columns=["policy", "catalog.n_items", "seed", "round", "metric", "value"],
    )
    fig = plot_sweep_trajectories(traj, "catalog.n_items", {"eps": "C0"})
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == [f"catalog.n_items = {n}" for n in range(7)]
    assert len(fig.axes) == 9 and fig.get_size_inches()[0] <= 3.8 * PANEL_COLUMNS + 1e-9
    plt.close(fig)


def test_a_swept_value_has_one_line_style_across_policies():
    from simulator.sweep_plots import plot_final_vs_parameter

    keys = ["users.satiation_strength", "users.drift_sigma"]
    from simulator.sweep_plots import HEADLINE

    rows = [
        (pol, sat, d, seed, metric, sat + d)
        for metric in HEADLINE  # every headline panel, as a real sweep draws
        for pol in ("greedy", "eps5")
        for d in ((0.05, 0.0) if pol == "eps5" else (0.0, 0.05))  # groups met in other orders
        for sat in (0.0, 1.0)
        for seed in (0, 1)
    ]
    final = pd.DataFrame(rows, columns=["policy", *keys, "seed", "metric", "value"])
    fig = plot_final_vs_parameter(final, keys, {"greedy": "C0", "eps5": "C1"})
    ax = fig.axes[0]  # gini against satiation, one line per policy and drift value
    styles = {c.get_label(): c.lines[0].get_linestyle() for c in ax.containers}  # errorbar lines
    assert styles["greedy (users.drift_sigma=0.0)"] == styles["eps5 (users.drift_sigma=0.0)"]
    assert styles["greedy (users.drift_sigma=0.05)"] == styles["eps5 (users.drift_sigma=0.05)"]
    assert styles["greedy (users.drift_sigma=0.0)"] != styles["greedy (users.drift_sigma=0.05)"]
