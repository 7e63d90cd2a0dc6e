"""Mesa agents as thin views onto the population arrays (for inspection, teaching, dashboards).

An agent holds no state of its own: every attribute reads row ``row`` of the model's
:class:`~simulator.users.population.Population`, so the vectorised round and the agent view can
never disagree. Agents have no ``step``: the round is vectorised over all users.
"""

from __future__ import annotations

import mesa
import numpy as np


class UserAgent(mesa.Agent):
    """User ``row`` of the population, as a mesa agent."""

    def __init__(self, model: mesa.Model, row: int) -> None:
        super().__init__(model)
        self.row = row

    @property
    def taste(self) -> np.ndarray:
        """Current genre taste, shape (n_genres,), float32 (a view)."""
        return self.model.population.taste[self.row]

    @property
    def activity(self) -> float:
        """Mean sessions per day."""
        return float(self.model.population.activity[self.row])

    @property
    def alternating(self) -> bool:
        """Whether this user's interest alternates between two genres."""
        return bool(self.model.population.alternating[self.row])

    @property
    def genres_shown(self) -> np.ndarray:
        """Genre counts shown in the user window, shape (n_genres,), int32."""
        return self.model.tracker.shown[self.row]

    @property
    def genres_consumed(self) -> np.ndarray:
        """Genre counts streamed in the user window, shape (n_genres,), int32."""
        return self.model.tracker.consumed[self.row]

    def __repr__(self) -> str:
        kind = "alternating" if self.alternating else "stable"
        return f"UserAgent(row={self.row}, {kind}, activity={self.activity:.2f}/day)"
