"""Figures of the interleaving power study (matplotlib lives here and in :mod:`simulator.plotting`).

``detection_vs_sessions``
    One panel per pair (effect size): detection rate (significant and in the right direction)
    against the number of sessions, log scale, for the A/B test and each interleaving method;
    the mean over seeds as a line, each seed as a faint line, the target power as a dashed
    line and the interpolated sessions at that power as markers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from simulator.plotting import apply_theme, save_figure

__all__ = ["draw_power_figures", "plot_detection_vs_sessions"]

_STYLE = {
    "ab_welch": ("A/B test (Welch)", "#4d4d4d", "-"),
    "team_draft": ("team-draft interleaving", "#1f77b4", "-"),
    "balanced": ("balanced interleaving", "#d62728", "--"),
}


def plot_detection_vs_sessions(detection: pd.DataFrame, summary: pd.DataFrame, power: float) -> Figure:
    """Detection rate against sessions per pair (see the module docstring).

    Parameters
    ----------
    detection : DataFrame
        ``detection.csv`` rows: seed, pair, method, sessions, detection_rate.
    summary : DataFrame
        ``summary.csv`` rows: pair, method, gap, rel_gap, n_power, ratio_ab_to_method.
    power : float
        The target detection rate (dashed line).
    """
    apply_theme()
    pairs = list(dict.fromkeys(summary["pair"]))
    fig, axes = plt.subplots(
        1, len(pairs), figsize=(4.2 * len(pairs) + 0.4, 3.9), squeeze=False, sharey=True, layout="constrained"
    )
    for ax, pair in zip(axes[0], pairs, strict=True):
        sub = detection[detection["pair"] == pair]
        info = summary[summary["pair"] == pair]
        for method, g in sub.groupby("method", sort=False):
            label, color, ls = _STYLE.get(str(method), (str(method), None, "-"))
            for _, gs in g.groupby("seed"):
                ax.plot(gs["sessions"], gs["detection_rate"], color=color, lw=0.6, alpha=0.25, ls=ls)
            mean = g.groupby("sessions")["detection_rate"].mean()
            ax.plot(mean.index, mean.to_numpy(), color=color, lw=2.0, ls=ls, label=label)
            n = info.loc[info["method"] == method, "n_power"]
            if len(n) and np.isfinite(n.iloc[0]):
                ax.plot([n.iloc[0]], [power], "o", color=color, ms=5)
        ax.axhline(power, color="0.5", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        r = info.iloc[0]
        ratios = [
            f"{_STYLE.get(m, (m,))[0].split(' ')[0]}: {x:.1f}×"
            for m, x in zip(info["method"], info["ratio_ab_to_method"], strict=True)
            if m != "ab_welch" and np.isfinite(x)
        ]
        ax.set_title(
            f"{pair}: gap {r['gap']:.4f} clicks/session ({100 * r['rel_gap']:.1f}%)\n"
            + ("A/B ÷ " + ", ".join(ratios) if ratios else ""),
            fontsize=9,
        )
        ax.set_xlabel("sessions per experiment")
    axes[0][0].set_ylabel("detection rate (p < α, right direction)")
    axes[0][0].legend(loc="upper left", fontsize=8)
    return fig


def draw_power_figures(
    folder: str | Path, detection: pd.DataFrame, summary: pd.DataFrame, cfg: Any
) -> list[Path]:
    """Draw every figure of the study into ``folder``; return the paths (PNG, SVG)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig = plot_detection_vs_sessions(detection, summary, cfg.study.power)
    try:
        return save_figure(fig, folder / "detection_vs_sessions")
    finally:
        plt.close(fig)
