"""``latentedit evaluate ...``: measure edits and models. ``evaluate edit`` scores editing directions."""
from __future__ import annotations

import click
from latentedit.cli.generate_cmd import CKPT_HELP
from latentedit.cli.options import AliasOption, out_option, progress_option
from latentedit.cli.stargan_cmds import CKPT_HELP as STARGAN_CKPT_HELP

from latentedit.progress import resolve_progress


def _warn(message: str) -> None:
    click.echo(message if message.startswith("note:") else f"warning: {message}", err=True)


@click.group("evaluate")
def evaluate_group() -> None:
    """Measure edits: success rates, side effects, distance to ground truth."""


@evaluate_group.command("edit")
@click.option("--vec", "vectors", multiple=True, required=True,
              help="Direction .npy to evaluate (repeatable; NAME=PATH names it in the tables, default: file stem).")
@click.option("--attr", "attribute", required=True, help="The attribute the directions should add, e.g. Blond_Hair.")
@click.option("--strength", "strengths", cls=AliasOption, aliases=("--strengths",), default="0:3:7", show_default=True,
              help="Strengths: START:STOP:COUNT (linspace), a list (0,1,2) or one number.")
@click.option("--source", type=click.Choice(["generated", "inverted"]), default="generated", show_default=True,
              help="generated: samples lacking the attribute; inverted: inversions of held-out toyfaces renders "
                   "lacking it (adds the PSNR to the ground-truth counterfactual).")
@click.option("--n", "count", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="Source latents.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated sources.")
@click.option("--start", type=click.IntRange(0, None), default=0, show_default=True,
              help="First held-out face index considered (inverted sources).")
@click.option("--layers", default=None, help="W+ rows to edit, e.g. 0-5 (default: all).")
@click.option("--strength-unit", type=click.Choice(["spread", "raw"]), default="spread", show_default=True,
              help="spread: strength 1 moves the most-moved chosen W+ row by one W spread (as apply-direction); "
                   "raw: multiply the stored arrays.")
@click.option("--normalize", is_flag=True,
              help="Rescale every direction to magnitude 1 (W norm / RMS row norm), so strengths are comparable.")
@click.option("--to-distance", is_flag=True,
              help="Read --strength as target signed distances to each direction's SVM boundary (InterFaceGAN "
                   "editing: each source moves as far as it needs); SVM directions only.")
@click.option("--watch", default="Male", show_default=True,
              help="Comma-separated attributes whose flip rates get their own columns.")
@click.option("--target-success", type=click.FloatRange(0, 1, min_open=True), default=0.8, show_default=True,
              help="Report the smallest strength reaching this success rate.")
@click.option("--invert-steps", type=click.IntRange(1, 1_000_000), default=200, show_default=True,
              help="Inversion steps per held-out face (inverted sources; cached in OUT/inversions).")
@click.option("--invert-method", type=click.Choice(["optimize", "encoder", "encoder+optimize", "pti"]),
              default="optimize", show_default=True,
              help="How the held-out faces are inverted (as invert --method; inverted sources). pti: each face is "
                   "edited with its own tuned generator.")
@click.option("--encoder", "encoder", default=None,
              help="Encoder for --invert-method encoder / encoder+optimize [default: toyfaces64_encoder].")
@click.option("--invert-batch-size", "invert_batch", cls=AliasOption, aliases=("--invert-batch",),
              type=click.IntRange(1, 256), default=8, show_default=True,
              help="Held-out faces inverted together.")
@click.option("--n-present", "n_present", type=click.IntRange(0, 100_000), default=0, show_default=True,
              help="Also edit this many generated sources that already have ATTR and report whether they keep it.")
@click.option("--samples", "keep", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Sources shown in each direction's sample grid.")
@click.option("--classifier", "classifier_path", type=click.Path(dir_okay=False), default=None,
              help="Attribute classifier .safetensors (default: the shipped one).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@out_option("out_dir", type=click.Path(file_okay=False), default="edit_eval", show_default=True,
            help="Output folder.")
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@progress_option()
def edit_command(vectors, attribute, strengths, source, count, seed, start, layers, strength_unit, normalize,
                 to_distance, watch, target_success, invert_steps, invert_method, encoder, invert_batch, n_present, keep, classifier_path,
                 batch_size, out_dir, ckpt, device, progress) -> None:
    """Score directions that should add ATTR: success rate, side-effect flips, pixel / LPIPS change, and for
    inverted held-out faces the PSNR to the ground-truth counterfactual, by strength.

    Writes edit_eval.json, edit_eval.md (tables), edit_eval.png (curves) and <direction>_samples.png
    (rows = sources, columns = strengths; inverted: the render first and the counterfactual last).

    \b
    latentedit evaluate edit --vec blond_pulse.npy --vec blond_svm.npy --attr Blond_Hair \\
        --strength 0:3:7 --source inverted --n 50 -o runs/eval_blond
    """
    from latentedit.checkpoints import load_generator
    from latentedit.device import resolve_device
    from latentedit.directions import parse_strengths
    from latentedit.evaluate import evaluate_edit_to_folder, load_attribute_classifier
    from latentedit.invert import InversionSettings

    if source != "inverted" and (invert_method != "optimize" or encoder is not None):
        raise click.UsageError("--invert-method and --encoder apply to --source inverted")
    if encoder is not None and invert_method not in ("encoder", "encoder+optimize"):
        raise click.UsageError("--encoder is used by --invert-method encoder and encoder+optimize")
    strength_list = parse_strengths(strengths)
    watch_list = [name.strip() for name in watch.split(",") if name.strip()]
    generator, info = load_generator(ckpt, device=resolve_device(device))
    classifier, classifier_info = load_attribute_classifier(classifier_path, device=next(generator.parameters()).device)
    result = evaluate_edit_to_folder(
        generator, classifier, list(vectors), attribute, strength_list, out_dir, source=source, n=count, seed=seed,
        start=start, layers=layers, normalize=normalize,
        strength_unit="raw" if normalize or to_distance else strength_unit,
        invert_settings=InversionSettings(steps=invert_steps, method=invert_method, encoder=encoder),
        invert_batch=invert_batch, checkpoint_info=info.to_dict(), classifier_info=classifier_info, watch=watch_list,
        target_success=target_success, batch_size=batch_size, keep=keep, to_distance=to_distance,
        n_present=n_present, log=_warn,
        progress=resolve_progress(progress))
    unit = "distance" if to_distance else "strength"
    for name, entry in result["directions"].items():
        best = entry["summary"]["best"]
        worst = best["side_effect_max"]
        watched = ", ".join(f"{k} {100 * v:.1f} %" for k, v in best["watched"].items())
        line = (f"{name}: best {unit} {best['strength']:g}: {100 * best['success_rate']:.1f} % {attribute}; "
                f"side effects mean {100 * best['side_effect_mean']:.1f} %, worst {worst['attribute']} "
                f"{100 * worst['rate']:.1f} %" + (f"; {watched}" if watched else ""))
        if entry["summary"]["best_psnr"]:
            top = entry["summary"]["best_psnr"]
            line += f"; best PSNR to truth {top['psnr_to_truth_db']:.2f} dB at {top['strength']:g}"
        click.echo(line)
    click.echo(f"wrote {', '.join(result['files'][:3])} and sample grids to {out_dir}")


COMMANDS = [evaluate_group]


@evaluate_group.command("model")
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--n", "count", type=click.IntRange(10, 100_000), default=5000, show_default=True,
              help="Generated samples, and held-out renders in each reference set.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated samples.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Rendering processes.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@out_option("out_dir", type=click.Path(file_okay=False), default="model_eval", show_default=True,
            help="Output folder.")
@progress_option()
def model_command(ckpt, count, seed, workers, device, out_dir, progress) -> None:
    """Score a generator trained on toyfaces: FD-toy against held-out renders (with the floor and the
    untrained architecture measured in the same run) and attribute frequencies against the training data.

    Writes model_eval.json, model_eval.md and samples.png (8x8, psi 1).
    """
    from pathlib import Path

    from latentedit import io
    from latentedit.checkpoints import load_generator
    from latentedit.device import resolve_device
    from latentedit.evaluate import evaluate_generator, format_report, sample_images

    generator, info = load_generator(ckpt, device=resolve_device(device))
    result = evaluate_generator(generator, count=count, seed=seed, workers=workers, progress=resolve_progress(progress))
    result["checkpoint"] = info.to_dict()
    result["versions"] = io.versions()
    report = format_report(result)
    out = Path(out_dir)
    io.write_json(out / "model_eval.json", result)
    with io.atomic_write(out / "model_eval.md", "w") as handle:
        handle.write(report + "\n")
    io.save_png(out / "samples.png", io.make_grid(io.to_uint8(sample_images(generator, 64, seed)), columns=8))
    click.echo(report)
    click.echo(f"wrote {out / 'model_eval.json'}, {out / 'model_eval.md'}, {out / 'samples.png'}")


@evaluate_group.command("stargan")
@click.option("--ckpt", default="stargan_toyfaces64", show_default=True, help=STARGAN_CKPT_HELP)
@click.option("--attr", "attributes", multiple=True, required=True,
              help="Attribute to add (repeatable or comma-separated), e.g. --attr Blond_Hair,Male.")
@click.option("--n", "count", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="Held-out faces lacking each attribute.")
@click.option("--start", type=click.IntRange(0, None), default=0, show_default=True,
              help="First held-out face index considered.")
@click.option("--classifier", "classifier_path", type=click.Path(dir_okay=False), default=None,
              help="Attribute classifier .safetensors (default: the shipped one).")
@click.option("--samples", "keep", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Sources shown in each attribute's sample grid.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=16, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--size", type=int, default=None,
              help="Render and translate at this size, e.g. twice the training size. [default: the training size]")
@out_option("out_dir", type=click.Path(file_okay=False), default="stargan_eval", show_default=True,
            help="Output folder.")
@progress_option("Show a progress bar while the held-out sources are rendered.")
def stargan_command(ckpt, attributes, count, start, classifier_path, keep, batch_size, device, size, out_dir,
                    progress) -> None:
    """Score StarGAN translations exactly as `evaluate edit --source inverted` scores latent edits: on held-out
    toyfaces renders lacking each attribute, the success rate, side-effect flips, pixel / LPIPS change, PSNR to
    the ground-truth counterfactual, and the time per image.

    Writes stargan_eval.json, stargan_eval.md and <attribute>_samples.png (render | translation | truth).

    \b
    latentedit evaluate stargan --attr Blond_Hair,Black_Hair,Male,Young --n 200 -o runs/stargan_eval
    """
    from latentedit.device import resolve_device
    from latentedit.evaluate import evaluate_stargan_to_folder

    names = [name.strip() for item in attributes for name in item.split(",") if name.strip()]
    result = evaluate_stargan_to_folder(ckpt, names, out_dir, n=count, start=start, classifier_path=classifier_path,
                                        device=resolve_device(device), batch_size=batch_size, keep=keep, log=_warn,
                                        size=size, progress=resolve_progress(progress))
    for attribute, entry in result["attributes"].items():
        record = entry["record"]
        worst = record["side_effect_max"]
        click.echo(f"{attribute}: {100 * record['success_rate']:.1f} % success; side effects mean "
                   f"{100 * record['side_effect_mean']:.1f} %, worst {worst['attribute']} {100 * worst['rate']:.1f} %; "
                   f"PSNR to truth {record['psnr_to_truth_db']:.2f} dB; {1e3 * record['seconds_per_image']:.1f} ms/image")
    click.echo(f"wrote {', '.join(result['files'][:2])} and sample grids to {out_dir}")


def _two_domain_command(kind: str):
    """``evaluate cyclegan`` / ``evaluate pix2pix``: the same options, the same report."""
    from latentedit.cli.cyclegan_cmds import CKPT_HELP as TWO_DOMAIN_CKPT_HELP

    @evaluate_group.command(kind)
    @click.option("--ckpt", default=f"{kind}_black2blond64", show_default=True, help=TWO_DOMAIN_CKPT_HELP[kind])
    @click.option("--direction", "directions", type=click.Choice(["a2b", "b2a", "both"]), default="a2b",
                  show_default=True, help="Which translation to score" + (" (both: a2b and b2a)." if kind == "cyclegan"
                                                                        else " (a pix2pix model has one)."))
    @click.option("--n", "count", type=click.IntRange(1, 100_000), default=100, show_default=True,
                  help="Held-out faces of the source domain lacking the target attribute.")
    @click.option("--start", type=click.IntRange(0, None), default=0, show_default=True,
                  help="First held-out face index considered.")
    @click.option("--norm-stats", type=click.Choice(["image", "running"]), default="image", show_default=True,
                  help="Batch norm statistics at test time: per image (the reference's test script) or running.")
    @click.option("--classifier", "classifier_path", type=click.Path(dir_okay=False), default=None,
                  help="Attribute classifier .safetensors (default: the shipped one).")
    @click.option("--samples", "keep", type=click.IntRange(1, 256), default=8, show_default=True,
                  help="Sources shown in each direction's sample grid.")
    @click.option("--batch-size", type=click.IntRange(1, 4096), default=16, show_default=True)
    @click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
    @out_option("out_dir", type=click.Path(file_okay=False), default=f"{kind}_eval", show_default=True,
                help="Output folder.")
    @progress_option("Show a progress bar while the held-out sources are rendered.")
    def command(ckpt, directions, count, start, norm_stats, classifier_path, keep, batch_size, device, out_dir,
                progress) -> None:
        from latentedit.device import resolve_device
        from latentedit.evaluate import evaluate_translator_to_folder

        chosen = ["a2b", "b2a"] if directions == "both" else [directions]
        result = evaluate_translator_to_folder(kind, ckpt, out_dir, chosen, n=count, start=start,
                                               classifier_path=classifier_path, device=resolve_device(device),
                                               batch_size=batch_size, keep=keep, norm_stats=norm_stats, log=_warn,
                                               progress=resolve_progress(progress))
        for direction, entry in result["directions"].items():
            record = entry["record"]
            worst = record["side_effect_max"]
            cycle = record.get("cycle")
            click.echo(f"{direction} ({entry['attribute']}): {100 * record['success_rate']:.1f} % success; side effects "
                       f"mean {100 * record['side_effect_mean']:.1f} %, worst {worst['attribute']} "
                       f"{100 * worst['rate']:.1f} %; PSNR to truth {record['psnr_to_truth_db']:.2f} dB; "
                       f"{1e3 * record['seconds_per_image']:.1f} ms/image"
                       + (f"; cycle PSNR {cycle['psnr_to_source_db']:.2f} dB" if cycle else ""))
        click.echo(f"wrote {', '.join(result['files'][:2])} and sample grids to {out_dir}")

    command.__doc__ = (f"Score {'CycleGAN' if kind == 'cyclegan' else 'pix2pix'} translations exactly as `evaluate "
                       "stargan` scores StarGAN: on held-out toyfaces renders of the source domain lacking the target "
                       "attribute, the success rate, side-effect flips, pixel / LPIPS change, PSNR to the true "
                       "counterfactual, identity-collapse rate, ms per image"
                       + (" and the cycle reconstruction." if kind == "cyclegan" else ".")
                       + f"\n\nWrites {kind}_eval.json, {kind}_eval.md and <direction>_samples.png "
                         "(render | translation | truth" + (" | cycle)." if kind == "cyclegan" else ")."))
    command.help = command.__doc__
    return command


cyclegan_command = _two_domain_command("cyclegan")
pix2pix_command = _two_domain_command("pix2pix")
