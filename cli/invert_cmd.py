"""``latentedit invert``: Image2StyleGAN W+ inversion of image files (SPEC §3), and the encoder / PTI methods (#23)."""
from __future__ import annotations

import click
from latentedit.cli.generate_cmd import CKPT_HELP
from latentedit.cli.options import out_option, precision_option, progress_option

from latentedit.progress import resolve_progress


@click.command("invert")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--ckpt", default="toyfaces64", show_default=True, help=CKPT_HELP)
@out_option("out_dir", type=click.Path(file_okay=False), default="inverted", show_default=True,
            help="Output folder.")
@click.option("--preset", type=click.Choice(["image2stylegan", "projector"]), default="image2stylegan",
              show_default=True, help="image2stylegan: the paper (Adam 0.01, MSE + VGG16 layers, fixed noise). "
              "projector: NVIDIA/rosinality schedule (lr ramp, latent noise, LPIPS, optimised noise).")
@click.option("--space", type=click.Choice(["w+", "w"]), default="w+", show_default=True,
              help="Optimise W+ [num_ws, w_dim] or a single W [w_dim].")
@click.option("--steps", type=click.IntRange(1, 1_000_000), default=None,
              help="Adam steps [default: 1000, the paper used 5000; 200 for encoder+optimize].")
@click.option("--lr", type=float, default=None, help="Learning rate [default: 0.01 image2stylegan (0.1 when it starts from the encoder), "
              "0.1 projector].")
@click.option("--perceptual", type=click.Choice(["auto", "lpips", "vgg", "none"]), default="auto", show_default=True,
              help="Perceptual loss. auto: the preset's (VGG16 layers / LPIPS-VGG) when the VGG16 weights are "
              "local, else MSE only.")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), default=None,
              help="torchvision's vgg16-397923af.pth [default: looked up in $TORCH_HOME/hub/checkpoints].")
@click.option("--mse-weight", type=float, default=None,
              help="Weight of the pixel MSE [default: 1; projector with a perceptual loss: 0].")
@click.option("--perceptual-weight", type=float, default=1.0, show_default=True,
              help="Weight of the perceptual distance.")
@click.option("--noise", type=click.Choice(["fixed", "optimize"]), default=None,
              help="Noise inputs: the stored maps kept fixed, or optimised [default: fixed image2stylegan, "
              "optimize projector].")
@click.option("--noise-regularize", type=float, default=1e5, show_default=True,
              help="Weight of the noise regulariser (--noise optimize).")
@click.option("--batch-size", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Images optimised together (each keeps its own gradient); --method encoder takes at least 64 "
                   "per forward pass.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw.")
@click.option("--target-psnr", type=float, default=None, help="Stop an image once its PSNR reaches this many dB.")
@click.option("--save-video", is_flag=True, help="Also write <stem>_progress.gif.")
@click.option("--overwrite", is_flag=True, help="Redo images whose outputs already exist.")
@click.option("--align", "align", is_flag=True,
              help="The inputs are photos: detect and align each face first (crops and their transforms in "
                   "OUT/aligned/), then invert the crops, so apply-direction --paste-back can put the edit back.")
@click.option("--detector", default="auto", show_default=True,
              help="With --align: auto (toyfaces for toyfaces generators, else mtcnn), mtcnn, toyfaces, or a "
                   "landmarks .json file.")
@click.option("--all-faces", is_flag=True, help="With --align: every face found, not only the largest.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="With --align: faces detected below this confidence are ignored.")
@click.option("--method", type=click.Choice(["optimize", "encoder", "encoder+optimize", "pti"]), default="optimize",
              show_default=True, help="optimize: the optimisation above. encoder: one forward pass of a trained "
              "encoder. encoder+optimize: the optimisation started from the encoder's W+. pti: a pivot (--pti-pivot), "
              "then the generator tuned on the image, written as <stem>_G.safetensors.")
@click.option("--encoder", "encoder", default=None,
              help="Encoder for the encoder methods: an encoder.safetensors, a run folder of 'encoder train', or a "
                   "shipped name [default: toyfaces64_encoder].")
@click.option("--force", is_flag=True, help="Use an encoder trained for another generator.")
@click.option("--pti-pivot", type=click.Choice(["optimize", "encoder", "encoder+optimize"]), default="optimize",
              show_default=True, help="With --method pti: how the pivot latent is found.")
@click.option("--pti-steps", type=click.IntRange(1, 1_000_000), default=200, show_default=True,
              help="With --method pti: Adam steps tuning the generator.")
@click.option("--pti-lr", type=float, default=3e-4, show_default=True, help="With --method pti: learning rate.")
@click.option("--pti-locality", type=float, default=0.1, show_default=True,
              help="With --method pti: weight of the locality regulariser (keeps the tuned generator's images "
                   "between the pivot and random faces as the original's).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@precision_option("What the optimisation's generator passes compute in (the final render is float32; PTI's "
                  "tuning always float32).")
@progress_option("Show a progress bar.")
def invert_command(images, ckpt, out_dir, preset, space, steps, lr, perceptual, vgg_weights, mse_weight,
                   perceptual_weight, noise, noise_regularize, batch_size, seed, target_psnr, save_video, overwrite,
                   align, detector, all_faces, min_confidence, method, encoder, force, pti_pivot, pti_steps, pti_lr,
                   pti_locality, device, precision, progress):
    """Invert images (files or folders) into the generator's W+ (or W) space.

    Per image <stem>: <stem>.npy (the latent, read by `generate --latent`), <stem>.png (reconstruction),
    <stem>_compare.png (target | reconstruction), <stem>.json (checkpoint sha256, settings, MSE, PSNR,
    LPIPS when measurable, loss curve, wall time), plus <stem>_noise.npz with --noise optimize and
    <stem>_progress.gif with --save-video; summary.json for the whole run. Images are centre-cropped
    to a square and resized to the generator size.

    Re-running skips finished images (resume a killed batch); a bad image is reported and skipped.
    Exit code 0 when at least one image is inverted or already done, 2 when every input failed.
    Multi-process: torchrun --nproc_per_node N -m latentedit invert DIR -o OUT.

    With --align the inputs are photos: each face is found, cropped the way the generator was trained
    (FFHQ's crop, or the toyfaces frame) and inverted as <stem>_face<k>; the manifest keeps the photo and
    the exact transform.

    --method encoder answers in one forward pass of an encoder trained with 'latentedit encoder train';
    encoder+optimize starts the optimisation there (200 steps at lr 0.1 by default); pti also writes the tuned
    generator <stem>_G.safetensors, which every command reads with --ckpt (apply-direction edits the tuned image).

    \b
    latentedit invert face.png
    latentedit invert --align photo.jpg && latentedit apply-direction --vec blond.npy --paste-back
    latentedit invert face.png --method encoder --encoder runs/encoder
    latentedit invert face.png --method pti -o pti
    latentedit generate --ckpt pti/face_G.safetensors --latent pti/face.npy
    """
    from latentedit.errors import InputError
    from latentedit.invert import InversionSettings, invert_files
    from latentedit.photos import align_and_invert

    settings = InversionSettings(preset=preset, space=space, steps=steps, lr=lr, perceptual=perceptual,
                                 mse_weight=mse_weight, perceptual_weight=perceptual_weight, noise=noise,
                                 noise_regularize=noise_regularize, batch_size=batch_size, seed=seed,
                                 target_psnr=target_psnr, save_video=save_video, vgg_weights=vgg_weights,
                                 method=method, encoder=encoder, force=force, pti_steps=pti_steps, pti_lr=pti_lr,
                                 pti_locality=pti_locality, pti_pivot=pti_pivot, precision=precision)
    if encoder is not None and not settings.uses_encoder():
        raise InputError("--encoder is used by --method encoder, encoder+optimize and pti with an encoder --pti-pivot")
    if not align and (detector != "auto" or all_faces):
        raise InputError("--detector and --all-faces need --align")
    if align:
        summary = align_and_invert(images, out_dir, settings, ckpt=ckpt, device=device, detector=detector,
                                   all_faces=all_faces, min_confidence=min_confidence, overwrite=overwrite,
                                   progress=resolve_progress(progress), log=lambda m: click.echo(m, err=True))
    else:
        summary = invert_files(images, out_dir, settings, ckpt=ckpt, device=device, overwrite=overwrite,
                               progress=resolve_progress(progress))
    counts = summary["counts"]
    if counts["total"] and counts["failed"] == counts["total"]:
        raise InputError(f"all {counts['total']} input(s) failed; nothing was inverted (see the errors above)")
    median = summary["median_psnr_db"]
    if summary["rank"] == 0:
        click.echo(f"inverted {counts['inverted']}, skipped {counts['skipped']} (already done), failed "
                   f"{counts['failed']} of {counts['total']} image(s) -> {out_dir}"
                   + (f" (median PSNR {median:.2f} dB)" if median is not None else "")
                   + f" in {summary['wall_time_s']:.1f} s")


COMMANDS = [invert_command]
