"""Loss weighting: how per-task losses are weighted into one training loss (one method per file)."""

from __future__ import annotations

from mtl_keras.training.weighting.base import Weighting
from mtl_keras.training.weighting.dwa import DWA
from mtl_keras.training.weighting.famo import FAMO
from mtl_keras.training.weighting.gls import GeometricLossWeighting
from mtl_keras.training.weighting.gradnorm import GradNorm
from mtl_keras.training.weighting.random_weighting import RandomLossWeighting
from mtl_keras.training.weighting.static import StaticWeighting
from mtl_keras.training.weighting.stch import SmoothTchebycheff
from mtl_keras.training.weighting.uncertainty import UncertaintyWeighting

WEIGHTINGS = {cls.method_name: cls for cls in (StaticWeighting, UncertaintyWeighting, GradNorm, DWA,
                                               RandomLossWeighting, FAMO, GeometricLossWeighting,
                                               SmoothTchebycheff)}


def get_weighting(weighting, **options) -> Weighting:
    """A weighting from its name (`"uncertainty"`, built with `options`), an instance, or None (static)."""
    if weighting is None:
        weighting = "static"
    if isinstance(weighting, Weighting):
        return weighting
    if isinstance(weighting, str) and weighting.lower() in WEIGHTINGS:
        return WEIGHTINGS[weighting.lower()](**options)
    raise ValueError(f"Unknown loss weighting {weighting!r}; expected one of {sorted(WEIGHTINGS)} or a Weighting "
                     f"instance.")


__all__ = ["DWA", "FAMO", "WEIGHTINGS", "GeometricLossWeighting", "GradNorm", "RandomLossWeighting",
           "SmoothTchebycheff", "StaticWeighting", "UncertaintyWeighting", "Weighting", "get_weighting"]
