"""pgnm: Policy Gradient-Driven Noise Mask pretraining for medical-image classifiers."""

from pgnm._compat import ensure_torchvision_importable

# Must run before anything imports timm (and through it, torchvision).
ensure_torchvision_importable()

__version__ = "0.1.0"
