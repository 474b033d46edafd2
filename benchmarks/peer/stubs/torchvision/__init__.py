"""Stub of torchvision for importing LibMTL without the real package.

LibMTL/model/resnet.py does `from torchvision.models.utils import
load_state_dict_from_url` inside a bare try/except (falls back to torch.hub),
so this stub deliberately provides no `models.utils`.
"""

__version__ = "0.0.0+stub"
