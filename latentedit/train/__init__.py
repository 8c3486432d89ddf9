"""Training loops: StyleGAN2 (:mod:`~latentedit.train.stylegan2`) and what trainers share
(:mod:`~latentedit.train.common`: devices, DDP, checkpoints, metrics, signals).

``stylegan2`` is exposed as a module too: its resume helpers (``find_resume_checkpoint``,
``read_training_checkpoint``, ``resume_config``) share their names with the StarGAN trainer's.
"""
from latentedit.train import common, stylegan2
from latentedit.train.common import parse_channels
from latentedit.train.stylegan2 import StyleGAN2TrainConfig, train_stylegan2

__all__ = ["common", "stylegan2", "parse_channels", "StyleGAN2TrainConfig", "train_stylegan2"]
