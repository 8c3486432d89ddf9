"""Training and test data: the procedural toyfaces world, image folders and CelebA.

- :mod:`~latentedit.data.toyfaces`: the procedural face set with known attributes and exact
  counterfactuals (and :mod:`~latentedit.data.toyfaces_export`, :mod:`~latentedit.data.toyfaces_figure`).
- :mod:`~latentedit.data.datasets`: torch data sets over image folders, CelebA and toyfaces specs.
- :mod:`~latentedit.data.celeba`: reading and writing the CelebA attribute list.
"""
