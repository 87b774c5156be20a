"""camexp: PyTorch Lightning experiments for Class Activation Mapping (Zhou et al., CVPR 2016)."""

__version__ = "0.1.0"
