"""The simulation of one (policy, seed) cell: a ``mesa.Model`` stepped by a SimPy clock.

One round (one day) reads as the story (DESIGN.md §2)::

    sessions → recommend → click → users consume → log → online update → metrics

SimPy owns time. Within each day the clock fires, in this order: scheduled interventions
(t + 0.0), retraining on its cadence (t + 0.1), taste shifts (t + 0.2) and the round of sessions
(t + 0.5, the ``time`` written to the log). Mesa owns the agents (thin views onto the population
arrays, see :mod:`simulator.users.agent`) and the ``DataCollector``; NumPy owns the state.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import mesa
import numpy as np
import simpy

from simulator.catalog.catalog import make_catalog
from simulator.clicks.models import make_click_model
from simulator.config import ExperimentConfig
from simulator.logs.impressions import ImpressionLogWriter
from simulator.logs.window import LogWindow
from simulator.metrics.tracker import METRIC_NAMES, MetricTracker
from simulator.policies import WorldView, make_policy, set_param
from simulator.rng import stream
from simulator.users.agent import UserAgent
from simulator.users.population import active_users, make_population, organic_history

#: Offsets (days) of the clock's events within a day; they fix the order of same-day events.
INTERVENTION_AT, RETRAIN_AT, DRIFT_AT, SESSIONS_AT = 0.0, 0.1, 0.2, 0.5
#: Mesa agents are created for every user up to this population size, else for tracked users.
MAX_AGENT_VIEWS = 20_000


def _read_metric(model: RecloopModel, name: str) -> float:
    return model.metrics_.get(name, float("nan"))


class RecloopModel(mesa.Model):
    """One policy in one world for one seed.

    Parameters
    ----------
    config : ExperimentConfig
        The validated experiment config.
    policy_label : str
        Key of ``config.policies`` to run.
    seed : int
        The run's seed; every component draws from its own stream of it (:mod:`simulator.rng`).
    log_dir : Path, optional
        Folder for this cell's impression-log parts; no log is written when None.

    Attributes
    ----------
    metrics_ : dict of str to float
        The last round's metric values.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        policy_label: str,
        seed: int,
        log_dir: Path | None = None,
    ) -> None:
        super().__init__(rng=int(seed))
        self.config, self.policy_label, self.seed = config, policy_label, int(seed)
        sim = config.simulation
        self.k = sim.slate_size

        # World: identical for every policy of this seed (its own streams).
        self.catalog = make_catalog(config.catalog, stream(seed, "catalog"))
        self.population = make_population(config.users, config.relevance, self.catalog, stream(seed, "users"))
        self.rng_sessions = stream(seed, "sessions")
        self.rng_drift = stream(seed, "drift")
        self.rng_clicks = stream(seed, "clicks")
        self.rng_policy = stream(seed, f"policy:{policy_label}")
        self.rng_regret = stream(seed, "regret")
        cm = config.click_model
        self.click_model = (
            make_click_model("pbm", eta=cm.eta, examination=tuple(cm.examination) if cm.examination else None)
            if cm.type == "pbm"
            else make_click_model(cm.type)
        )

        spec = config.policies[policy_label]
        self.policy = make_policy(spec.type, policy_label, **spec.params)
        self.policy.reset(
            WorldView(self.population.n_users, self.catalog, self.k, self.population),
            stream(seed, f"policy-init:{policy_label}"),
        )
        self.window = LogWindow(sim.train_window_days, self.policy.needs_impressions)
        day, user, item = organic_history(self.population, config.history, stream(seed, "history"))
        self.window.add_organic(day, user, item)

        self.log = (
            ImpressionLogWriter(
                log_dir,
                policy_label,
                self.population.n_users,
                sim.log_fraction,
                stream(seed, "log"),
            )
            if log_dir is not None
            else None
        )

        tracked = _pick_tracked(
            self.population.alternating, config.metrics.n_tracked_users, stream(seed, "metrics")
        )
        self.tracker = MetricTracker(config.metrics, self.catalog, self.population, tracked)
        self.metrics_: dict[str, float] = {}
        self.user_rows: list[dict[str, np.ndarray]] = []
        self.exposure_first: np.ndarray | None = None

        n_views = self.population.n_users if self.population.n_users <= MAX_AGENT_VIEWS else 0
        rows = np.arange(n_views) if n_views else tracked
        for r in rows:
            UserAgent(self, int(r))

        self.datacollector = mesa.DataCollector(
            model_reporters={name: partial(_read_metric, name=name) for name in METRIC_NAMES}
        )

        # The clock.
        self.env = simpy.Environment()
        self.day = 0
        self.env.process(self._rounds())
        self.env.process(self._retraining())
        self.env.process(self._taste_shifts())
        for iv in config.interventions:
            if iv.policy == policy_label:
                self.env.process(self._intervention(iv.day, iv.param, iv.value))

    # ------------------------------------------------------------------ clock processes
    def _rounds(self):
        yield self.env.timeout(SESSIONS_AT)
        while True:
            self.step()
            yield self.env.timeout(1.0)

    def _retraining(self):
        every = self.config.simulation.retrain_every_days
        yield self.env.timeout(RETRAIN_AT)
        while True:
            today = int(self.env.now)
            self.window.advance(today)
            self.policy.fit(self.window)
            yield self.env.timeout(float(every))

    def _taste_shifts(self):
        yield self.env.timeout(DRIFT_AT)
        while True:
            self.population.advance(float(int(self.env.now)), self.rng_drift)
            yield self.env.timeout(1.0)

    def _intervention(self, day: int, param: str, value: object):
        yield self.env.timeout(day + INTERVENTION_AT)
        set_param(self.policy, param, value, self.policy_label)

    # ------------------------------------------------------------------ one round
    def step(self) -> None:
        """One round: every active user gets one slate; the loop closes once."""
        day, t = int(self.env.now), float(self.env.now)
        users = active_users(self.population, self.rng_sessions)
        slate = self.policy.recommend(users, self.k, self.rng_policy)
        relevance = self.population.relevance(users, slate.items)
        feedback = self.click_model.simulate(relevance, self.rng_clicks)
        self.population.consume(users, slate.items, feedback.clicks)
        self._log(day, t, users, slate, feedback)
        self.policy.update(users, slate, feedback)
        self.metrics_ = self.tracker.update(users, slate, feedback, *self._oracle_utility(users))
        self.datacollector.collect(self)
        self._record_users(day, t)
        self.day = day + 1

    def _log(self, day, t, users, slate, feedback) -> None:
        self.window.add_round(day, users, slate.items, feedback.clicks, slate.pscore, feedback.examination)
        if self.log is not None:
            self.log.append(
                day,
                t,
                users,
                slate.items,
                slate.scores,
                slate.pscore,
                slate.inclusion_pscore,
                feedback.examination,
                feedback.clicks,
                slate.extras,
            )

    def _oracle_utility(self, users: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Expected clicks of the oracle slate for a uniform sample of the active users."""
        cfg = self.config.metrics
        if not cfg.regret or users.size == 0:
            return None, None
        rows = np.arange(users.size)
        if 0 < cfg.regret_users < users.size:
            rows = np.sort(self.rng_regret.choice(users.size, cfg.regret_users, replace=False))
        _, rel = self.population.top_k(users[rows], self.k)
        _, p = self.click_model.click_probabilities(rel)
        return p.sum(axis=1, dtype=np.float64), rows

    def _record_users(self, day: int, t: float) -> None:
        if day + 1 == self.config.metrics.window_days:
            self.exposure_first = self.tracker.exposure.copy()
        snap = self.tracker.user_snapshot()
        snap["round"], snap["time"] = day, t
        self.user_rows.append(snap)

    def run(self, n_rounds: int | None = None) -> None:
        """Advance the clock by ``n_rounds`` days (default: the config's ``n_rounds``)."""
        n = self.config.experiment.n_rounds if n_rounds is None else n_rounds
        self.env.run(until=self.day + n)
        if self.log is not None:
            self.log.close()


def _pick_tracked(alternating: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sample ``n`` users to track: half alternating-interest users (if there are), half stable."""
    alt, stable = np.flatnonzero(alternating), np.flatnonzero(~alternating)
    n_alt = min(alt.size, n // 2)
    n_stable = min(stable.size, n - n_alt)
    n_alt = min(alt.size, n - n_stable)
    picked = np.concatenate(
        [rng.choice(alt, n_alt, replace=False), rng.choice(stable, n_stable, replace=False)]
    )
    return np.sort(picked)
