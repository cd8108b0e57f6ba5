"""Statistics the services share: BG/NBD (:mod:`shared.stats.bgnbd`) and Gamma-Gamma
(:mod:`shared.stats.gamma_gamma`), the buy-till-you-die models of customer lifetime value.

The profile service fits both for CLV; the churn service uses BG/NBD's P(alive) as a feature and its
expected purchases for a value estimate. numpy/scipy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Params:
    """Fitted parameters of a model: plain floats, stored as a dict (model runs, model files)."""

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def floats(*values: ArrayLike) -> tuple[FloatArray, ...]:
    """Arrays of float64, from arrays or plain numbers alike."""
    return tuple(np.asarray(v, dtype=np.float64) for v in values)
