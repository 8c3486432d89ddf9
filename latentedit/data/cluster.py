"""Data curation by clustering (seed 004): find an off-type subset of a folder with k-means, then drop it.

The seed cleans its most diverse category (ramen) before training: VGG16 fc6 features of every image, k-means
with k = 8, and the cluster that holds the off-type images (Jiro-style bowls) removed. :func:`cluster_folder`
does the same for any image folder and :func:`filter_folder` writes the cleaned copy.

Features (``features``):

- ``vgg16-fc6``: torchvision's VGG16 with ImageNet weights (the local file that ``invert`` uses,
  :func:`latentedit.invert.perceptual.find_vgg16_weights`, or ``vgg_weights``; nothing is downloaded), images
  centre-cropped and resized to 224 px, ImageNet-normalised, through ``features``, the 7x7 average pool and
  ``classifier[0]`` (fc6): 4096 values before the ReLU, as the seed takes them. Without local weights this is
  a one-line :class:`InputError` that says where to put them.
- ``classifier``: the penultimate features (256 values) of latentedit's attribute classifier
  (:func:`latentedit.evaluate.classifier.extract_features`; the shipped one unless ``classifier_path``), images at
  its input size. Meant for toyfaces-like data.
- ``pixels``: the image centre-cropped and resized to 16 x 16 (Lanczos), RGB in [0, 1]: 768 values. Always works.

Every feature vector is standardised per dimension (zero mean, unit variance over the folder; constant
dimensions are left at 0) so that no dimension dominates by scale, then clustered with scikit-learn's
``KMeans(n_clusters=k, n_init=10, random_state=seed)`` in float64. Cluster ids are renumbered by size (0 = the
largest; ties by the first image in sorted order), so a rerun gives the same ids and the same bytes.

Outputs in ``out`` (``latentedit data cluster``):

- ``clusters.csv``: ``path,cluster,distance`` per image (path relative to the folder, in sorted order;
  distance to its cluster's centre in the standardised feature space, 6 decimals),
- ``cluster_<id>.png``: a contact sheet per cluster, up to 64 thumbnails (64 px) nearest the centre first,
- ``clusters.json``: the folder, feature type and size, k, seed, inertia, and per cluster its size, mean and
  maximum distance and the first few images nearest the centre.

:func:`filter_folder` (``latentedit data filter DIR --clusters OUT --drop 3,5 -o CLEAN``) recreates the folder
layout (so a class-folder layout stays one) without the images of the dropped clusters, as hard links, falling
back to copies where linking fails (another file system), and writes ``CLEAN/filter.json``; every trainer reads
the result as it read the original.

Errors (one line): a folder without images, ``k`` < 1 or larger than the number of images, an unknown feature
type, missing VGG16 weights, a cluster id that does not exist, clusters computed for another folder, a
non-empty output folder.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from latentedit.errors import InputError

FEATURES = ("vgg16-fc6", "classifier", "pixels")
CSV_NAME, SUMMARY_NAME, FILTER_NAME = "clusters.csv", "clusters.json", "filter.json"
PIXEL_SIDE = 16
VGG_INPUT = 224
SHEET_THUMBS, SHEET_THUMB_SIDE = 64, 64
FORMAT = "latentedit-clusters"


@dataclass
class ClusterResult:
    """``paths`` (relative to the folder, sorted), ``labels [N]`` cluster ids (0 = largest), ``distances [N]``
    to the centre, ``summary`` (what ``clusters.json`` holds)."""

    paths: list[str]
    labels: np.ndarray
    distances: np.ndarray
    summary: dict


def list_folder_images(folder: str | os.PathLike, exclude: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Image files below ``folder`` at any depth (hidden ones skipped), sorted by relative path."""
    from latentedit.image_files import IMAGE_SUFFIXES, _folder_images

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder" if folder.exists() else f"folder {folder} does not exist")
    found = _folder_images(folder, {Path(p).resolve() for p in exclude})
    if not found:
        raise InputError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}, searched recursively)")
    return found


def _load(paths: Sequence[Path], size: int) -> torch.Tensor:
    from latentedit.image_files import load_image_tensor

    return torch.stack([load_image_tensor(path, size, warn=lambda message: None)[0] for path in paths])


def pixel_features(paths: Sequence[Path], side: int = PIXEL_SIDE) -> np.ndarray:
    """``[N, 3 side^2]``: each image centre-cropped, resized to ``side`` px, RGB in [0, 1]."""
    return ((_load(paths, side) + 1) / 2).flatten(1).numpy().astype(np.float64)


def classifier_features(paths: Sequence[Path], classifier_path: str | os.PathLike | None = None,
                        batch_size: int = 256) -> np.ndarray:
    """``[N, feature_dim]`` penultimate features of the attribute classifier."""
    from latentedit.evaluate.classifier import extract_features, load_classifier

    classifier = load_classifier(classifier_path)
    size = classifier.config.input_size
    chunks = []
    for begin in range(0, len(paths), batch_size):
        chunks.append(extract_features(classifier, _load(paths[begin:begin + batch_size], size), batch_size).numpy())
    return np.concatenate(chunks).astype(np.float64)


def build_vgg16_fc6(weights: str | os.PathLike | None) -> torch.nn.Module:
    """torchvision's VGG16 up to fc6 (``features``, ``avgpool``, ``classifier[0]``) with the ImageNet weights in
    ``weights``; ``weights=None`` keeps random weights (tests only). InputError for an unreadable file."""
    from torchvision.models import vgg16

    network = vgg16(weights=None)
    if weights is not None:
        try:
            state = torch.load(Path(weights), map_location="cpu", weights_only=True)
            network.load_state_dict(state, strict=True)
        except Exception as error:  # torch raises many types for truncated, pickled-code or foreign files
            message = f"{type(error).__name__}: {error}".strip().splitlines()[0]
            raise InputError(f"cannot load VGG16 weights {weights} ({message}); is it torchvision's "
                             "vgg16-397923af.pth?") from None
    return torch.nn.Sequential(network.features, network.avgpool, torch.nn.Flatten(1), network.classifier[0]).eval()


def require_vgg16_weights(explicit: str | os.PathLike | None) -> Path:
    """The local ImageNet VGG16 file (``explicit`` or torchvision's cache), else a one-line InputError."""
    from latentedit.invert.perceptual import find_vgg16_weights, missing_weights_hint

    found = find_vgg16_weights(explicit)
    if found is None:
        raise InputError(f"--features vgg16-fc6 needs the ImageNet VGG16 weights, which are not on this machine "
                         f"(nothing is downloaded): {missing_weights_hint()}; or use --features classifier|pixels")
    return found


@torch.no_grad()
def vgg16_fc6_features(paths: Sequence[Path], network: torch.nn.Module, input_size: int = VGG_INPUT,
                       batch_size: int = 16) -> np.ndarray:
    """``[N, 4096]`` fc6 activations (before the ReLU) of ImageNet-normalised ``input_size`` px images."""
    mean = torch.tensor((0.485, 0.456, 0.406))[None, :, None, None]
    std = torch.tensor((0.229, 0.224, 0.225))[None, :, None, None]
    device = next(network.parameters()).device
    chunks = []
    for begin in range(0, len(paths), batch_size):
        images = (_load(paths[begin:begin + batch_size], input_size) + 1) / 2
        chunks.append(network(((images - mean) / std).to(device)).float().cpu().numpy())
    return np.concatenate(chunks).astype(np.float64)


def standardise(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column; constant columns become 0."""
    centred = features - features.mean(axis=0, keepdims=True)
    scale = centred.std(axis=0, keepdims=True)
    return np.divide(centred, scale, out=np.zeros_like(centred), where=scale > 1e-12)


def kmeans(features: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """``(labels [N], distances [N], inertia)``: scikit-learn k-means (module docstring), ids renumbered by size."""
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(features)
    raw = model.labels_
    first = {label: int(np.flatnonzero(raw == label)[0]) for label in range(k)}
    order = sorted(range(k), key=lambda label: (-int((raw == label).sum()), first[label]))
    renumber = np.empty(k, dtype=np.int64)
    renumber[order] = np.arange(k)
    labels = renumber[raw]
    centres = model.cluster_centers_[order]
    distances = np.linalg.norm(features - centres[labels], axis=1)
    return labels, distances, float(model.inertia_)


def contact_sheet(paths: Sequence[Path], side: int = SHEET_THUMB_SIDE) -> np.ndarray:
    """``[H, W, 3]`` uint8 grid of ``paths`` as ``side`` px thumbnails, 8 per row."""
    from latentedit.io import make_grid, to_uint8

    return make_grid(to_uint8(_load(paths, side)), columns=min(8, len(paths)))


def _csv_text(paths: Sequence[str], labels: np.ndarray, distances: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "cluster", "distance"])
    for path, label, distance in zip(paths, labels, distances):
        writer.writerow([path, int(label), f"{distance:.6f}"])
    return buffer.getvalue()


def compute_features(paths: Sequence[Path], features: str, *, vgg_weights: str | os.PathLike | None = None,
                     classifier_path: str | os.PathLike | None = None, vgg_network: torch.nn.Module | None = None,
                     vgg_input_size: int = VGG_INPUT) -> np.ndarray:
    """The raw ``[N, D]`` features of ``paths`` (module docstring). ``vgg_network`` replaces the weights lookup
    (tests pass a randomly initialised one, with a small ``vgg_input_size``)."""
    if features == "pixels":
        return pixel_features(paths)
    if features == "classifier":
        return classifier_features(paths, classifier_path)
    if features == "vgg16-fc6":
        network = vgg_network if vgg_network is not None else build_vgg16_fc6(require_vgg16_weights(vgg_weights))
        return vgg16_fc6_features(paths, network, vgg_input_size)
    raise InputError(f"--features must be one of {', '.join(FEATURES)}, got {features!r}")


def cluster_folder(folder: str | os.PathLike, k: int = 8, features: str = "pixels", out: str | os.PathLike | None = None,
                   *, seed: int = 0, vgg_weights: str | os.PathLike | None = None,
                   classifier_path: str | os.PathLike | None = None, vgg_network: torch.nn.Module | None = None,
                   vgg_input_size: int = VGG_INPUT, log: Callable[[str], None] | None = None) -> ClusterResult:
    """Cluster the images below ``folder`` into ``k`` groups; write the outputs to ``out`` when given."""
    from latentedit import io as lio

    if features not in FEATURES:
        raise InputError(f"--features must be one of {', '.join(FEATURES)}, got {features!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"--k must be an integer >= 1, got {k!r}")
    if features == "vgg16-fc6" and vgg_network is None:
        require_vgg16_weights(vgg_weights)  # fail before reading any image
    folder = Path(folder)
    exclude = [out] if out is not None else []
    paths = list_folder_images(folder, exclude)
    if k > len(paths):
        raise InputError(f"--k {k} is larger than the number of images ({len(paths)}) in {folder}")
    if out is not None:
        lio.prepare_output_dir(out)
    (log or (lambda message: None))(f"{features} features of {len(paths)} images")
    raw = compute_features(paths, features, vgg_weights=vgg_weights, classifier_path=classifier_path,
                           vgg_network=vgg_network, vgg_input_size=vgg_input_size)
    if not np.isfinite(raw).all():
        raise InputError(f"the {features} features hold NaN or infinite values; check the weights")
    labels, distances, inertia = kmeans(standardise(raw), k, seed)
    relative = [path.relative_to(folder).as_posix() for path in paths]
    clusters = []
    for cluster in range(k):
        members = np.flatnonzero(labels == cluster)
        nearest = members[np.argsort(distances[members], kind="stable")]
        clusters.append({"id": cluster, "size": int(members.size),
                         "mean_distance": round(float(distances[members].mean()), 6),
                         "max_distance": round(float(distances[members].max()), 6),
                         "nearest": [relative[i] for i in nearest[:8]],
                         "sheet": f"cluster_{cluster}.png"})
    summary = {"format": FORMAT, "folder": str(folder), "images": len(paths), "features": features,
               "feature_dim": int(raw.shape[1]), "k": k, "seed": seed, "inertia": round(inertia, 6),
               "standardised": True, "clusters": clusters}
    if out is not None:
        out = Path(out)
        for cluster in range(k):
            members = np.flatnonzero(labels == cluster)
            nearest = members[np.argsort(distances[members], kind="stable")][:SHEET_THUMBS]
            lio.save_png(out / f"cluster_{cluster}.png", contact_sheet([paths[i] for i in nearest]))
        with lio.atomic_write(out / CSV_NAME, "w") as handle:
            handle.write(_csv_text(relative, labels, distances))
        lio.write_json(out / SUMMARY_NAME, summary)
    return ClusterResult(relative, labels, distances, summary)


# --------------------------------------------------------------------------------------------------
# Filtering

def read_clusters(clusters_dir: str | os.PathLike) -> tuple[dict, list[tuple[str, int]]]:
    """``clusters.json`` and the ``(path, cluster)`` rows of ``clusters.csv`` of a :func:`cluster_folder` output."""
    import json

    clusters_dir = Path(clusters_dir)
    summary_path, csv_path = clusters_dir / SUMMARY_NAME, clusters_dir / CSV_NAME
    for path in (summary_path, csv_path):
        if not path.is_file():
            raise InputError(f"{path} not found; --clusters takes the -o folder of 'latentedit data cluster'")
    try:
        summary = json.loads(summary_path.read_text())
        with open(csv_path, newline="") as handle:
            rows = list(csv.reader(handle))
        entries = [(row[0], int(row[1])) for row in rows[1:]]
    except (ValueError, IndexError, OSError) as error:
        raise InputError(f"{clusters_dir}: unreadable cluster files ({error})") from None
    if summary.get("format") != FORMAT or rows[:1] != [["path", "cluster", "distance"]]:
        raise InputError(f"{clusters_dir} does not hold 'latentedit data cluster' output")
    return summary, entries


def parse_drop(drop: str | Sequence[int], k: int) -> list[int]:
    """``"3,5"`` -> ``[3, 5]``; InputError for a malformed item or an id outside ``0 .. k - 1``."""
    items = drop.split(",") if isinstance(drop, str) else list(drop)
    chosen = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise InputError(f"--drop takes cluster ids separated by commas (e.g. --drop 3,5), got {text!r}") from None
        if not 0 <= value < k:
            raise InputError(f"cluster {value} does not exist: the clustering has {k} clusters, ids 0 to {k - 1}")
        if value not in chosen:
            chosen.append(value)
    if not chosen:
        raise InputError("--drop names no cluster; give ids such as --drop 3,5")
    return sorted(chosen)


def _link_or_copy(source: Path, destination: Path) -> str:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
        return "link"
    except OSError:
        shutil.copy2(source, destination)
        return "copy"


def filter_folder(folder: str | os.PathLike, clusters_dir: str | os.PathLike, drop: str | Sequence[int],
                  out: str | os.PathLike) -> dict:
    """Write ``out``: ``folder``'s layout without the images of the ``drop`` clusters (module docstring).
    Returns (and writes as ``out/filter.json``) ``{"kept", "dropped", "links", "copies", ...}``."""
    from latentedit import io as lio

    folder, out = Path(folder), Path(out)
    summary, entries = read_clusters(clusters_dir)
    dropped_ids = parse_drop(drop, int(summary["k"]))
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder" if folder.exists() else f"folder {folder} does not exist")
    if folder.resolve() == out.resolve() or folder.resolve() in out.resolve().parents:
        raise InputError(f"-o {out} is inside the data folder {folder}; write the filtered copy elsewhere")
    missing = [path for path, _ in entries if not (folder / path).is_file()]
    if missing:
        raise InputError(f"{len(missing)} image(s) of {clusters_dir} are not in {folder} (e.g. {missing[0]}); were the "
                         "clusters computed for another folder?")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"-o {out} exists and is not an empty folder; choose a new folder")
    lio.prepare_output_dir(out)
    kept, dropped, methods = 0, 0, {"link": 0, "copy": 0}
    for path, cluster in entries:
        if cluster in dropped_ids:
            dropped += 1
            continue
        methods[_link_or_copy(folder / path, out / path)] += 1
        kept += 1
    report = {"folder": str(folder), "clusters": str(clusters_dir), "features": summary.get("features"),
              "dropped_clusters": dropped_ids, "kept": kept, "dropped": dropped, "links": methods["link"],
              "copies": methods["copy"]}
    lio.write_json(out / FILTER_NAME, report)
    return report


# --------------------------------------------------------------------------------------------------
# Scoring a planted subset

def subset_recovery(labels: np.ndarray, planted: np.ndarray, k: int, min_purity: float = 0.9) -> dict:
    """How well clusters isolate a planted subset (``planted [N]`` bool): the clusters whose share of planted
    images is at least ``min_purity`` ("pure" clusters) and, over them, ``recall`` (planted images they hold /
    all planted) and ``purity`` (planted share of their images); also the same for the clusters where planted
    images are the majority."""
    planted = np.asarray(planted, dtype=bool)
    total = int(planted.sum())
    result = {"planted": total, "images": int(planted.size)}
    for name, threshold in (("pure", min_purity), ("majority", 0.5)):
        shares = {c: float(planted[labels == c].mean()) for c in range(k) if (labels == c).any()}
        chosen = [c for c, share in shares.items() if (share >= threshold if name == "pure" else share > threshold)]
        members = np.isin(labels, chosen)
        held = int((members & planted).sum())
        result[name] = {"clusters": chosen, "recall": held / total if total else 0.0,
                        "purity": held / int(members.sum()) if members.any() else 0.0}
    return result


def plant_offtype_folder(out: str | os.PathLike, count: int = 400, share: float = 0.15, size: int = 64,
                         seed: int = 0) -> dict:
    """A toyfaces folder with an injected off-type subset, for tests and ``benchmarks/cluster.py``.

    ``count`` images at ``size`` px in ``out/images/``: ``round(share * count)`` off-type ones, the rest ordinary
    toyfaces portraits (faces ``0 ..`` of the training seed, as the training data). The off-type images are
    toyfaces *scenes* (:func:`latentedit.data.toyfaces_scenes.render_scene`, seed 2): a face of another seed
    shrunk to 35-60 % of the frame, rotated up to 30 degrees and pasted on a textured background: still a face,
    but framed unlike every training portrait, as a Jiro-style bowl is still ramen. File names are
    ``{k:04d}.png`` in an order mixed by ``seed``, so the subset is not contiguous. Returns ``{"names",
    "planted"}`` (bool per name, sorted order) and writes ``out/planted.json``.
    """
    from PIL import Image

    from latentedit import io as lio
    from latentedit.data import toyfaces, toyfaces_scenes

    if not 0 < share < 1 or count < 2:
        raise InputError(f"need count >= 2 and 0 < share < 1, got count={count}, share={share}")
    planted_count = int(round(share * count))
    rng = np.random.default_rng(seed)
    kinds = np.zeros(count, dtype=bool)
    kinds[rng.permutation(count)[:planted_count]] = True
    image_dir = Path(out) / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    names, portrait, scene = [], 0, 0
    for k in range(count):
        if kinds[k]:
            pixels = toyfaces_scenes.render_scene(2, scene, max(64, size)).image
            scene += 1
            if pixels.shape[0] != size:
                pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.LANCZOS))
        else:
            pixels = toyfaces.render_face(toyfaces.TRAIN_SEED, portrait, size)
            portrait += 1
        name = f"images/{k:04d}.png"
        lio.save_png(Path(out) / name, pixels)
        names.append(name)
    lio.write_json(Path(out) / "planted.json", {"planted": [n for n, p in zip(names, kinds) if p],
                                                "definition": "toyfaces scenes (seed 2) among toyfaces portraits"})
    return {"names": names, "planted": kinds}
