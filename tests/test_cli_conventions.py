"""CLI conventions (issue #17): one name per concept, one-line usage errors, progress bars on a terminal only.

The walk over every command fails on a new inconsistency: an output option not named ``-o/--out``, a
multi-letter short option, a batch option not named ``--batch-size``, a progress option that is not
``--progress/--no-progress`` with the terminal default, a command without help. The old names stay as
hidden aliases; the tests below check that they still parse.
"""
from __future__ import annotations

import io
import re

import click
import pytest
from click.testing import CliRunner
from latentedit.cli.main import cli
from latentedit.cli.options import PROGRESS_DEFAULT, visible_names

from latentedit.progress import resolve_progress


def _walk(command: click.Command, path: tuple[str, ...] = ("latentedit",)):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _walk(sub, path + (name,))


COMMANDS = list(_walk(cli))
OPTIONS = [(" ".join(path), command, param) for path, command in COMMANDS for param in command.params
           if isinstance(param, click.Option)]


def _names(param: click.Option) -> list[str]:
    opts, secondary = visible_names(param)
    return opts + secondary


def _command(*path: str) -> click.Command:
    command = cli
    for name in path:
        command = command.commands[name]
    return command


def test_walk_sees_every_command():
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"latentedit generate", "latentedit convert", "latentedit train stylegan2", "latentedit stargan train",
            "latentedit evaluate edit", "latentedit data toyfaces", "latentedit classifier train"} <= paths
    assert len(OPTIONS) > 100


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help(path, command):
    assert (command.help or "").strip(), f"{' '.join(path)} has no help text"


def test_output_options_are_o_out():
    bad = []
    for where, _, param in OPTIONS:
        names = _names(param)
        writes = any(n == "-o" or re.fullmatch(r"--(out|output)([-_].*)?", n) or n in ("--dest", "--destination")
                     for n in names)
        if writes and names != ["-o", "--out"]:
            bad.append(f"{where}: {'/'.join(names)}")
    assert not bad, "options writing output must be -o/--out: " + "; ".join(bad)


def test_no_multi_letter_short_options():
    bad = [f"{where}: {name}" for where, _, param in OPTIONS for name in _names(param)
           if name.startswith("-") and not name.startswith("--") and len(name) != 2]
    assert not bad, "short options are one letter (-o); use a long option: " + "; ".join(bad)


def test_batch_options_are_batch_size():
    bad = [f"{where}: {name}" for where, _, param in OPTIONS for name in _names(param)
           if "batch" in name and not (name == "--batch-size" or name.endswith("-batch-size"))]
    assert not bad, "batch options are named --batch-size (or --WHAT-batch-size): " + "; ".join(bad)


def test_progress_options_are_progress_no_progress_defaulting_to_the_terminal():
    bad = []
    for where, _, param in OPTIONS:
        names = _names(param)
        if param.name in ("progress", "quiet", "verbose", "silent") or any(
                re.search(r"progress|quiet|silent|verbose", n) for n in names):
            opts, secondary = visible_names(param)
            if opts != ["--progress"] or secondary != ["--no-progress"] or param.default is not None \
                    or PROGRESS_DEFAULT not in (param.help or ""):
                bad.append(f"{where}: {'/'.join(names)} (default {param.default!r})")
    assert not bad, ("progress options are --progress/--no-progress, default None (a bar on a terminal), "
                     "documented '[default: on a terminal]': " + "; ".join(bad))


def test_strength_is_singular():
    bad = [f"{where}: {name}" for where, _, param in OPTIONS for name in _names(param)
           if name == "--strengths"]
    assert not bad, "the strength(s) of an edit are --strength: " + "; ".join(bad)


# (command path, old name, arguments, parameter, value): the old names, kept as hidden aliases.
ALIASES = [
    (("convert",), "--output", ["in.pt", "--output", "x.safetensors"], "output", "x.safetensors"),
    (("train", "stylegan2"), "--output", ["--output", "run"], "output", "run"),
    (("train", "stylegan2"), "--batch", ["-o", "run", "--batch", "4"], "batch", 4),
    (("stargan", "train"), "--output", ["--output", "run"], "output", "run"),
    (("stargan", "train"), "--batch", ["-o", "run", "--batch", "4"], "batch", 4),
    (("data", "toyfaces"), "--quiet", ["-o", "d", "--quiet"], "progress", False),
    (("classifier", "train"), "--quiet", ["-o", "c.safetensors", "--quiet"], "progress", False),
    (("classifier", "evaluate"), "--quiet", ["--quiet"], "progress", False),
    (("evaluate", "edit"), "--strengths", ["--vec", "d.npy", "--attr", "Smiling", "--strengths", "0:1:2"],
     "strengths", "0:1:2"),
    (("evaluate", "edit"), "--invert-batch", ["--vec", "d.npy", "--attr", "Smiling", "--invert-batch", "3"],
     "invert_batch", 3),
    (("generate",), "-psi", ["-psi", "0.5"], "truncation", 0.5),
]
ALIAS_IDS = [" ".join(path) + " " + alias for path, alias, *_ in ALIASES]


@pytest.mark.parametrize("path,alias,args,name,value", ALIASES, ids=ALIAS_IDS)
def test_hidden_aliases_still_parse(path, alias, args, name, value):
    command = _command(*path)
    assert alias in getattr(command.params[[p.name for p in command.params].index(name)], "hidden_names", ())
    with command.make_context(path[-1], list(args)) as ctx:
        assert ctx.params[name] == value


@pytest.mark.parametrize("path,alias,args,name,value", ALIASES, ids=ALIAS_IDS)
def test_hidden_aliases_are_not_in_help(path, alias, args, name, value):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert not re.search(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", result.output), (alias, result.output)


def test_new_names_parse():
    with _command("generate").make_context("generate", ["--psi", "0.7"]) as ctx:
        assert ctx.params["truncation"] == 0.7
    with _command("train", "stylegan2").make_context("stylegan2", ["--out", "r", "--batch-size", "8"]) as ctx:
        assert (ctx.params["output"], ctx.params["batch"]) == ("r", 8)
    with _command("data", "toyfaces").make_context("toyfaces", ["-o", "d"]) as ctx:
        assert ctx.params["progress"] is None  # auto
    with _command("data", "toyfaces").make_context("toyfaces", ["-o", "d", "--progress"]) as ctx:
        assert ctx.params["progress"] is True


@pytest.mark.parametrize("args,expected", [
    (["apply-direction"], "error: Missing option '--vec' (see latentedit apply-direction --help)"),
    (["train", "stylegan2", "--bogus"], None),
    (["classifier", "train", "-o", "c.safetensors", "--n", "many"], None),
    (["generate", "--noise", "loud"], None),
    (["--bogus"], None),
    (["generate", "--seeds", "0", "--latent", "x.npy"], None),  # a UsageError raised by the command itself
])
def test_usage_error_is_one_line(args, expected):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith(" --help)"), result.output
    assert "Usage:" not in result.output and "Try " not in result.output
    if expected is not None:
        assert lines[0] == expected


def test_help_and_version_still_exit_zero():
    runner = CliRunner()
    for args in (["--help"], ["-h"], ["generate", "--help"], ["train", "stylegan2", "--help"], ["--version"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
    assert "Usage:" in runner.invoke(cli, ["generate", "--help"]).output
    assert "[default: on a terminal]" in runner.invoke(cli, ["generate", "--help"]).output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_resolve_progress():
    assert resolve_progress(True, io.StringIO()) is True
    assert resolve_progress(False, _Terminal()) is False
    assert resolve_progress(None, _Terminal()) is True
    assert resolve_progress(None, io.StringIO()) is False

    class Closed:
        def isatty(self):
            raise ValueError("I/O operation on closed file")

    assert resolve_progress(None, Closed()) is False
    assert resolve_progress(None, object()) is False


@pytest.fixture()
def tiny_checkpoint(tiny_generator, tmp_path):
    from latentedit.checkpoints import save_native

    return save_native(tiny_generator, tmp_path / "tiny.safetensors")


def test_no_progress_bar_when_stderr_is_not_a_terminal(tiny_checkpoint, tmp_path, private_caches):
    runner = CliRunner()  # its stderr is not a TTY
    common = ["generate", "--ckpt", str(tiny_checkpoint), "--seeds", "0-2", "--batch-size", "1", "--device", "cpu"]
    quiet = runner.invoke(cli, [*common, "-o", str(tmp_path / "auto")])
    assert quiet.exit_code == 0, quiet.output
    assert "%|" not in quiet.output and "batch/s" not in quiet.output, quiet.output
    assert quiet.output.strip().splitlines()[-1].startswith("wrote 3 image(s)")
    # --progress forces the bar, so the check above is not vacuous.
    loud = runner.invoke(cli, [*common, "--progress", "-o", str(tmp_path / "forced")])
    assert loud.exit_code == 0, loud.output
    assert "%|" in loud.output


# ----------------------------------------------------------------------------------------------------
# Every command has a default output (issue #17): -o/--out is never required, and its default is in --help.

def test_output_options_are_not_required_and_document_their_default():
    outputs = [(where, param) for where, _, param in OPTIONS if _names(param) == ["-o", "--out"]]
    assert len(outputs) >= 20, [where for where, _ in outputs]
    bad = []
    for where, param in outputs:
        shown = param.default is not None and param.show_default
        computed = param.default is None and "[default: " in (param.help or "")
        if param.required or not (shown or computed):
            bad.append(f"{where} (required={param.required}, default={param.default!r})")
    assert not bad, "-o/--out needs a default shown in --help (or a computed one documented): " + "; ".join(bad)


@pytest.mark.parametrize("path,expected", [
    (("direction", "diff"), "diff.npy"), (("direction", "mean"), "mean.npy"),
    (("direction", "from-pulse"), "from_pulse.npy"), (("direction", "svm"), "svm_<ATTR>.npy"),
    (("direction", "learn"), "learned_<ATTR>.npy"), (("direction", "sefa"), "sefa"),
    (("direction", "ganspace"), "ganspace"), (("stargan", "transfer"), "translated"),
    (("data", "toyfaces"), "toyface_<SEED>_<INDEX>.png"), (("classifier", "train"), "classifier.safetensors"),
    (("train", "stylegan2"), "runs/stylegan2"), (("stargan", "train"), "runs/stargan"),
    (("convert",), "<SOURCE stem>.safetensors"),
])
def test_help_shows_the_default_output(path, expected):
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.strip().startswith("-o, --out"))
    assert re.search(r"\[default: [^]]*" + re.escape(expected), line), line


def _last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


def test_direction_diff_and_mean_write_their_default_files(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    np.save("a.npy", np.ones(24, np.float32))
    np.save("b.npy", np.full(24, 0.5, np.float32))
    runner = CliRunner()
    result = runner.invoke(cli, ["direction", "diff", "a.npy", "b.npy"])
    assert result.exit_code == 0, result.output
    assert _last_line(result).startswith("wrote diff.npy ")
    assert np.allclose(np.load(tmp_path / "diff.npy"), 0.5)
    result = runner.invoke(cli, ["direction", "mean", "a.npy", "b.npy"])
    assert result.exit_code == 0, result.output
    assert _last_line(result).startswith("wrote mean.npy")
    assert np.allclose(np.load(tmp_path / "mean.npy"), 0.75)
    # -o still wins.
    result = runner.invoke(cli, ["direction", "diff", "a.npy", "b.npy", "-o", "mine.npy"])
    assert result.exit_code == 0 and (tmp_path / "mine.npy").is_file(), result.output


def test_svm_and_learn_name_their_default_after_the_attribute(tmp_path, monkeypatch):
    from latentedit.cli import direction_cmds

    seen = []

    def stop(generator, classifier, attribute, out, **kwargs):
        seen.append(out)
        raise SystemExit(0)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(direction_cmds, "_load", lambda ckpt, device: (__import__("torch").nn.Linear(1, 1), {}))
    monkeypatch.setattr("latentedit.evaluate.load_attribute_classifier", lambda path, device=None: (None, {}))
    monkeypatch.setattr("latentedit.directions.svm_to_file", stop)
    monkeypatch.setattr("latentedit.directions.learn_to_file", stop)
    runner = CliRunner()
    assert runner.invoke(cli, ["direction", "svm", "--attr", "Blond_Hair"]).exit_code == 0
    assert runner.invoke(cli, ["direction", "learn", "--attr", "Smiling"]).exit_code == 0
    assert runner.invoke(cli, ["direction", "svm", "--attr", "Male", "-o", "x.npy"]).exit_code == 0
    assert seen == ["svm_Blond_Hair.npy", "learned_Smiling.npy", "x.npy"]


def test_toyfaces_index_default_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["data", "toyfaces", "--seed", "1", "--index", "3", "--size", "32"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "toyface_1_3.png").is_file()
    assert _last_line(result).startswith("wrote toyface_1_3.png ")


def test_convert_defaults_to_the_source_stem_here_and_refuses_to_overwrite_it(tiny_generator, tmp_path, monkeypatch):
    from latentedit.checkpoints import save_native

    (tmp_path / "src").mkdir()
    save_native(tiny_generator, tmp_path / "src" / "tiny.safetensors")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["convert", "src/tiny.safetensors"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny.safetensors").is_file()
    assert _last_line(result).startswith("wrote ") and "tiny.safetensors" in _last_line(result)
    before = (tmp_path / "tiny.safetensors").read_bytes()
    refused = runner.invoke(cli, ["convert", "tiny.safetensors"])
    assert refused.exit_code != 0
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "-o" in lines[0], refused.output
    assert (tmp_path / "tiny.safetensors").read_bytes() == before


@pytest.mark.parametrize("path,module,function,expected", [
    (("train", "stylegan2"), "latentedit.train.stylegan2", "train_stylegan2", "runs/stylegan2"),
    (("stargan", "train"), "latentedit.baselines.stargan_train", "train_stargan", "runs/stargan"),
])
def test_trainers_default_to_a_run_folder(path, module, function, expected, tmp_path, monkeypatch):
    import importlib
    from pathlib import Path

    seen = []

    def stop(config, output, **kwargs):
        seen.append(Path(output))
        raise SystemExit(0)

    monkeypatch.chdir(tmp_path)
    trainer = importlib.import_module(module)
    monkeypatch.setattr(trainer, function, stop)
    monkeypatch.setattr(trainer, "find_resume_checkpoint", lambda output, resume: None)
    config_class = "StyleGAN2TrainConfig" if function == "train_stylegan2" else "StarGANTrainConfig"
    monkeypatch.setattr(trainer, config_class, lambda **values: values)
    runner = CliRunner()
    assert runner.invoke(cli, [*path, "--data", "somewhere"]).exit_code == 0
    assert runner.invoke(cli, [*path, "--data", "somewhere", "--resume", "old"]).exit_code == 0
    assert runner.invoke(cli, [*path, "--data", "somewhere", "-o", "mine"]).exit_code == 0
    assert seen == [Path(expected), Path("old"), Path("mine")]
    assert not (tmp_path / "runs").exists()
