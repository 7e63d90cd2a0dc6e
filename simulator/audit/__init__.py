"""Audit a recommendation log for feedback-loop symptoms — the *detection* half of the seed.

"Before you can break a feedback loop, you need to confirm it exists and measure its severity."
The audit reads a log a team already has (recloop's Parquet/CSV impression schema, or the Open
Bandit Dataset), cuts it into time windows, and per window measures what a concentrating loop
changes; then it tests each metric for a trend, raises alerts with their evidence, and writes a
report a design review can read::

    log ──► reader (validate, stream batches) ──► windows (per-window counters, bounded memory)
        ──► metrics (Gini, coverage, CDI, long-tail share, popularity bias, per-user entropy,
            CTR by position; jackknife CIs) ──► trends (Mann–Kendall, Sen's slope)
        ──► alerts (thresholds, evidence) ──► report (report.md, tables, figures)

Modules: :mod:`~simulator.audit.reader` (formats, validation, streaming),
:mod:`~simulator.audit.sampling` (hash samples of users), :mod:`~simulator.audit.windows`
(window grid and counters), :mod:`~simulator.audit.catalog` (catalog size, categories,
popularity), :mod:`~simulator.audit.metrics`, :mod:`~simulator.audit.trends`,
:mod:`~simulator.audit.alerts`, :mod:`~simulator.audit.core` (the two passes),
:mod:`~simulator.audit.report` and :mod:`~simulator.audit.figures` (matplotlib).

Example
-------
>>> from simulator.audit import AuditOptions, audit_log, write_audit
>>> result = audit_log("results/run/logs", AuditOptions(window="7d", policy="greedy"))  # doctest: +SKIP
>>> [a.rule.name for a in result.fired]  # doctest: +SKIP
['gini_rising', 'coverage_falling', ...]
>>> write_audit(result, "results/audit/greedy")  # doctest: +SKIP
"""

from simulator.audit.alerts import DEFAULT_RULES, Alert, AlertRule, configure_rules
from simulator.audit.core import AuditOptions, AuditResult, audit_log
from simulator.audit.report import default_out_dir, write_audit
from simulator.audit.trends import mann_kendall, min_attainable_p, sens_slope
from simulator.audit.windows import WindowSpec, parse_window

__all__ = [
    "DEFAULT_RULES",
    "Alert",
    "AlertRule",
    "AuditOptions",
    "AuditResult",
    "WindowSpec",
    "audit_log",
    "configure_rules",
    "default_out_dir",
    "mann_kendall",
    "min_attainable_p",
    "parse_window",
    "sens_slope",
    "write_audit",
]
