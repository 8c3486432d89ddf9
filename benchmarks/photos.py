"""Photos end to end on held-out toyfaces scenes (issue #18), and MTCNN on a real photograph.

On ``--n`` held-out scenes (toyfaces seed 1, 256 px canvases, faces rotated up to 30 degrees, 25-60 % of the
canvas), with the shipped toyfaces64 generator, the shipped toyfaces landmark detector and the shipped learned
blond direction:

1. **Landmarks**: the detector's error per point divided by the true inter-ocular distance (IOD); median and
   95th percentile of the per-scene mean, and per landmark.
2. **Round trip**: detect -> align (toyfaces framing, 64 px) -> invert (invert's default settings, batches of
   ``--batch-size``) -> render the latent as ``apply-direction`` does at strength 0 -> paste back under the
   default face-and-hair mask: PSNR over the whole scene and over the mask (weight > 0.5); the largest error
   where the warped mask is 0 (must be exactly 0).
3. **Edit**: the same latent + the blond direction at ``--strength`` W spreads (``apply-direction``'s unit)
   on its recorded rows, pasted back (a) under the mask and (b) as the whole crop, each against the true
   counterfactual scene (same face and placement, blond hair): PSNR over the scene, and blond success by the
   attribute classifier on the result re-aligned with the true landmarks; also Male flips. Reported per
   source hair group and over all sources that are not blond already.
4. **MTCNN** on ``skimage.data.astronaut()`` and on known transforms of it (rotations, scales, a mirror):
   the landmarks detected on the transformed photo against the transformed original landmarks, in px.

Writes ``--json`` (everything, per scene), ``--markdown`` (tables) and ``--figure`` (one common-case scene:
the scene with its detected landmarks, the aligned crop, the reconstruction, the edit, the edit pasted back).

    python benchmarks/photos.py --json benchmarks/results/photos.json \\
        --markdown benchmarks/results/photos.md --figure docs/photos_benchmark_scene.png

The README's figure comes from the README's own commands on ``examples/scene.png``, run in a folder ``DIR``:

    latentedit invert --align examples/scene.png && latentedit apply-direction --vec examples/blond_learned.npy \\
        --paste-back
    python benchmarks/photos.py --figure-from DIR --figure docs/photos_pipeline.png
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[1]
HAIR_GROUPS = ("Black_Hair", "Brown_Hair", "Blond_Hair", "Gray_Hair", "Bald")
BLOND_CHANGES = {"Black_Hair": 0, "Brown_Hair": 0, "Gray_Hair": 0, "Bald": 0, "Blond_Hair": 1}


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = diff[where].mean() if where is not None else diff.mean()
    return float("inf") if mse == 0 else float(10 * math.log10(255.0 ** 2 / mse))


def _hair_group(attributes: dict) -> str:
    for name in HAIR_GROUPS:
        if attributes.get(name):
            return name
    return "other"


def _summary(values: list[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    finite = array[np.isfinite(array)]
    return {"n": int(len(array)), "mean": float(finite.mean()) if len(finite) else None,
            "median": float(np.median(finite)) if len(finite) else None,
            "min": float(finite.min()) if len(finite) else None}


def measure_scenes(count: int, strength: float, batch_size: int, steps: int | None, figure_index: int = 14) -> dict:
    from latentedit.checkpoints import load_generator
    from latentedit.data import toyfaces
    from latentedit.data.toyfaces_scenes import render_counterfactual_scene, render_scene
    from latentedit.directions import load_direction
    from latentedit.directions.apply import apply_direction, render_latents, strength_scale, w_distribution
    from latentedit.directions.arrays import parse_layers
    from latentedit.evaluate.classifier import load_classifier, predict_attributes
    from latentedit.invert import InversionSettings, invert, prepare_perceptual
    from latentedit.io import to_uint8
    from latentedit.photos import align_face, face_mask, paste_back
    from latentedit.photos.landmarks import load_detector

    generator, info = load_generator("toyfaces64")
    detector = load_detector()
    classifier = load_classifier()
    direction = load_direction(REPO_ROOT / "examples" / "blond_learned.npy")
    rows = parse_layers(None, generator.num_ws)  # apply-direction's default: every row (the direction is zero elsewhere)
    _, spread = w_distribution(generator)
    raw = strength * strength_scale(direction.vector, rows, spread, "spread")
    settings = InversionSettings(steps=steps).validated()
    setup = prepare_perceptual(settings, generator.size, torch.device("cpu"))

    from latentedit.errors import InputError

    scenes, records, all_records = [], [], []
    started = time.perf_counter()
    for index in range(count):
        scene = render_scene(toyfaces.HELDOUT_SEED, index)
        detect_start = time.perf_counter()
        found, score = detector.detect(scene.image)
        detect_ms = 1000 * (time.perf_counter() - detect_start)
        iod = float(np.linalg.norm(scene.landmarks[1] - scene.landmarks[0]))
        errors = np.linalg.norm(found - scene.landmarks, axis=1) / iod
        record = {"index": index, "hair": _hair_group(toyfaces.attributes(scene.params)),
                  "male": int(toyfaces.attributes(scene.params)["Male"]), "iod_px": iod,
                  "landmark_error_iod": float(errors.mean()), "landmark_errors_iod": errors.tolist(),
                  "face_score": score, "detect_ms": detect_ms, "aligned": True}
        all_records.append(record)
        try:
            crop, alignment = align_face(scene.image, found, generator.size, framing="toyfaces")
        except InputError as error:  # counted, reported, and left out of the later stages
            record.update(aligned=False, error=str(error))
            continue
        scenes.append((scene, found, crop, alignment))
        records.append(record)
    detect_seconds = time.perf_counter() - started

    invert_start = time.perf_counter()
    latents = []
    for start in range(0, count, batch_size):
        chunk = scenes[start:start + batch_size]
        targets = torch.stack([torch.from_numpy(c[2]).permute(2, 0, 1).float() / 127.5 - 1.0 for c in chunk])
        names = [f"scene{start + k:04d}" for k in range(len(chunk))]
        results = invert(generator, targets, settings, names=names, perceptual=setup.loss)
        for k, result in enumerate(results):
            records[start + k]["invert_psnr_db"] = result.psnr_db
            latents.append(torch.from_numpy(result.latent))
        print(f"inverted {start + len(chunk)}/{count}", flush=True)
    invert_seconds = time.perf_counter() - invert_start

    w_plus = generator.broadcast_w(torch.stack(latents))
    with torch.no_grad():
        unedited = to_uint8(render_latents(generator, w_plus, noise="const"))
        edited_w = apply_direction(w_plus, direction.vector, [raw], rows)[:, 0]
        edited = to_uint8(render_latents(generator, edited_w, noise="const"))
    realigned_masked, realigned_whole, figure = [], [], None
    for k, (scene, found, crop, alignment) in enumerate(scenes):
        record = records[k]
        mask = face_mask(alignment, generator.size, found)
        back, alpha = paste_back(scene.image, unedited[k], alignment, mask, return_mask=True)
        record["round_trip_psnr_db"] = _psnr(back, scene.image)
        record["round_trip_face_psnr_db"] = _psnr(back, scene.image, alpha > 0.5)
        record["outside_mask_max_error"] = int(np.abs(back.astype(int) - scene.image)[alpha == 0].max(initial=0))
        truth = render_counterfactual_scene(toyfaces.HELDOUT_SEED, scene.index, BLOND_CHANGES)
        masked = paste_back(scene.image, edited[k], alignment, mask)
        whole = paste_back(scene.image, edited[k], alignment, np.ones((generator.size,) * 2, np.float32))
        record["edit_masked_psnr_db"] = _psnr(masked, truth.image)
        record["edit_whole_crop_psnr_db"] = _psnr(whole, truth.image)
        record["unedited_vs_truth_psnr_db"] = _psnr(scene.image, truth.image)
        for pasted, out in ((masked, realigned_masked), (whole, realigned_whole)):
            out.append(align_face(pasted, truth.landmarks, generator.size, framing="toyfaces")[0])
        if scene.index == figure_index or (figure is None and record["hair"] == "Black_Hair"):
            figure = (scene, found, crop, unedited[k], edited[k], masked)

    def probabilities(images: list[np.ndarray]) -> np.ndarray:
        pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return predict_attributes(classifier, pixels).numpy()

    names = list(classifier.attribute_names)
    blond, male = names.index("Blond_Hair"), names.index("Male")
    before = probabilities([c[2] for c in scenes])
    for label, images in (("masked", realigned_masked), ("whole_crop", realigned_whole)):
        after = probabilities(images)
        for k, record in enumerate(records):
            record[f"edit_{label}_blond"] = bool(after[k, blond] > 0.5)
            record[f"edit_{label}_male_flip"] = bool((after[k, male] > 0.5) != (before[k, male] > 0.5))
    return {"records": records, "all_records": all_records, "figure": figure, "strength_spreads": strength, "raw_strength": raw,
            "rows": rows, "detect_seconds": detect_seconds, "invert_seconds": invert_seconds,
            "perceptual": setup.kind, "steps": settings.steps, "batch_size": batch_size}


def summarise(records: list[dict], all_records: list[dict]) -> dict:
    per_scene = [r["landmark_error_iod"] for r in all_records]
    per_point = np.asarray([r["landmark_errors_iod"] for r in all_records])
    summary = {
        "not_aligned": [r["index"] for r in all_records if not r["aligned"]],
        "landmarks": {"median_iod": float(np.median(per_scene)), "p95_iod": float(np.percentile(per_scene, 95)),
                      "max_iod": float(np.max(per_scene)),
                      "median_per_point_iod": np.median(per_point, axis=0).tolist(),
                      "detect_ms_median": float(np.median([r["detect_ms"] for r in all_records]))},
        "round_trip": {"scene_psnr_db": _summary([r["round_trip_psnr_db"] for r in records]),
                       "face_psnr_db": _summary([r["round_trip_face_psnr_db"] for r in records]),
                       "invert_psnr_db": _summary([r["invert_psnr_db"] for r in records]),
                       "outside_mask_max_error": max(r["outside_mask_max_error"] for r in records)},
        "edit_by_group": {},
    }
    groups = {}
    for record in records:
        groups.setdefault(record["hair"], []).append(record)
    editable = [r for r in records if r["hair"] != "Blond_Hair"]
    for name, members in [*sorted(groups.items()), ("all but blond", editable)]:
        summary["edit_by_group"][name] = {
            "n": len(members),
            **{f"{label}_success": float(np.mean([r[f"edit_{label}_blond"] for r in members]))
               for label in ("masked", "whole_crop")},
            **{f"{label}_male_flips": float(np.mean([r[f"edit_{label}_male_flip"] for r in members]))
               for label in ("masked", "whole_crop")},
            "masked_psnr_db": float(np.median([r["edit_masked_psnr_db"] for r in members])),
            "whole_crop_psnr_db": float(np.median([r["edit_whole_crop_psnr_db"] for r in members])),
            "unedited_psnr_db": float(np.median([r["unedited_vs_truth_psnr_db"] for r in members])),
        }
    return summary


def measure_mtcnn() -> dict:
    from skimage import data

    from latentedit.photos import detect_faces

    photo = data.astronaut()
    height, width = photo.shape[:2]
    started = time.perf_counter()
    (reference,) = detect_faces(photo, "mtcnn")[:1]
    base_ms = 1000 * (time.perf_counter() - started)
    centre = np.array([width, height]) / 2.0
    cases = []
    for name, kind, value in (("rotate +25", "rotate", 25.0), ("rotate -15", "rotate", -15.0),
                              ("scale 0.5", "scale", 0.5), ("scale 2", "scale", 2.0), ("mirror", "mirror", None)):
        if kind == "rotate":
            image = np.asarray(Image.fromarray(photo).rotate(value, resample=Image.BICUBIC))
            theta = math.radians(value)
            rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
            expected = (reference.landmarks - centre) @ rotation.T + centre
        elif kind == "scale":
            size = (round(width * value), round(height * value))
            image = np.asarray(Image.fromarray(photo).resize(size, Image.LANCZOS))
            expected = reference.landmarks * value
        else:
            image = photo[:, ::-1].copy()
            expected = reference.landmarks[[1, 0, 2, 4, 3]].copy()
            expected[:, 0] = width - expected[:, 0]
        started = time.perf_counter()
        faces = detect_faces(image, "mtcnn")
        elapsed = 1000 * (time.perf_counter() - started)
        if not faces:
            cases.append({"case": name, "found": False, "ms": elapsed})
            continue
        error = np.linalg.norm(faces[0].landmarks - expected, axis=1)
        iod = float(np.linalg.norm(expected[1] - expected[0]))
        cases.append({"case": name, "found": True, "confidence": faces[0].confidence, "mean_error_px": float(error.mean()),
                      "max_error_px": float(error.max()), "iod_px": iod, "ms": elapsed})
    blank = detect_faces(np.full((256, 256, 3), 128, np.uint8), "mtcnn")
    return {"reference_landmarks": reference.landmarks.tolist(), "reference_confidence": reference.confidence,
            "reference_ms": base_ms, "cases": cases, "faces_on_blank": len(blank)}


def write_figure(figure, path: Path) -> None:
    scene, found, crop, recon, edit, pasted = figure
    side = 256
    panel = Image.fromarray(scene.image).convert("RGB").resize((side, side), Image.LANCZOS)
    draw = ImageDraw.Draw(panel)
    scale = side / scene.image.shape[1]
    for x, y in found * scale:
        draw.ellipse((x - 2.5, y - 2.5, x + 2.5, y + 2.5), outline=(255, 40, 40), width=2)
    tiles = [panel] + [Image.fromarray(a).resize((side, side), Image.NEAREST) for a in (crop, recon, edit)]
    tiles.append(Image.fromarray(pasted).resize((side, side), Image.LANCZOS))
    canvas = Image.new("RGB", (len(tiles) * side + (len(tiles) - 1) * 4, side), (255, 255, 255))
    for k, tile in enumerate(tiles):
        canvas.paste(tile, (k * (side + 4), 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def figure_from_chain(folder: Path, strength: str = "0.5") -> tuple:
    """The figure's panels from the README's photo chain run in ``folder``::

        latentedit invert --align examples/scene.png
        latentedit apply-direction --vec examples/blond_learned.npy --paste-back
    """
    from types import SimpleNamespace

    (record_path,) = sorted((folder / "inverted" / "aligned").glob("*_face0.json"))[:1]
    record = json.loads(record_path.read_text())
    name = record_path.stem
    photo = np.asarray(Image.open(folder / record["source"]["path"]).convert("RGB"))
    load = lambda path: np.asarray(Image.open(path).convert("RGB"))  # noqa: E731
    return (SimpleNamespace(image=photo), np.asarray(record["landmarks"]), load(record_path.with_suffix(".png")),
            load(folder / "inverted" / f"{name}.png"), load(folder / "edited" / f"{name}_s{strength}.png"),
            load(folder / "edited" / f"{name}_s{strength}_full.png"))


def markdown(summary: dict, mtcnn: dict, meta: dict) -> str:
    lm, rt = summary["landmarks"], summary["round_trip"]
    lines = [f"# Photos benchmark ({meta['n']} held-out toyfaces scenes, seed 1)", "",
             f"Landmark error / IOD: median {lm['median_iod']:.2%}, 95th percentile {lm['p95_iod']:.2%}, "
             f"max {lm['max_iod']:.2%}; per point (median) "
             + ", ".join(f"{v:.2%}" for v in lm["median_per_point_iod"])
             + f"; {lm['detect_ms_median']:.0f} ms per scene; scenes that could not be aligned: "
             f"{len(summary['not_aligned'])}.", "",
             f"Round trip (invert {meta['steps']} steps, {meta['perceptual']} loss): scene PSNR median "
             f"{rt['scene_psnr_db']['median']:.2f} dB (min {rt['scene_psnr_db']['min']:.2f}), face region "
             f"{rt['face_psnr_db']['median']:.2f} dB, crop {rt['invert_psnr_db']['median']:.2f} dB; largest error "
             f"outside the mask: {rt['outside_mask_max_error']}.", "",
             f"Edit: learned blond direction at {meta['strength']:g} W spreads, against the true counterfactual "
             "scene (PSNR medians; success and flips by the classifier on the re-aligned result).", "",
             "| source hair | n | success (mask) | success (whole crop) | Male flips (mask) | PSNR mask | "
             "PSNR whole crop | PSNR unedited |", "|---|---|---|---|---|---|---|---|"]
    for name, row in summary["edit_by_group"].items():
        lines.append(f"| {name} | {row['n']} | {row['masked_success']:.1%} | {row['whole_crop_success']:.1%} | "
                     f"{row['masked_male_flips']:.1%} | {row['masked_psnr_db']:.2f} | {row['whole_crop_psnr_db']:.2f} | "
                     f"{row['unedited_psnr_db']:.2f} |")
    lines += ["", "MTCNN on skimage's astronaut (landmarks against the known transform):", "",
              "| case | found | mean error px | max error px | IOD px | ms |", "|---|---|---|---|---|---|"]
    for case in mtcnn["cases"]:
        if case["found"]:
            lines.append(f"| {case['case']} | yes | {case['mean_error_px']:.2f} | {case['max_error_px']:.2f} | "
                         f"{case['iod_px']:.1f} | {case['ms']:.0f} |")
        else:
            lines.append(f"| {case['case']} | no | | | | {case['ms']:.0f} |")
    lines.append(f"\nFaces found on a blank grey image: {mtcnn['faces_on_blank']}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--strength", type=float, default=1.0, help="W spreads, as apply-direction counts them.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="Inversion steps [default: invert's, 1000].")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--figure", type=Path, required=True)
    parser.add_argument("--figure-from", type=Path, default=None,
                        help="Only draw the figure, from a folder where the README's photo chain was run.")
    args = parser.parse_args(argv)
    if args.figure_from is not None:
        write_figure(figure_from_chain(args.figure_from), args.figure)
        return 0
    if args.json is None or args.markdown is None:
        parser.error("--json and --markdown are needed unless --figure-from is given")
    from latentedit.io import portable_paths, versions, write_json

    torch.manual_seed(0)
    measured = measure_scenes(args.n, args.strength, args.batch_size, args.steps)
    summary = summarise(measured["records"], measured["all_records"])
    mtcnn = measure_mtcnn()
    meta = {"n": args.n, "strength": args.strength, "steps": measured["steps"], "perceptual": measured["perceptual"],
            "batch_size": measured["batch_size"], "rows": measured["rows"], "raw_strength": measured["raw_strength"],
            "detect_seconds": measured["detect_seconds"], "invert_seconds": measured["invert_seconds"],
            "threads": torch.get_num_threads()}
    result = {"benchmark": "photos", "meta": meta, "summary": summary, "mtcnn": mtcnn,
              "scenes": measured["all_records"], "versions": versions()}
    write_json(args.json, portable_paths(result, REPO_ROOT))
    args.markdown.write_text(markdown(summary, mtcnn, meta))
    if measured["figure"] is not None:
        write_figure(measured["figure"], args.figure)
    print(markdown(summary, mtcnn, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
