"""Stub of torch_geometric for importing LibMTL without the real package.

LibMTL/trainer.py does `import torch_geometric` at module import time and only
uses `torch_geometric.loader.DataLoader` for graph datasets, which the
fixed-gradient peer harness never touches.
"""

__version__ = "0.0.0+stub"
from . import loader  # noqa: E402,F401
