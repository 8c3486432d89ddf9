"""``latentedit serve``: the web demo (Edit, Translate, PULSE, Training), built with Gradio.

Install it with the optional extra, ``pip install -e '.[demo]'``; everything here but :mod:`.app` works
without Gradio.

- :mod:`~latentedit.serve.engine`: what the page does, as calls of the commands' library functions
  (:class:`Engine`, :class:`ServeConfig`), so the page writes the files the CLI writes.
- :mod:`~latentedit.serve.jobs`: one heavy job at a time (:class:`JobQueue`), with queue position, progress
  and cancellation.
- :mod:`~latentedit.serve.visitors`: per-visitor temporary folders, cleaned up (:class:`VisitorFolders`).
- :mod:`~latentedit.serve.runs`: reading a training run folder for the dashboard without ever leaving the
  configured root (:class:`RunFolders`).
- :mod:`~latentedit.serve.app`: the Gradio Blocks (:func:`build_app`) and the server (:func:`serve`).
"""
from __future__ import annotations

import importlib.util

from latentedit.errors import InputError
from latentedit.serve.engine import DEFAULT_MAX_UPLOAD_MB, DEFAULT_PAGE_STEPS, DirectionEdit, Engine, Inverted, \
    ServeConfig, painted_reference, safe_stem
from latentedit.serve.jobs import Job, JobCancelled, JobQueue, install_progress_hooks
from latentedit.serve.runs import RunFolders, RunSummary, latest_sample, plot_curves, read_metrics, summarize
from latentedit.serve.visitors import VisitorFolders

#: The one line ``latentedit serve`` prints when Gradio is missing.
MISSING_DEMO_EXTRA = "latentedit serve needs the demo extra: pip install -e '.[demo]'"


def gradio_available() -> bool:
    """True when Gradio can be imported (the ``demo`` extra is installed)."""
    return importlib.util.find_spec("gradio") is not None


def require_gradio() -> None:
    """InputError with :data:`MISSING_DEMO_EXTRA` when Gradio is missing."""
    if not gradio_available():
        raise InputError(MISSING_DEMO_EXTRA)


def build_app(config: ServeConfig, engine: Engine | None = None):
    """The page (an :class:`~latentedit.serve.app.App`; its ``demo`` is the Gradio Blocks)."""
    require_gradio()
    from latentedit.serve.app import build_app as build

    return build(config, engine)


def serve(config: ServeConfig, block: bool = True, log=print):
    """Run the server (see :func:`latentedit.serve.app.serve`)."""
    require_gradio()
    from latentedit.serve.app import serve as run

    return run(config, block=block, log=log)


__all__ = ["ServeConfig", "Engine", "Inverted", "DirectionEdit", "painted_reference", "safe_stem",
           "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_PAGE_STEPS", "Job", "JobQueue", "JobCancelled", "install_progress_hooks",
           "RunFolders", "RunSummary", "read_metrics", "summarize", "latest_sample", "plot_curves",
           "VisitorFolders", "MISSING_DEMO_EXTRA", "gradio_available", "require_gradio", "build_app", "serve"]
