"""``latentedit align``: detect faces in photographs and crop them the FFHQ way."""
from __future__ import annotations

import click

from latentedit.cli.generate_cmd import CKPT_HELP
from latentedit.cli.options import out_option


@click.command("align")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@out_option("out_dir", type=click.Path(file_okay=False), default="aligned", show_default=True, help="Output folder.")
@click.option("--size", type=click.IntRange(8, 4096), default=None,
              help="Crop size in px [default: the --ckpt generator's size]. Without --ckpt, --detector auto "
                   "and --framing auto then mean mtcnn and ffhq.")
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP + " Only its size is used.")
@click.option("--detector", default="auto", show_default=True,
              help="auto (toyfaces for toyfaces generators, else mtcnn), mtcnn (MTCNN from facenet-pytorch), "
                   "toyfaces (the shipped toyfaces landmark detector), or a landmarks .json file ([5, 2] or "
                   "[F, 5, 2] x, y: left eye, right eye, nose, left and right mouth corner).")
@click.option("--framing", type=click.Choice(["auto", "ffhq", "toyfaces"]), default="auto", show_default=True,
              help="How the crop frames the face: ffhq (the FFHQ recipe) or toyfaces (the toyfaces render "
                   "frame, 1.375x wider); auto: the --ckpt generator's.")
@click.option("--all-faces", is_flag=True, help="Align every face found, not only the largest.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="Faces detected below this confidence (MTCNN probability, toyfaces face score) are ignored.")
@click.pass_context
def align_command(ctx, images, out_dir, size, ckpt, detector, framing, all_faces, min_confidence) -> None:
    """Find the face in each photo (files or folders), compute the FFHQ crop quad from its eyes and mouth and
    write the crop resampled at the generator size.

    Per face k of <stem>: <stem>_face<k>.png and <stem>_face<k>.json (source sha256, detector, confidence,
    landmarks, quad, the exact photo <-> crop transforms). An image with no face is a one-line error and the
    batch goes on; exit 2 when every image failed.

    \b
    latentedit align photo.jpg                      (writes aligned/photo_face0.png)
    latentedit align photos/ --all-faces --size 256 -o crops
    """
    from latentedit.checkpoints import load_generator
    from latentedit.errors import InputError
    from latentedit.photos import align_files, detector_for, framing_for

    from click.core import ParameterSource

    if size is not None and ctx.get_parameter_source("ckpt") == ParameterSource.DEFAULT:
        # --size alone names no generator: a photograph for some FFHQ-like model (MTCNN, FFHQ crop).
        detector = "mtcnn" if detector == "auto" else detector
        framing = "ffhq" if framing == "auto" else framing
    if size is None or detector == "auto" or framing == "auto":
        generator, info = load_generator(ckpt)
        size = generator.size if size is None else size
        detector = detector_for(detector, info)
        framing = framing_for(info) if framing == "auto" else framing
    result = align_files(list(images), out_dir, size, detector=detector, all_faces=all_faces,
                         min_confidence=min_confidence, framing=framing,
                         log=lambda message: click.echo(message, err=True))
    if not result["faces"]:
        raise InputError(f"no face aligned in {len(result['failed'])} image(s) (see the errors above)")
    click.echo(f"aligned {len(result['faces'])} face(s) at {size}x{size}"
               + (f"; {len(result['failed'])} image(s) failed" if result["failed"] else "")
               + f" -> {result['out_dir']}")


COMMANDS = [align_command]
