"""CLI: ``latentedit classifier train|evaluate`` (the toyfaces attribute classifier)."""
from __future__ import annotations

import click
from latentedit.cli.options import out_option, progress_option


@click.group("classifier")
def classifier_group() -> None:
    """The toyfaces attribute classifier (labels faces; its features give FD-toy)."""


@classifier_group.command("train")
@out_option("out", type=click.Path(dir_okay=False), default="classifier.safetensors", show_default=True,
            help="Output .safetensors file (training state is kept beside it until the run finishes).")
@click.option("--n", "count", type=int, default=30000, show_default=True,
              help="Training faces: toyfaces seed 0, indices [0, N).")
@click.option("--epochs", type=int, default=8, show_default=True, help="Passes over the training faces.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True, help="Peak learning rate (one-cycle AdamW).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation, shuffling, augmentation.")
@click.option("--workers", type=int, default=2, show_default=True, help="Processes rendering the training faces.")
@click.option("--threads", type=int, default=None,
              help="Torch threads for training (default: torch's choice; 1 leaves cores to other jobs).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Folder to cache the rendered training faces in (an .npz, ~370 MB for 30000).")
@progress_option("Show progress bars.", quiet_alias=True)
def train_command(out, count, epochs, batch_size, lr, seed, workers, threads, cache_dir, progress) -> None:
    """Train the attribute classifier on rendered toyfaces (resumable: rerun the same command).

    \b
    latentedit classifier train --n 30000 --epochs 8 --threads 1      (writes classifier.safetensors)
    latentedit classifier train -o guide.safetensors --seed 1
    """
    from latentedit.evaluate import TrainOptions, train_classifier
    from latentedit.progress import resolve_progress

    options = TrainOptions(count=count, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    result = train_classifier(out, options, workers=workers, threads=threads, cache_dir=cache_dir,
                              progress=resolve_progress(progress), log=click.echo)
    worst = min(result["validation"], key=result["validation"].get)
    click.echo(f"wrote {result['out_path']}: rendering {result['render_seconds'] / 60:.1f} min, training "
               f"{result['train_seconds'] / 60:.1f} min; validation worst {worst} "
               f"{100 * result['validation'][worst]:.2f}%")


@classifier_group.command("evaluate")
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
              help="Classifier .safetensors (default: the shipped one).")
@click.option("--n", "count", type=int, default=5000, show_default=True, help="Held-out faces to render.")
@click.option("--seed", type=int, default=1, show_default=True, help="toyfaces seed (1 = held-out set).")
@click.option("--start", type=int, default=0, show_default=True, help="First face index.")
@click.option("--workers", type=int, default=2, show_default=True, help="Rendering processes.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@out_option("out", type=click.Path(dir_okay=False), default="classifier_eval.json", show_default=True,
            help="Where to write the results as JSON.")
@progress_option(quiet_alias=True)
def evaluate_command(ckpt, count, seed, start, workers, batch_size, out, progress) -> None:
    """Per-attribute accuracy on rendered faces: prints a markdown table and writes JSON.

    \b
    latentedit classifier evaluate --n 5000
    """
    from latentedit.evaluate import (
        evaluate_classifier,
        format_accuracy_table,
        load_classifier,
        shipped_classifier_path,
    )
    from latentedit.io import sha256_file, versions, write_json
    from latentedit.progress import resolve_progress

    classifier = load_classifier(ckpt)
    result = evaluate_classifier(classifier, count=count, seed=seed, start=start, batch_size=batch_size,
                                 workers=workers, progress=resolve_progress(progress))
    weights = ckpt if ckpt is not None else str(shipped_classifier_path())
    write_json(out, {"classifier": weights, "classifier_sha256": sha256_file(weights), **result,
                     "versions": versions()})
    click.echo(format_accuracy_table(result))
    click.echo(f"wrote {out}")


COMMANDS = [classifier_group]
