"""Figures of an audit (the only audit module that imports matplotlib).

``trajectories``
    Every computable metric per window with its jackknife 95% interval; Sen's slope over the
    complete windows (dashed); incomplete windows hollow; for the Gini, the band a uniformly
    random placement of the same impressions would give. A panel whose alert fired has its
    title in vermillion.
``lorenz``
    Lorenz curves of item exposure, first vs last complete window.
``entropy``
    Distribution of per-user category entropy, first vs last complete window.
``position_ctr``
    CTR by position (1-based) with Wilson 95% intervals: all complete windows, first, last.

Theme and saving come from :mod:`simulator.plotting` (:func:`~simulator.plotting.apply_theme`,
:func:`~simulator.plotting.save_figure`), so audit figures look like run figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from simulator.audit.metrics import METRIC_INFO, position_ctr_summary
from simulator.metrics.functions import gini, lorenz_curve
from simulator.plotting import apply_theme, save_figure

if TYPE_CHECKING:
    from simulator.audit.core import AuditResult

__all__ = ["plot_entropy", "plot_lorenz", "plot_position_ctr", "plot_trajectories", "write_figures"]

_ORDER = ("gini", "coverage", "cdi", "long_tail_share", "popularity_bias", "entropy_shown", "ctr")


def _colours() -> dict[str, tuple]:
    pal = sns.color_palette("colorblind", 10)
    return {
        "main": pal[0],
        "first": pal[0],
        "last": pal[3],
        "alert": pal[3],
        "ref": (0.55, 0.55, 0.55),
        "pooled": pal[2],
    }


def _x(result: AuditResult) -> tuple[np.ndarray, str]:
    """Window midpoints for the x axis, and the axis label.

    Up to 14 windows the ticks sit on the windows and name their span (:func:`_short`); beyond,
    the axis is continuous (datetimes for timestamped logs).
    """
    grid = result.grid
    mids = np.array([grid.start(w) + grid.spec.width / 2 for w in range(grid.n_windows)])
    few = grid.n_windows <= 14
    if grid.datetime:
        import datetime as _dt

        year = (_dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(days=grid.start(0))).strftime("%Y")
        if few:
            return mids, f"window ({year}, UTC)"
        x = np.datetime64("1970-01-01T00:00:00", "s") + (mids * 86400).astype("timedelta64[s]")
        return x, "date (window midpoint, UTC)"
    unit = "rounds" if grid.spec.clock == "rounds" else "days"
    return mids, f"window ({unit})" if few else f"{unit[:-1]} (window midpoint)"


def display_name(result: AuditResult) -> str:
    """The log's last two path parts and its filters, e.g. ``obd/random/all.csv``."""
    parts = result.source.path.resolve().parts
    name = "/".join(parts[-3:]) if len(parts) >= 3 else str(result.source.path)
    if result.source.filters:
        name += " (" + ", ".join(f"{k}={v}" for k, v in result.source.filters.items()) + ")"
    return name


def _short(result: AuditResult, w: int) -> str:
    """Short tick label of window ``w``: its span in days, rounds or dates."""
    grid = result.grid
    a, b = grid.start(w), grid.end(w)
    whole = float(a).is_integer() and float(b).is_integer()
    if grid.datetime:
        import datetime as _dt

        epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
        if whole:
            sa = (epoch + _dt.timedelta(days=a)).strftime("%m-%d")
            sb = (epoch + _dt.timedelta(days=b - 1)).strftime("%m-%d")
            return sa if sa == sb else f"{sa}–\n{sb}"
        return (epoch + _dt.timedelta(days=a)).strftime("%m-%d\n%H:%M")
    if whole:
        return f"{a:g}" if b - a == 1 else f"{a:g}–{b - 1:g}"
    return f"{a:g}"


def _first_last(result: AuditResult) -> tuple[int | None, int | None]:
    tw = result.metrics.trend_windows
    if tw.size == 0:
        return None, None
    return int(tw[0]), int(tw[-1])


def plot_trajectories(result: AuditResult) -> Figure:
    """One panel per computable metric: values, 95% intervals, Sen's slope, alerts."""
    apply_theme()
    col = _colours()
    m = result.metrics
    names = [k for k in _ORDER if k in m.values]
    ncols = 2 if len(names) <= 4 else 3
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.9 * ncols, 3.3 * nrows + 1.0), squeeze=False, layout="constrained"
    )
    x, xlabel = _x(result)
    fired = {a.rule.metric for a in result.fired}
    band_visible = False
    for ax, name in zip(axes.flat, names, strict=False):
        v, lo, hi = m.values[name], m.low[name], m.high[name]
        ok = np.isfinite(v)
        comp = ok & m.complete & ~m.empty
        part = ok & ~comp
        if name == "gini" and m.uniform_gini is not None and np.isfinite(m.uniform_gini).any():
            u = m.uniform_gini
            okr = np.isfinite(u[:, 0])
            ax.fill_between(x[okr], u[okr, 1], u[okr, 2], color=col["ref"], alpha=0.25, lw=0)
            band_visible = bool(
                np.nanmax(u[okr, 2])
                >= np.nanmin(lo[np.isfinite(lo)] if np.isfinite(lo).any() else v[ok]) - 0.05
            )
        yerr = np.maximum(np.vstack([v - lo, hi - v]), 0.0)
        has_ci = np.isfinite(yerr).all(axis=0)
        ax.plot(x[comp], v[comp], color=col["main"], lw=1.6, marker="o", ms=4.5, zorder=3)
        sel = comp & has_ci
        if sel.any():
            ax.errorbar(
                x[sel],
                v[sel],
                yerr=yerr[:, sel],
                fmt="none",
                ecolor=col["main"],
                elinewidth=1.1,
                capsize=2.5,
                zorder=2,
            )
        if part.any():
            ax.plot(x[part], v[part], ls="none", marker="o", ms=5, mfc="white", mec=col["main"], zorder=3)
        tr = result.trends.get(name)
        if tr is not None and tr.windows.size >= 3 and math.isfinite(tr.sen.slope):
            ends = np.array([tr.windows[0], tr.windows[-1]], dtype=np.float64)  # window index
            yfit = tr.sen.intercept + tr.sen.slope * ends
            ax.plot(x[tr.windows[[0, -1]]], yfit, color=col["ref"], ls="--", lw=1.3, zorder=1)
        title = METRIC_INFO[name][0] + (" — ALERT" if name in fired else "")
        if tr is not None and tr.windows.size >= 3 and math.isfinite(tr.mk.p_value):
            arrow = {"increasing": "rising ↑", "decreasing": "falling ↓"}.get(tr.mk.trend, "no trend")
            p = tr.mk.p_value
            ptxt = f"p = {p:.2g}" if p >= 1e-4 else "p < 1e-4"
            title += f"\n{arrow} (Mann–Kendall {ptxt})"
        else:
            title += "\nno trend test (too few windows)"
        ax.set_title(title, fontsize="medium", color=col["alert"] if name in fired else "black")
        ax.set_ylabel(METRIC_INFO[name][1], fontsize="small")
        ax.set_xlabel(xlabel, fontsize="small")
        if ok.any():  # data (and CI) range with a margin; bounded metrics never far outside [0, 1]
            lo_y = float(np.nanmin(np.r_[v[ok], lo[ok]]))
            hi_y = float(np.nanmax(np.r_[v[ok], hi[ok]]))
            span = hi_y - lo_y
            pad = 0.08 * span if span > 0 else max(0.01 * abs(hi_y), 1e-3)
            bottom = lo_y - pad
            if name != "popularity_bias" and bottom < 0:  # non-negative metrics
                bottom = min(0.0, lo_y) - 0.02 * (span + pad)
            ax.set_ylim(bottom, hi_y + pad)
        if len(x) <= 14:  # ticks on the windows themselves
            ax.set_xticks(x)
            ax.set_xticklabels([_short(result, w) for w in range(len(x))])
        ax.tick_params(axis="x", labelsize="small")
        if result.grid.datetime and len(x) > 14:
            locator = mdates.AutoDateLocator(maxticks=6)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], color=col["main"], marker="o", lw=1.6, label="complete window (95% jackknife CI)")
    ]
    if (~m.complete & ~m.empty).any():
        handles.append(
            Line2D(
                [],
                [],
                color=col["main"],
                marker="o",
                mfc="white",
                ls="none",
                label="incomplete window (not tested)",
            )
        )
    handles.append(Line2D([], [], color=col["ref"], ls="--", lw=1.3, label="Sen's slope"))
    if band_visible:
        handles.append(
            plt.Rectangle(
                (0, 0), 1, 1, color=col["ref"], alpha=0.25, label="Gini under uniform placement (95%)"
            )
        )
    fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize="small"
    )
    fig.suptitle(
        f"Feedback-loop audit of {display_name(result)}: {result.spec.describe()} windows "
        f"({result.info.n_items} items{'' if result.info.catalog_known else ' seen; catalog size unknown'})"
    )
    return fig


def plot_lorenz(result: AuditResult) -> Figure | None:
    """Lorenz curves of exposure in the first and last complete windows."""
    first, last = _first_last(result)
    if first is None:
        return None
    apply_theme()
    col = _colours()
    exposure = result.counts.exposure
    fig, ax = plt.subplots(figsize=(5.6, 5.4), layout="constrained")
    ax.plot([0, 1], [0, 1], color=col["ref"], ls="--", lw=1, label="equality")
    pairs = [(first, "first", col["first"])] + ([(last, "last", col["last"])] if last != first else [])
    for w, which, c in pairs:
        e = exposure[w]
        lx, ly = lorenz_curve(e)
        if lx.size > 2001:  # thin big catalogs for the drawing (keeps the SVG small)
            keep = np.unique(np.linspace(0, lx.size - 1, 2001).round().astype(int))
            lx, ly = lx[keep], ly[keep]
        ax.plot(lx, ly, color=c, lw=2, label=f"{which}: {result.labels[w]} (Gini {gini(e):.3f})")
    scope = (
        f"whole catalog, {result.info.n_items} items"
        if result.info.catalog_known
        else f"{result.info.n_items} items seen in the log (catalog size unknown)"
    )
    ax.set_title(f"Lorenz curves of item exposure\n({scope})", fontsize="medium")
    ax.set_xlabel("share of items (least exposed first)")
    ax.set_ylabel("share of impressions")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_entropy(result: AuditResult) -> Figure | None:
    """Per-user category entropy distribution, first vs last complete window; None if unknown."""
    m = result.metrics
    first, last = _first_last(result)
    if first is None or "entropy_shown" not in m.values or first not in m.entropy_users:
        return None
    apply_theme()
    col = _colours()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    bins = np.linspace(0, 1, 26)
    pairs = [(first, "first", col["first"])] + ([(last, "last", col["last"])] if last != first else [])
    for w, which, c in pairs:
        h = m.entropy_users[w]
        wts = np.full(h.size, 1.0 / max(h.size, 1))
        ax.hist(h, bins=bins, weights=wts, histtype="stepfilled", alpha=0.25, color=c)
        ax.hist(
            h,
            bins=bins,
            weights=wts,
            histtype="step",
            lw=1.8,
            color=c,
            label=f"{which}: {result.labels[w]} (mean {h.mean():.3f}, {h.size:,} users)",
        )
        ax.axvline(h.mean(), color=c, ls="--", lw=1.2)
    who = "user segments" if result.source.user is None else "users"
    ax.set_title(
        f"Per-{who[:-1]} category entropy of the items shown (H / ln {result.info.n_categories})",
        fontsize="medium",
    )
    ax.set_xlabel("normalised entropy (0 = one category, 1 = all equally)")
    ax.set_ylabel(f"share of {who} (bins of 0.04)")
    ax.set_xlim(0, 1)
    ax.legend(loc="upper right", fontsize="small")
    return fig


def plot_position_ctr(result: AuditResult) -> Figure | None:
    """CTR by position with Wilson 95% intervals."""
    tw = result.metrics.trend_windows
    if tw.size == 0:
        return None
    apply_theme()
    col = _colours()
    first, last = int(tw[0]), int(tw[-1])
    series = [(position_ctr_summary(result.counts, tw, "all complete windows"), col["pooled"])]
    if first != last:
        series += [
            (
                position_ctr_summary(result.counts, np.array([first]), f"first: {result.labels[first]}"),
                col["first"],
            ),
            (
                position_ctr_summary(result.counts, np.array([last]), f"last: {result.labels[last]}"),
                col["last"],
            ),
        ]
    k = series[0][0].impressions.size
    fig, ax = plt.subplots(figsize=(max(5.2, 0.7 * k + 3), 4.2), layout="constrained")
    width = 0.8 / len(series)
    pos = np.arange(1, k + 1)
    for j, (s, c) in enumerate(series):
        off = (j - (len(series) - 1) / 2) * width
        ok = np.isfinite(s.ctr)
        err = np.maximum(np.vstack([s.ctr - s.low, s.high - s.ctr]), 0.0)  # round-off at 0 clicks
        ax.errorbar(
            pos[ok] + off,
            s.ctr[ok],
            yerr=err[:, ok],
            fmt="o",
            color=c,
            ms=5,
            capsize=3,
            label=f"{s.label} (χ² equal CTR: p {_ptxt(s.chi2_p)})" if math.isfinite(s.chi2_p) else s.label,
        )
    ax.set_xticks(pos)
    ax.set_xlabel("position (1 = top)")
    ax.set_ylabel("CTR (clicks per impression)")
    ax.set_ylim(bottom=0)
    ax.set_title("Click-through rate by position (Wilson 95% intervals)", fontsize="medium")
    ax.legend(fontsize="small", loc="upper right")
    return fig


def _ptxt(p: float) -> str:
    return f"= {p:.2g}" if p >= 1e-4 else "< 1e-4"


def write_figures(result: AuditResult, folder: Path) -> list[Path]:
    """Draw every figure into ``folder`` (PNG and SVG); return the PNG paths written."""
    out: list[Path] = []
    makers = (
        ("trajectories", plot_trajectories),
        ("lorenz", plot_lorenz),
        ("entropy", plot_entropy),
        ("position_ctr", plot_position_ctr),
    )
    for stem, make in makers:
        fig = make(result)
        if fig is None:
            continue
        try:
            out.append(save_figure(fig, Path(folder) / stem)[0])
        finally:
            plt.close(fig)
    return out
