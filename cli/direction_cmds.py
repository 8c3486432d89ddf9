"""``latentedit direction ...`` (make editing directions) and ``latentedit apply-direction`` (SPEC §4.2, §5)."""
from __future__ import annotations

import json

import click
from latentedit.cli.generate_cmd import CKPT_HELP
from latentedit.cli.options import out_option, progress_option

from latentedit.progress import resolve_progress

ATTRIBUTE_HELP = "A classifier attribute (toyfaces / CelebA name), e.g. Blond_Hair, Eyeglasses, Smiling, Male."


def _warn(message: str) -> None:
    click.echo(message if message.startswith("note:") else f"warning: {message}", err=True)


def _load(ckpt: str, device: str):
    from latentedit.checkpoints import load_generator
    from latentedit.device import resolve_device

    generator, info = load_generator(ckpt, device=resolve_device(device))
    return generator, info.to_dict()


def _seed_list(text: str) -> list[int]:
    from latentedit.latents import parse_seeds

    return parse_seeds(text)


@click.group("direction")
def direction_group() -> None:
    """Make editing directions: differences, means, PULSE pairs, InterFaceGAN (SVM), SeFa, GANSpace.

    Every direction is a .npy (W [w_dim] or W+ [num_ws, w_dim], float32) with a JSON sidecar of the
    same name recording its provenance (generator sha256, method, parameters, seeds). Apply one with
    `latentedit apply-direction`; measure it with `latentedit evaluate edit`.
    """


@direction_group.command("diff")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@out_option("out", type=click.Path(dir_okay=False), default="diff.npy", show_default=True, help="Output .npy.")
def diff_command(a, b, out) -> None:
    """A - B of two latents or directions (W [w_dim] or W+ [num_ws, w_dim]; a W operand is broadcast over
    the W+ rows of the other).

    \b
    latentedit direction diff runs/pulse/blond_hair.npy runs/pulse/black_hair.npy      (writes diff.npy)
    latentedit direction diff runs/pulse/blond_hair.npy runs/pulse/black_hair.npy -o blond_minus_black.npy
    """
    from latentedit.directions import difference_files

    meta = difference_files(a, b, out, log=_warn)
    click.echo(f"wrote {out} ({meta['space']} {meta['shape']}, norm {meta['norm']:.4g}) and its sidecar")


@direction_group.command("mean")
@click.argument("vectors", nargs=-1, required=True, type=click.Path(dir_okay=False))
@out_option("out", type=click.Path(dir_okay=False), default="mean.npy", show_default=True, help="Output .npy.")
def mean_command(vectors, out) -> None:
    """Element-wise mean of directions or latents (W operands broadcast over W+ rows).

    \b
    latentedit direction mean d0.npy d1.npy d2.npy      (writes mean.npy)
    latentedit direction mean d0.npy d1.npy d2.npy -o blond_mean.npy
    """
    from latentedit.directions import mean_files

    meta = mean_files(list(vectors), out, log=_warn)
    click.echo(f"wrote {out}: mean of {len(vectors)} ({meta['space']} {meta['shape']}, norm {meta['norm']:.4g})")


@direction_group.command("from-pulse")
@click.option("--ref-a", required=True, type=click.Path(dir_okay=False),
              help="Reference with the attribute (e.g. blond hair, RGBA: only opaque pixels count).")
@click.option("--ref-b", required=True, type=click.Path(dir_okay=False),
              help="The same reference without it (e.g. black hair).")
@click.option("--seeds", default="0-31", show_default=True,
              help="PULSE seeds; each runs with both references from the same start.")
@out_option("out", type=click.Path(dir_okay=False), default="from_pulse.npy", show_default=True,
            help="Output direction .npy.")
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--steps", type=click.IntRange(1, 100000), default=100, show_default=True, help="PULSE steps.")
@click.option("--lr", type=float, default=0.4, show_default=True, help="PULSE peak learning rate.")
@click.option("--loss", default="100*L2+0.05*GEOCROSS", show_default=True, help="PULSE loss string.")
@click.option("--eps", type=float, default=2e-3, show_default=True, help="PULSE success threshold on the L2.")
@click.option("--noise-type", type=click.Choice(["trainable", "fixed", "zero"]), default="trainable",
              show_default=True)
@click.option("--fit-samples", type=click.IntRange(2, 100_000_000), default=1_000_000, show_default=True,
              help="z samples of PULSE's Gaussian fit (cached per generator).")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="Seeds optimised together (per reference).")
@click.option("--only-successful", is_flag=True, help="Average only the seeds where both runs reached eps.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@progress_option()
def from_pulse_command(ref_a, ref_b, seeds, out, ckpt, steps, lr, loss, eps, noise_type, fit_samples, batch_size,
                       only_successful, device, progress) -> None:
    """A W+ direction from paired PULSE runs: the mean over seeds of w(A) - w(B) (SPEC §4.2).

    Also writes <stem>_pairs.png (A results above B results, one column per seed) and <stem>_pairs.npz.

    \b
    latentedit direction from-pulse --ref-a examples/blond_hair.rgba.png \\
        --ref-b examples/black_hair.rgba.png --seeds 0-31 -o blond.npy      (default -o: from_pulse.npy)
    """
    from latentedit.directions import direction_from_pulse
    from latentedit.pulse import PulseSettings
    from latentedit.pulse.search import noise_note

    seed_list = _seed_list(seeds)
    generator, info = _load(ckpt, device)
    if noise_note(generator) is not None:
        _warn(noise_note(generator))
    settings = PulseSettings(steps=steps, lr=lr, loss=loss, eps=eps, noise_type=noise_type, fit_samples=fit_samples)
    meta = direction_from_pulse(generator, ref_a, ref_b, seed_list, out, settings, checkpoint_info=info,
                                batch_size=batch_size, only_successful=only_successful,
                                progress=resolve_progress(progress))
    both = meta["params"]["both_reached_eps"]
    click.echo(f"{both} of {len(seed_list)} seed(s) reached eps {eps:g} with both references; averaged "
               f"{len(meta['seeds'])}")
    click.echo(f"wrote {out} (W+ {meta['shape']}, norm {meta['norm']:.4g}), {meta['outputs']['pairs_grid']} and "
               f"{meta['outputs']['pairs']}")


@direction_group.command("svm")
@click.option("--attr", "attribute", required=True, help=ATTRIBUTE_HELP)
@click.option("--n", "count", type=click.IntRange(2, 10_000_000), default=20000, show_default=True,
              help="Generated samples to label.")
@click.option("--condition", "conditions", multiple=True,
              help="Attribute(s) whose normals are projected out (repeat, or comma-separate: Male,Young).")
@out_option("out", type=click.Path(dir_okay=False), default=None,
            help="Output direction .npy. [default: svm_<ATTR>.npy]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the z samples.")
@click.option("--C", "C", type=float, default=1.0, show_default=True, help="SVM regularisation (LinearSVC C).")
@click.option("--samples", "samples_path", type=click.Path(dir_okay=False), default=None,
              help="Cache file (.npz) of the labelled samples: reused when it matches, written otherwise.")
@click.option("--classifier", "classifier_path", type=click.Path(dir_okay=False), default=None,
              help="Attribute classifier .safetensors (default: the shipped one).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@progress_option()
def svm_command(attribute, count, conditions, out, seed, C, samples_path, classifier_path, batch_size, ckpt, device,
                progress) -> None:
    """InterFaceGAN: the unit normal (W [w_dim]) of a linear SVM separating the attribute in W.

    Samples the generator (psi 1, stored noise), labels each image with the attribute classifier and
    fits scikit-learn's LinearSVC; --condition removes the components along other attributes' normals.

    \b
    latentedit direction svm --attr Blond_Hair      (writes svm_Blond_Hair.npy)
    latentedit direction svm --attr Blond_Hair --condition Male -o blond_svm_male.npy
    """
    from latentedit.directions import svm_to_file
    from latentedit.evaluate import load_attribute_classifier

    out = out if out is not None else f"svm_{attribute}.npy"
    condition_list = [c.strip() for item in conditions for c in item.split(",") if c.strip()]
    generator, info = _load(ckpt, device)
    classifier, classifier_info = load_attribute_classifier(classifier_path, device=next(generator.parameters()).device)
    meta = svm_to_file(generator, classifier, attribute, out, n=count, seed=seed, conditions=condition_list, C=C,
                       batch_size=batch_size, samples_path=samples_path, checkpoint_info=info,
                       classifier_info=classifier_info, progress=resolve_progress(progress))
    report = meta["report"]
    accuracy = report["fit"]["validation_accuracy"]
    click.echo(f"{attribute}: {report['fit']['positives']} of {count} samples labelled present; SVM validation "
               f"accuracy {'n/a' if accuracy is None else f'{100 * accuracy:.1f} %'}")
    for name, entry in report["conditions"].items():
        click.echo(f"  conditioned on {name}: cosine with its normal was {entry['cosine_before']:+.3f}, now 0")
    click.echo(f"wrote {out} (unit W direction [{meta['shape'][0]}]) and its sidecar")


@direction_group.command("learn")
@click.option("--attr", "attribute", required=True, help=ATTRIBUTE_HELP)
@click.option("--keep", "keep", multiple=True, default=("Male",), show_default=True,
              help="Attribute(s) the edit must keep, weighted by --keep-weight (repeat, or comma-separate).")
@click.option("--layers", default=None, help="W+ rows to edit, e.g. 3-5 (default: all).")
@click.option("--guide", "guide_path", type=click.Path(dir_okay=False), default=None,
              help="Guide classifier .safetensors (default: the shipped one; to measure the result with the "
                   "shipped one, guide with another, e.g. `latentedit classifier train --seed 1`).")
@click.option("--strength", type=float, default=12.0, show_default=True,
              help="Distance moved in W during learning (the direction is unit length).")
@click.option("--steps", type=click.IntRange(1, 1_000_000), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=16, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True, help="Adam learning rate on the direction.")
@click.option("--keep-weight", type=float, default=10.0, show_default=True)
@click.option("--other-weight", type=float, default=1.0, show_default=True,
              help="Weight of keeping every other side-effect attribute.")
@click.option("--pool", type=click.IntRange(2, 1_000_000), default=1000, show_default=True,
              help="Generated samples the sources are drawn from.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sources-with", "sources_with", default=None,
              help="Learn only from sources the guide also labels with this attribute (e.g. Gray_Hair): a "
                   "direction for one source group.")
@click.option("--shift", type=click.IntRange(0, 16), default=4, show_default=True,
              help="Random translation (pixels, reflect-padded) of the edited images before the guide sees them, "
                   "so that the direction cannot exploit where the guide looks (0: off).")
@out_option("out", type=click.Path(dir_okay=False), default=None,
            help="Output direction .npy. [default: learned_<ATTR>.npy]")
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@progress_option()
def learn_command(attribute, keep, layers, guide_path, strength, steps, batch_size, lr, keep_weight, other_weight,
                  pool, seed, sources_with, shift, out, ckpt, device, progress) -> None:
    """Learn a direction that adds ATTR and keeps the other attributes, judged by a guide classifier.

    Adam on a unit direction applied at --strength on --layers, to generated sources lacking ATTR: the
    guide must label the edit ATTR and give every other attribute the probability of the unedited image
    (--keep ones weighted more). Writes a W+ direction, zero outside --layers, and its sidecar.

    \b
    latentedit direction learn --attr Blond_Hair --keep Male --layers 3-5 --guide guide.safetensors -o blond.npy
    (without -o: learned_<ATTR>.npy, here learned_Blond_Hair.npy)
    """
    from latentedit.directions import LearnSettings, learn_to_file
    from latentedit.evaluate import load_attribute_classifier

    out = out if out is not None else f"learned_{attribute}.npy"
    keep_list = [k.strip() for item in keep for k in item.split(",") if k.strip()]
    generator, info = _load(ckpt, device)
    guide, guide_info = load_attribute_classifier(guide_path, device=next(generator.parameters()).device)
    settings = LearnSettings(strength=strength, steps=steps, batch_size=batch_size, lr=lr, keep_weight=keep_weight,
                             other_weight=other_weight, pool=pool, seed=seed, shift=shift,
                             sources_with=sources_with)
    meta = learn_to_file(generator, guide, attribute, out, keep=keep_list, layers=layers, settings=settings,
                         checkpoint_info=info, guide_info=guide_info, progress=resolve_progress(progress))
    report = meta["report"]
    before, after = report["guide_on_pool"]["before"], report["guide_on_pool"]["after"]
    kept = ", ".join(f"{name} flips {100 * before['flips_' + name]:.1f} -> {100 * after['flips_' + name]:.1f} %"
                     for name in report["keep"])
    click.echo(f"guide on {report['pool']['sources']} pool sources at strength {strength:g}: {attribute} "
               f"{100 * before['success_rate']:.1f} -> {100 * after['success_rate']:.1f} %"
               + (f"; {kept}" if kept else "") + f"; other flips {100 * before['mean_other_flips']:.1f} -> "
               f"{100 * after['mean_other_flips']:.1f} % (from the class-mean difference to the learned direction)")
    click.echo(f"wrote {out} (W+ direction, rows {meta['params']['layers']}) and its sidecar")


def _grid_options(function):
    function = click.option("--grid-seeds", default="0-3", show_default=True,
                            help="Seeds shown in each direction's grid (rows).")(function)
    function = click.option("--grid-strengths", default="-3:3:7", show_default=True,
                            help="Strengths shown in the grids (columns): START:STOP:COUNT or a list.")(function)
    function = click.option("--truncation", type=float, default=1.0, show_default=True,
                            help="Truncation psi of the grid seeds.")(function)
    return function


@direction_group.command("sefa")
@click.option("--layers", default=None,
              help="W+ rows whose modulation weights are factorised, e.g. 0-3 (default: all).")
@click.option("--k", "k", type=click.IntRange(1, 4096), default=10, show_default=True, help="Directions to keep.")
@click.option("--include-torgb", is_flag=True, help="Also factorise the ToRGB layers' modulation weights.")
@out_option("out_dir", type=click.Path(file_okay=False), default="sefa", show_default=True, help="Output folder.")
@_grid_options
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
def sefa_command(layers, k, include_torgb, out_dir, grid_seeds, grid_strengths, truncation, ckpt, device) -> None:
    """SeFa closed-form directions: top right-singular vectors of the stacked modulation weights.

    Writes sefa_<kk>.npy (+ sidecar; W+ and zero outside --layers when not all rows are chosen),
    sefa_<kk>.png (rows = seeds, columns = strengths), overview.png and manifest.json.

    \b
    latentedit direction sefa --layers 0-3 --k 10      (writes sefa/)
    latentedit direction sefa --layers 0-3 --k 10 -o runs/sefa
    """
    from latentedit.directions import parse_strengths, sefa_to_folder

    generator, info = _load(ckpt, device)
    manifest = sefa_to_folder(generator, out_dir, layers=layers, k=k, include_torgb=include_torgb, checkpoint_info=info,
                              grid_seeds=_seed_list(grid_seeds), grid_strengths=parse_strengths(grid_strengths),
                              truncation=truncation)
    values = ", ".join(f"{d['singular_value']:.3g}" for d in manifest["directions"])
    click.echo(f"wrote {len(manifest['directions'])} SeFa directions (layers {manifest['params']['layers']}; "
               f"singular values {values}) to {out_dir}")


@direction_group.command("ganspace")
@click.option("--layers", default=None, help="W+ rows the directions apply to, e.g. 0-5 (default: all).")
@click.option("--k", "k", type=click.IntRange(1, 4096), default=10, show_default=True, help="Components to keep.")
@click.option("--n", "count", type=click.IntRange(2, 10_000_000), default=10000, show_default=True,
              help="Mapped samples for the PCA.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the z samples.")
@out_option("out_dir", type=click.Path(file_okay=False), default="ganspace", show_default=True, help="Output folder.")
@_grid_options
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
def ganspace_command(layers, k, count, seed, out_dir, grid_seeds, grid_strengths, truncation, ckpt, device) -> None:
    """GANSpace: principal components of mapped w, scaled so that strength 1 is one standard deviation.

    Writes pc_<kk>.npy (+ sidecar), pc_<kk>.png, overview.png and manifest.json.

    \b
    latentedit direction ganspace --k 10      (writes ganspace/)
    latentedit direction ganspace --layers 0-5 -o runs/ganspace
    """
    from latentedit.directions import ganspace_to_folder, parse_strengths

    generator, info = _load(ckpt, device)
    manifest = ganspace_to_folder(generator, out_dir, layers=layers, k=k, n=count, seed=seed, checkpoint_info=info,
                                  grid_seeds=_seed_list(grid_seeds), grid_strengths=parse_strengths(grid_strengths),
                                  truncation=truncation)
    shares = ", ".join(f"{100 * d['explained_variance_ratio']:.1f}%" for d in manifest["directions"])
    click.echo(f"wrote {len(manifest['directions'])} principal components (explained variance {shares}) to {out_dir}")


@direction_group.command("info")
@click.argument("vector", type=click.Path(dir_okay=False))
def info_command(vector) -> None:
    """Print a direction's shape, norms and provenance sidecar as JSON."""
    from latentedit.directions import describe_direction

    click.echo(json.dumps(describe_direction(vector), indent=2))


@click.command("apply-direction")
@click.option("--vec", "vector", required=True, type=click.Path(dir_okay=False), help="Direction .npy.")
@click.option("--latent", "latent", default="inverted", show_default=True, type=click.Path(),
              help="A .npy latent (W, W+ or a batch of them), a folder of them (what invert, pulse and generate "
                   "write), or an image, which is inverted first.")
@click.option("--strength", default="0:1:5", show_default=True,
              help="One strength (1.5), a sweep START:STOP:COUNT (-3:3:7 = linspace) or a list (0,1,2); in "
                   "--strength-unit units.")
@click.option("--strength-unit", type=click.Choice(["spread", "raw"]), default="spread", show_default=True,
              help="spread: strength 1 moves the most-moved chosen W+ row by one W spread (the RMS distance of "
                   "mapped w from their mean), the same for every direction; raw: multiply the stored array.")
@click.option("--layers", default=None, help="W+ rows to edit, e.g. 0-5 (default: all).")
@click.option("--to-distance", is_flag=True,
              help="Read --strength as target signed distances to the SVM boundary recorded with the direction "
                   "(InterFaceGAN editing: each latent moves as far as it needs); `direction svm` files only.")
@out_option("out_dir", default="edited", show_default=True, type=click.Path(file_okay=False),
            help="Output folder.")
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@click.option("--invert-steps", type=click.IntRange(1, 1_000_000), default=None,
              help="Inversion steps when --latent is an image [default: invert's default, 1000].")
@click.option("--paste-back", "paste_back", is_flag=False, flag_value="", default=None, metavar="[PHOTO]",
              help="Also paste each edited crop back into its photo (<name>_s<s>_full.png, <name>_sweep_full.png) "
                   "under a feathered face-and-hair mask; pixels outside it stay bit-identical. The photo and "
                   "transform come from `invert --align`'s records; or name the PHOTO.")
@click.option("--mask", type=click.Path(dir_okay=False), default=None,
              help="Restrict the edit to a region: a mask image (white or opaque = edit) of the crop's size "
                   "(applied to the PNGs and the paste) or, with --paste-back, of the photo's size.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@progress_option("Show the inversion's progress bar.")
def apply_direction_command(vector, latent, strength, strength_unit, layers, to_distance, out_dir, ckpt,
                            invert_steps, paste_back, mask, device, progress) -> None:
    """Add strength x direction to a latent's chosen W+ rows and render the result.

    Without --latent it edits every latent in inverted/ (what `latentedit invert IMAGE` writes) and writes
    edited/. A W direction is added to every chosen row; a W+ direction row by row. Writes
    <name>_s<strength>.npy (the edited W+) and .png per strength, sweep.png (one column per strength)
    and manifest.json. With --to-distance the files are <name>_d<distance>.* and each latent gets the
    step that puts it at that distance from the direction's SVM boundary. A direction made with another
    generator (per its sidecar) gives a warning; one whose shape does not fit the generator is an error.

    \b
    latentedit invert face.png && latentedit apply-direction --vec blond.npy
    latentedit apply-direction --vec blond.npy --latent runs/inv/face.npy --strength -1:1:5 -o runs/edit
    latentedit apply-direction --vec blond_svm.npy --latent face.npy --to-distance --strength 6 --layers 3-5 -o edit
    latentedit invert --align photo.jpg && latentedit apply-direction --vec blond.npy --paste-back
    """
    from latentedit.directions import apply_to_folder, parse_strengths
    from latentedit.invert import InversionSettings

    strengths = parse_strengths(strength)
    generator, info = _load(ckpt, device)
    manifest = apply_to_folder(generator, vector, latent, out_dir, strengths, layers=layers,
                               strength_unit=strength_unit, checkpoint_info=info,
                               invert_settings=InversionSettings(steps=invert_steps), to_distance=to_distance,
                               paste_back=paste_back, mask=mask, log=_warn, progress=resolve_progress(progress))
    source = manifest["source"]
    if source.get("kind") == "image":
        click.echo(f"inverted {latent} (PSNR {source['inversion']['psnr_db']:.2f} dB, "
                   f"{source['inversion']['steps']} steps) -> {out_dir}/{source['inverted']}")
    pasted = len(manifest.get("paste_back", []))
    click.echo(f"wrote {len(manifest['names']) * len(strengths)} edited latent(s) and image(s), sweep.png and "
               f"manifest.json to {out_dir}"
               + (f"; pasted back into {pasted} photo(s) (*_full.png)" if pasted else ""))


COMMANDS = [direction_group, apply_direction_command]
