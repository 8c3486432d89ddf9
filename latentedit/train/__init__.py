"""Training loops: StyleGAN2 (:mod:`~latentedit.train.stylegan2`) and what trainers share
(:mod:`~latentedit.train.common`: devices, DDP, checkpoints, metrics). Import the trainer you need; nothing heavy
runs here."""
