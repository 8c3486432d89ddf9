"""Training and test data: the procedural toyfaces world, image folders and CelebA.

- :mod:`~latentedit.data.toyfaces`: the procedural face set with known attributes and exact
  counterfactuals (and :mod:`~latentedit.data.toyfaces_export`, :mod:`~latentedit.data.toyfaces_figure`).
- :mod:`~latentedit.data.datasets`: torch data sets over image folders, CelebA and toyfaces specs.
- :mod:`~latentedit.data.celeba`: reading and writing the CelebA attribute list.
"""
from latentedit.data import toyfaces
from latentedit.data.datasets import open_image_dataset
from latentedit.data.toyfaces_export import export_toyfaces

__all__ = ["toyfaces", "open_image_dataset", "export_toyfaces"]
