"""CLI: ``latentedit data toyfaces`` (export the procedural face set, or render one face/counterfactual);
``latentedit data cluster`` / ``data filter`` (curation by k-means, seed 004)."""
from __future__ import annotations

import click
from latentedit.cli.options import out_option, progress_option

from latentedit.errors import InputError


@click.group("data")
def data_group() -> None:
    """Data sets: render and export the procedural toyfaces set; cluster a folder and drop clusters."""


@data_group.command("toyfaces")
@out_option("out", type=click.Path(), default=None,
            help="Export folder, or a .png file when --index is given. "
                 "[default: toyfaces/; with --index: toyface_<SEED>_<INDEX>.png]")
@click.option("--n", "count", type=int, default=None, help="Number of faces to export.")
@click.option("--size", type=int, default=64, show_default=True, help="Image size in pixels (square).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Data set seed: 0 is the training set, 1 the held-out set.")
@click.option("--start", type=int, default=0, show_default=True, help="First face index to export.")
@click.option("--format", "fmt", type=click.Choice(["celeba", "folder", "categories"]), default="celeba",
              show_default=True,
              help="celeba: img_align_celeba/ + list_attr_celeba.txt; folder: images/ + attributes.csv; categories: "
                   "one folder per hair colour (<Hair_Colour>/*.png, exclusive categories for 'stargan train').")
@click.option("--workers", type=int, default=None, help="Rendering processes (default: up to 2).")
@click.option("--index", type=int, default=None, help="Render this one face to -o (a .png) instead of exporting.")
@click.option("--set", "assignments", multiple=True, metavar="NAME=0|1",
              help="With --index: counterfactual attribute value, e.g. --set Blond_Hair=1 (repeatable).")
@click.option("--scene", is_flag=True, default=False,
              help="Place each face, rotated/scaled/shifted, on a textured canvas and write the true landmarks "
                   "and placement as JSON (--index: a .json beside the .png; --n: scenes/ + scenes.json).")
@click.option("--canvas", type=int, default=256, show_default=True, help="With --scene: canvas size in pixels.")
@progress_option(quiet_alias=True)
def toyfaces_command(out, count, size, seed, start, fmt, workers, index, assignments, scene, canvas,
                     progress) -> None:
    """Export toyfaces (resumable: rerun to continue), or render one face / counterfactual.

    \b
    latentedit data toyfaces --n 30000 --size 64 -o data/toyfaces64
    latentedit data toyfaces --n 100      (exports to toyfaces/)
    latentedit data toyfaces --seed 0 --index 7 --set Blond_Hair=1 --set Eyeglasses=0 -o face.png
    latentedit data toyfaces --seed 1 --index 7      (writes toyface_1_7.png)
    latentedit data toyfaces --scene --index 7 --set Smiling=1 -o scene.png   (and scene.json)
    latentedit data toyfaces --scene --n 100 --canvas 256 -o scenes256
    """
    import os

    from latentedit.data import toyfaces

    source = click.get_current_context().get_parameter_source
    if scene:
        # The face render size and layout are chosen per scene; --size and --format would be silently ignored.
        for name, flag in (("size", "--size"), ("fmt", "--format")):
            if source(name) == click.core.ParameterSource.COMMANDLINE:
                raise InputError(f"{flag} does not apply to --scene (the face size is drawn per scene; use --canvas)")
        _scene_command(out, count, seed, start, workers, index, assignments, canvas, progress)
        return
    if source("canvas") == click.core.ParameterSource.COMMANDLINE:
        raise InputError("--canvas sets the size of a scene: it needs --scene")

    if index is not None:
        if count is not None:
            raise InputError("--n exports a data set and --index renders one face: give only one of them")
        if out is None:
            out = f"toyface_{seed}_{index}.png"
        if not str(out).lower().endswith(".png"):
            raise InputError(f"with --index, -o must be a .png file, got {out!r}")
        overrides = toyfaces.parse_overrides(assignments)
        params = toyfaces.sample_params(seed, index)
        if overrides:
            params = params.with_attributes(**overrides)
        from latentedit.io import save_png

        save_png(out, toyfaces.render(params, size))
        on = [name for name, value in toyfaces.attributes(params).items() if value]
        click.echo(f"wrote {out} (seed {seed}, index {index}, {size}px): {' '.join(on) or 'no attributes'}")
        return
    if assignments:
        raise InputError("--set changes one face's attributes: it needs --index")
    if count is None:
        raise InputError("give --n (number of faces to export) or --index (one face)")
    from latentedit.data import export_toyfaces
    out = out if out is not None else "toyfaces"
    from latentedit.progress import resolve_progress

    workers = workers if workers is not None else max(1, min(2, os.cpu_count() or 1))
    if fmt == "categories":
        from latentedit.data.categories import export_toyfaces_categories

        result = export_toyfaces_categories(out, count, size=size, seed=seed, start=start, workers=workers,
                                            progress=resolve_progress(progress))
        counts = ", ".join(f"{name} {number}" for name, number in result["counts"].items())
        click.echo(f"wrote {result['count']} faces ({result['rendered']} rendered, {result['skipped']} already "
                   f"there) as hair-colour categories ({counts}) to {result['out_dir']}")
        return
    result = export_toyfaces(out, count, size=size, seed=seed, start=start, fmt=fmt, workers=workers,
                             progress=resolve_progress(progress))
    click.echo(f"wrote {result['count']} faces ({result['rendered']} rendered, {result['skipped']} already there), "
               f"format {fmt}, to {result['out_dir']}")


def _scene_command(out, count, seed, start, workers, index, assignments, canvas, progress) -> None:
    import os
    from pathlib import Path

    from latentedit.data import toyfaces, toyfaces_scenes

    if index is not None:
        if count is not None:
            raise InputError("--n exports a data set and --index renders one scene: give only one of them")
        if out is None:
            out = f"toyscene_{seed}_{index}.png"
        if not str(out).lower().endswith(".png"):
            raise InputError(f"with --index, -o must be a .png file, got {out!r}")
        overrides = toyfaces.parse_overrides(assignments)
        result = (toyfaces_scenes.render_counterfactual_scene(seed, index, overrides, canvas) if overrides
                  else toyfaces_scenes.render_scene(seed, index, canvas))
        from latentedit.io import save_png, write_json

        save_png(out, result.image)
        json_path = Path(out).with_suffix(".json")
        write_json(json_path, result.to_json())
        placement = result.placement
        click.echo(f"wrote {out} and {json_path} (seed {seed}, index {index}, {canvas}px canvas, face "
                   f"{placement.face_size:.0f}px at {placement.angle_deg:+.1f} deg)")
        return
    if assignments:
        raise InputError("--set changes one face's attributes: it needs --index")
    if count is None:
        raise InputError("give --n (number of scenes to export) or --index (one scene)")
    from latentedit.progress import resolve_progress

    out = out if out is not None else "toyscenes"
    workers = workers if workers is not None else max(1, min(2, os.cpu_count() or 1))
    result = toyfaces_scenes.export_scenes(out, count, canvas=canvas, seed=seed, start=start, workers=workers,
                                           progress=resolve_progress(progress))
    click.echo(f"wrote {result['count']} scenes ({result['rendered']} rendered, {result['skipped']} already "
               f"there), {canvas}px canvas, to {result['out_dir']} ({toyfaces_scenes.MANIFEST_NAME})")


@data_group.command("cluster")
@click.argument("folder", type=click.Path())
@click.option("--k", "k", type=int, default=8, show_default=True, help="Number of clusters.")
@click.option("--features", type=click.Choice(["vgg16-fc6", "classifier", "pixels"]), default="pixels",
              show_default=True,
              help="vgg16-fc6: ImageNet VGG16 fc6 (local weights only, as the seed); classifier: the attribute "
                   "classifier's penultimate features (toyfaces); pixels: 16x16 RGB (always works).")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), default=None,
              help="torchvision's vgg16-397923af.pth [default: the torch hub cache, as 'invert' finds it].")
@click.option("--classifier", "classifier_path", type=click.Path(dir_okay=False), default=None,
              help="Attribute classifier for --features classifier [default: the shipped one].")
@click.option("--seed", type=int, default=0, show_default=True, help="k-means seed.")
@out_option("out", type=click.Path(file_okay=False), default="clusters", show_default=True,
            help="Output folder: clusters.csv, clusters.json, cluster_<id>.png.")
def cluster_command(folder, k, features, vgg_weights, classifier_path, seed, out) -> None:
    """Group the images of FOLDER (searched recursively) by k-means over image features, to find an off-type
    subset; writes a contact sheet per cluster, a CSV of image -> cluster and distance, and a summary JSON.

    \b
    latentedit data cluster data/ramen --k 8 --features vgg16-fc6 -o runs/ramen_clusters
    latentedit data cluster data/toy --k 8 --features classifier -o runs/toy_clusters
    latentedit data filter data/ramen --clusters runs/ramen_clusters --drop 3 -o data/ramen_clean
    """
    from latentedit.data.cluster import cluster_folder

    result = cluster_folder(folder, k, features, out, seed=seed, vgg_weights=vgg_weights,
                            classifier_path=classifier_path)
    sizes = " ".join(f"{c['id']}:{c['size']}" for c in result.summary["clusters"])
    click.echo(f"{result.summary['images']} images, {features} features ({result.summary['feature_dim']} values), "
               f"k={k}; cluster sizes {sizes}; wrote clusters.csv, clusters.json and {k} contact sheets to {out}")


@data_group.command("filter")
@click.argument("folder", type=click.Path())
@click.option("--clusters", "clusters_dir", type=click.Path(file_okay=False), required=True,
              help="The -o folder of 'latentedit data cluster FOLDER'.")
@click.option("--drop", required=True, help="Cluster ids to leave out, comma-separated (e.g. 3,5).")
@out_option("out", type=click.Path(file_okay=False), default=None,
            help="New folder with FOLDER's layout minus the dropped clusters (hard links, else copies). "
                 "[default: FOLDER_clean]")
def filter_command(folder, clusters_dir, drop, out) -> None:
    """Write a copy of FOLDER (same layout, hard links where possible) without the images of the dropped
    clusters; train on it as on FOLDER."""
    from pathlib import Path

    from latentedit.data.cluster import filter_folder

    out = out if out is not None else str(Path(folder).resolve().with_name(Path(folder).resolve().name + "_clean"))
    report = filter_folder(folder, clusters_dir, drop, out)
    how = f"{report['links']} hard links" + (f", {report['copies']} copies" if report["copies"] else "")
    click.echo(f"kept {report['kept']} images, dropped {report['dropped']} (clusters "
               f"{','.join(map(str, report['dropped_clusters']))}); {how} in {out}")


COMMANDS = [data_group]
