#!/usr/bin/env bash
# Runs every peer on the seeded fixed-gradient inputs (T = 2, 3, 5), after setup_peer.sh:
#   bash benchmarks/peer/run_peers.sh [OUT_DIR]        # default /work/peer/out; inputs in /work/peer/inputs
# then, in the project's environment:  python benchmarks/peer_agreement.py OUT_DIR/*.json
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PEER="${PEER_DIR:-/work/peer}"
OUT="${1:-$PEER/out}"
PY="$PEER/venv/bin/python"
export PYTHONPATH="$PEER/stubs:$PEER/LibMTL"
"$PY" "$HERE/make_random_inputs.py" "$PEER/inputs"
mkdir -p "$OUT"
RANDOM_ORDER=libmtl.PCGrad,libmtl.GradVac,torchjd.PCGrad,torchjd.GradVac
for T in 2 3 5; do
  IN="$PEER/inputs/random_T${T}_P7.npz"
  # every peer at its defaults; shuffles are no-ops (task order 0..T-1), GradDrop's U from torch seed 0
  "$PY" "$HERE/peer_updates.py" "$IN" "$OUT/random_T${T}_P7.json" --label defaults --quiet
  # PCGrad / GradVac with a seeded random task order (recorded in the JSON and replayed on our side)
  "$PY" "$HERE/peer_updates.py" "$IN" "$OUT/random_T${T}_P7_seeded.json" --label "seeded-order" \
      --order seeded --seed 7 --methods "$RANDOM_ORDER" --quiet
  # the peers' knobs set to take solver tolerance and clipping out of the comparison: iterative solvers run to
  # convergence (torchjd's SDMGrad also with a step size that converges), UPGrad without its 1e-4 ridge, Nash-MTL
  # without its norm clip (max_norm=0), so that the norm is compared too
  "$PY" "$HERE/peer_updates.py" "$IN" "$OUT/random_T${T}_P7_tight.json" --label tight --quiet \
      --methods libmtl.SDMGrad,torchjd.SDMGradWeighting,torchjd.MGDA,libmtl.UPGrad,libmtl.Nash_MTL,torchjd.NashMTL \
      --hp libmtl.SDMGrad.SDMGrad_niter=5000 torchjd.SDMGradWeighting.n_iter=20000 torchjd.SDMGradWeighting.lr=0.05 \
           torchjd.MGDA.epsilon=1e-12 torchjd.MGDA.max_iters=100000 libmtl.UPGrad.UPGrad_reg_eps=1e-12 \
           libmtl.Nash_MTL.max_norm=0 torchjd.NashMTL.max_norm=0
done
echo "peer updates in $OUT"
