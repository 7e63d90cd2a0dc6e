"""IPW: the greedy policy's relevance model, retrained on inverse-propensity-weighted impressions."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from simulator.errors import ValidationError
from simulator.policies.base import policy_dataclass, register
from simulator.policies.greedy import GreedyPolicy


@register("ipw")
@policy_dataclass
class IPWPolicy(GreedyPolicy):
    """Greedy's implicit ALS, retrained with every logged impression weighted by 1/propensity.

    The model, the factors and the serving rule (top-K by ``U[u]·V[i]``) are greedy's; only the
    training objective changes. It reads the log window's impressions — clicks *and*
    shown-not-clicked — with their logged display propensity ``pscore`` (the logging policy's
    ``P(item at this position)``) and examination probability ``e`` (the position bias).

    Parameters
    ----------
    loss : {"ips", "saito"}
        ``"ips"``: every impression is a weighted sample (Schnabel et al. 2016);
        ``"saito"``: the label of a click is corrected to ``Y/θ`` (Saito et al. 2020).
    clip : float > 0
        Weight cap: ``w = min(1/(pscore·e), clip)``.
    self_normalize : bool
        Divide the weights by their mean (mean weight 1), as the seed's clipped, mean-normalised
        BCE does.
    examination_estimate : list of float in (0, 1], optional
        Examination probability per position, for logs without a true ``examination`` (real
        logs): e.g. the EM estimate of :mod:`simulator.ope.position_bias`. Overrides the log's.
    unobserved_weight : float >= 0
        ``c0``, the confidence of the pairs without an impression (target 0). 0 is Schnabel et
        al.'s objective over observed entries only; 1 is Hu et al.'s implicit-feedback term at
        full strength, which then dominates the impressions and leaves the model greedy's
        (measured: the same Gini and coverage). The default 0.1 keeps a weak "unobserved =
        negative" prior, so the first fit on the positives-only pre-system history is not
        degenerate.
    factors, regularization, alpha, iterations, warm_iterations, cg_steps
        As for ``greedy``.

    Notes
    -----
    Weighted ALS (:meth:`simulator.training.als.ImplicitALS.fit_weighted`) minimises
    ``Σ_{u,i} c_ui (p_ui − x_uᵀy_i)² + λ(‖X‖² + ‖Y‖²)``, with ``c = c0, p = 0`` on pairs with no
    impression (Hu, Koren & Volinsky's "unobserved" term, at weight ``c0`` =
    ``unobserved_weight``) and, with ``w̃_t`` the clipped, self-normalised weight of impression
    ``t`` and ``y_t`` its click:

    * ``ips`` — the IPS-weighted squared loss over the observed impressions (Schnabel et al.
      2016, Eq. 8 with the squared-error δ) added with slope ``alpha`` to the ``c0`` term:
      ``alpha Σ_t w̃_t (y_t − s_ui)²`` gives ``c_ui = c0 + alpha Σ_t w̃_t`` and
      ``p_ui = alpha Σ_t w̃_t y_t / c_ui``. Shown-not-clicked impressions are weighted negatives.
    * ``saito`` — the unbiased pointwise loss of Saito et al. (2020, Eq. 6) with squared
      error: over *all* pairs, ``(Y/θ)(1 − s)² + (1 − Y/θ)s² = (s − Y/θ)² + const``, i.e. a click's
      label becomes ``Y/θ``; non-clicks are no different from unobserved pairs. With Hu's
      confidence on the clicked pairs: ``c_ui = c0 + alpha·n_clicks`` and ``p_ui`` = the mean
      ``w̃_t`` over the pair's clicks (weights normalised over clicks, so labels average 1).

    The propensity of an impression is display × examination, ``θ = pscore · e``. Organic
    (pre-system) streams carry no propensity: weight 1. With a deterministic logging policy
    (this one alone) ``pscore = 1`` and the weights correct position bias only — IPS cannot
    correct exposure it never randomised (positivity). Wrapped in an exploration policy
    (``epsilon_greedy`` with ``base = "ipw"``, as in ``experiments/prevent_collapse.toml``) the
    exploration's exact propensities enter too: a click on an explored item weighs up to
    ``clip`` times a click on a greedy one.

    References
    ----------
    Schnabel, Swaminathan, Singh, Chandak & Joachims (2016), "Recommendations as treatments:
    debiasing learning and evaluation", ICML, Sec. 4 (IPS-MF); Saito, Yaginuma, Nishino, Sakata
    & Nakata (2020), "Unbiased recommender learning from missing-not-at-random implicit
    feedback", WSDM, Eq. (6); Hu, Koren & Volinsky (2008), ICDM; Joachims, Swaminathan &
    Schnabel (2017), WSDM (examination propensities).
    """

    loss: Literal["ips", "saito"] = "ips"
    clip: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 10.0
    self_normalize: bool = True
    examination_estimate: list[Annotated[float, Field(gt=0, le=1)]] | None = None
    unobserved_weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.1

    needs_impressions: ClassVar[bool] = True

    def fit(self, window) -> None:
        imp = window.impressions()
        c1, cp = self.weighted_matrices(imp)
        self.model_.fit_weighted(
            c1,
            cp,
            self.iterations if self.n_fits_ == 0 else self.warm_iterations,
            unobserved_weight=self.unobserved_weight,
        )
        self.n_fits_ += 1

    def weights(self, imp: dict[str, np.ndarray]) -> np.ndarray:
        """Clipped inverse propensities ``min(1/(pscore·e), clip)`` per row (organic rows: 1).

        Raises
        ------
        ValidationError
            A logged impression without a finite propensity or examination (and no
            ``examination_estimate``), or an estimate shorter than the slate.
        """
        pos = imp["position"].astype(np.int64)
        logged = pos >= 0
        exam = imp["examination"].astype(np.float64).copy()
        if self.examination_estimate is not None:
            est = np.asarray(self.examination_estimate, dtype=np.float64)
            if logged.any() and pos[logged].max() >= est.size:
                raise ValidationError(
                    f"examination_estimate has {est.size} positions; the log has position {pos[logged].max()}"
                )
            exam[logged] = est[pos[logged]]
        ps = imp["pscore"].astype(np.float64)
        bad = logged & ~(np.isfinite(exam) & (exam > 0) & np.isfinite(ps) & (ps > 0))
        if bad.any():
            raise ValidationError(
                f"{int(bad.sum())} logged impressions lack a positive finite pscore or examination; "
                "give the policy an examination_estimate for logs without examination"
            )
        w = np.ones(pos.size, dtype=np.float64)
        w[logged] = 1.0 / (ps[logged] * exam[logged])
        return np.minimum(w, self.clip)

    def weighted_matrices(self, imp: dict[str, np.ndarray]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(c − 1, c·p)`` on the pairs with data, as aligned CSR matrices (see Notes)."""
        n_users, n_items = self.world_.n_users, self.world_.catalog.n_items
        click = imp["click"].astype(bool)
        w = self.weights(imp)
        if self.loss == "saito":  # only clicks carry a (label-correcting) weight
            user, item, w = imp["user"][click], imp["item"][click], w[click]
            y = np.ones(w.size)
        else:
            user, item, y = imp["user"], imp["item"], click.astype(np.float64)
        if self.self_normalize and w.size:
            w = w / w.mean()
        key = user.astype(np.int64) * n_items + item.astype(np.int64)
        uniq, inv = np.unique(key, return_inverse=True)
        a = np.float64(self.alpha)
        if self.loss == "saito":
            n_c = np.bincount(inv, minlength=uniq.size).astype(np.float64)
            label = np.bincount(inv, weights=w, minlength=uniq.size) / n_c
            c1 = a * n_c
            cp = (self.unobserved_weight + c1) * label
        else:
            c1 = a * np.bincount(inv, weights=w, minlength=uniq.size)
            cp = a * np.bincount(inv, weights=w * y, minlength=uniq.size)
        rows, cols = uniq // n_items, uniq % n_items
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_users))])
        shape = (n_users, n_items)
        return (
            sp.csr_matrix((c1.astype(np.float32), cols.astype(np.int32), indptr), shape=shape),
            sp.csr_matrix((cp.astype(np.float32), cols.astype(np.int32), indptr), shape=shape),
        )
