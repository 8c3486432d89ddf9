"""The ``latentedit`` command. Thin by design: parse options, call the library, report.

Every user-facing error is a :class:`latentedit.errors.LatentEditError`; it is printed as one line
(``error: ...``) with a non-zero exit code. ``--debug`` shows the traceback instead. Click's own usage
errors (a missing or unknown option, a bad value) are one line too, with exit code 2:
``error: Missing option '--vec' (see latentedit apply-direction --help)``.
"""
from __future__ import annotations

import importlib
import sys

import click

from latentedit import __version__
from latentedit.errors import LatentEditError

# Each module defines COMMANDS, a list of click commands or groups added to the top-level group.
COMMAND_MODULES = (
    "latentedit.cli.generate_cmd",
    "latentedit.cli.checkpoint_cmds",
    "latentedit.cli.ops_cmds",
    "latentedit.cli.data_cmds",
    "latentedit.cli.train_cmds",
    "latentedit.cli.eval_cmds",
    "latentedit.cli.invert_cmd",
    "latentedit.cli.pulse_cmd",
    "latentedit.cli.direction_cmds",
    "latentedit.cli.evaluate_cmds",
    "latentedit.cli.stargan_cmds",
    "latentedit.cli.photos_cmds",
    "latentedit.cli.serve_cmd",
    "latentedit.cli.cyclegan_cmds",
    "latentedit.cli.encoder_cmds",
)


class _OneLineError(click.ClickException):
    """A click error shown as one line, ``error: MESSAGE (see latentedit CMD --help)``, with its exit code."""

    def __init__(self, error: click.ClickException) -> None:
        super().__init__(error.format_message())
        self.exit_code = error.exit_code
        self.ctx = getattr(error, "ctx", None)

    def show(self, file=None) -> None:
        message = " ".join(self.message.split())
        if message.endswith(".") and not message.endswith(".."):
            message = message[:-1]
        if self.ctx is not None:
            message += f" (see {_command_path(self.ctx)} --help)"
        click.echo(f"error: {message}", file=file, err=file is None)


def _command_path(ctx: click.Context) -> str:
    """``latentedit SUB CMD`` whatever the root was invoked as (``python -m``, CliRunner, torchrun)."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or ctx.command.name or "")
        ctx = ctx.parent
    return " ".join(["latentedit", *reversed(names)])


def _one_line(error: click.ClickException) -> click.ClickException:
    if isinstance(error, (_OneLineError, getattr(click.exceptions, "NoArgsIsHelpError", ()))):
        return error  # already one line, or a bare group name: click prints that group's help
    return _OneLineError(error)


class _Group(click.Group):
    """Turns library and usage errors into one-line messages unless ``--debug`` was given."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:  # the top-level options (--debug, --version, an unknown one)
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as error:
            raise _one_line(error) from error

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.ClickException as error:  # parsing a subcommand's options, or raised by a command
            raise _one_line(error) from error
        except LatentEditError as error:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as error:  # a bug in latentedit: still one line, but say what to do
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: internal error ({type(error).__name__}: {error}); rerun with --debug and report it",
                       err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="latentedit")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """Edit images in the latent space of a StyleGAN2 generator.

    Runs offline on the embedded toyfaces default; every command that takes --ckpt also accepts a
    rosinality .pt, an NVIDIA stylegan2-ada .pkl or a latentedit .safetensors checkpoint.
    """


for _module_name in COMMAND_MODULES:
    for _command in importlib.import_module(_module_name).COMMANDS:
        cli.add_command(_command)


def main() -> None:
    from latentedit.device import tune_cpu_allocator

    tune_cpu_allocator()  # keeps large tensor buffers mapped between steps (see its docstring)
    cli(prog_name="latentedit")
