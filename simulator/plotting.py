"""Figures of a results run folder (the only module that imports matplotlib and seaborn).

:func:`plot_run` reads ``RUN_DIR`` and writes each figure as PNG and SVG into
``RUN_DIR/figures/``:

``trajectories``
    Gini of exposure (whole catalog), catalog coverage, long-tail share and mean shown-genre
    entropy over time.
``engagement``
    CTR, expected utility, regret and the alternating-user genre loss over time.
``lorenz``
    Lorenz curves of item exposure in the first and the last metric window, seeds averaged.
``alternating_user``
    The genre shares one alternating-interest user is shown, against the user's true taste.
``all_metrics``
    Small multiples of every recorded metric.
``policy_comparison`` (runs with three or more policies)
    Every policy over time on Gini, coverage, long-tail share, shown-genre entropy,
    homogenization, miscalibration, CTR, utility and regret.
``tradeoff`` (runs with three or more policies)
    Final engagement (CTR; expected utility) against final Gini, one point per policy: mean
    over seeds, error bars from the minimum to the maximum across seeds.

Time series show one line per policy (mean over seeds) and a band from the minimum to the
maximum across seeds (deterministic: no bootstrap). Each policy keeps one colour of seaborn's
colour-blind-safe palette in every figure (:func:`policy_palette`). Every figure function is
public: it takes DataFrames (as read by :mod:`simulator.report`) and returns a
``matplotlib.figure.Figure``, for notebooks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from simulator.io import atomic_save
from simulator.report import (
    METRIC_INFO,
    ordered_metrics,
    policy_order,
    read_exposure,
    read_manifest,
    read_metrics,
    read_users,
    window_days,
)

__all__ = [
    "COMPARISON_METRICS",
    "ENGAGEMENT_METRICS",
    "TRAJECTORY_METRICS",
    "apply_theme",
    "final_values",
    "gini",
    "lorenz_curve",
    "plot_all_metrics",
    "plot_alternating_user",
    "plot_engagement",
    "plot_lorenz",
    "plot_policy_comparison",
    "plot_run",
    "plot_tradeoff",
    "plot_trajectories",
    "policy_palette",
    "save_figure",
    "select_alternating_user",
]

TRAJECTORY_METRICS: tuple[str, ...] = ("gini", "coverage", "long_tail_share", "entropy_shown")
ENGAGEMENT_METRICS: tuple[str, ...] = ("ctr", "utility", "regret", "alt_genre_loss")
COMPARISON_METRICS: tuple[str, ...] = (
    "gini",
    "coverage",
    "long_tail_share",
    "entropy_shown",
    "homogenization",
    "miscalibration",
    "ctr",
    "utility",
    "regret",
)
#: plot_run draws the comparison figures when a run has at least this many policies
MIN_POLICIES_FOR_COMPARISON = 3
#: metrics measured over the exposure window (the others over the per-user window or per day)
_EXPOSURE_WINDOW = {"gini", "coverage", "cdi", "long_tail_share", "popularity_bias"}
_USER_WINDOW = {
    "entropy_shown",
    "entropy_consumed",
    "miscalibration",
    "alt_genre_loss",
    "homogenization",
}
_LORENZ_GRID = 501  # points of the averaged Lorenz curve (keeps SVGs small for big catalogs)


def apply_theme() -> None:
    """Set the recloop figure theme (seaborn whitegrid, notebook context, colour-blind palette)."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams["svg.hashsalt"] = "recloop"  # reproducible SVG ids


#: seaborn "colorblind" indices, most distinct first (orange/vermillion/tan are far apart)
_COLOUR_ORDER = (0, 1, 2, 4, 7, 9, 3, 5, 8, 6)
#: the oracle is the reference line of every figure: always near-black
ORACLE_COLOUR = (0.1, 0.1, 0.1)


def error_extents(center, low, high) -> np.ndarray:
    """Matplotlib's ``xerr``/``yerr`` (2, n) for intervals ``[low, high]`` around ``center``.

    Clipped at 0: the mean of equal floats can round one ulp past them (the mean of three
    copies of 0.9875 is 0.9875000000000002), and a bootstrap interval need not contain its point
    estimate; matplotlib refuses a negative extent.
    """
    c, lo, hi = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (center, low, high))
    return np.clip(np.vstack([c - lo, hi - c]), 0.0, None)


def policy_palette(policies: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """Fixed colour per policy label from seaborn's colour-blind-safe palette.

    The label ``oracle`` is always near-black; the others take the palette's colours in order,
    most distinct first. Pass the same ordered list (:func:`simulator.report.policy_order`) to
    every figure so a policy has the same colour everywhere. Beyond ten policies colours repeat.
    """
    base = sns.color_palette("colorblind", 10)
    colours = [base[i] for i in _COLOUR_ORDER]
    out: dict[str, tuple[float, float, float]] = {}
    i = 0
    for p in dict.fromkeys(policies):
        if p == "oracle":
            out[p] = ORACLE_COLOUR
        else:
            out[p] = colours[i % len(colours)]
            i += 1
    return out


def _palette_for(policies: Iterable[str], palette: Mapping[str, Any] | None) -> dict[str, Any]:
    pols = list(dict.fromkeys(policies))
    if palette is None:
        return policy_palette(pols)
    missing = [p for p in pols if p not in palette]
    out = dict(palette)
    if missing:  # extend without changing existing colours
        extra = policy_palette([*palette, *missing])
        out.update({p: extra[p] for p in missing})
    return out


def _x(df: pd.DataFrame) -> str:
    return "time" if "time" in df.columns else "round"


def _metric_label(metric: str, window: int | None, user_window: int | None) -> tuple[str, str]:
    title, ylabel = METRIC_INFO.get(metric, (metric.replace("_", " ").capitalize(), metric))
    if metric == "gini" and window:
        title = f"{title} ({window}-day window, whole catalog)"
    elif metric in _EXPOSURE_WINDOW and window:
        title = f"{title} ({window}-day window)"
    elif metric in _USER_WINDOW and user_window:
        title = f"{title} ({user_window}-day user window)"
    return title, ylabel


def _draw_series(ax: Any, df: pd.DataFrame, policies: Sequence[str], palette: Mapping) -> None:
    """Mean over seeds as a line, min–max across seeds as a band, one colour per policy."""
    x = _x(df)
    for p in policies:
        sub = df[df["policy"] == p]
        if sub.empty:
            continue
        g = sub.groupby(x)["value"].agg(["mean", "min", "max"]).sort_index()
        colour = palette[p]
        ax.plot(g.index, g["mean"], color=colour, lw=1.8, label=p)
        if sub["seed"].nunique() > 1:
            ax.fill_between(g.index, g["min"], g["max"], color=colour, alpha=0.2, lw=0)


def _legend_handles(policies: Sequence[str], palette: Mapping) -> list[Line2D]:
    return [Line2D([], [], color=palette[p], lw=2, label=p) for p in policies]


def _metric_grid(
    metrics: pd.DataFrame,
    names: Sequence[str],
    *,
    ncols: int,
    suptitle: str,
    palette: Mapping[str, Any] | None,
    window: int | None,
    user_window: int | None,
    panel_size: tuple[float, float],
    short_titles: bool = False,
) -> Figure | None:
    apply_theme()
    present = set(metrics["metric"].unique())
    names = [m for m in names if m in present]
    if not names:
        return None
    policies = list(dict.fromkeys(palette or [])) if palette else []
    policies = [p for p in policies if p in set(metrics["policy"])]
    policies += sorted(set(metrics["policy"]) - set(policies))
    palette = _palette_for(policies, palette)
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.9),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    n_seeds = metrics["seed"].nunique()
    for ax, m in zip(axes.flat, names, strict=False):
        sub = metrics[metrics["metric"] == m]
        _draw_series(ax, sub, policies, palette)
        title, ylabel = _metric_label(m, window, user_window)
        if short_titles:
            ax.set_title(m, fontsize="medium")
            ax.set_ylabel(ylabel, fontsize="small")
        else:
            ax.set_title(title, fontsize="medium")
            ax.set_ylabel(ylabel)
        ax.margins(x=0.01)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for j in range(ncols):  # bottom visible panel of each column gets the x label
        col = [axes[i, j] for i in range(nrows) if axes[i, j].get_visible()]
        if col:
            col[-1].set_xlabel("day")
            col[-1].xaxis.set_tick_params(labelbottom=True)
    band = f"; band: min–max over {n_seeds} seeds" if n_seeds > 1 else " (1 seed)"
    fig.suptitle(f"{suptitle}\nline: mean over seeds{band}", fontsize="large")
    fig.legend(
        handles=_legend_handles(policies, palette),
        loc="outside lower center",
        ncol=min(len(policies), 6),
        title="policy",
        frameon=False,
    )
    return fig


def plot_trajectories(
    metrics: pd.DataFrame,
    *,
    palette: Mapping[str, Any] | None = None,
    window: int | None = 7,
    user_window: int | None = None,
) -> Figure | None:
    """2×2 grid: Gini of exposure, coverage, long-tail share, shown-genre entropy over time.

    Parameters
    ----------
    metrics : long-format metrics (``round, time, policy, seed, metric, value``).
    palette : policy -> colour (:func:`policy_palette`); default from the policies present.
    window, user_window : metric windows in days, for the panel titles.

    Returns
    -------
    The figure, or ``None`` if none of the four metrics was recorded (missing ones are skipped).
    """
    return _metric_grid(
        metrics,
        TRAJECTORY_METRICS,
        ncols=2,
        palette=palette,
        window=window,
        user_window=user_window,
        panel_size=(5.6, 3.6),
        suptitle="Exposure concentration and diversity",
    )


def plot_engagement(
    metrics: pd.DataFrame,
    *,
    palette: Mapping[str, Any] | None = None,
    window: int | None = 7,
    user_window: int | None = None,
) -> Figure | None:
    """2×2 grid: CTR, expected utility, regret vs the oracle, alternating-user genre loss.

    Same style and arguments as :func:`plot_trajectories`; ``None`` if none was recorded.
    """
    return _metric_grid(
        metrics,
        ENGAGEMENT_METRICS,
        ncols=2,
        palette=palette,
        window=window,
        user_window=user_window,
        panel_size=(5.6, 3.6),
        suptitle="Engagement and utility",
    )


def plot_all_metrics(
    metrics: pd.DataFrame,
    *,
    palette: Mapping[str, Any] | None = None,
    window: int | None = 7,
    user_window: int | None = None,
    ncols: int = 4,
) -> Figure | None:
    """Small multiples of every metric in ``metrics`` (stable names first), same style."""
    return _metric_grid(
        metrics,
        ordered_metrics(metrics["metric"].unique()),
        ncols=ncols,
        palette=palette,
        window=window,
        user_window=user_window,
        panel_size=(4.0, 2.7),
        suptitle="All recorded metrics",
        short_titles=True,
    )


def plot_policy_comparison(
    metrics: pd.DataFrame,
    *,
    palette: Mapping[str, Any] | None = None,
    window: int | None = 7,
    user_window: int | None = None,
) -> Figure | None:
    """3×3 grid comparing every policy over time (:data:`COMPARISON_METRICS`).

    Gini, coverage and long-tail share (exposure window), shown-genre entropy, homogenization
    and miscalibration (user window), CTR, expected utility and regret (per day). Same style and
    arguments as :func:`plot_trajectories`; ``None`` if none was recorded.
    """
    return _metric_grid(
        metrics,
        COMPARISON_METRICS,
        ncols=3,
        palette=palette,
        window=window,
        user_window=user_window,
        panel_size=(4.8, 3.3),
        suptitle="Every policy: concentration, diversity, calibration and engagement",
    )


def final_values(metrics: pd.DataFrame, metric: str, last_days: int = 7) -> pd.DataFrame:
    """Per (policy, seed): the mean of ``metric`` over the last ``last_days`` rounds.

    Returns a DataFrame with columns ``policy, seed, value`` (empty if the metric is absent).
    """
    sub = metrics[metrics["metric"] == metric]
    if sub.empty:
        return pd.DataFrame(columns=["policy", "seed", "value"])
    last = sub["round"].max()
    sub = sub[sub["round"] > last - last_days]
    return sub.groupby(["policy", "seed"], as_index=False)["value"].mean()


def plot_tradeoff(
    metrics: pd.DataFrame,
    *,
    palette: Mapping[str, Any] | None = None,
    x: str = "gini",
    ys: Sequence[str] = ("ctr", "utility"),
    last_days: int = 7,
    window: int | None = 7,
) -> Figure | None:
    """Trade-off scatter: final engagement against final concentration, one point per policy.

    Each panel puts one engagement metric (``ys``: CTR, expected utility) against ``x`` (Gini of
    exposure). A point is the mean over seeds of each seed's mean over the last ``last_days``
    rounds; the error bars span the minimum to the maximum across seeds (as the bands of the
    time series). ``None`` if ``x`` or all of ``ys`` are missing.
    """
    apply_theme()
    fx = final_values(metrics, x, last_days)
    ys = [y for y in ys if not final_values(metrics, y, last_days).empty]
    if fx.empty or not ys:
        return None
    policies = list(dict.fromkeys(palette or [])) if palette else []
    policies = [p for p in policies if p in set(fx["policy"])]
    policies += sorted(set(fx["policy"]) - set(policies))
    palette = _palette_for(policies, palette)
    fig, axes = plt.subplots(1, len(ys), figsize=(6.0 * len(ys), 5.0), squeeze=False, layout="constrained")
    n_seeds = metrics["seed"].nunique()
    all_labels: list[list] = []
    for ax, y in zip(axes[0], ys, strict=True):
        fy = final_values(metrics, y, last_days)
        both = fx.merge(fy, on=["policy", "seed"], suffixes=("_x", "_y"))
        labels = []
        for p in policies:
            sub = both[both["policy"] == p]
            if sub.empty:
                continue
            mx, my = sub["value_x"].mean(), sub["value_y"].mean()
            xerr = error_extents(mx, sub["value_x"].min(), sub["value_x"].max())
            yerr = error_extents(my, sub["value_y"].min(), sub["value_y"].max())
            ax.errorbar(mx, my, xerr=xerr, yerr=yerr, fmt="o", ms=7, color=palette[p], capsize=3, lw=1.4)
            labels.append(
                ax.annotate(
                    p,
                    (mx, my),
                    xytext=(5, 4),
                    textcoords="offset points",
                    fontsize="small",
                    color=palette[p],
                    arrowprops={
                        "arrowstyle": "-",
                        "lw": 0.6,
                        "color": palette[p],
                        "shrinkA": 0,
                        "shrinkB": 4,
                    },
                )
            )
        ax.margins(x=0.18, y=0.12)  # room for the labels right of the rightmost points
        all_labels.append(labels)
        xt, _ = _metric_label(x, window, None)
        _, yl = _metric_label(y, window, None)
        ax.set_xlabel(f"final {xt.lower()}")
        ax.set_ylabel(f"final {yl}")
        titles = (METRIC_INFO.get(y, (y, y))[0], METRIC_INFO.get(x, (x, x))[0])
        ax.set_title(f"{titles[0]} vs {titles[1]}", fontsize="medium")
    bars = f"error bars: min–max over {n_seeds} seeds" if n_seeds > 1 else "1 seed"
    fig.suptitle(
        f"Engagement vs concentration at the end of the run (mean of the last {last_days} days; {bars})"
    )
    fig.legend(
        handles=_legend_handles(policies, palette),
        loc="outside lower center",
        ncol=min(len(policies), 6),
        title="policy",
        frameon=False,
    )
    fig.draw_without_rendering()  # the final layout first: labels are separated in display space
    for labels in all_labels:
        _separate_labels(fig, labels)
    return fig


def _separate_labels(fig: Figure, labels: list, step: float = 11.0, rings: int = 12) -> None:
    """Move point labels (annotations in offset points) so that their boxes do not overlap.

    In drawing order, each label takes the first free spot inside its axes among: up-right of
    its point, down-right, up-left, down-left, then the same four ``step`` points further out,
    and so on (``rings`` times). Points that (nearly) coincide get labels side by side or
    stacked close to them instead of overprinted ones; a label moved beyond the first ring gets
    a thin leader line to its point.
    """
    if not labels:
        return
    renderer = fig.canvas.get_renderer()
    placed = []
    for label in labels:
        inside = label.axes.get_window_extent(renderer)
        for ring in range(rings + 1):
            up, down = 4 + step * ring, -12 - step * ring
            free = False
            for dx, dy, ha in ((5, up, "left"), (5, down, "left"), (-5, up, "right"), (-5, down, "right")):
                label.xyann = (dx, dy)
                label.set_horizontalalignment(ha)
                box = _text_box(label, renderer)
                within = (
                    inside.x0 <= box.x0
                    and box.x1 <= inside.x1
                    and inside.y0 <= box.y0
                    and box.y1 <= inside.y1
                )
                if within and not any(box.overlaps(q) for q in placed):
                    free = True
                    break
            if free:
                break
        else:  # no free spot: back to the default place
            ring = 0
            label.xyann = (5, 4)
            label.set_horizontalalignment("left")
        if label.arrow_patch is not None:  # the leader line: only for a label moved away
            label.arrow_patch.set_visible(ring > 0)
        placed.append(_text_box(label, renderer))


def _text_box(label, renderer):
    """The display box of an annotation's text alone (without its leader line)."""
    return Text.get_window_extent(label, renderer)


# --------------------------------------------------------------------------------------------
# Lorenz curves
# --------------------------------------------------------------------------------------------


def gini(exposure: np.ndarray) -> float:
    """Gini coefficient of exposure counts over the whole catalog (zeros included).

    Notes
    -----
    With counts sorted ascending ``x_(1) … x_(n)``:
    ``G = 2 Σ_i i·x_(i) / (n Σ_i x_i) − (n + 1) / n`` (DESIGN.md §5); 0 for equal exposure,
    ``(n − 1) / n`` if one item gets all of it, NaN if nothing was shown.
    """
    x = np.sort(np.asarray(exposure, dtype=np.float64).ravel())
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(2.0 * (i * x).sum() / (n * total) - (n + 1) / n)


def lorenz_curve(exposure: np.ndarray, grid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve of exposure: share of items (ascending exposure) vs share of impressions.

    Returns ``(x, L)`` with ``x`` from 0 to 1; if ``grid`` is given the curve is linearly
    interpolated onto it (so curves of several seeds can be averaged point-wise).
    """
    x = np.sort(np.asarray(exposure, dtype=np.float64).ravel())
    n, total = x.size, x.sum()
    px = np.linspace(0.0, 1.0, n + 1)
    py = np.concatenate([[0.0], np.cumsum(x) / total]) if total > 0 else px.copy()
    if grid is None:
        return px, py
    return grid, np.interp(grid, px, py)


def plot_lorenz(
    exposure: pd.DataFrame,
    *,
    palette: Mapping[str, Any] | None = None,
    window: int | None = 7,
) -> Figure | None:
    """Lorenz curves of item exposure, first window vs last window (two panels).

    Each policy's curve is the point-wise mean of its per-seed curves; the legend gives the
    mean Gini over seeds. ``None`` if ``exposure`` has no first/last window rows.
    """
    apply_theme()
    df = exposure[exposure["window"].isin(["first", "last"])]
    if df.empty:
        return None
    policies = list(palette or [])
    policies = [p for p in policies if p in set(df["policy"])]
    policies += sorted(set(df["policy"]) - set(policies))
    palette = _palette_for(policies, palette)
    grid = np.linspace(0.0, 1.0, _LORENZ_GRID)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), sharey=True, layout="constrained")
    n_seeds = df["seed"].nunique()
    wtxt = f"{window} days" if window else "window"
    for ax, win, label in zip(axes, ("first", "last"), (f"first {wtxt}", f"last {wtxt}"), strict=True):
        ax.plot([0, 1], [0, 1], color="0.45", ls="--", lw=1, label="equality")
        for p in policies:
            sub = df[(df["policy"] == p) & (df["window"] == win)]
            if sub.empty:
                continue
            curves, ginis = [], []
            for _, s in sub.groupby("seed"):
                e = s["exposure"].to_numpy()
                curves.append(lorenz_curve(e, grid)[1])
                ginis.append(gini(e))
            g = np.nanmean(ginis) if np.isfinite(ginis).any() else float("nan")
            ax.plot(grid, np.mean(curves, axis=0), color=palette[p], lw=2, label=f"{p} (Gini {g:.3f})")
        ax.set_title(f"{label.capitalize()}")
        ax.set_xlabel("share of catalog items (ascending exposure)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        small = "small" if len(policies) <= 4 else "x-small"
        ax.legend(loc="upper left", fontsize=small, title="policy (mean Gini)", title_fontsize=small)
    axes[0].set_ylabel("share of impressions")
    seeds_txt = f"curves averaged over {n_seeds} seeds" if n_seeds > 1 else "1 seed"
    fig.suptitle(f"Lorenz curves of item exposure (whole catalog; {seeds_txt})")
    return fig


# --------------------------------------------------------------------------------------------
# One alternating-interest user
# --------------------------------------------------------------------------------------------


def _alt_policies(users: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(users["policy"]))
    if "greedy" in present and "oracle" in present:
        return ["greedy", "oracle"]
    return present


def select_alternating_user(
    users: pd.DataFrame, policies: Sequence[str] | None = None
) -> tuple[int, int] | None:
    """Pick ``(seed, user_id)``: a *typical* alternating user of the smallest seed.

    Candidates are the users with the most data: the largest number of rounds with a non-NaN
    shown share of genre A or B, taking the minimum over ``policies`` (a user must appear under
    every policy). Among them the median user by the final-round share of their less-shown
    genre under the first policy is picked (ties: smallest id) — typical, not cherry-picked.
    ``None`` if no alternating user appears under every policy.
    """
    alt = users[users["kind"] == "alternating"]
    if alt.empty:
        return None
    seed = int(alt["seed"].min())
    alt = alt[alt["seed"] == seed]
    policies = list(policies) if policies is not None else _alt_policies(alt)
    alt = alt[alt["policy"].isin(policies)]
    two = alt[(alt["genre"] == alt["genre_a"]) | (alt["genre"] == alt["genre_b"])]
    ok = two[two["shown_share"].notna()]
    counts = ok.groupby(["user_id", "policy"])["round"].nunique().unstack("policy")
    counts = counts.reindex(columns=policies)
    # users absent under some policy get NaN -> excluded; users present but never shown get 0
    present = two.groupby(["user_id", "policy"]).size().unstack("policy").reindex(columns=policies)
    everywhere = present.notna().all(axis=1)
    users_ok = everywhere[everywhere].index
    if len(users_ok) == 0:
        return None
    score = counts.reindex(users_ok).fillna(0).min(axis=1)
    candidates = score[score == score.max()].index
    first = two[(two["policy"] == policies[0]) & two["user_id"].isin(candidates)]
    last = first[first["round"] == first["round"].max()]
    lost = last.groupby("user_id")["shown_share"].min().fillna(0.0).sort_index(kind="stable")
    if lost.empty:
        return seed, int(candidates.min())
    order = lost.sort_values(kind="stable")
    return seed, int(order.index[(len(order) - 1) // 2])


def plot_alternating_user(
    users: pd.DataFrame,
    *,
    user: tuple[int, int] | None = None,
    policies: Sequence[str] | None = None,
    palette: Mapping[str, Any] | None = None,
    user_window: int | None = None,
) -> Figure | None:
    """Genre shares shown to one alternating-interest user over time, one panel per policy.

    Solid lines: share of genre A / genre B among the items shown to the user over the user
    window; dashed lines: the user's true current taste share of each genre. Panels are
    ``greedy`` and ``oracle`` if both are present, else every policy. The panel title is drawn in
    the policy's colour; the genre lines use near-black (A) and steel blue (B), not the policy
    colours.

    Parameters
    ----------
    users : rows of ``users.parquet`` (at least the alternating users of one seed).
    user : ``(seed, user_id)``; default :func:`select_alternating_user`.

    Returns
    -------
    The figure, or ``None`` if there is no alternating user under every policy.
    """
    apply_theme()
    if users is None or users.empty:
        return None
    pols = list(policies) if policies is not None else _alt_policies(users)
    if user is None:
        user = select_alternating_user(users, pols)
        if user is None:
            return None
    seed, uid = user
    u = users[(users["seed"] == seed) & (users["user_id"] == uid) & users["policy"].isin(pols)]
    if u.empty:
        return None
    pols = [p for p in pols if p in set(u["policy"])]
    palette = _palette_for(pols, palette)
    ga, gb = int(u["genre_a"].iloc[0]), int(u["genre_b"].iloc[0])
    x = _x(u)
    colours = {ga: "#1a1a1a", gb: "#4a90c2"}
    fig, axes = plt.subplots(
        1,
        len(pols),
        figsize=(5.6 * len(pols), 4.4),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    marker = "o" if u[x].nunique() <= 60 else None  # dots show gaps; too dense on long runs
    for ax, p in zip(axes[0], pols, strict=True):
        sub = u[u["policy"] == p]
        for g in (ga, gb):
            s = sub[sub["genre"] == g].sort_values(x)
            shown = s[s["shown_share"].notna()]
            ax.plot(shown[x], shown["shown_share"], color=colours[g], lw=1.8, marker=marker, ms=2.5)
            ax.plot(s[x], s["taste"], color=colours[g], lw=1.6, ls="--")
        ax.set_title(p, color=palette[p], fontweight="bold")
        ax.set_xlabel("day")
        ax.set_ylim(-0.03, 1.03)
        ax.margins(x=0.01)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel("genre share (0–1)")
    win = f" over the {user_window}-day user window" if user_window else ""
    handles = [
        Line2D([], [], color=colours[ga], lw=1.8, marker=marker, ms=3, label=f"shown: genre {ga} (A)"),
        Line2D([], [], color=colours[gb], lw=1.8, marker=marker, ms=3, label=f"shown: genre {gb} (B)"),
        Line2D([], [], color=colours[ga], lw=1.6, ls="--", label=f"true taste: genre {ga} (A)"),
        Line2D([], [], color=colours[gb], lw=1.6, ls="--", label=f"true taste: genre {gb} (B)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, frameon=False)
    fig.suptitle(
        f"Alternating-interest user {uid} (seed {seed})\n"
        f"share of genres {ga} and {gb} shown{win}, vs true taste"
    )
    return fig


# --------------------------------------------------------------------------------------------
# The run folder
# --------------------------------------------------------------------------------------------


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``fig`` atomically as ``<stem>.png`` (150 dpi) and ``<stem>.svg``; return the paths."""
    stem = Path(stem)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    atomic_save(png, lambda p: fig.savefig(p, format="png", dpi=150))
    if fig.get_layout_engine() is not None:  # keep the layout just computed: the SVG matches
        fig.set_layout_engine("none")  # the PNG and is not laid out a second time
    atomic_save(svg, lambda p: fig.savefig(p, format="svg", metadata={"Date": None}))
    return [png, svg]


def plot_run(run_dir: str | Path) -> list[Path]:
    """Make every figure of a results run folder into ``RUN_DIR/figures/`` (PNG and SVG).

    Figures whose inputs are missing (``exposure.parquet``, ``users.parquet``, or all of a
    figure's metrics) are skipped. Policies keep one colour across figures, in the order of the
    manifest's ``policies``.

    Returns
    -------
    Paths written, PNG then SVG for each figure, in the order trajectories, engagement,
    lorenz, alternating_user, all_metrics, then — for runs with at least three policies —
    policy_comparison and tradeoff.

    Raises
    ------
    ResultsError
        If the folder or ``metrics.parquet`` is missing or malformed.
    """
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    manifest = read_manifest(run_dir)
    exposure = read_exposure(run_dir)
    window = window_days(manifest)
    uw = manifest.get("user_window_days")
    if not isinstance(uw, int):
        cfg = manifest.get("config")
        m = cfg.get("metrics") if isinstance(cfg, Mapping) else None
        uw = m.get("user_window_days") if isinstance(m, Mapping) else None
    observed = set(metrics["policy"])
    if exposure is not None:
        observed |= set(exposure["policy"])
    palette = policy_palette(policy_order(manifest, observed))

    # one seed of the alternating users only: users.parquet can be large
    users = read_users(run_dir, seed=int(metrics["seed"].min()), kind="alternating")
    if users is not None and users.empty:
        users = read_users(run_dir, kind="alternating")
        if not users.empty:
            users = users[users["seed"] == users["seed"].min()]

    makers: list[tuple[str, Any]] = [
        (
            "trajectories",
            lambda: plot_trajectories(metrics, palette=palette, window=window, user_window=uw),
        ),
        (
            "engagement",
            lambda: plot_engagement(metrics, palette=palette, window=window, user_window=uw),
        ),
        (
            "lorenz",
            lambda: plot_lorenz(exposure, palette=palette, window=window) if exposure is not None else None,
        ),
        (
            "alternating_user",
            lambda: (
                plot_alternating_user(users, palette=palette, user_window=uw) if users is not None else None
            ),
        ),
        (
            "all_metrics",
            lambda: plot_all_metrics(metrics, palette=palette, window=window, user_window=uw),
        ),
    ]
    if metrics["policy"].nunique() >= MIN_POLICIES_FOR_COMPARISON:
        makers += [
            (
                "policy_comparison",
                lambda: plot_policy_comparison(metrics, palette=palette, window=window, user_window=uw),
            ),
            (
                "tradeoff",
                lambda: plot_tradeoff(metrics, palette=palette, last_days=window or 7, window=window),
            ),
        ]
    paths: list[Path] = []
    for stem, make in makers:  # one figure in memory at a time
        fig = make()
        if fig is None:
            continue
        try:
            paths += save_figure(fig, run_dir / "figures" / stem)
        finally:
            plt.close(fig)
    return paths
