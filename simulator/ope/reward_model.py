"""Reward model q̂(x, a, k) for the direct method and the doubly robust family.

A regularised generalised linear model on a fixed, documented feature map, fitted from the log
with optional K-fold cross-fitting, returning predictions in the (n_rounds, n_actions,
len_list) convention that :mod:`simulator.ope.estimators` expects.

Feature map (x standardised with the training mean and standard deviation):

    φ(x, a, k) = [ x ,  e_a ,  e_k ,  x ⊗ e_a ]

with e_a the one-hot of the action (n_actions), e_k the one-hot of the position (dropped when
len_list = 1) and x ⊗ e_a the context copied into the block of action a (d · n_actions; only
with ``interactions=True``), i.e. a per-action linear model in x sharing a common part. The
design matrix is sparse (CSR), so fitting costs O(n · d) memory. Without a context, φ is
[e_a, e_k]: a shrunk per-(action, position) mean.

The link is logistic (``LogisticRegression``, L2 penalty C = 1 / regularization) for binary
rewards and identity (``Ridge``, alpha = regularization) otherwise. Because the score is
linear in φ, predictions for all (a, k) are computed in closed form from the coefficients,
z[i, a, k] = b + x_i·β_x + β_a[a] + β_k[k] + x_i·B[:, a], without building the
(n · n_actions · len_list)-row design matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from simulator.errors import ValidationError
from simulator.ope._validation import as_1d_float, as_1d_int

__all__ = ["RewardModel"]

Kind = Literal["auto", "logistic", "ridge"]


@dataclass
class RewardModel:
    """Regularised GLM reward model with K-fold cross-fitting.

    Parameters
    ----------
    kind : {"auto", "logistic", "ridge"}, default "auto"
        Link; "auto" picks "logistic" when every reward is 0 or 1, else "ridge".
    regularization : float, default 1.0
        L2 strength (> 0): ``C = 1/regularization`` for logistic, ``alpha`` for ridge.
    interactions : bool, default True
        Include the action-specific context block x ⊗ e_a (see the module docstring).
    max_iter : int, default 1000
        Iteration cap of the logistic solver (lbfgs).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,), float64
        Coefficients over φ, in the order [x, e_a, e_k, x ⊗ e_a] (learned).
    intercept_ : float
        Intercept b (learned).
    kind_ : {"logistic", "ridge", "constant"}
        The link used ("constant" if the training rewards were all equal) (learned).
    x_mean_, x_scale_ : ndarray of shape (n_features_context,), float64
        Standardisation of the context (learned).
    n_actions_, len_list_, n_context_ : int
        Dimensions seen in ``fit`` (learned).

    Raises
    ------
    ValidationError
        On invalid hyperparameters.

    References
    ----------
    Dudík, M., Langford, J. & Li, L. (2011). Doubly robust policy evaluation and learning. ICML.
    Chernozhukov, V. et al. (2018). Double/debiased machine learning for treatment and structural
    parameters. The Econometrics Journal 21(1) (cross-fitting).
    """

    kind: Kind = "auto"
    regularization: float = 1.0
    interactions: bool = True
    max_iter: int = 1000

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "logistic", "ridge"):
            raise ValidationError(
                f"RewardModel.kind must be one of ('auto', 'logistic', 'ridge'); got {self.kind!r}"
            )
        reg = self.regularization
        if isinstance(reg, bool) or not isinstance(reg, int | float) or not 0 < reg < np.inf:
            raise ValidationError(f"RewardModel.regularization must be a finite float > 0; got {reg!r}")
        if not isinstance(self.interactions, bool):
            raise ValidationError(f"RewardModel.interactions must be a bool; got {self.interactions!r}")
        it = self.max_iter
        if isinstance(it, bool) or not isinstance(it, int) or it < 1:
            raise ValidationError(f"RewardModel.max_iter must be an int >= 1; got {it!r}")

    # -- inputs ---------------------------------------------------------------------------------

    @staticmethod
    def _inputs(
        context: object,
        action: object,
        reward: object,
        position: object,
        n_actions: object,
        len_list: object,
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, int, int]:
        for name, value in (("n_actions", n_actions), ("len_list", len_list)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValidationError(f"{name} must be an int >= 1; got {value!r}")
        n_actions, len_list = int(n_actions), int(len_list)  # type: ignore[arg-type]
        act_arr = np.asarray(action)
        if act_arr.ndim != 1:
            raise ValidationError(f"action must be a 1-D array; got shape {act_arr.shape}")
        n = act_arr.shape[0]
        if n == 0:
            raise ValidationError("action must hold at least one round; got length 0")
        act = as_1d_int("action", act_arr, n, n_actions, "n_actions")
        rew = as_1d_float("reward", reward, n)
        if position is None:
            pos = np.zeros(n, dtype=np.intp)
        else:
            pos = as_1d_int("position", position, n, len_list, "len_list")
        x = None if context is None else RewardModel._context(context, n)
        return x, act, rew, pos, n_actions, len_list

    @staticmethod
    def _context(context: object, n: int | None) -> np.ndarray:
        x = np.asarray(context)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise ValidationError(f"context must be a 2-D array (n_rounds, d); got shape {x.shape}")
        if n is not None and x.shape[0] != n:
            raise ValidationError(f"context must have n_rounds = {n} rows (len(action)); got {x.shape[0]}")
        if x.dtype.kind not in "biuf":
            raise ValidationError(f"context must be numeric; got dtype {x.dtype}")
        x = x.astype(np.float64, copy=False)
        if not np.isfinite(x).all():
            i, j = np.argwhere(~np.isfinite(x))[0]
            raise ValidationError(f"context must be finite; got {x[i, j]} at round {i}, column {j}")
        return x

    # -- design ---------------------------------------------------------------------------------

    def _design(self, xs: np.ndarray | None, act: np.ndarray, pos: np.ndarray) -> sp.csr_matrix:
        """Sparse φ(x_i, a_i, k_i) for the logged rows, shape (n, n_features)."""
        n = act.shape[0]
        d = 0 if xs is None else xs.shape[1]
        n_actions, len_list = self.n_actions_, self.len_list_
        use_pos = len_list > 1
        use_inter = self.interactions and d > 0
        cols, vals = [], []
        offset = 0
        if d:
            cols.append(np.broadcast_to(np.arange(d), (n, d)))
            vals.append(xs)
            offset += d
        cols.append((offset + act)[:, None])
        vals.append(np.ones((n, 1)))
        offset += n_actions
        if use_pos:
            cols.append((offset + pos)[:, None])
            vals.append(np.ones((n, 1)))
            offset += len_list
        if use_inter:
            cols.append(offset + act[:, None] * d + np.arange(d)[None, :])
            vals.append(xs)
            offset += d * n_actions
        col = np.concatenate(cols, axis=1)
        val = np.concatenate(vals, axis=1)
        per_row = col.shape[1]
        indptr = np.arange(0, n * per_row + 1, per_row)
        return sp.csr_matrix((val.ravel(), col.ravel(), indptr), shape=(n, offset))

    def _standardise(self, x: np.ndarray | None) -> np.ndarray | None:
        if x is None:
            return None
        return (x - self.x_mean_) / self.x_scale_

    # -- public ---------------------------------------------------------------------------------

    def fit(
        self,
        *,
        action: np.ndarray,
        reward: np.ndarray,
        n_actions: int,
        context: np.ndarray | None = None,
        position: np.ndarray | None = None,
        len_list: int = 1,
        sample_weight: np.ndarray | None = None,
    ) -> RewardModel:
        """Fit q̂ on the logged rounds.

        Parameters
        ----------
        action : ndarray of shape (n_rounds,), int
            Logged actions in [0, n_actions).
        reward : ndarray of shape (n_rounds,), float
            Observed rewards.
        n_actions : int
            Number of actions.
        context : ndarray of shape (n_rounds, d), float, optional
            Context features; None fits per-(action, position) effects only.
        position : ndarray of shape (n_rounds,), int, optional
            Logged positions in [0, len_list); None means all zeros.
        len_list : int, default 1
            Number of positions.
        sample_weight : ndarray of shape (n_rounds,), float, optional
            Per-round weights of the loss (e.g. importance weights), >= 0.

        Returns
        -------
        self

        Raises
        ------
        ValidationError
            On shape, range or finiteness errors in the inputs.
        """
        x, act, rew, pos, n_actions, len_list = self._inputs(
            context, action, reward, position, n_actions, len_list
        )
        sw = None
        if sample_weight is not None:
            sw = as_1d_float("sample_weight", sample_weight, act.shape[0])
            if (sw < 0).any():
                i = int(np.argmax(sw < 0))
                raise ValidationError(f"sample_weight must be >= 0; got {sw[i]} at round {i}")
        self._fit_arrays(x, act, rew, pos, n_actions, len_list, sw)
        return self

    def _fit_arrays(
        self,
        x: np.ndarray | None,
        act: np.ndarray,
        rew: np.ndarray,
        pos: np.ndarray,
        n_actions: int,
        len_list: int,
        sw: np.ndarray | None,
    ) -> None:
        self.n_actions_, self.len_list_ = n_actions, len_list
        self.n_context_ = 0 if x is None else x.shape[1]
        if x is not None:
            self.x_mean_ = x.mean(axis=0)
            scale = x.std(axis=0)
            self.x_scale_ = np.where(scale > 0, scale, 1.0)
        else:
            self.x_mean_ = np.zeros(0)
            self.x_scale_ = np.ones(0)
        design = self._design(self._standardise(x), act, pos)
        n_features = design.shape[1]
        binary = bool(np.all((rew == 0.0) | (rew == 1.0)))
        kind = self.kind if self.kind != "auto" else ("logistic" if binary else "ridge")
        if kind == "logistic" and not binary:
            raise ValidationError(
                "RewardModel(kind='logistic') needs rewards in {0, 1}; got values such as "
                f"{rew[~((rew == 0.0) | (rew == 1.0))][0]}"
            )
        if np.all(rew == rew[0]):
            # one class only (e.g. a fold with no click): the model is the constant rate
            self.kind_ = "constant"
            self.coef_ = np.zeros(n_features)
            self.intercept_ = float(rew[0])
            return
        from sklearn.linear_model import LogisticRegression, Ridge  # slow import: only when fitting

        if kind == "logistic":
            model = LogisticRegression(C=1.0 / self.regularization, max_iter=self.max_iter)
            model.fit(design, rew.astype(np.int64), sample_weight=sw)
        else:
            model = Ridge(alpha=self.regularization)
            model.fit(design, rew, sample_weight=sw)
        self.kind_ = kind
        self.coef_ = np.asarray(model.coef_, dtype=np.float64).ravel()
        self.intercept_ = float(np.ravel(model.intercept_)[0])

    def predict(self, context: np.ndarray | None = None, n_rounds: int | None = None) -> np.ndarray:
        """Predicted rewards for every (round, action, position).

        Parameters
        ----------
        context : ndarray of shape (n_rounds, d), float, optional
            Contexts; must be given iff the model was fitted with one.
        n_rounds : int, optional
            Number of rounds when the model has no context.

        Returns
        -------
        ndarray of shape (n_rounds, n_actions, len_list), float64
            q̂(x_i, a, k); in [0, 1] for the logistic link.

        Raises
        ------
        ValidationError
            If the model is not fitted or the context does not match the fitted one.
        """
        if not hasattr(self, "coef_"):
            raise ValidationError("RewardModel.predict called before fit")
        if self.n_context_:
            if context is None:
                raise ValidationError(
                    f"context is required: the model was fitted with {self.n_context_} context "
                    "features; got None"
                )
            x = self._context(context, None)
            if x.shape[1] != self.n_context_:
                raise ValidationError(
                    f"context must have {self.n_context_} columns (as in fit); got {x.shape[1]}"
                )
            n = x.shape[0]
        else:
            if context is not None and np.asarray(context).size:
                raise ValidationError("the model was fitted without context; got a context")
            if n_rounds is None:
                raise ValidationError("n_rounds is required when the model has no context")
            x, n = None, int(n_rounds)
        return self._predict_arrays(x, n)

    def _predict_arrays(self, x: np.ndarray | None, n: int) -> np.ndarray:
        n_actions, len_list = self.n_actions_, self.len_list_
        if self.kind_ == "constant":
            return np.full((n, n_actions, len_list), self.intercept_)
        d = self.n_context_
        coef = self.coef_
        beta_x = coef[:d]
        beta_a = coef[d : d + n_actions]
        offset = d + n_actions
        beta_k = np.zeros(len_list)
        if len_list > 1:
            beta_k = coef[offset : offset + len_list]
            offset += len_list
        z = np.full((n, n_actions, len_list), self.intercept_)
        z += beta_a[None, :, None] + beta_k[None, None, :]
        if d:
            xs = self._standardise(x)
            z += (xs @ beta_x)[:, None, None]
            if self.interactions:
                inter = coef[offset : offset + d * n_actions].reshape(n_actions, d)
                z += (xs @ inter.T)[:, :, None]
        return expit(z) if self.kind_ == "logistic" else z

    def fit_predict(
        self,
        *,
        action: np.ndarray,
        reward: np.ndarray,
        n_actions: int,
        context: np.ndarray | None = None,
        position: np.ndarray | None = None,
        len_list: int = 1,
        n_folds: int = 1,
        random_state: int | np.random.Generator | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """Fit and predict on the same log, with K-fold cross-fitting.

        With ``n_folds = K >= 2`` the rounds are split into K folds by a random permutation
        (``np.random.default_rng(random_state)``, ``np.array_split``); the predictions of a fold
        come from a fresh model fitted on the other K − 1 folds, so no round's own reward enters
        its q̂ (cross-fitting, as DR's theory assumes). ``self`` is left as it was.
        With ``n_folds = 1`` ``self`` is fitted on every round and predicts in-sample.

        Parameters
        ----------
        action, reward, n_actions, context, position, len_list, sample_weight
            As in :meth:`fit`.
        n_folds : int, default 1
            Number of folds K (1 <= K <= n_rounds).
        random_state : int, Generator or None
            Seed of the fold assignment.

        Returns
        -------
        ndarray of shape (n_rounds, n_actions, len_list), float64

        Raises
        ------
        ValidationError
            On invalid inputs or ``n_folds``.
        """
        x, act, rew, pos, n_actions, len_list = self._inputs(
            context, action, reward, position, n_actions, len_list
        )
        n = act.shape[0]
        if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer):
            raise ValidationError(f"n_folds must be an int in [1, n_rounds]; got {n_folds!r}")
        if not 1 <= n_folds <= n:
            raise ValidationError(f"n_folds must be in [1, n_rounds = {n}]; got {n_folds}")
        sw = None if sample_weight is None else as_1d_float("sample_weight", sample_weight, n)
        if n_folds == 1:
            self._fit_arrays(x, act, rew, pos, n_actions, len_list, sw)
            return self._predict_arrays(x, n)
        rng = np.random.default_rng(random_state)
        folds = np.array_split(rng.permutation(n), n_folds)
        out = np.empty((n, n_actions, len_list), dtype=np.float64)
        for test in folds:
            train = np.ones(n, dtype=bool)
            train[test] = False
            model = RewardModel(
                kind=self.kind,
                regularization=self.regularization,
                interactions=self.interactions,
                max_iter=self.max_iter,
            )
            model._fit_arrays(
                None if x is None else x[train],
                act[train],
                rew[train],
                pos[train],
                n_actions,
                len_list,
                None if sw is None else sw[train],
            )
            out[test] = model._predict_arrays(None if x is None else x[test], test.shape[0])
        return out
