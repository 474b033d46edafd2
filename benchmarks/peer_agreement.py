"""How closely mtl_keras' gradient methods agree with reference implementations on FIXED per-task gradients.

The peers (LibMTL main, torchjd, conflictfree = the official ConFIG package) run in their own environment
(benchmarks/peer/setup_peer.sh, benchmarks/peer/run_peers.sh), which writes one JSON per input with every peer
method's first-step update from a fresh state (benchmarks/peer/peer_updates.py). This script, in the project's
environment, computes mtl_keras' first-step update on the same gradients and compares:

    python benchmarks/peer_agreement.py /work/peer/out/*.json [--markdown TABLE.md] [--json ROWS.json]

cosine = cos(ours, peer); norm ratio = |ours| / |peer|, after mapping our update into the peer's documented
convention where the two differ (a sum instead of a mean, a normalised Gram matrix, a norm clip): the `convention`
column says which. The bar (from the issue): cosine >= 0.9999 and |norm ratio - 1| <= 1e-3; a row below it gets a
reason from REASONS (measured, see benchmarks/results/peer_agreement.md) or UNEXPLAINED.

Randomness: PCGrad's and GradVac's task orders are replayed from the peer's recorded orders (our methods draw them
in `random_orders`, patched here for the one call); GradDrop's uniform draw U is replayed the same way. A row whose
`order` column says "own" uses our own draw (only where the result does not depend on it, T = 2).

Adding a method: one `Comparison(...)` line in COMPARISONS. `interface="gram"` methods are called as the training
step does, `coefficients_and_state(G G^T, step)`, update = alpha @ G; `interface="vector"` ones (VectorGradientMethod)
as `update_and_state(G, losses, step)`. A method not registered in GRADIENT_METHODS (yet) is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402

from mtl_keras.training.gradients import GRADIENT_METHODS  # noqa: E402

COSINE_BAR = 0.9999
NORM_BAR = 1e-3


# --------------------------------------------------------------------------------------------------------------
# Conventions: map our update into the peer's convention (documented differences, not disagreements)
# --------------------------------------------------------------------------------------------------------------
def same(update, G, rec):
    return update


def divide_by_T(update, G, rec):
    """torchjd's AlignedMTL applies B to its preference vector, the mean (1/T), where the paper's code sums (B 1)."""
    return update / G.shape[0]


def nash_clipped(update, G, rec):
    """LibMTL / torchjd Nash-MTL clip the update's norm to max_norm (default 1.0; 0 disables). Their Gram matrix is
    normalised by its Frobenius norm s, but the constraint alpha_t s (G/s alpha)_t >= 1 carries s back (their
    `normalization_factor`), so their alpha solves alpha * (G alpha) = 1 on the raw G, as ours does."""
    max_norm = _nash_max_norm(rec)
    norm = np.linalg.norm(update)
    return update * (max_norm / norm) if max_norm > 0 and norm > max_norm else update


def _nash_max_norm(rec):
    if "hyperparameters" in rec:
        return float(rec["hyperparameters"].get("max_norm", 1.0))
    return float(rec.get("constructor_kwargs", {}).get("max_norm", 1.0))


CONVENTIONS: dict[str, tuple[Callable, str]] = {
    "same": (same, "-"),
    "mean": (divide_by_T, "peer = ours / T (mean pref. vector)"),
    "nash": (nash_clipped, "peer = ours clipped to max_norm (1.0; 0 in run 'tight')"),
}


# --------------------------------------------------------------------------------------------------------------
# Replaying the peers' randomness
# --------------------------------------------------------------------------------------------------------------
def peer_orders(kind: str, rec: dict, T: int) -> list[list[int]] | None:
    """For each task i, the order (a permutation of all T tasks; i itself is skipped by our methods) in which the
    peer visited the other tasks on the first step."""
    if kind == "own":
        return None
    if kind == "fixed":  # conflictfree: j = 0..T-1
        return [list(range(T)) for _ in range(T)]
    recorded = rec["randomness"]["task_orders"][0]
    if kind == "libmtl_pcgrad":  # LibMTL's list holds all T tasks (i included, where LibMTL does not skip it)
        return [list(order) for order in recorded]
    if kind == "libmtl_gradvac":  # LibMTL's list excludes i
        return [[i, *order] for i, order in enumerate(recorded)]
    if kind == "torchjd_pcgrad":  # randperm(T) per task, i skipped
        return [list(order) for order in recorded]
    if kind == "torchjd_gradvac":  # randperm(T - 1): indices into [j for j != i]
        out = []
        for i, perm in enumerate(recorded):
            others = [j for j in range(T) if j != i]
            out.append([i, *[others[k] for k in perm]])
        return out
    raise ValueError(kind)


@contextlib.contextmanager
def replayed_orders(orders):
    """Our PCGrad / GradVac draw their task orders with `random_orders(T, seed, step)`: return the peer's instead."""
    if orders is None:
        yield
        return
    import mtl_keras.training.gradients.gradvac as gradvac_module
    import mtl_keras.training.gradients.pcgrad as pcgrad_module

    fixed = tf.constant(orders, tf.int32)
    saved = [(module, module.random_orders) for module in (pcgrad_module, gradvac_module)]
    try:
        for module, _ in saved:
            module.random_orders = lambda num_tasks, seed, step: fixed
        yield
    finally:
        for module, original in saved:
            module.random_orders = original


@contextlib.contextmanager
def replayed_uniform(rec):
    """GradDrop's draw U (tf.random.stateless_uniform in our method): the peer's recorded U."""
    if rec is None or "U_per_step" not in rec.get("randomness", {}):
        yield
        return
    draw = tf.constant(rec["randomness"]["U_per_step"][0], tf.float32)
    original = tf.random.stateless_uniform
    try:
        tf.random.stateless_uniform = lambda shape, seed, **kwargs: tf.reshape(draw, shape)
        yield
    finally:
        tf.random.stateless_uniform = original


# --------------------------------------------------------------------------------------------------------------
# The comparisons
# --------------------------------------------------------------------------------------------------------------
def hp(rec, key, default):
    """A LibMTL hyperparameter (as the peer recorded it) or a torchjd constructor argument, else `default`."""
    for where in ("hyperparameters", "constructor_kwargs"):
        if key in rec.get(where, {}):
            return rec[where][key]
    return default


@dataclass
class Comparison:
    method: str  # ours: a key of GRADIENT_METHODS
    peer: str  # a key of the peer JSON's "methods"
    kwargs: Callable[[dict], dict] = field(default=lambda rec: {})  # our constructor kwargs, from the peer record
    convention: str = "same"
    order: str | None = None  # how to replay the task order (peer_orders), None: the method has none
    interface: str = "gram"  # "gram" (coefficients_and_state) or "vector" (update_and_state)
    inputs: str = "plain"  # "plain": the npz gradients; "log_losses": gradients * (L + 1e-8) (DB-MTL, see below)
    note: str = ""  # what was matched, shown in the table


P = {"space": "parameters"}  # every comparison is on the shared parameters' gradients
COMPARISONS = [
    Comparison("pcgrad", "libmtl.PCGrad", lambda r: P, order="libmtl_pcgrad"),
    Comparison("pcgrad", "torchjd.PCGrad", lambda r: P, order="torchjd_pcgrad"),
    Comparison("pcgrad", "conflictfree.PCGradOperator", lambda r: P, order="fixed"),
    Comparison("pcgrad", "libmtl.PCGrad", lambda r: P, order="own", note="our own seeded order"),
    Comparison("cagrad", "libmtl.CAGrad",
               lambda r: {**P, "c": hp(r, "calpha", 0.5), "rescale": hp(r, "rescale", 1) == 1},
               note="c=calpha=0.5, rescale 1/(1+c^2) (both defaults)"),
    Comparison("cagrad", "torchjd.CAGrad", lambda r: {**P, "c": hp(r, "c", 0.5), "rescale": False},
               note="ours rescale=False (torchjd has no rescale)"),
    Comparison("mgda", "libmtl.MGDA", lambda r: P, note="mgda_gn='none'; ours space=parameters"),
    Comparison("mgda", "torchjd.MGDA", lambda r: P),
    Comparison("mgda", "exact.MGDA_minnorm_qp", lambda r: P, note="not a peer: exact QP"),
    Comparison("imtl_g", "libmtl.IMTL", lambda r: P, note="IMTL's shared update (IMTL-G) at s=0"),
    Comparison("imtl_g", "torchjd.IMTLG", lambda r: P),
    Comparison("imtl_g", "conflictfree.IMTLGOperator", lambda r: P),
    Comparison("nash_mtl", "libmtl.Nash_MTL", lambda r: P, convention="nash"),
    Comparison("nash_mtl", "torchjd.NashMTL", lambda r: P, convention="nash"),
    Comparison("aligned_mtl", "libmtl.Aligned_MTL", lambda r: P, note="LibMTL's code as it is"),
    Comparison("aligned_mtl", "libmtl.Aligned_MTL_eigh", lambda r: P,
               note="LibMTL's code with torch.symeig -> torch.linalg.eigh"),
    Comparison("aligned_mtl", "torchjd.AlignedMTL", lambda r: P, convention="mean"),
    Comparison("upgrad", "libmtl.UPGrad", lambda r: P),
    Comparison("upgrad", "torchjd.UPGrad", lambda r: P),
    Comparison("dualproj", "torchjd.DualProj", lambda r: P),
    Comparison("gradvac", "libmtl.GradVac", lambda r: {**P, "beta": hp(r, "GradVac_beta", 0.5)},
               order="libmtl_gradvac", note="beta=0.5, group_type 0 (whole model)"),
    Comparison("gradvac", "torchjd.GradVac", lambda r: {**P, "beta": hp(r, "beta", 0.5)}, order="torchjd_gradvac"),
    Comparison("gradvac", "libmtl.GradVac", lambda r: {**P, "beta": hp(r, "GradVac_beta", 0.5)}, order="own",
               note="our own seeded order"),
    Comparison("fairgrad", "libmtl.FairGrad", lambda r: {**P, "alpha": hp(r, "FairGrad_alpha", 1.0)}),
    Comparison("fairgrad", "torchjd.FairGrad", lambda r: {**P, "alpha": hp(r, "alpha", 1.0)}),
    Comparison("config", "torchjd.ConFIG", lambda r: P),
    Comparison("config", "conflictfree.ConFIGOperator", lambda r: P),
    Comparison("config", "conflictfree.ConFIG_update", lambda r: P),
    Comparison("sdmgrad", "libmtl.SDMGrad", lambda r: {**P, "lam": hp(r, "SDMGrad_lamda", 0.3)},
               note="lam=0.3; all 3 samples = the same G"),
    Comparison("sdmgrad", "torchjd.SDMGradWeighting", lambda r: {**P, "lam": hp(r, "lambda_", 0.3)},
               note="lam=0.3; all 3 samples = the same G"),
    Comparison("modo", "libmtl.MoDo",
               lambda r: {**P, "gamma": hp(r, "MoDo_gamma", 1e-3), "rho": hp(r, "MoDo_rho", 0.1)},
               note="gamma=1e-3, rho=0.1 (both defaults)"),
    Comparison("modo", "torchjd.MoDoWeighting",
               lambda r: {**P, "gamma": hp(r, "gamma", 0.1), "rho": hp(r, "rho", 0.1)},
               note="ours gamma=0.1 (torchjd's default; ours 1e-3)"),
    # VectorGradientMethod (need the gradients / losses themselves)
    Comparison("graddrop", "libmtl.GradDrop", lambda r: {**P, "leak": hp(r, "leak", 0.0)}, interface="vector",
               order="own", note="U replayed; LibMTL in rep. space, batch 1, sign +1"),
    Comparison("graddrop", "torchjd.GradDrop", lambda r: P, interface="vector", order="own", note="U replayed"),
    Comparison("moco", "libmtl.MoCo",
               lambda r: {**P, "beta": hp(r, "MoCo_beta", 0.5), "beta_sigma": hp(r, "MoCo_beta_sigma", 0.5),
                          "gamma": hp(r, "MoCo_gamma", 0.1), "gamma_sigma": hp(r, "MoCo_gamma_sigma", 0.5),
                          "rho": hp(r, "MoCo_rho", 0.0)}, interface="vector"),
    Comparison("db_mtl", "libmtl.DB_MTL",
               lambda r: {**P, "beta": hp(r, "DB_beta", 0.9), "beta_sigma": hp(r, "DB_beta_sigma", 0.0)},
               interface="vector", inputs="log_losses",
               note="npz G = d log L / d theta: ours gets G * (L + 1e-8)"),
    Comparison("excess_mtl", "libmtl.ExcessMTL",
               lambda r: {**P, "robust_step_size": hp(r, "robust_step_size", 1e-2)}, interface="vector"),
]

# Why a row is below the bar, where it was investigated (see benchmarks/results/peer_agreement.md). Keyed by
# (our method, peer key, run label) or (our method, peer key); shown only for rows below the bar.
_SDMGRAD = ("PEER's inner solver does not solve its own problem: 20 projected-SGD steps at lr 5 (LibMTL, hard-coded) "
            "/ lr 10 (torchjd) with momentum overshoot and land on a simplex vertex (T=3: |g_w + lam g0|^2 = 10.78 vs "
            "the minimum 1.83, which ours and SciPy reach); more iterations at that lr do not help; torchjd at "
            "lr=0.05 (run 'tight') agrees")
REASONS: dict[tuple, str] = {
    ("sdmgrad", "libmtl.SDMGrad"): _SDMGRAD,
    ("sdmgrad", "torchjd.SDMGradWeighting"): _SDMGRAD,
}


# --------------------------------------------------------------------------------------------------------------
def our_update(comparison: Comparison, G: np.ndarray, L: np.ndarray, rec: dict) -> tuple[np.ndarray, dict]:
    cls = GRADIENT_METHODS[comparison.method]
    kwargs = comparison.kwargs(rec)
    method = cls(**kwargs)
    T, num_parameters = G.shape
    gradients = G * (L[:, None] + 1e-8) if comparison.inputs == "log_losses" else G
    step = tf.constant(0, tf.int64)
    orders = peer_orders(comparison.order, rec, T) if comparison.order else None
    with replayed_orders(orders), replayed_uniform(rec if comparison.method == "graddrop" else None):
        if comparison.interface == "gram":
            method.build_for_tasks(T)
            gram = tf.constant(gradients @ gradients.T, tf.float32)
            alpha, _ = method.coefficients_and_state(gram, step)
            update = np.asarray(alpha, np.float64) @ gradients
        else:
            method.build_for_tasks(T, num_parameters=num_parameters)
            result = method.update_and_state(tf.constant(gradients, tf.float32), tf.constant(L, tf.float32), step)
            update = np.asarray(result[0], np.float64)
    return update, kwargs


def order_label(comparison: Comparison, meta: dict) -> str:
    if comparison.order is None:
        return "-"
    if comparison.order == "own":
        return "U replayed" if comparison.method == "graddrop" else "own"
    if comparison.order == "fixed":
        return "fixed (peer has none)"
    mode = meta.get("order_mode", "identity")
    return f"replayed ({mode}{'' if mode == 'identity' else ' ' + str(meta.get('seed'))})"


def compare(json_paths: list[str], only: set[str] | None = None) -> list[dict]:
    rows = []
    for path in json_paths:
        with open(path) as f:
            data = json.load(f)
        meta = data["meta"]
        npz = np.load(meta["input"])
        G = np.asarray(npz["gradients"], np.float64)
        L = np.asarray(npz["losses"], np.float64) if "losses" in npz.files else np.ones(G.shape[0])
        T = G.shape[0]
        for comparison in COMPARISONS:
            if only and comparison.method not in only:
                continue
            rec = data["methods"].get(comparison.peer)
            if rec is None:
                continue  # this JSON did not run that peer (e.g. an order-only run)
            if comparison.order == "own" and comparison.method != "graddrop" and (
                    T != 2 or meta.get("order_mode") != "identity"):
                continue  # our own order agrees with the peer's only where the result does not depend on it
            row = {"method": comparison.method, "T": T, "peer": comparison.peer, "run": meta.get("label", ""),
                   "order": order_label(comparison, meta), "convention": CONVENTIONS[comparison.convention][1],
                   "note": comparison.note}
            if comparison.method not in GRADIENT_METHODS:
                row.update(verdict="skipped", reason="not registered in GRADIENT_METHODS")
                rows.append(row)
                continue
            if rec.get("status") != "ok":
                row.update(verdict="peer error", reason=rec.get("exception", "")[:100])
                rows.append(row)
                continue
            try:
                ours, kwargs = our_update(comparison, G, L, rec)
            except Exception as e:  # a method being edited by someone else: report, go on
                row.update(verdict="ours error", reason=f"{type(e).__name__}: {e}"[:160])
                rows.append(row)
                continue
            peer = np.asarray(rec["update"], np.float64)
            mapped = CONVENTIONS[comparison.convention][0](ours, G, rec)
            cosine = float(mapped @ peer / max(np.linalg.norm(mapped) * np.linalg.norm(peer), 1e-300))
            ratio = float(np.linalg.norm(mapped) / max(np.linalg.norm(peer), 1e-300))
            ok = cosine >= COSINE_BAR and abs(ratio - 1.0) <= NORM_BAR
            row.update(cosine=cosine, norm_ratio=ratio, norm_ours=float(np.linalg.norm(ours)),
                       norm_peer=float(np.linalg.norm(peer)), kwargs=kwargs, verdict="agree" if ok else "BELOW BAR")
            if not ok:
                row["reason"] = REASONS.get((comparison.method, comparison.peer, row["run"]),
                                            REASONS.get((comparison.method, comparison.peer), "UNEXPLAINED"))
            rows.append(row)
    return rows


def short_kwargs(kwargs: dict | None) -> str:
    if not kwargs:
        return ""
    return ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "space")


def markdown(rows: list[dict]) -> str:
    head = ("| method | T | peer | run | order | convention | ours built with | cosine | norm ratio | verdict |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        cos = f"{r['cosine']:.7f}" if "cosine" in r else ""
        ratio = f"{r['norm_ratio']:.6f}" if "norm_ratio" in r else ""
        verdict = r["verdict"] + (f": {r['reason']}" if r.get("reason") else "")
        built = short_kwargs(r.get("kwargs")) + (f" ({r['note']})" if r.get("note") else "")
        lines.append(f"| {r['method']} | {r['T']} | {r['peer']} | {r['run']} | {r['order']} | {r['convention']} | "
                     f"{built} | {cos} | {ratio} | {verdict} |")
    return head + "\n".join(lines) + "\n"


def summary(rows: list[dict]) -> str:
    """One line per (method, peer, run, how ours was built): the worst cosine and norm ratio over T."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["method"], r["peer"], r["run"], r["order"], r["convention"], short_kwargs(r.get("kwargs")) + (
            f" ({r['note']})" if r.get("note") else ""))
        groups.setdefault(key, []).append(r)
    lines = ["| method | peer | run | order | convention | ours built with | T | worst cosine | worst norm ratio | "
             "verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (method, peer, run, order, convention, built), group in groups.items():
        measured = [r for r in group if "cosine" in r]
        cos = f"{min(r['cosine'] for r in measured):.7f}" if measured else ""
        ratio = (f"{max((r['norm_ratio'] for r in measured), key=lambda x: abs(x - 1)):.6f}" if measured else "")
        below = {}
        for r in group:
            if r["verdict"] != "agree":
                below.setdefault(r["verdict"], []).append(str(r["T"]))
        verdict = "; ".join(f"{v} at T={','.join(ts)}" for v, ts in below.items()) or "agree"
        sizes = ",".join(str(r["T"]) for r in group)
        lines.append(f"| {method} | {peer} | {run} | {order} | {convention} | {built} | {sizes} | {cos} | {ratio} | "
                     f"{verdict} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("peer_json", nargs="+", help="JSON files written by benchmarks/peer/peer_updates.py")
    ap.add_argument("--methods", default="", help="comma list of our method names (default: all)")
    ap.add_argument("--markdown", help="write the table here (markdown)")
    ap.add_argument("--summary", help="write the per-method summary table here (markdown)")
    ap.add_argument("--json", help="write the rows here (JSON)")
    args = ap.parse_args(argv)
    only = {m.strip() for m in args.methods.split(",") if m.strip()} or None
    rows = compare(sorted(args.peer_json), only)
    rows.sort(key=lambda r: (r["method"], r["T"], r["peer"], r["run"]))
    table = markdown(rows)
    print(table)
    below = [r for r in rows if r["verdict"] not in ("agree", "skipped")]
    print(f"{len(rows)} rows, {len(rows) - len(below)} agree or skipped, {len(below)} below the bar or in error",
          file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    if args.summary:
        with open(args.summary, "w") as f:
            f.write(summary(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
