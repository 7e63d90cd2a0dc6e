"""Figures of the replications (the only replication module that imports matplotlib).

Each ``figures_<paper>(result)`` returns ``{stem: Figure}``; :func:`figures` dispatches by the
result's name. Lines are means over repetitions, bands 95% t-intervals across repetitions
(repetitions are independent worlds). Colours come from :func:`simulator.plotting.policy_palette`
(the ideal / oracle recommender is always near-black).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from simulator.plotting import ORACLE_COLOUR, apply_theme, error_extents, policy_palette
from simulator.replications.common import ReplicationResult


def _palette(labels: Sequence[str]) -> dict:
    pal = policy_palette([lab for lab in labels if lab not in ("ideal", "oracle")])
    pal.update({lab: ORACLE_COLOUR for lab in labels if lab in ("ideal", "oracle")})
    return pal


def _band(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval of ``value`` per ``step`` across repetitions."""
    g = df.groupby("step")["value"].agg(["mean", "std", "count"]).sort_index()
    tq = stats.t.ppf(0.975, np.maximum(g["count"] - 1, 1))
    half = np.where(g["count"] > 1, tq * g["std"] / np.sqrt(g["count"]), 0.0)
    g["lo"], g["hi"] = g["mean"] - half, g["mean"] + half
    return g


def _series(ax, df: pd.DataFrame, label: str, colour, ls: str = "-") -> None:
    g = _band(df)
    ax.plot(g.index, g["mean"], color=colour, lw=1.8, ls=ls, label=label)
    ax.fill_between(g.index, g["lo"], g["hi"], color=colour, alpha=0.18, lw=0)


def _outside_legend(fig: Figure, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), frameon=False)


def _points(
    ax, names: Sequence[str], cis: Sequence[tuple[float, float, float]], pal: dict, ref: float
) -> None:
    y = np.arange(len(names))
    for i, (name, (m, lo, hi)) in enumerate(zip(names, cis, strict=True)):
        ax.errorbar(m, y[i], xerr=error_extents(m, lo, hi), fmt="o", color=pal[name], capsize=4, lw=2)
    ax.axvline(ref, color="0.4", ls="--", lw=1)
    ax.set_yticks(y, names)
    ax.set_ylim(len(names) - 0.4, -0.6)


def figures_chaney(result: ReplicationResult) -> dict[str, Figure]:
    apply_theme()
    t, f = result.table, result.findings
    names = [n for n in result.config.recommenders if n in f["recommenders"]]  # config order
    pal = _palette(names)
    t0 = result.config.world.startup_steps
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained", width_ratios=[1.6, 1])
    ax = axes[0]
    for name in names:
        _series(ax, t[(t.policy == name) & (t.metric == "delta_jaccard")], name, pal[name])
    ax.axvline(t0 - 0.5, color="0.5", ls=":", lw=1)
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xlabel("step (dotted: the recommender starts)")
    ax.set_ylabel("Jaccard(pairs similar for the recommender) − ideal")
    ax.set_title("Homogenisation of the most-similar user pairs, relative to ideal")
    _outside_legend(fig, ax)
    others = [n for n in names if "delta_jaccard_final" in f["recommenders"][n]]
    _points(axes[1], others, [f["recommenders"][n]["delta_jaccard_final"] for n in others], pal, 0.0)
    axes[1].set_xlabel("change in Jaccard vs ideal, final step (95% CI)")
    axes[1].set_title("Final step")
    fig.suptitle(f"Chaney et al. (2018) replication — {f['reps']} repetitions (band: 95% CI)")
    figs = {"homogenization": fig}

    fig2, axes2 = plt.subplots(1, 2, figsize=(13, 4.6), layout="constrained", width_ratios=[1.6, 1])
    for name in names:
        _series(axes2[0], t[(t.policy == name) & (t.metric == "utility")], name, pal[name])
    axes2[0].axvline(t0 - 0.5, color="0.5", ls=":", lw=1)
    axes2[0].set_xlabel("step (dotted: the recommender starts)")
    axes2[0].set_ylabel("mean true utility of the consumed item")
    axes2[0].set_title("Utility per step")
    _outside_legend(fig2, axes2[0])
    _points(axes2[1], others, [f["recommenders"][n]["utility_ratio"] for n in others], pal, 1.0)
    axes2[1].set_xlabel("utility / ideal, recommender phase (95% CI)")
    axes2[1].set_title("Relative to ideal")
    fig2.suptitle(f"Chaney et al. (2018) replication — utility ({f['reps']} repetitions)")
    figs["utility"] = fig2
    return figs


def figures_fleder(result: ReplicationResult) -> dict[str, Figure]:
    apply_theme()
    t, f = result.table, result.findings
    conds = [c for c in result.config.recommender.conditions if c in f["conditions"]]
    pal = policy_palette(conds)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained", width_ratios=[1.6, 1, 1])
    for c in conds:
        _series(axes[0], t[(t.policy == c) & (t.metric == "gini")], c, pal[c])
    startup = result.config.world.startup_periods
    if startup:
        axes[0].axvline(startup + 0.5, color="0.5", ls=":", lw=1)
    axes[0].set_xlabel("period (dotted: the recommenders start)")
    axes[0].set_ylabel("Gini of cumulative sales (whole catalog)")
    axes[0].set_title("Sales concentration")
    _outside_legend(fig, axes[0])
    others = [c for c in conds if "gini_minus_none" in f["conditions"][c] and c != "none"]
    _points(axes[1], others, [f["conditions"][c]["gini_minus_none"] for c in others], pal, 0.0)
    axes[1].set_xlabel("Gini − none, paired (95% CI)")
    axes[1].set_title("Concentration vs no recommender")
    _points(axes[2], others, [f["conditions"][c]["novelty_minus_none"] for c in others], pal, 0.0)
    axes[2].set_xlabel("novelty − none, bits (95% CI)")
    axes[2].set_title("Novelty vs no recommender")
    fig.suptitle(f"Fleder & Hosanagar (2009) replication — {f['reps']} repetitions (band: 95% CI)")
    return {"concentration": fig}


def figures_mansoury(result: ReplicationResult) -> dict[str, Figure]:
    from simulator.replications.mansoury import GROUPS, METRICS

    apply_theme()
    t, f = result.table, result.findings
    names = [n for n in result.config.recommenders if n in f["recommenders"]]
    pal = policy_palette(names)
    titles = {
        "rec_popularity": "Mean popularity of recommendations (1 = average item)",
        "aggregate_diversity": "Aggregate diversity (share of catalog recommended)",
        "genre_shift": "Genre shift from the user's initial profile (JS)",
    }
    fig, axes = plt.subplots(1, len(METRICS), figsize=(16, 4.8), layout="constrained")
    styles = {"majority": "-", "minority": "--"}
    for ax, m in zip(axes, METRICS, strict=True):
        for name in names:
            for grp in GROUPS:
                sub = t[(t.policy == name) & (t.metric == m) & (t.group == grp)]
                _series(ax, sub, f"{name} · {grp}", pal[name], styles[grp])
        ax.set_title(titles[m], fontsize="medium")
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _outside_legend(fig, axes[0])
    fig.suptitle(
        f"Mansoury et al. (2020) replication — {f['reps']} repetitions "
        "(solid: majority, dashed: minority; band: 95% CI)"
    )
    return {"amplification": fig}


def figures_jiang(result: ReplicationResult) -> dict[str, Figure]:
    from simulator.replications.jiang import GROWING, policy_labels

    apply_theme()
    t, f = result.table, result.findings
    fixed = [k for k in policy_labels(result.config) if k in f["final_drift"]]
    keys = fixed + [k + GROWING for k in fixed if k + GROWING in f["final_drift"]]
    pal = _palette(fixed)
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), layout="constrained", width_ratios=[1.5, 1])
    for k in keys:
        base = k.removesuffix(GROWING)
        _series(axes[0], t[t.policy == k], k, pal[base], "--" if k.endswith(GROWING) else "-")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("‖μ_t − μ_0‖ (RMS per initial item)")
    axes[0].set_title("Interest drift (dashed: growing candidate pool)")
    axes[0].legend(fontsize="x-small", ncol=2)
    order = sorted(keys, key=lambda k: -f["final_drift"][k][0])
    pal_all = {k: pal[k.removesuffix(GROWING)] for k in keys}
    _points(axes[1], order, [f["final_drift"][k] for k in order], pal_all, 0.0)
    axes[1].set_xlabel("final drift (95% CI)")
    axes[1].set_title(f"After {f['steps']} steps")
    fig.suptitle(f"Jiang et al. (2019) replication — {f['reps']} repetitions (band: 95% CI)")
    return {"drift": fig}


FIGURES = {
    "chaney": figures_chaney,
    "fleder": figures_fleder,
    "mansoury": figures_mansoury,
    "jiang": figures_jiang,
}


def figures(result: ReplicationResult) -> dict[str, Figure]:
    """The figures of a replication result, by its name."""
    return FIGURES[result.name](result)
