"""Exceptions that the CLI turns into a one-line message and a non-zero exit code.

Every error a user can cause (a bad file, a wrong shape, a missing weight) is raised as a subclass of
:class:`LatentEditError` whose message names the problem and what to do about it. Anything else that
escapes is a bug in latentedit, and the CLI says so.
"""


class LatentEditError(Exception):
    """Base class of user-facing errors. ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class CheckpointError(LatentEditError):
    """A checkpoint file is missing, corrupt, unsafe, or not a supported StyleGAN2 generator."""


class InputError(LatentEditError):
    """An input (image, latent, option value) does not fit what the command needs."""


class OpsBuildError(LatentEditError):
    """A compiled kernel could not be built or loaded."""
