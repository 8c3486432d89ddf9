"""How fast the web demo (`latentedit serve`) answers, measured in a real browser.

For each generator it starts ``latentedit serve`` on a free port, drives Debian's Chromium with Playwright and
measures

- page load -> first edited image: from ``page.goto`` to the edited image after uploading
  ``examples/face.png``, pressing Invert at the page's default steps and moving the blond slider to 1
  (the page's own time, not a person's: uploads and clicks are instant);
- slider latency: from the release of a slider (the number box left, which fires the same ``release``
  event as letting go of the handle) to the new image in the page, ``--repeats`` times.

The 64 px run uses the shipped ``toyfaces64`` and its learned blond direction. The 256 px run uses a
config-f generator with random weights (speed does not depend on the weights), inverted with
``--steps-256`` steps, edited with a random W direction uploaded through the page.

    python benchmarks/serve.py --json benchmarks/results/serve.json --markdown benchmarks/results/serve.md

Needs the demo extra, Playwright and Chromium (see docs/serve.md). Timings are wall-clock on whatever machine
runs it; compare them only with figures from the same run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
CHROMIUM_ARGS = ["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--ignore-gpu-blocklist"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(ckpt: str, steps: int | None, work: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [sys.executable, "-m", "latentedit", "serve", "--ckpt", ckpt, "--port", str(port)]
    if steps is not None:
        command += ["--steps", str(steps)]
    log = open(work / f"server_{port}.log", "w")  # noqa: SIM115 -- closed when the server stops
    process = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return process, url
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"the server did not start: {(work / f'server_{port}.log').read_text()[-2000:]}")


def _result_src(page) -> str | None:
    return page.evaluate("() => { const i = document.querySelector('#edit-result img'); return i ? i.src : null; }")


def _release(page, element: str, value: float) -> None:
    box = page.locator(f"#{element} input[type=number]")
    box.fill(f"{value:g}")
    box.press("Tab")


def _wait_new_image(page, old: str | None, timeout_ms: float = 120_000) -> None:
    page.wait_for_function("(old) => { const i = document.querySelector('#edit-result img');"
                           " return i && i.src && i.src !== old && i.complete && i.naturalWidth > 0; }",
                           arg=old, timeout=timeout_ms, polling="raf")


def measure(browser, ckpt: str, slider: str, repeats: int, work: Path, steps: int | None = None,
            direction: Path | None = None) -> dict:
    process, url = _start(ckpt, steps, work)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(600_000)
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("#edit-invert")
        loaded = time.perf_counter()
        page_steps = int(page.locator("#edit-steps input[type=number]").input_value())
        page.locator("#edit-upload input[type=file]").set_input_files(str(EXAMPLES / "face.png"))
        page.wait_for_selector("#edit-upload :text('face.png')")
        if direction is not None:
            page.locator("#edit-direction-upload input[type=file]").set_input_files(str(direction))
            page.wait_for_selector("#edit-status [data-kind=ok]:has-text('loaded')")
        page.click("#edit-invert")
        page.wait_for_selector("#edit-status [data-kind=ok]:has-text('inverted'), #edit-status [data-kind=error]")
        if page.locator("#edit-status [data-kind=error]").count():
            raise RuntimeError(page.locator("#edit-status").inner_text())
        page.wait_for_selector("#edit-result img")
        inverted = time.perf_counter()
        old = _result_src(page)
        _release(page, slider, 1.0)
        _wait_new_image(page, old)
        first_edit = time.perf_counter()
        latencies = []
        for i in range(repeats):
            value = (0.25, 0.75)[i % 2] if i else 0.5
            old = _result_src(page)
            t = time.perf_counter()
            _release(page, slider, value)
            _wait_new_image(page, old)
            latencies.append(time.perf_counter() - t)
        page.close()
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    ms = [1000 * x for x in latencies]
    return {"ckpt": ckpt, "inversion_steps": page_steps, "page_load_s": round(loaded - started, 3),
            "load_to_inverted_s": round(inverted - started, 3), "load_to_first_edit_s": round(first_edit - started, 3),
            "slider_ms": {"median": round(statistics.median(ms), 1), "p90": round(float(np.percentile(ms, 90)), 1),
                          "min": round(min(ms), 1), "max": round(max(ms), 1), "n": len(ms)},
            "slider_ms_all": [round(x, 1) for x in ms]}


def _make_256(work: Path) -> tuple[Path, Path]:
    import torch

    from latentedit.model import Generator, GeneratorConfig
    from latentedit.train.stylegan2 import export_generator

    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(size=256))
    path = work / "config_f_256_random.safetensors"
    export_generator(generator, path, {"source": "benchmarks/serve.py: random config-f weights"})
    direction = work / "random_w.npy"
    np.save(direction, np.random.default_rng(0).standard_normal(generator.w_dim).astype(np.float32))
    return path, direction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], choices=[64, 256])
    parser.add_argument("--steps-256", type=int, default=10, help="Inversion steps for the 256 px run.")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from latentedit.io import versions, write_json

    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="serve_bench_") as scratch, sync_playwright() as playwright:
        work = Path(scratch)
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        if 64 in args.sizes:
            results["64"] = measure(browser, "toyfaces64", "edit-blond", args.repeats, work)
            print(f"64 px: {results['64']['slider_ms']}", flush=True)
        if 256 in args.sizes:
            ckpt, direction = _make_256(work)
            results["256"] = measure(browser, str(ckpt), "edit-own", args.repeats, work, steps=args.steps_256,
                                     direction=direction)
            results["256"]["ckpt"] = "config-f 256 px, random weights"
            print(f"256 px: {results['256']['slider_ms']}", flush=True)
        browser.close()
    import gradio

    write_json(args.json, {"command": "python benchmarks/serve.py " + " ".join(argv or sys.argv[1:]),
                           "cpu_count": os.cpu_count(), "load_average_1min": {"before": round(load_before[0], 2),
                                                                               "after": round(os.getloadavg()[0], 2)},
                           "gradio": gradio.__version__, "results": results,
                           "versions": versions()})
    lines = ["# `latentedit serve` in Chromium", "",
             ("`python benchmarks/serve.py`: slider latency = release of a slider -> new edited image in the page; "
              "page load -> first edit = `page.goto` to the first edited image (upload `examples/face.png`, Invert "
              "at the page's default steps, blond slider to 1). "
              f"{os.cpu_count()} CPUs, 1-minute load average {load_before[0]:.1f} before and "
              f"{os.getloadavg()[0]:.1f} after the run (other work on the machine counts)."), "",
             ("| generator | inversion steps | page load | load -> inverted | load -> first edit | slider median "
              "| slider p90 | slider max |"), "|---|---|---|---|---|---|---|---|"]
    for size, r in results.items():
        s = r["slider_ms"]
        lines.append(f"| {size} px ({r['ckpt']}) | {r['inversion_steps']} | {r['page_load_s']:.2f} s | "
                     f"{r['load_to_inverted_s']:.1f} s | {r['load_to_first_edit_s']:.1f} s | {s['median']:.0f} ms | "
                     f"{s['p90']:.0f} ms | {s['max']:.0f} ms |")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
