"""Seeded random fixed-gradient inputs for peer_updates.py (T = 2, 3, 5; P = 7).

    /work/peer/venv/bin/python benchmarks/peer/make_random_inputs.py OUT_DIR
writes OUT_DIR/random_T{T}_P7.npz with `gradients` [T, 7] ~ N(0, 1) and
`losses` [T] ~ U(0.5, 2), numpy default_rng(seed = 1000 + T).
"""

import os
import sys

import numpy as np


def main(out_dir: str, P: int = 7) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for T in (2, 3, 5):
        rng = np.random.default_rng(1000 + T)
        g = rng.standard_normal((T, P))
        L = rng.uniform(0.5, 2.0, size=T)
        np.savez(os.path.join(out_dir, f"random_T{T}_P{P}.npz"), gradients=g, losses=L)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/peer/inputs")
