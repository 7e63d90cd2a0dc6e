"""Figures of an OPE study (matplotlib lives here and in :mod:`simulator.plotting` only).

``estimate_vs_truth``
    Per logger (rows) and estimator (columns): each seed's relative error
    (estimate − on-policy truth) / truth for every target, with its bootstrap interval, and the
    mean over seeds.
``error_vs_divergence``
    Relative RMSE of each estimator against the divergence of the target from the logger,
    n / ESS (sessions per effective sample of the per-position importance weights).
``clipping``
    Relative bias and relative standard deviation of the clipped estimators against the
    clipping threshold λ: clipping trades bias for variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from simulator.plotting import apply_theme, policy_palette, save_figure

__all__ = [
    "draw_study_figures",
    "plot_clipping",
    "plot_error_vs_divergence",
    "plot_estimate_vs_truth",
]

_ESTIMATOR_LABEL = {"ips": "IPS", "snips": "SNIPS", "dm": "DM", "dr": "DR"}


def _label(name: str) -> str:
    return _ESTIMATOR_LABEL.get(name, name)


def plot_estimate_vs_truth(
    estimates: pd.DataFrame,
    loggers: Sequence[str],
    targets: Sequence[str],
    estimators: Sequence[str],
    alpha: float = 0.05,
) -> Figure:
    """Relative error of every seed's unclipped estimate, with its interval, per target.

    Parameters
    ----------
    estimates : DataFrame
        ``estimates.parquet`` rows (seed, logger, target, estimator, lambda, estimate, ci_low,
        ci_high, truth_onpolicy, status).
    loggers, targets, estimators : sequences of str
        Panel rows, x positions and panel columns, in order.
    alpha : float
        Level of the intervals (for the caption).
    """
    apply_theme()
    df = estimates[np.isinf(estimates["lambda"]) & (estimates["status"] == "ok")]
    palette = policy_palette(list(targets))
    fig, axes = plt.subplots(
        len(loggers),
        len(estimators),
        figsize=(3.3 * len(estimators) + 0.6, 3.0 * len(loggers) + 1.2),
        squeeze=False,
        sharey="row",
        layout="constrained",
    )
    seeds = sorted(df["seed"].unique())
    jitter = np.linspace(-0.28, 0.28, len(seeds)) if len(seeds) > 1 else np.zeros(1)
    offset = dict(zip(seeds, jitter, strict=True))
    for i, logger in enumerate(loggers):
        for j, name in enumerate(estimators):
            ax = axes[i, j]
            sub = df[(df["logger"] == logger) & (df["estimator"] == name)]
            for x, target in enumerate(targets):
                t = sub[sub["target"] == target]
                if t.empty:
                    continue
                truth = t["truth_onpolicy"].to_numpy()
                xs = x + t["seed"].map(offset).to_numpy()
                err = 100 * (t["estimate"].to_numpy() - truth) / truth
                lo = 100 * (t["ci_low"].to_numpy() - truth) / truth
                hi = 100 * (t["ci_high"].to_numpy() - truth) / truth
                colour = palette[target]
                ax.vlines(xs, lo, hi, color=colour, alpha=0.35, lw=1.0)
                ax.scatter(xs, err, color=colour, s=10, zorder=3)
                ax.scatter([x], [err.mean()], marker="D", s=36, color="0.1", zorder=4)
            ax.axhline(0.0, color="0.3", lw=1.0, ls="--")
            ax.set_xticks(range(len(targets)), list(targets), rotation=35, ha="right", fontsize="small")
            if i == 0:
                ax.set_title(_label(name))
            if j == 0:
                ax.set_ylabel(f"logger {logger}\nerror (% of truth)")
    fig.suptitle(
        "Off-policy estimate − on-policy truth, per seed (dot) with its "
        f"{100 * (1 - alpha):g}% bootstrap interval (bar); ◆ mean over {len(seeds)} seeds",
        fontsize="medium",
    )
    return fig


def plot_error_vs_divergence(
    summary: pd.DataFrame, loggers: Sequence[str], targets: Sequence[str], estimators: Sequence[str]
) -> Figure:
    """Relative RMSE of each unclipped estimator against n / ESS of the target, per logger.

    Colour = estimator (a line through the targets, by divergence); marker = target.
    """
    apply_theme()
    df = summary[np.isinf(summary["lambda"])].copy()
    df["divergence"] = 1.0 / df["ess_share"].clip(lower=1e-12)
    palette = policy_palette([_label(e) for e in estimators])
    markers = dict(zip(targets, "osD^vP*Xph<>", strict=False))
    fig, axes = plt.subplots(
        1, len(loggers), figsize=(4.8 * len(loggers), 4.4), squeeze=False, sharey=True, layout="constrained"
    )
    for ax, logger in zip(axes[0], loggers, strict=True):
        sub = df[df["logger"] == logger]
        for name in estimators:
            e = sub[sub["estimator"] == name].sort_values("divergence")
            if e.empty:
                continue
            colour = palette[_label(name)]
            # DM's error comes from its reward model, not from the weights: dotted
            ls = ":" if name == "dm" else "-"
            ax.plot(e["divergence"], 100 * e["rel_rmse"], color=colour, lw=1.5, alpha=0.8, ls=ls)
            for _, r in e.iterrows():
                ax.scatter(
                    r["divergence"],
                    100 * r["rel_rmse"],
                    marker=markers.get(r["target"], "o"),
                    color=colour,
                    s=36,
                    zorder=3,
                    edgecolor="white",
                    linewidth=0.5,
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"logger {logger}", fontsize="medium")
        ax.set_xlabel("divergence from the logger: n / ESS")
    axes[0, 0].set_ylabel("RMSE over seeds (% of truth)")
    handles = [
        Line2D([], [], color=palette[_label(e)], lw=2, ls=":" if e == "dm" else "-", label=_label(e))
        for e in estimators
    ]
    handles += [
        Line2D([], [], color="0.35", marker=markers.get(t, "o"), ls="", ms=6, label=t) for t in targets
    ]
    fig.legend(handles=handles, loc="outside right center", frameon=False, title="estimator / target")
    fig.suptitle(
        "Error grows as the target departs from the logging policy\n"
        "(ESS: effective sample size of the per-position importance weights, mean over positions)",
        fontsize="medium",
    )
    return fig


def plot_clipping(
    summary: pd.DataFrame,
    loggers: Sequence[str],
    targets: Sequence[str],
    clip_estimators: Sequence[str],
) -> Figure | None:
    """Relative bias (solid) and relative sd (dashed) against the clipping threshold λ."""
    apply_theme()
    df = summary[summary["estimator"].isin(clip_estimators)]
    lams = sorted(x for x in df["lambda"].unique() if np.isfinite(x))
    if not lams:
        return None
    inf_x = lams[-1] * 3.0  # where "∞" (no clipping) is drawn
    palette = policy_palette(list(targets))
    fig, axes = plt.subplots(
        len(clip_estimators),
        len(loggers),
        figsize=(5.0 * len(loggers), 3.5 * len(clip_estimators) + 1.0),
        squeeze=False,
        layout="constrained",
    )
    for i, name in enumerate(clip_estimators):
        for j, logger in enumerate(loggers):
            ax = axes[i, j]
            sub = df[(df["logger"] == logger) & (df["estimator"] == name)]
            for target in targets:
                t = sub[sub["target"] == target].sort_values("lambda")
                if t.empty:
                    continue
                x = np.where(np.isinf(t["lambda"]), inf_x, t["lambda"])
                colour = palette[target]
                ax.plot(x, 100 * t["rel_bias"], color=colour, marker="o", ms=3)
                ax.plot(x, 100 * t["sd"] / t["truth_onpolicy"], color=colour, ls="--", marker="s", ms=3)
            ax.axhline(0.0, color="0.3", lw=0.8)
            ax.set_xscale("log")
            ticks = [*lams, inf_x]
            ax.set_xticks(ticks, [f"{x:g}" for x in lams] + ["∞"])
            ax.minorticks_off()
            ax.set_title(f"{_label(name)}, logger {logger}", fontsize="medium")
            ax.set_xlabel("clipping threshold λ (weights min(w, λ))")
            if j == 0:
                ax.set_ylabel("% of truth")
    handles = [Line2D([], [], color=palette[t], lw=2, label=t) for t in targets]
    handles += [
        Line2D([], [], color="0.2", lw=1.5, marker="o", ms=3, label="bias"),
        Line2D([], [], color="0.2", lw=1.5, ls="--", marker="s", ms=3, label="standard deviation"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False)
    fig.suptitle("Clipping trades bias for variance (over seeds, relative to the truth)", fontsize="medium")
    return fig


def draw_study_figures(folder: Path, estimates: pd.DataFrame, summary: pd.DataFrame, cfg: Any) -> list[Path]:
    """Draw every figure of a study into ``folder`` (PNG and SVG); return the written paths."""
    loggers, targets = list(cfg.loggers), list(cfg.targets)
    names = list(cfg.estimators.names)
    out: list[Path] = []
    figs = {
        "estimate_vs_truth": plot_estimate_vs_truth(estimates, loggers, targets, names, cfg.estimators.alpha),
        "error_vs_divergence": plot_error_vs_divergence(summary, loggers, targets, names),
        "clipping": plot_clipping(summary, loggers, targets, list(cfg.estimators.clip_estimators)),
    }
    for stem, fig in figs.items():
        if fig is None:
            continue
        out += save_figure(fig, Path(folder) / stem)
        plt.close(fig)
    return out
