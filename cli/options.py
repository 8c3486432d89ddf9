"""Shared option conventions of the ``latentedit`` commands.

One name per concept: ``-o/--out`` for what a command writes, ``--batch-size``, ``--strength`` and
``--progress/--no-progress`` (default: a bar only when stderr is a terminal). Older names keep working
as hidden aliases (:class:`AliasOption`): they parse into the same parameter but are not shown in
``--help`` or in error messages. ``tests/test_cli_conventions.py`` checks every command against this.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import click

PROGRESS_DEFAULT = "[default: on a terminal]"


class AliasOption(click.Option):
    """A click option with extra, hidden names.

    ``aliases`` are more names for the option (for a boolean flag: for its "on" side);
    ``secondary_aliases`` are more names for the "off" side of a ``--x/--no-x`` flag, e.g. ``--quiet``
    for ``--progress/--no-progress``. Click cannot hide one name of an option, so these names are
    parsed like the others but left out of the help line and of error hints.
    """

    def __init__(self, param_decls: Sequence[str] | None = None, *, aliases: Sequence[str] = (),
                 secondary_aliases: Sequence[str] = (), **attrs) -> None:
        super().__init__(list(param_decls or ()) + list(aliases), **attrs)
        if secondary_aliases and not self.secondary_opts:
            raise TypeError(f"secondary_aliases need a --x/--no-x flag, not {self.opts}")
        self.secondary_opts.extend(secondary_aliases)
        self.aliases = tuple(aliases)
        self.secondary_aliases = tuple(secondary_aliases)

    @property
    def hidden_names(self) -> tuple[str, ...]:
        return self.aliases + self.secondary_aliases

    @contextmanager
    def _visible_names(self) -> Iterator[None]:
        opts, secondary_opts = self.opts, self.secondary_opts
        self.opts = [name for name in opts if name not in self.aliases]
        self.secondary_opts = [name for name in secondary_opts if name not in self.secondary_aliases]
        try:
            yield
        finally:
            self.opts, self.secondary_opts = opts, secondary_opts

    def get_help_record(self, ctx: click.Context):
        with self._visible_names():
            return super().get_help_record(ctx)

    def get_error_hint(self, ctx: click.Context | None) -> str:
        with self._visible_names():
            return super().get_error_hint(ctx)


def visible_names(param: click.Parameter) -> tuple[list[str], list[str]]:
    """The names of ``param`` that ``--help`` shows: (opts, secondary_opts)."""
    hidden = set(getattr(param, "hidden_names", ()))
    return ([n for n in param.opts if n not in hidden],
            [n for n in getattr(param, "secondary_opts", []) if n not in hidden])


def out_option(*extra_decls: str, aliases: Sequence[str] = (), **attrs):
    """``-o/--out`` (``extra_decls`` is the parameter name, e.g. ``"out_dir"``); ``aliases`` e.g. ``--output``."""
    return click.option("-o", "--out", *extra_decls, cls=AliasOption, aliases=aliases, **attrs)


def progress_option(help: str = "Show a progress bar.", *, quiet_alias: bool = False):
    """``--progress/--no-progress``, default None (auto: a bar only when stderr is a terminal).

    Resolve the value with :func:`latentedit.progress.resolve_progress` before passing it on.
    ``quiet_alias`` adds a hidden ``--quiet`` meaning ``--no-progress`` (its old name in some commands).
    """
    return click.option("--progress/--no-progress", "progress", cls=AliasOption, default=None,
                        secondary_aliases=("--quiet",) if quiet_alias else (),
                        help=f"{help} {PROGRESS_DEFAULT}")


def precision_option(help: str = "What the generator computes in."):
    """``--precision fp32|bf16|fp16|auto`` (default fp32); see :mod:`latentedit.precision`."""
    return click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16", "auto"]), default="fp32",
                        show_default=True,
                        help=f"{help} bf16/fp16: autocast for the generator's forward passes (latents, optimiser "
                             f"state and losses stay float32); auto: bf16 on CPUs and GPUs that have it, fp16 on "
                             f"GPUs for checkpoints with conv_clamp, else fp32. Reduced precision changes the "
                             f"output bytes.")
