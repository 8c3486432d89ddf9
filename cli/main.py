"""The ``latentedit`` command. Thin by design: parse options, call the library, report.

Every user-facing error is a :class:`latentedit.errors.LatentEditError`; it is printed as one line
(``error: ...``) with a non-zero exit code. ``--debug`` shows the traceback instead.
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
)


class _Group(click.Group):
    """Turns library errors into one-line messages unless ``--debug`` was given."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LatentEditError as error:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
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
    cli(prog_name="latentedit")
