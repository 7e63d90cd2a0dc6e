"""Figures of the position-bias study (matplotlib/seaborn live here, not in the estimators).

``estimated_vs_true``
    Rows = eta, columns = estimator: the true examination curve (black, dashed) and each
    regime's estimate with its bootstrap interval (band), for the first seed. Positions are
    1-based, as in every recloop figure.
``obd``
    The Open Bandit Dataset estimates (CTR ratio, EM) with their intervals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from simulator.plotting import apply_theme, error_extents, save_figure

__all__ = ["draw_position_bias_figures", "plot_estimated_vs_true", "plot_obd"]

_LABEL = {
    "ctr_ratio": "CTR ratio",
    "swap": "swap intervention",
    "em": "EM, (user, item) key",
    "em_item": "EM, item key",
}
_REGIME_COLOUR = dict(zip(("randomised", "deterministic"), sns.color_palette("colorblind", 2), strict=True))


def plot_estimated_vs_true(estimates: pd.DataFrame, estimators: list[str], seed: int | None = None) -> Figure:
    """Estimated vs true examination per eta (rows) and estimator (columns).

    Parameters
    ----------
    estimates : DataFrame
        ``estimates.csv`` rows (seed, eta, regime, estimator, position, truth, estimate, ci_low,
        ci_high).
    estimators : list of str
        Panel columns, in order.
    seed : int, optional
        Which seed to draw (default: the first).
    """
    apply_theme()
    seed = int(estimates["seed"].min()) if seed is None else seed
    df = estimates[estimates["seed"] == seed]
    etas = sorted(df["eta"].unique())
    fig, axes = plt.subplots(
        len(etas),
        len(estimators),
        figsize=(3.2 * len(estimators) + 0.4, 2.6 * len(etas) + 1.0),
        squeeze=False,
        sharex=True,
        sharey="row",
        layout="constrained",
    )
    for i, eta in enumerate(etas):
        for j, name in enumerate(estimators):
            ax = axes[i, j]
            sub = df[(df["eta"] == eta) & (df["estimator"] == name)]
            truth = df[df["eta"] == eta].groupby("position")["truth"].first()
            ax.plot(truth.index + 1, truth.to_numpy(), color="0.1", ls="--", marker="o", ms=3, lw=1.2)
            for regime, colour in _REGIME_COLOUR.items():
                r = sub[(sub["regime"] == regime) & sub["estimate"].notna()].sort_values("position")
                if r.empty:
                    if regime == "deterministic" and name == "swap":
                        ax.text(
                            0.97,
                            0.95,
                            "swap needs the\nrandomised swap",
                            ha="right",
                            va="top",
                            transform=ax.transAxes,
                            fontsize="x-small",
                            color="0.4",
                        )
                    continue
                x = r["position"].to_numpy() + 1
                ax.fill_between(x, r["ci_low"], r["ci_high"], color=colour, alpha=0.25, lw=0)
                ax.plot(x, r["estimate"], color=colour, marker="o", ms=3, lw=1.5)
            if i == 0:
                ax.set_title(_LABEL.get(name, name), fontsize="medium")
            if j == 0:
                ax.set_ylabel(f"η = {eta:g}\nexamination / position 1")
            if i == len(etas) - 1:
                ax.set_xlabel("position")
            ax.set_xticks(np.arange(1, int(df["position"].max()) + 2))
    handles = [Line2D([], [], color="0.1", ls="--", marker="o", ms=3, label="true curve")]
    handles += [
        Line2D([], [], color=c, lw=2, marker="o", ms=3, label=f"{r} log (band: bootstrap CI)")
        for r, c in _REGIME_COLOUR.items()
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle(
        "Position bias estimated from logs vs the true PBM curve: the CTR ratio is biased on a "
        "deterministic ranker's log",
        fontsize="medium",
    )
    return fig


def plot_obd(obd: pd.DataFrame) -> Figure:
    """Estimates on the Open Bandit Dataset (truth unknown) with their intervals."""
    apply_theme()
    fig, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
    methods = list(dict.fromkeys(obd["method"]))
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods)), strict=True))
    width = 0.12
    for m, method in enumerate(methods):
        r = obd[obd["method"] == method].sort_values("position")
        x = r["position"].to_numpy() + 1 + (m - (len(methods) - 1) / 2) * width
        est = r["estimate"].to_numpy()
        err = error_extents(est, r["ci_low"].to_numpy(), r["ci_high"].to_numpy())
        ax.errorbar(x, est, yerr=err, fmt="o", color=palette[method], capsize=3, label=method)
    ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
    ax.set_xticks(np.arange(1, int(obd["position"].max()) + 2))
    ax.set_xlabel("position (1 = top)")
    ax.set_ylabel("examination / position 1")
    clicks = int(obd.groupby("method")["clicks"].sum().iloc[0])
    ax.set_title(f"Open Bandit Dataset, random logger ({clicks} clicks)", fontsize="medium")
    ax.legend(frameon=False, fontsize="small")
    return fig


def draw_position_bias_figures(
    folder: Path, estimates: pd.DataFrame, obd: pd.DataFrame, cfg: Any
) -> list[Path]:
    """Draw the study's figures into ``folder`` (PNG and SVG); return the written paths."""
    out: list[Path] = []
    figs = {"estimated_vs_true": plot_estimated_vs_true(estimates, list(cfg.estimators.names))}
    if len(obd):
        figs["obd"] = plot_obd(obd)
    for stem, fig in figs.items():
        out += save_figure(fig, Path(folder) / stem)
        plt.close(fig)
    return out
