"""Shows that each notebook's last-cell checks need learning: runs every tutorial with each Keras optimizer's learning
rate forced to 0 (a first cell patches `keras.optimizers.Optimizer`) and prints the cell that fails and why. Each
must fail in its last cell. Two notebooks at a time; about 4 minutes on 2 cores.

    python .ci/notebooks-unlearned.py [NOTEBOOK ...]
"""

from __future__ import annotations

import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NO_LEARNING = '''import keras

_init = keras.optimizers.Optimizer.__init__


def _without_learning(self, *args, **kwargs):
    if args:
        args = (0.0, *args[1:])
    else:
        kwargs["learning_rate"] = 0.0
    _init(self, *args, **kwargs)


keras.optimizers.Optimizer.__init__ = _without_learning'''


def run(path: Path) -> str:
    notebook = nbformat.read(str(path), as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(NO_LEARNING))
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        client.execute()
    except CellExecutionError:
        pass
    codes = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    errors = [(i, output) for i in codes for output in notebook.cells[i].get("outputs", [])
              if output.get("output_type") == "error"]
    if not errors:
        return f"{path.name}: NO CELL FAILED: its checks pass without learning"
    index, error = errors[0]
    where = "the last cell" if index == codes[-1] else f"cell {index}, NOT the last"
    return f"{path.name}: fails in {where}: {error['ename']}: {error['evalue'][:200]}"


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="unlearned-")
    paths = [NOTEBOOKS / name for name in sys.argv[1:]] or sorted(NOTEBOOKS.glob("*.ipynb"))
    with ThreadPoolExecutor(2) as pool:
        lines = list(pool.map(run, paths))
    print("\n".join(lines))
    return 0 if all("fails in the last cell" in line for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
