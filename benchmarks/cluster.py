"""Curation benchmark (seed 004): does k-means find an injected off-type subset, with each feature type?

A toyfaces folder of ``--count`` portraits at 64 px with ``--share`` of them replaced by off-type images (toyfaces
scenes: small rotated faces on textured backgrounds; :func:`latentedit.data.cluster.plant_offtype_folder`) is
clustered with k = 8 by ``latentedit.data.cluster`` for every k-means seed in ``--seeds`` and every feature type.
For each run: the clusters that are >= 90 % off-type ("pure") and the share of the off-type images they hold
(recall), and the same for clusters where off-type images are the majority. Goal (issue #19): >= 90 % recovered in
>= 90 % pure clusters with the classifier features. VGG16 fc6 is measured only when the ImageNet weights are
local (``--vgg-weights`` or the torch hub cache); otherwise its row says so.

    python benchmarks/cluster.py          # writes benchmarks/results/cluster.json and cluster.md (~1 min, 1 core)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO_ROOT))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--share", type=float, default=0.15)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--vgg-weights", default=None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from latentedit.data import cluster
    from latentedit.errors import InputError
    from latentedit.io import write_json

    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "planted"
        plant = cluster.plant_offtype_folder(folder, args.count, args.share)
        planted_names = {name for name, flag in zip(plant["names"], plant["planted"]) if flag}
        paths = cluster.list_folder_images(folder)
        planted = np.array([p.relative_to(folder).as_posix() in planted_names for p in paths])
        for features in cluster.FEATURES:
            begin = time.perf_counter()
            try:
                raw = cluster.compute_features(paths, features, vgg_weights=args.vgg_weights)
            except InputError:
                rows.append({"features": features, "measured": False,
                             "reason": "no local ImageNet VGG16 weights (nothing is downloaded; pass --vgg-weights)"})
                continue
            feature_s = time.perf_counter() - begin
            standardised = cluster.standardise(raw)
            for seed in args.seeds:
                begin = time.perf_counter()
                labels, _, _ = cluster.kmeans(standardised, args.k, seed)
                score = cluster.subset_recovery(labels, planted, args.k)
                rows.append({"features": features, "measured": True, "seed": seed, "feature_dim": int(raw.shape[1]),
                             "feature_s": round(feature_s, 2), "kmeans_s": round(time.perf_counter() - begin, 2),
                             **score})
    result = {"benchmark": "cluster", "count": args.count, "share": args.share, "k": args.k,
              "off_type": "toyfaces scenes (seed 2) among toyfaces portraits (seed 0), 64 px",
              "threads": torch.get_num_threads(), "wall_s": round(time.perf_counter() - started, 1), "rows": rows}
    lines = ["| features | seed | pure clusters (>= 90 % off-type) | recall in pure | purity of pure | "
             "majority clusters | recall in majority | purity of majority |", "|---|---:|---|---:|---:|---|---:|---:|"]
    for row in rows:
        if not row["measured"]:
            lines.append(f"| {row['features']} | – | not measured: {row['reason']} | | | | | |")
            continue
        pure, majority = row["pure"], row["majority"]
        lines.append(f"| {row['features']} | {row['seed']} | {pure['clusters'] or 'none'} | "
                     f"{100 * pure['recall']:.1f} % | {100 * pure['purity']:.1f} % | {majority['clusters'] or 'none'} | "
                     f"{100 * majority['recall']:.1f} % | {100 * majority['purity']:.1f} % |")
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "cluster.json", result)
    (args.out / "cluster.md").write_text(
        f"# Curation benchmark (benchmarks/cluster.py)\n\n{args.count} images at 64 px, {100 * args.share:.0f} % "
        f"off-type ({result['off_type']}), k = {args.k}, {result['threads']} thread(s), {result['wall_s']} s.\n\n"
        f"{table}\n")
    print(table)
    print(f"wrote {args.out / 'cluster.json'} and cluster.md ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
