"""Peer reference updates on FIXED per-task gradients (no training).

Runs the gradient-manipulation methods of LibMTL (main branch), torchjd and
conflictfree (ConFIG) on a fixed [T, P] matrix of per-task gradients and writes,
for every method, the combined update vector the peer would put into the
shared parameters' ``.grad`` on the first step (fresh state), together with
every hyperparameter used, the randomness drawn, and what the harness assumed.

Run it with the peer virtualenv, never with the project's own environment:

    PYTHONPATH=/work/peer/stubs:/work/peer/LibMTL \
        /work/peer/venv/bin/python benchmarks/peer/peer_updates.py IN.npz OUT.json

Input ``.npz``:
    gradients      float64 [T, P]  (required) per-task gradients of the shared parameters
    losses         float64 [T]     (optional; default: ones) loss values
    gradients3     float64 [3,T,P] (optional) the three independent-sample gradients
                   MoDo / SDMGrad use; default: ``gradients`` repeated three times
    graddrop_u     float64 [P] or [S,P] (optional) GradDrop's uniform draw to replay;
                   default: drawn from a seeded torch.Generator and saved in the JSON

Harness (results: benchmarks/results/peer_agreement.md): each LibMTL weighting class is subclassed directly by a
minimal "model" that has one shared parameter ``theta`` (zeros, [P], float64) as
its encoder and no decoders.  The losses handed to ``backward`` are built so that
their value is ``losses`` and their gradient w.r.t. ``theta`` is exactly
``gradients`` (a linear surrogate ``L_i + g_i . theta`` at ``theta = 0``), so
LibMTL's own ``_compute_grad`` / ``_reset_grad`` / ``loss.backward()`` paths run
unmodified and the update is read from ``theta.grad`` afterwards.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import random as _pyrandom
import sys
import traceback
import warnings

import numpy as np
import torch
import torch.nn as nn

warnings.filterwarnings("ignore")
torch.set_default_dtype(torch.float64)

LIBMTL_DIR = os.environ.get("LIBMTL_DIR", "/work/peer/LibMTL")
# torchvision / torch_geometric stubs: /work/peer/stubs if set up, else the copy beside this file
_REPO_STUBS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stubs")
STUBS_DIR = os.environ.get("PEER_STUBS_DIR") or (
    "/work/peer/stubs" if os.path.isdir("/work/peer/stubs") else _REPO_STUBS
)
for _p in (STUBS_DIR, LIBMTL_DIR):
    if _p not in sys.path:
        sys.path.insert(0, _p)

# LibMTL's own defaults, copied from LibMTL/config.py (main) -- the values the
# LibMTL Trainer passes as **kwargs to ``backward`` when no flag is given.
LIBMTL_DEFAULTS = {
    "EW": {},
    "PCGrad": {},
    "MGDA": {"mgda_gn": "none"},
    "CAGrad": {"calpha": 0.5, "rescale": 1},
    "IMTL": {},
    "GradVac": {"GradVac_beta": 0.5, "GradVac_group_type": 0},
    "GradDrop": {"leak": 0.0},
    "FairGrad": {"FairGrad_alpha": 1.0},
    "SDMGrad": {"SDMGrad_lamda": 0.3, "SDMGrad_niter": 20},
    "MoDo": {"MoDo_gamma": 1e-3, "MoDo_rho": 0.1},
    "MoCo": {"MoCo_beta": 0.5, "MoCo_beta_sigma": 0.5, "MoCo_gamma": 0.1, "MoCo_gamma_sigma": 0.5, "MoCo_rho": 0.0},
    "DB_MTL": {"DB_beta": 0.9, "DB_beta_sigma": 0.0},
    "ExcessMTL": {"robust_step_size": 1e-2},
    "UPGrad": {"UPGrad_norm_eps": 1e-4, "UPGrad_reg_eps": 1e-4},
    "Nash_MTL": {"update_weights_every": 1, "optim_niter": 20, "max_norm": 1.0},
    "Aligned_MTL": {},
}

# Constants hard-coded inside LibMTL's code (not configurable), recorded for the other side.
LIBMTL_CONSTANTS = {
    "PCGrad": {"eps_in_norm_sq": 1e-8},
    "MGDA": {
        "solver": "projected-gradient MinNormSolver (isl-org find_min_norm_element)",
        "MAX_ITER": 250,
        "STOP_CRIT": 1e-5,
        "two_task_gamma_clip": [0.001, 0.999],
    },
    "CAGrad": {
        "g0_norm": "sqrt(mean(GG)+1e-8)",
        "c": "calpha*g0_norm+1e-8",
        "lmbda": "c/(|gw|+1e-8)",
        "optimizer": "scipy.optimize.minimize (SLSQP), x0=1/T",
    },
    "IMTL": {"loss_scale_init": 0.0, "inverse": "torch.inverse"},
    "GradVac": {"eps": 1e-8, "rho_T_init": 0.0},
    "GradDrop": {"eps": 1e-7},
    "FairGrad": {"solver": "scipy.optimize.least_squares, x0=1/T, bounds=(0,inf)"},
    "SDMGrad": {
        "inner_optimizer": "torch.optim.SGD(lr=5, momentum=0.5), new each step",
        "w_init": "1/T",
        "scale_eps": 1e-8,
    },
    "MoDo": {"lambda_init": "1/T"},
    "MoCo": {"y_init": 0.0, "lambda_init": "1/T", "grad_norm_eps": 1e-8},
    "DB_MTL": {"log_eps": 1e-8, "norm_eps": 1e-8, "buffer_init": 0.0},
    "ExcessMTL": {"h_eps": 1e-7, "loss_weight_init": 1.0},
    "UPGrad": {"pref_vector": "1/T", "qp_solver": "qpsolvers/quadprog"},
    "Nash_MTL": {"cvxpy_solver": "ECOS", "max_iters": 100},
}

LIBMTL_ASSUMPTIONS = {
    "EW": "loss = sum_i losses_i, so update = sum_i g_i (weight 1 each, despite the docstring's 1/T).",
    "PCGrad": "gradients are d loss_i / d theta.",
    "MGDA": "gradients are d loss_i / d theta; 'none' normalisation, so losses unused.",
    "CAGrad": "gradients are d loss_i / d theta.",
    "IMTL": (
        "gradients are d loss_i / d theta of the UNSCALED losses; LibMTL differentiates "
        "exp(s_i) L_i - s_i with s_i = loss_scale = 0 on the first step, i.e. exactly g_i. "
        "The shared update is IMTL-G (separable); IMTL-L's own gradient on s is reported "
        "separately (loss_scale_grad = exp(s) L - 1)."
    ),
    "GradVac": "gradients are d loss_i / d theta; group_type 0 (whole model, one group).",
    "GradDrop": (
        "LibMTL's GradDrop only runs with rep_grad=True: the gradients are taken as the "
        "gradients w.r.t. a representation of batch size 1 whose value is +1 everywhere "
        "(sign(inputs)=+1), and rep = theta + 1, so the update on theta equals the "
        "transformed gradient summed over tasks."
    ),
    "FairGrad": "gradients are d loss_i / d theta; losses unused (only their gradient).",
    "SDMGrad": (
        "losses are [3, T] (three independent samples); gradients3[k] are the gradients of "
        "sample k (default: all three = gradients). zeta = sample 0 (combined), "
        "xi1, xi2 = samples 1, 2 (Gram)."
    ),
    "MoDo": (
        "losses are [3, T]; gradients3[k] of sample k (default all = gradients); "
        "lambda step uses samples 0 and 1, the update combines sample 2."
    ),
    "MoCo": "gradients are d loss_i / d theta; the loss VALUES are used (y tracks L_i g_i/|g_i|).",
    "DB_MTL": (
        "gradients are taken as d log(loss_i + 1e-8) / d theta (the method differentiates "
        "log losses); the surrogate loss_i = (L_i+1e-8) exp(g_i.theta) - 1e-8 makes that exact."
    ),
    "ExcessMTL": "gradients are d loss_i / d theta (autograd mode); losses enter only through their gradient.",
    "UPGrad": "gradients are d loss_i / d theta.",
    "Nash_MTL": "gradients are d loss_i / d theta.",
    "Aligned_MTL": "gradients are d loss_i / d theta.",
}


def _to_list(x):
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy().tolist()
    if isinstance(x, np.ndarray):
        return x.astype(np.float64).tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def _exc_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def libmtl_commit() -> str | None:
    try:
        with open(os.path.join(LIBMTL_DIR, "COMMIT")) as f:
            return f.read().strip()
    except OSError:
        return None


# --------------------------------------------------------------------------------------
# Randomness control
# --------------------------------------------------------------------------------------
class ShuffleShim:
    """Replaces the ``random`` module global of LibMTL's PCGrad / GradVac modules.

    ``identity``: shuffle is a no-op (task order 0..T-1);  ``seeded``: a
    ``random.Random(seed)`` shuffles.  Every resulting order is recorded.
    """

    def __init__(self, mode: str, seed: int):
        self.mode = mode
        self.rng = _pyrandom.Random(seed)
        self.orders: list[list[int]] = []

    def shuffle(self, x):
        if self.mode == "seeded":
            self.rng.shuffle(x)
        self.orders.append(list(x))

    def __getattr__(self, name):  # anything else falls through to the real module
        return getattr(_pyrandom, name)


class patched:
    """Temporarily set attributes (obj, name, value) and restore them."""

    def __init__(self, *triples):
        self.triples = triples
        self.saved = []

    def __enter__(self):
        for obj, name, value in self.triples:
            self.saved.append((obj, name, getattr(obj, name)))
            setattr(obj, name, value)
        return self

    def __exit__(self, *exc):
        for obj, name, value in reversed(self.saved):
            setattr(obj, name, value)
        return False


class UniformSource:
    """The GradDrop uniform draw U, shared by LibMTL and torchjd so both replay the same one."""

    def __init__(self, P: int, seed: int, given: np.ndarray | None):
        self.P = P
        self.gen = torch.Generator().manual_seed(seed)
        self.given = given
        self.cache: dict[int, torch.Tensor] = {}

    def for_step(self, step: int) -> torch.Tensor:
        if step not in self.cache:
            if self.given is not None:
                g = np.asarray(self.given, dtype=np.float64)
                u = g if g.ndim == 1 else g[step]
                self.cache[step] = torch.as_tensor(u, dtype=torch.float64).clone()
            else:
                self.cache[step] = torch.rand(self.P, generator=self.gen, dtype=torch.float64)
        return self.cache[step]


# --------------------------------------------------------------------------------------
# LibMTL harness
# --------------------------------------------------------------------------------------
def make_libmtl_harness(method_cls, T: int, P: int, rep_grad: bool):
    """A minimal stand-in for LibMTL's Trainer-built ``MTLmodel(arch, weighting)``.

    It subclasses the weighting class *directly* (LibMTL's ``_compute_grad`` checks
    ``self.__class__.__bases__`` names for 'MoDo' / 'SDMGrad').
    """

    class Harness(method_cls):
        def __init__(self):
            method_cls.__init__(self)
            self.task_name = [f"task{i}" for i in range(T)]
            self.task_num = T
            self.device = torch.device("cpu")
            self.rep_grad = rep_grad
            self.multi_input = False
            self.kwargs = {}
            self.encoder = nn.Module()
            self.encoder.theta = nn.Parameter(torch.zeros(P, dtype=torch.float64))
            self.decoders = nn.ModuleDict()
            if rep_grad:
                self.rep_tasks = {}
                self.rep = {}
            # attributes LibMTL's Trainer sets on the model (used by DWA/STCH-like methods)
            self.epoch = 0
            self.epochs = 1
            self.train_loss_buffer = np.zeros([T, 1])

        def get_share_params(self):
            return self.encoder.parameters()

        def zero_grad_share_params(self):
            self.encoder.zero_grad(set_to_none=False)

    Harness.__name__ = f"Harness_{method_cls.__name__}"
    h = Harness()
    h.init_param()
    return h


def surrogate_losses(h, G: torch.Tensor, L: torch.Tensor, kind: str):
    """Losses whose values are L and whose theta-gradients are G (rows)."""
    theta = h.encoder.theta
    T = G.shape[0]
    if kind == "linear":
        return torch.stack([L[i] + torch.dot(G[i], theta) for i in range(T)])
    if kind == "log":  # d log(loss_i + 1e-8) / d theta == G[i] exactly
        return torch.stack([(L[i] + 1e-8) * torch.exp(torch.dot(G[i], theta)) - 1e-8 for i in range(T)])
    if kind == "rep":  # rep_grad=True path, batch size 1, rep = theta + 1 (> 0)
        rep = (theta + 1.0).view(1, -1)
        h.rep = rep  # same_rep=True in LibMTL's _prepare_rep
        out = []
        for i, task in enumerate(h.task_name):
            rt = rep.detach().clone()
            rt.requires_grad = True
            h.rep_tasks[task] = rt
            out.append(L[i] + (G[i].view(1, -1) * (rt - 1.0)).sum())
        return torch.stack(out)
    raise ValueError(kind)


def _symeig_via_eigh(A, eigenvectors=False, upper=True):
    """torch.symeig's old contract (upper triangle by default) on torch.linalg.eigh, for LibMTL's Aligned_MTL."""
    values, vectors = torch.linalg.eigh(A, UPLO="U" if upper else "L")
    return values, (vectors if eigenvectors else torch.empty(0, dtype=A.dtype))


# LibMTL methods run with a shim that works around a peer defect; key -> (LibMTL class name, patches, note)
LIBMTL_SHIMMED = {
    "Aligned_MTL_eigh": (
        "Aligned_MTL",
        [(torch, "symeig", _symeig_via_eigh)],
        "LibMTL's Aligned_MTL unmodified except that torch.symeig (removed from torch) is replaced by "
        "torch.linalg.eigh(UPLO='U'), symeig's documented replacement; its rank tolerance uses "
        "torch.finfo() of the default dtype (float64 here, float32 in a default LibMTL run).",
    ),
}


def run_libmtl(name, G, L, G3, steps, hp_over, order_mode, seed, usrc):
    W = importlib.import_module("LibMTL.weighting")
    key_name = name
    shim_patches, shim_note = [], None
    if name in LIBMTL_SHIMMED:
        name, shim_patches, shim_note = LIBMTL_SHIMMED[name]
    cls = getattr(W, name)
    T, P = G.shape
    hp = dict(LIBMTL_DEFAULTS.get(name, {}))
    hp.update(hp_over)
    rec = {
        "source": "LibMTL",
        "class": f"LibMTL.weighting.{name}",
        "hyperparameters": hp,
        "internal_constants": LIBMTL_CONSTANTS.get(name, {}),
        "assumptions": LIBMTL_ASSUMPTIONS.get(name, ""),
        "dtype": "float64 (torch default dtype set to float64)",
    }
    rep_grad = name == "GradDrop"
    kind = "rep" if rep_grad else ("log" if name == "DB_MTL" else "linear")
    rec["surrogate_loss"] = kind
    updates, weights = [], []
    extras: dict = {}
    shim = None
    mod = importlib.import_module(f"LibMTL.weighting.{name}")
    patches = list(shim_patches)
    if shim_note:
        rec["shim"] = shim_note
        rec["run_as"] = key_name
    if name in ("PCGrad", "GradVac"):
        shim = ShuffleShim(order_mode, seed)
        patches.append((mod, "random", shim))
        rec["randomness"] = {
            "what": "random.shuffle of the task order (module global `random` replaced by a shim)",
            "mode": order_mode,
            "seed": seed if order_mode == "seeded" else None,
        }
    try:
        h = make_libmtl_harness(cls, T, P, rep_grad)
        for step in range(steps):
            theta = h.encoder.theta
            theta.grad = torch.zeros_like(theta)  # Trainer: optimizer.zero_grad(set_to_none=False)
            if name in ("MoDo", "SDMGrad"):
                losses = torch.stack([surrogate_losses(h, G3[k], L, "linear") for k in range(3)])
            else:
                losses = surrogate_losses(h, G, L, kind)
            step_patches = list(patches)
            if name == "GradDrop":
                u = usrc.for_step(step)
                step_patches.append((torch, "rand_like", lambda t, *a, _u=u, **k: _u.clone().to(t.dtype)))
            with patched(*step_patches):
                w = h.backward(losses, **hp)
            g = theta.grad
            updates.append(_to_list(g.clone() if g is not None else torch.zeros(P)))
            weights.append(_to_list(w) if w is not None else None)
            if name == "IMTL":
                extras.setdefault("loss_scale_grad", []).append(_to_list(h.loss_scale.grad))
                extras.setdefault("loss_scale", []).append(_to_list(h.loss_scale.detach()))
            if name in ("MoDo", "MoCo"):
                extras.setdefault("lambda", []).append(_to_list(h.lambd))
            if name == "SDMGrad":
                extras.setdefault("w", []).append(_to_list(h.w))
            if name == "GradVac":
                extras.setdefault("rho_T", []).append(_to_list(h.rho_T[:, :, 0]))
            if name == "ExcessMTL":
                extras.setdefault("loss_weight", []).append(_to_list(h.loss_weight))
            if name == "Nash_MTL":
                extras.setdefault("alpha", []).append(_to_list(h.prvs_alpha))
        rec["status"] = "ok"
    except Exception as e:  # record the peer's own failure, measured
        rec["status"] = "error"
        rec["exception"] = _exc_text(e)
        rec["traceback_tail"] = traceback.format_exc().strip().splitlines()[-4:]
    if updates:
        rec["update"] = updates[0]
        rec["returned_weights"] = weights[0]
        if steps > 1:
            rec["updates_per_step"] = updates
            rec["returned_weights_per_step"] = weights
    if shim is not None:
        per = T  # one shuffle per task i per step
        rec["randomness"]["task_orders"] = [
            shim.orders[s * per : (s + 1) * per] for s in range(len(shim.orders) // per)
        ]
        rec["randomness"]["task_orders_note"] = "task_orders[step][i] = order of j visited for task i. " + (
            "PCGrad's list INCLUDES i itself (LibMTL loops over all j)."
            if name == "PCGrad"
            else "GradVac's list excludes i."
        )
    if name == "GradDrop":
        rec["randomness"] = {
            "what": "U = torch.rand_like(P) replaced by a replayable draw",
            "source": "npz graddrop_u" if usrc.given is not None else f"torch.Generator().manual_seed({seed}), float64",
            "U_per_step": [_to_list(usrc.for_step(s)) for s in range(len(updates))],
        }
    if extras:
        rec["state"] = extras
    if name == "Nash_MTL" and rec.get("status") == "ok":
        # measure why the solve falls back: call the very problem LibMTL built, as LibMTL calls it
        try:
            h.prob.solve(solver=__import__("cvxpy").ECOS, warm_start=True, max_iters=100)
            rec["ecos_solve"] = "ok"
            rec["note"] = (
                "ECOS is installed, so LibMTL's solve runs; alpha is cast to float32 before "
                "the weighted backward (update agrees with float64 peers to ~1e-7 only)."
            )
        except Exception as e:
            rec["ecos_solve_exception"] = _exc_text(e)
            rec["known_defect"] = (
                "LibMTL wraps prob.solve(solver=cp.ECOS) in a bare try/except; with the "
                "installed cvxpy the solve raises (see ecos_solve_exception), alpha stays at "
                "its init ones, so the update is sum_i g_i clipped to norm max_norm."
            )
    return rec


# --------------------------------------------------------------------------------------
# torchjd
# --------------------------------------------------------------------------------------
def run_torchjd(name, G, L, G3, steps, hp_over, order_mode, seed, usrc):
    import torchjd.aggregation as A

    T, P = G.shape
    rec = {"source": "torchjd", "dtype": "float64"}
    ctor = {
        "UPGrad": {},
        "DualProj": {},
        "MGDA": {},
        "CAGrad": {"c": 0.5},
        "IMTLG": {},
        "AlignedMTL": {},
        "ConFIG": {},
        "PCGrad": {},
        "GradVac": {},
        "GradDrop": {},
        "NashMTL": {"n_tasks": T},
        "FairGrad": {"alpha": 1.0},
        "ExcessMTL": {},
        "Mean": {},
        "Sum": {},
        "Random": {},
        "Krum": {"n_byzantine": 1},
        "TrimmedMean": {"trim_number": 1},
        "PCD": {},
        "MoDoWeighting": {},
        "SDMGradWeighting": {},
    }[name]
    for k, v in hp_over.items():  # list-valued tensors (leak, pref_vector, weights) -> float64 tensors
        ctor[k] = torch.as_tensor(v, dtype=torch.float64) if isinstance(v, (list, tuple)) else v
    rec["class"] = f"torchjd.aggregation.{name}"
    rec["constructor_kwargs"] = {k: _to_list(v) for k, v in ctor.items()}
    required = {
        "CAGrad": "c=0.5 (no default in torchjd; LibMTL's calpha)",
        "FairGrad": "alpha=1.0 (no default in torchjd; LibMTL's FairGrad_alpha)",
        "NashMTL": "n_tasks=T",
        "Krum": "n_byzantine=1 (no default)",
        "TrimmedMean": "trim_number=1 (no default)",
    }
    if name in required:
        rec["required_args_chosen"] = required[name]
    updates, perms = [], []
    try:
        obj = getattr(A, name)(**ctor)
        rec["repr"] = repr(obj)
        for step in range(steps):
            step_perms: list = []
            real_randperm = torch.randperm
            gen = torch.Generator().manual_seed(seed + step)

            def fake_randperm(n, *a, _real=real_randperm, _gen=gen, _rec=step_perms, **k):
                p = torch.arange(n) if order_mode == "identity" else _real(n, generator=_gen)
                _rec.append(p.tolist())
                return p

            pats = [(torch, "randperm", fake_randperm)]
            if name == "GradDrop":
                u = usrc.for_step(step)
                pats.append((torch, "rand", lambda *a, _u=u, **k: _u.clone()))
            if name == "Random":
                torch.manual_seed(seed + step)
            with patched(*pats):
                if name == "MoDoWeighting":
                    w = obj(G3[0] @ G3[1].T)
                    upd = w @ G3[2]
                    rec.setdefault("weights_per_step", []).append(_to_list(w))
                elif name == "SDMGradWeighting":
                    w = obj(G3[1] @ G3[2].T)
                    upd = w @ G3[0]
                    rec.setdefault("weights_per_step", []).append(_to_list(w))
                else:
                    upd = obj(G.clone())
            updates.append(_to_list(upd))
            perms.append(step_perms)
        rec["status"] = "ok"
    except Exception as e:
        rec["status"] = "error"
        rec["exception"] = _exc_text(e)
        rec["traceback_tail"] = traceback.format_exc().strip().splitlines()[-4:]
    if updates:
        rec["update"] = updates[0]
        if steps > 1:
            rec["updates_per_step"] = updates
    if name in ("PCGrad", "GradVac"):
        rec["randomness"] = {
            "what": "torch.randperm of the task order, patched",
            "mode": order_mode,
            "seed": seed if order_mode == "seeded" else None,
            "task_orders": perms,
            "task_orders_note": (
                "PCGrad: randperm(T) per task i, j == i skipped; GradVac: permutation INDICES into the list of j != i"
            ),
        }
    if name == "GradDrop":
        rec["randomness"] = {
            "what": "torch.rand replaced by the same U as libmtl.GradDrop",
            "U_per_step": [_to_list(usrc.for_step(s)) for s in range(len(updates))],
        }
    if name == "Random":
        rec["randomness"] = {"what": "torch.manual_seed(seed + step) before each call", "seed": seed}
    if name == "MoDoWeighting":
        rec["assumptions"] = (
            "weights = MoDoWeighting(J1 J2^T) with J_k = gradients3[k]; update = weights @ gradients3[2]"
        )
    if name == "SDMGradWeighting":
        rec["assumptions"] = (
            "weights = SDMGradWeighting(J_xi1 J_xi2^T) with gradients3[1], gradients3[2]; "
            "update = weights @ gradients3[0] (same sample roles as LibMTL)"
        )
    return rec


# --------------------------------------------------------------------------------------
# conflictfree (official ConFIG package)
# --------------------------------------------------------------------------------------
def run_conflictfree(name, G, L, G3, steps, hp_over, order_mode, seed, usrc):
    rec = {"source": "conflictfree", "dtype": "float64"}
    try:
        import conflictfree.grad_operator as go

        if name == "ConFIGOperator":
            kw = {"allow_simplified_model": True, "use_least_square": True}
            kw.update(hp_over)
            op = go.ConFIGOperator(**kw)
            rec["constructor_kwargs"] = dict(kw, weight_model="EqualWeight()", length_model="ProjectionLength()")
            rec["note"] = "T == 2 uses ConFIG_update_double (closed form), else ConFIG_update (lstsq)"
            upd = op.calculate_gradient(G.clone())
        elif name == "ConFIG_update":
            kw = {"use_least_square": True}
            kw.update(hp_over)
            rec["constructor_kwargs"] = dict(kw, weight_model="EqualWeight()", length_model="ProjectionLength()")
            upd = go.ConFIG_update(G.clone(), **kw)
        elif name == "PCGradOperator":
            rec["note"] = "fixed order j = 0..T-1 (j != i), no randomness, no eps"
            upd = go.PCGradOperator().calculate_gradient(G.clone())
        elif name == "IMTLGOperator":
            upd = go.IMTLGOperator().calculate_gradient(G.clone())
        else:
            raise ValueError(name)
        rec["class"] = f"conflictfree.grad_operator.{name}"
        rec["update"] = _to_list(upd)
        rec["status"] = "ok"
        if steps > 1:
            rec["updates_per_step"] = [rec["update"]] * steps
            rec["stateless"] = True
    except Exception as e:
        rec["status"] = "error"
        rec["exception"] = _exc_text(e)
    return rec


LIBMTL_METHODS = [
    "EW",
    "PCGrad",
    "MGDA",
    "CAGrad",
    "IMTL",
    "GradVac",
    "GradDrop",
    "FairGrad",
    "SDMGrad",
    "MoDo",
    "MoCo",
    "DB_MTL",
    "ExcessMTL",
    "UPGrad",
    "Nash_MTL",
    "Aligned_MTL",
    "Aligned_MTL_eigh",
]
TORCHJD_METHODS = [
    "UPGrad",
    "DualProj",
    "MGDA",
    "CAGrad",
    "IMTLG",
    "AlignedMTL",
    "ConFIG",
    "PCGrad",
    "GradVac",
    "GradDrop",
    "NashMTL",
    "FairGrad",
    "ExcessMTL",
    "Mean",
    "Sum",
    "Random",
    "Krum",
    "TrimmedMean",
    "PCD",
    "MoDoWeighting",
    "SDMGradWeighting",
]
CONFLICTFREE_METHODS = ["ConFIGOperator", "ConFIG_update", "PCGradOperator", "IMTLGOperator"]
EXACT_METHODS = ["MGDA_minnorm_qp"]
KNOWN_BROKEN = {
    "libmtl.Aligned_MTL": "uses torch.symeig, removed from torch (RuntimeError); see libmtl.Aligned_MTL_eigh",
}


def run_exact(name, G, L, G3, steps, hp_over, order_mode, seed, usrc):
    """Not a peer: the exact MGDA min-norm point by a QP, to judge the peers' MGDA solvers."""
    rec = {"source": "reference (not a peer)", "dtype": "float64"}
    try:
        from qpsolvers import solve_qp

        T = G.shape[0]
        GG = (G @ G.T).numpy()
        w = solve_qp(
            GG + 1e-12 * np.eye(T), np.zeros(T), -np.eye(T), np.zeros(T), np.ones((1, T)), np.ones(1), solver="quadprog"
        )
        rec["class"] = "min_w w^T G G^T w s.t. w >= 0, sum w = 1 (qpsolvers/quadprog, +1e-12 I)"
        rec["weights"] = _to_list(w)
        rec["update"] = _to_list(torch.as_tensor(w) @ G)
        rec["status"] = "ok"
    except Exception as e:
        rec["status"] = "error"
        rec["exception"] = _exc_text(e)
    return rec


def latent_checks() -> dict:
    """Measured peer defects that a given input may or may not trigger."""
    out = {}
    try:
        W = importlib.import_module("LibMTL.weighting")
        h = make_libmtl_harness(W.SDMGrad, 2, 3, False)
        h.euclidean_proj_simplex(np.array([0.5, 0.5]))
        out["libmtl.SDMGrad.euclidean_proj_simplex(sum==1)"] = "ok"
    except Exception as e:
        out["libmtl.SDMGrad.euclidean_proj_simplex(sum==1)"] = (
            _exc_text(e) + " -- raised only when the SGD-updated w already sums to exactly 1 "
            "(np.alltrue was removed in NumPy 2.0)"
        )
    # LibMTL's Nash_MTL wraps prob.solve(solver=cp.ECOS) in a bare `except:`; without ECOS (cvxpy >= 1.6 no
    # longer installs it) every solve raises, alpha keeps its init (ones) and the update is the clipped SUM.
    try:
        W = importlib.import_module("LibMTL.weighting")
        nash_mod = importlib.import_module("LibMTL.weighting.Nash_MTL")
        real_cp = nash_mod.cp

        class _NoEcos:
            ECOS = "ECOS_NOT_INSTALLED"  # like cvxpy without the ecos package: every solve() raises SolverError

            def __getattr__(self, name):
                return getattr(real_cp, name)

        gen = torch.Generator().manual_seed(0)
        G = torch.randn(3, 5, generator=gen, dtype=torch.float64)
        h = make_libmtl_harness(W.Nash_MTL, 3, 5, False)
        h.encoder.theta.grad = torch.zeros(5)
        with patched((nash_mod, "cp", _NoEcos())):
            alpha = h.backward(surrogate_losses(h, G, torch.ones(3), "linear"), **LIBMTL_DEFAULTS["Nash_MTL"])
        total = G.sum(0)
        clipped = total / max(1.0, float(total.norm()))
        same = bool(np.allclose(alpha, 1.0) and torch.allclose(h.encoder.theta.grad, clipped, atol=1e-6))
        out["libmtl.Nash_MTL(without ECOS)"] = (
            f"returned alpha={np.round(np.asarray(alpha, dtype=np.float64), 6).tolist()}; update == clipped sum of "
            f"gradients: {same} -- the bare except hides the missing solver (no warning, no error)"
        )
    except Exception as e:
        out["libmtl.Nash_MTL(without ECOS)"] = "check failed: " + _exc_text(e)
    return out


def versions() -> dict:
    v = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__}
    for m in ("scipy", "cvxpy", "torchjd", "qpsolvers", "quadprog"):
        try:
            from importlib.metadata import version

            v[m] = version(m)
        except Exception:
            v[m] = None
    try:
        from importlib.metadata import version

        v["conflictfree"] = version("conflictfree")
    except Exception:
        v["conflictfree"] = None
    return v


def parse_hp(items):
    """--hp libmtl.CAGrad.calpha=0.4 torchjd.CAGrad.c=0.4 ..."""
    out: dict = {}
    for it in items or []:
        key, _, val = it.partition("=")
        lib, meth, param = key.split(".", 2)
        try:
            v = ast.literal_eval(val)
        except Exception:
            v = val
        out.setdefault(f"{lib}.{meth}", {})[param] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help=".npz with gradients [T,P] (and optional losses, gradients3, graddrop_u)")
    ap.add_argument("output", help="JSON file to write")
    ap.add_argument(
        "--steps",
        type=int,
        default=1,
        help="repeat the same fixed gradients for N steps on one fresh state (default 1)",
    )
    ap.add_argument(
        "--order",
        choices=["identity", "seeded"],
        default="identity",
        help="task order for PCGrad/GradVac (identity: shuffles are no-ops)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed for shuffles, GradDrop's U and Random")
    ap.add_argument("--methods", default="all", help="comma list like libmtl.PCGrad,torchjd.UPGrad (default all)")
    ap.add_argument("--hp", nargs="*", default=[], help="overrides: lib.Method.param=value")
    ap.add_argument("--label", default=None, help="a name for this run, kept in the JSON's meta (default: file stem)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    data = np.load(args.input)
    G_np = np.asarray(data["gradients"], dtype=np.float64)
    if G_np.ndim != 2:
        raise SystemExit("gradients must be [T, P]")
    T, P = G_np.shape
    losses_given = "losses" in data.files
    L_np = np.asarray(data["losses"], dtype=np.float64) if losses_given else np.ones(T)
    G3_given = "gradients3" in data.files
    G3_np = np.asarray(data["gradients3"], dtype=np.float64) if G3_given else np.stack([G_np] * 3)
    U_given = np.asarray(data["graddrop_u"], dtype=np.float64) if "graddrop_u" in data.files else None

    G = torch.as_tensor(G_np)
    L = torch.as_tensor(L_np)
    G3 = torch.as_tensor(G3_np)
    usrc = UniformSource(P, args.seed, U_given)
    hp = parse_hp(args.hp)

    todo = (
        [f"libmtl.{m}" for m in LIBMTL_METHODS]
        + [f"torchjd.{m}" for m in TORCHJD_METHODS]
        + [f"conflictfree.{m}" for m in CONFLICTFREE_METHODS]
        + [f"exact.{m}" for m in EXACT_METHODS]
    )
    if args.methods != "all":
        want = [m.strip() for m in args.methods.split(",") if m.strip()]
        todo = [m for m in todo if m in want]

    results = {}
    for key in todo:
        lib, meth = key.split(".", 1)
        fn = {"libmtl": run_libmtl, "torchjd": run_torchjd, "conflictfree": run_conflictfree, "exact": run_exact}[lib]
        _pyrandom.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        rec = fn(meth, G, L, G3, args.steps, hp.get(key, {}), args.order, args.seed, usrc)
        if key in KNOWN_BROKEN:
            rec["known_defect"] = KNOWN_BROKEN[key]
        results[key] = rec

    out = {
        "meta": {
            "input": os.path.abspath(args.input),
            "T": T,
            "P": P,
            "steps": args.steps,
            "losses": L_np.tolist(),
            "losses_source": "npz" if losses_given else "default ones",
            "gradients3_source": "npz" if G3_given else "gradients repeated 3 times",
            "label": args.label or os.path.splitext(os.path.basename(args.output))[0],
            "hp_overrides": hp,
            "order_mode": args.order,
            "seed": args.seed,
            "libmtl_dir": LIBMTL_DIR,
            "libmtl_commit": libmtl_commit(),
            "versions": versions(),
            "update_convention": (
                "'update' is the vector the peer writes into the shared "
                "parameters' .grad (the optimizer then steps along -update)."
            ),
            "harness": (
                "LibMTL: the weighting class subclassed by a minimal model with one shared "
                "parameter theta=zeros(P) (encoder) and no decoders; losses are surrogates whose "
                "value is `losses` and whose theta-gradient is `gradients`; LibMTL's own "
                "_compute_grad/_reset_grad/backward run unmodified; update = theta.grad. "
                "torch default dtype float64."
            ),
        },
        "latent_checks": latent_checks(),
        "methods": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(out, f, indent=1)

    if not args.quiet:
        print(f"T={T} P={P} steps={args.steps} order={args.order} -> {args.output}")
        for key, rec in results.items():
            if rec["status"] == "ok":
                u = np.asarray(rec["update"], dtype=np.float64)
                nrm = float(np.linalg.norm(u)) if np.all(np.isfinite(u)) else float("nan")
                print(f"  {key:32s} ok     |update|={nrm:.6g}")
            else:
                print(f"  {key:32s} ERROR  {rec['exception'][:90]}")
    return out


if __name__ == "__main__":
    main()
