"""Shared pieces of the paper replications: config loading, adapters to recloop's policies,
ranking helpers, statistics and the tidy result table.

The replications build their own small worlds in each paper's terms (latent utility vectors, a
growing catalog, groups), but rank with recloop's registered policies where they fit: the
adapters here let ``greedy`` (implicit ALS), ``popularity`` and ``oracle`` run on such a world
through their public ``reset`` / ``fit`` / ``score_chunks`` methods.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import stats

from simulator.config import apply_overrides
from simulator.errors import ConfigError

#: Columns of every replication's tidy measurement table (``measurements.parquet``).
TABLE_COLUMNS = ("rep", "policy", "step", "group", "metric", "value")


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------
class Section(BaseModel):
    """A config table: unknown keys are errors, values are frozen after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSection(Section):
    """``[run]``: seed and repetitions (each repetition draws a fresh world from ``(seed, rep)``)."""

    seed: int = Field(0, ge=0, description="base seed; repetition r uses the streams of (seed, r)")
    reps: int = Field(10, ge=1, le=10_000, description="independent repetitions (fresh worlds)")


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        f = model.model_fields.get(str(part))
        ann = getattr(f, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def format_errors(err: ValidationError, model: type[BaseModel], source: str) -> ConfigError:
    """One :class:`ConfigError` naming every invalid key (``world.n_users: ...``)."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parent = _model_at(model, e["loc"][:-1])
            close = difflib.get_close_matches(
                str(e["loc"][-1]), list(parent.model_fields) if parent else [], n=1
            )
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in {"model_type", "dict_type"}:
            msg += f"; got {e['input']!r}"
        lines.append(f"  {loc or '<root>'}: {msg}")
    return ConfigError(f"invalid replication config {source}:\n" + "\n".join(lines))


def parse_config(model: type[BaseModel], data: dict[str, Any], source: str = "<dict>") -> Any:
    """Validate ``data`` against a replication's schema.

    Raises
    ------
    ConfigError
        Listing every invalid key with its rule and value.
    """
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise format_errors(err, model, source) from None


def load_config(model: type[BaseModel], path: str | Path, overrides: list[str] | None = None) -> Any:
    """Read a replication TOML, apply ``key.path=value`` overrides and validate it.

    Raises
    ------
    ConfigError
        Missing file, malformed TOML or an invalid key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"replication config not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"malformed TOML in {path}: {err}") from None
    return parse_config(model, apply_overrides(data, overrides or []), source=str(path))


# --------------------------------------------------------------------------------------------
# adapters: a latent world seen through recloop's WorldView
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LatentCatalog:
    """The part of :class:`~simulator.catalog.catalog.Catalog` the model policies read.

    ``greedy`` and ``popularity`` only need ``n_items``; ``genre`` (all 0 unless given) and
    ``embedding`` make it usable by feature-based policies too.
    """

    embedding: np.ndarray
    genre: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return int(self.embedding.shape[0])

    @property
    def n_genres(self) -> int:
        return 1 if self.genre is None else int(self.genre.max()) + 1


@dataclass(eq=False)
class LatentPopulation:
    """True utilities ``utility[u, i]`` exposed as :class:`Population` exposes relevance.

    Lets the registered ``oracle`` policy rank a replication's world by its ground truth (the
    "ideal" recommender of Chaney et al.). ``utility`` is read at call time, so a world that
    changes it in place is seen as it is now.
    """

    utility: np.ndarray

    @property
    def n_users(self) -> int:
        return int(self.utility.shape[0])

    def relevance_chunks(self, users: np.ndarray):
        """Yield ``(rows, utility[users[rows]])`` (one block: the worlds here are small)."""
        yield slice(0, users.size), self.utility[users].astype(np.float32)

    def top_k(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        from simulator.selection import top_k_rows

        return top_k_rows(self.utility[users].astype(np.float32), k)


@dataclass
class StreamLog:
    """All consumption so far, in the shape of :class:`~simulator.logs.window.LogWindow`'s streams.

    The replications retrain on everything consumed so far (no window), as the papers do.
    """

    users: list[np.ndarray] = field(default_factory=list)
    items: list[np.ndarray] = field(default_factory=list)

    def add(self, users: np.ndarray, items: np.ndarray) -> None:
        self.users.append(np.asarray(users, dtype=np.int32).ravel())
        self.items.append(np.asarray(items, dtype=np.int32).ravel())

    def streams(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.users:
            return np.empty(0, np.int32), np.empty(0, np.int32)
        return np.concatenate(self.users), np.concatenate(self.items)

    def stream_counts(self, n_users: int, n_items: int, transposed: bool = False):
        """Stream counts as LogWindow.stream_counts gives them (recomputed: small worlds)."""
        from simulator.training.als import stream_counts

        counts = stream_counts(*self.streams(), n_users, n_items)
        return counts.T.tocsr() if transposed else counts


def make_world_policy(name: str, n_users: int, catalog: Any, population: Any, rng, **params: Any):
    """A registered recloop policy bound to a replication world (``reset`` called)."""
    from simulator.policies import WorldView, make_policy

    policy = make_policy(name, name, **params)
    policy.reset(WorldView(n_users, catalog, 1, population), rng)
    return policy


def policy_scores(policy: Any, users: np.ndarray) -> np.ndarray:
    """The policy's full (n, I) score matrix from ``score_chunks``, float64 (small worlds only)."""
    blocks = [(rows, np.asarray(block, dtype=np.float64)) for rows, block in policy.score_chunks(users)]
    out = np.empty((users.size, blocks[0][1].shape[1]) if blocks else (0, 0), dtype=np.float64)
    for rows, block in blocks:
        out[rows] = block
    return out


# --------------------------------------------------------------------------------------------
# ranking and small metric helpers
# --------------------------------------------------------------------------------------------
def rank_items(scores: np.ndarray, allowed: np.ndarray, rng: np.random.Generator, length: int) -> np.ndarray:
    """The ``length`` best allowed items per row, best first; ties in random order.

    Parameters
    ----------
    scores : ndarray of shape (n, I), float
    allowed : ndarray of shape (n, I), bool
        Every row must have at least ``length`` allowed items.
    rng : numpy.random.Generator
        Draws one permutation of the ``I`` columns per call; the sort runs on the permuted
        columns, so which of several tied items comes first is random from call to call (within
        one call, rows with the same ties order them alike).

    Returns
    -------
    ndarray of shape (n, length), int64
    """
    perm = rng.permutation(scores.shape[1])
    key = np.where(allowed[:, perm], -scores[:, perm], np.inf)
    if length == 1:
        return perm[np.argmin(key, axis=1)][:, None]
    if length < key.shape[1] // 4:
        part = np.argpartition(key, length - 1, axis=1)[:, :length]
        order = np.take_along_axis(part, np.argsort(np.take_along_axis(key, part, 1), axis=1), 1)
    else:
        order = np.argsort(key, axis=1)[:, :length]
    return perm[order]


def user_knn_scores(counts: np.ndarray, n_neighbors: int) -> np.ndarray:
    """User-based collaborative filtering on a (users, items) count matrix.

    Cosine similarity between users' count rows; each user's score of an item is the
    similarity-weighted count of the item among the user's ``n_neighbors`` most similar other
    users (Resnick et al. 1994; the "collaborative" recommender of Fleder & Hosanagar 2009).

    Returns
    -------
    ndarray of shape (n_users, n_items), float64
    """
    x = np.asarray(counts, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1)
    unit = np.divide(x, norm[:, None], out=np.zeros_like(x), where=norm[:, None] > 0)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    k = min(n_neighbors, x.shape[0] - 1)
    if k <= 0:
        return np.zeros_like(x)
    nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    w = np.take_along_axis(sim, nn, axis=1)
    w = np.where(np.isfinite(w), np.maximum(w, 0.0), 0.0)
    return np.einsum("uk,uki->ui", w, x[nn])


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise Jensen–Shannon divergence (base 2, in [0, 1]) of two (n, G) distributions."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    q = q / np.maximum(q.sum(axis=1, keepdims=True), 1e-300)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ratio = np.divide(a, b, out=np.ones_like(a), where=(a > 0) & (b > 0))
        return (a * np.log2(ratio)).sum(axis=1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def mean_ci(values: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval ``(mean, low, high)`` of independent values.

    NaNs are dropped; with fewer than two values the interval is ``(mean, nan, nan)``.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - half, m + half


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
class Rows:
    """Accumulates tidy rows ``(rep, policy, step, group, metric, value)`` as column lists."""

    def __init__(self) -> None:
        self._cols: dict[str, list[Any]] = {c: [] for c in TABLE_COLUMNS}

    def add(self, rep: int, policy: str, step: int, metric: str, value: float, group: str = "all") -> None:
        for c, v in zip(TABLE_COLUMNS, (rep, policy, step, group, metric, float(value)), strict=True):
            self._cols[c].append(v)

    def add_series(
        self, rep: int, policy: str, metric: str, values: np.ndarray, group: str = "all", start: int = 0
    ) -> None:
        for t, v in enumerate(np.asarray(values, dtype=np.float64), start=start):
            self.add(rep, policy, t, metric, v, group)

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self._cols)
        return df.astype(
            {"rep": "int32", "policy": "string", "step": "int32", "group": "string", "metric": "string"}
        )


@dataclass
class ReplicationResult:
    """What a replication run measured.

    Attributes
    ----------
    name : str
        The replication's registry name (``chaney``, ``fleder``, ``mansoury``, ``jiang``).
    config : pydantic model
        The validated config that produced it.
    table : pandas.DataFrame
        Tidy measurements (:data:`TABLE_COLUMNS`).
    findings : dict
        The headline numbers the README and the tests read (floats and small tables).
    """

    name: str
    config: Any
    table: pd.DataFrame
    findings: dict[str, Any]


def write_result(
    result: ReplicationResult, out_dir: str | Path, summary_md: str, figures: dict
) -> list[Path]:
    """Write ``measurements.parquet``, ``findings.json``, ``config.json``, ``summary.md`` and the
    figures (PNG + SVG) atomically into ``out_dir``; return the paths written."""
    import matplotlib.pyplot as plt

    from simulator.io import atomic_write_json, atomic_write_text, write_parquet
    from simulator.plotting import save_figure

    out = Path(out_dir)
    paths = [out / "measurements.parquet", out / "findings.json", out / "config.json", out / "summary.md"]
    write_parquet(paths[0], result.table)
    atomic_write_json(paths[1], result.findings)
    atomic_write_json(paths[2], result.config.model_dump(mode="json"))
    atomic_write_text(paths[3], summary_md)
    for stem, fig in figures.items():
        try:
            paths += save_figure(fig, out / "figures" / stem)
        finally:
            plt.close(fig)
    return paths


def fmt_ci(m: float, lo: float, hi: float, digits: int = 3) -> str:
    """``m [lo, hi]`` with ``digits`` decimals."""
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
