"""camexp: PyTorch Lightning experiments for Class Activation Mapping (Zhou et al., CVPR 2016)."""

__version__ = "0.1.0"


def explain(*args, **kwargs):
    """CAM records of images (paths, folders, PIL images, tensors): `camexp.explainer.explain`.

    Imported on first use, so `import camexp` stays light (the torch-free commands need that)."""
    from camexp.explainer import explain as explain_images

    return explain_images(*args, **kwargs)
