"""Gradient methods: how per-task gradients on the shared parameters combine into one update (one per file)."""

from __future__ import annotations

from mtl_keras.training.gradients.aligned_mtl import AlignedMTL
from mtl_keras.training.gradients.base import GradientMethod, VectorGradientMethod, gradient_cosines
from mtl_keras.training.gradients.cagrad import CAGrad
from mtl_keras.training.gradients.config import ConFIG
from mtl_keras.training.gradients.db_mtl import DBMTL
from mtl_keras.training.gradients.dualproj import DualProj
from mtl_keras.training.gradients.excess_mtl import ExcessMTL
from mtl_keras.training.gradients.fairgrad import FairGrad
from mtl_keras.training.gradients.graddrop import GradDrop
from mtl_keras.training.gradients.gradvac import GradVac
from mtl_keras.training.gradients.imtl_g import IMTLG
from mtl_keras.training.gradients.mgda import MGDA
from mtl_keras.training.gradients.moco import MoCo
from mtl_keras.training.gradients.modo import MoDo
from mtl_keras.training.gradients.nash_mtl import NashMTL
from mtl_keras.training.gradients.pcgrad import PCGrad
from mtl_keras.training.gradients.sdmgrad import SDMGrad
from mtl_keras.training.gradients.upgrad import UPGrad

GRADIENT_METHODS = {cls.name: cls for cls in (PCGrad, CAGrad, MGDA, IMTLG, NashMTL, AlignedMTL, UPGrad, DualProj,
                                               GradVac, FairGrad, ConFIG, SDMGrad, MoDo, GradDrop, MoCo, DBMTL,
                                               ExcessMTL)}


def get_gradient_method(method, **options) -> GradientMethod | None:
    """A gradient method from its name (`"pcgrad"`, built with `options`), an instance, or None (plain summed
    gradients)."""
    if method is None or isinstance(method, GradientMethod):
        return method
    if isinstance(method, str) and method.lower() in GRADIENT_METHODS:
        return GRADIENT_METHODS[method.lower()](**options)
    raise ValueError(f"Unknown gradient method {method!r}; expected one of {sorted(GRADIENT_METHODS)} or a "
                     f"GradientMethod instance.")


__all__ = ["DBMTL", "GRADIENT_METHODS", "IMTLG", "MGDA", "AlignedMTL", "CAGrad", "ConFIG", "DualProj", "ExcessMTL",
           "FairGrad", "GradDrop", "GradVac", "GradientMethod", "MoCo", "MoDo", "NashMTL", "PCGrad", "SDMGrad",
           "UPGrad", "VectorGradientMethod", "get_gradient_method", "gradient_cosines"]
