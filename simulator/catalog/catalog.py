"""The catalog: tracks with a genre, an artist, an embedding, a quality and a popularity prior."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import CatalogSection


@dataclass(frozen=True, eq=False)
class Catalog:
    """Item attributes as arrays (row ``i`` is item ``i``).

    Attributes
    ----------
    genre : ndarray of shape (n_items,), int16
        Primary genre of each item.
    artist : ndarray of shape (n_items,), int32
    embedding : ndarray of shape (n_items, d), float32
        Clustered by genre: genre centre (unit norm) plus isotropic noise.
    quality : ndarray of shape (n_items,), float32
        Standardised item quality (mean 0, sd 1), correlated with the prior popularity.
    prior_popularity : ndarray of shape (n_items,), float64
        Zipf prior ``p_i ∝ rank_i^(-s)``, sums to 1 (the pre-system popularity).
    head : ndarray of shape (n_items,), bool
        The top ``head_fraction`` of items by prior popularity.
    genre_centres : ndarray of shape (n_genres, d), float32
    """

    genre: np.ndarray
    artist: np.ndarray
    embedding: np.ndarray
    quality: np.ndarray
    prior_popularity: np.ndarray
    head: np.ndarray
    genre_centres: np.ndarray

    @property
    def n_items(self) -> int:
        return int(self.genre.shape[0])

    @property
    def n_genres(self) -> int:
        return int(self.genre_centres.shape[0])


def make_catalog(cfg: CatalogSection, rng: np.random.Generator) -> Catalog:
    """Draw a catalog.

    Genre sizes follow ``Dirichlet(c·1)`` shares; artists are nested in genres; the popularity
    prior is Zipf over a random permutation of items (Zipf 1949), and quality is
    ``rho·z(log p) + sqrt(1 - rho²)·N(0, 1)`` so that popular items are somewhat better.
    """
    n, g, d = cfg.n_items, cfg.n_genres, cfg.embedding_dim
    shares = rng.dirichlet(np.full(g, cfg.genre_size_concentration))
    genre = np.sort(rng.choice(g, size=n, p=shares)).astype(np.int16)
    # Artists belong to one genre: artist id = genre block + local index.
    per_genre = max(1, cfg.n_artists // g)
    artist = (genre.astype(np.int32) * per_genre + rng.integers(0, per_genre, n)).astype(np.int32)

    centres = rng.standard_normal((g, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((n, d)) * (cfg.embedding_genre_spread / np.sqrt(d))
    embedding = (centres[genre] + noise).astype(np.float32)

    rank = rng.permutation(n) + 1
    prior = rank.astype(np.float64) ** -cfg.zipf_exponent
    prior /= prior.sum()
    logp = np.log(prior)
    z = (logp - logp.mean()) / (logp.std() or 1.0)
    rho = cfg.quality_popularity_corr
    quality = (rho * z + np.sqrt(1 - rho**2) * rng.standard_normal(n)).astype(np.float32)

    n_head = int(np.ceil(cfg.head_fraction * n))
    head = np.zeros(n, dtype=bool)
    head[np.argsort(-prior, kind="stable")[:n_head]] = True
    return Catalog(genre, artist, embedding, quality, prior, head, centres.astype(np.float32))
