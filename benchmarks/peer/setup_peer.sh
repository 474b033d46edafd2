#!/usr/bin/env bash
# Builds the peer-reference environment used by benchmarks/peer/peer_updates.py, outside the repo.
#   bash benchmarks/peer/setup_peer.sh /path/to/LibMTL.git   # a bare git dir of median-research-group/LibMTL
# (in these sessions: the search tool's fetch of github:median-research-group/LibMTL gives
#  /work/.mirror/median-research-group+LibMTL/repo)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PEER="${PEER_DIR:-/work/peer}"
GITDIR="${1:-/work/.mirror/median-research-group+LibMTL/repo}"
COMMIT="${LIBMTL_COMMIT:-4336804847eaa5e0b924b743d76beec7ac3fdc97}"   # LibMTL main, 2025-05-14

mkdir -p "$PEER"
[ -x "$PEER/venv/bin/python" ] || python -m venv "$PEER/venv"
# torch 2.13.0 first, pinned: on these machines `pip install torch==2.13.0` takes a local CPU wheel, while a
# plain `torch` (asked for directly or by torchjd/conflictfree) would pull a multi-GB CUDA build.  Installed
# first so that the later packages' torch requirement is already satisfied and installs nothing more.
"$PEER/venv/bin/pip" install --quiet "torch==${TORCH_VERSION:-2.13.0}"
# torchjd with its optional solvers (qpsolvers+quadprog for UPGrad/DualProj and LibMTL's UPGrad; ecos for
# NashMTL and LibMTL's Nash_MTL), conflictfree = the official ConFIG package.  The torch pin is repeated so pip
# never swaps it for another release.
"$PEER/venv/bin/pip" install --quiet "torch==${TORCH_VERSION:-2.13.0}" numpy scipy cvxpy \
    "torchjd==${TORCHJD_VERSION:-0.18.0}" "conflictfree==${CONFLICTFREE_VERSION:-0.1.8}" qpsolvers quadprog ecos

rm -rf "$PEER/LibMTL" && mkdir -p "$PEER/LibMTL"
git --git-dir="$GITDIR" archive "$COMMIT" | tar -x -C "$PEER/LibMTL"
echo "$COMMIT" > "$PEER/LibMTL/COMMIT"

rm -rf "$PEER/stubs" && cp -r "$HERE/stubs" "$PEER/stubs"
find "$PEER/stubs" -name __pycache__ -prune -exec rm -rf {} +
echo "peer environment ready in $PEER"
