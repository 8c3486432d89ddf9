"""The Gradio page of ``latentedit serve``: Edit, Translate, PULSE and Training tabs.

The page holds no logic of its own: every button calls :class:`~latentedit.serve.engine.Engine`, which calls
the library function of the matching command. Heavy work (inversion, StarGAN, PULSE, SVM fits) goes through
the server's one :class:`~latentedit.serve.jobs.JobQueue`, and the page shows the queue position, then the
progress, with a Cancel button. Each visitor works in a folder of its own
(:class:`~latentedit.serve.visitors.VisitorFolders`) whose paths stay on the server: the browser only ever
sends uploads, choices from lists the server made, and numbers.
"""
from __future__ import annotations

import html
import os
import sys
import threading
import traceback
from pathlib import Path

# Before gradio is imported: without it gradio contacts outside hosts when it starts.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from latentedit.errors import LatentEditError  # noqa: E402
from latentedit.image_files import open_image  # noqa: E402
from latentedit.serve.engine import DirectionEdit, Engine, ServeConfig, painted_reference, safe_stem  # noqa: E402
from latentedit.serve.jobs import Job, JobQueue  # noqa: E402
from latentedit.serve.runs import RunFolders, plot_curves, read_metrics, summarize  # noqa: E402
from latentedit.serve.visitors import VisitorFolders  # noqa: E402

#: Attributes offered as SVM directions (InterFaceGAN), computed on first use and cached.
SVM_ATTRIBUTES = ("Black_Hair", "Brown_Hair", "Gray_Hair", "Eyeglasses", "Smiling", "Male")
#: Samples labelled for an SVM direction on the page (``direction svm`` defaults to 20000).
SVM_SAMPLES = 2000
#: Seconds between refreshes of the Training tab.
TRAINING_REFRESH_S = 5.0
STRENGTH_RANGE = (-2.0, 2.0)
#: Display height (px) of the small images; they are scaled up with crisp pixels.
IMAGE_HEIGHT = 256
CSS = """
#edit-status, #translate-status, #pulse-status, #training-status {min-height: 2.2em}
.le-error {color: #b00020; font-weight: 600}
.le-note {color: #555}
progress {width: 100%; height: 0.8em}
.le-pixels img {image-rendering: pixelated}
.le-pixels .image-frame img, .le-pixels button img {width: 100%; height: 100%; object-fit: contain}
"""


def _html(kind: str, text: str, fraction: float | None = None) -> str:
    """A status line: ``kind`` is ``ok``, ``note``, ``error`` or ``busy`` (with a progress bar)."""
    body = html.escape(text)
    if kind == "error":
        return f'<div class="le-error" data-kind="error">error: {body}</div>'
    bar = ""
    if kind == "busy":
        bar = ('<progress></progress>' if fraction is None else
               f'<progress value="{fraction:.4f}" max="1"></progress>')
    css = "le-note" if kind in ("note", "busy") else "le-ok"
    return f'<div class="{css}" data-kind="{kind}">{body}{bar}</div>'


def _job_html(job: Job) -> str:
    return _html("busy", job.status_line(), job.fraction if job.state == "running" else None)


def _message(error: BaseException) -> str:
    if isinstance(error, LatentEditError):
        return str(error)
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    return f"internal error ({type(error).__name__}: {error}); the server keeps running"


def _painted_layers(value) -> "np.ndarray | None":
    """What was painted in the ImageEditor: its layers alpha-composited over nothing (the white canvas the
    editor shows is its background, not paint), as ``[H, W, 4]`` uint8; None when there is nothing."""
    import numpy as np

    if not isinstance(value, dict):
        return None if value is None else np.asarray(value)
    layers = [np.asarray(layer) for layer in (value.get("layers") or []) if layer is not None]
    if not layers:
        return None
    height, width = layers[0].shape[:2]
    out = np.zeros((height, width, 4), np.float64)
    for layer in layers:
        if layer.shape[:2] != (height, width):
            continue
        rgba = layer.astype(np.float64) / 255.0
        if rgba.shape[2] == 3:
            rgba = np.concatenate([rgba, np.ones((height, width, 1))], axis=2)
        alpha = rgba[..., 3:4]
        out_alpha = alpha + out[..., 3:4] * (1 - alpha)
        colour = (rgba[..., :3] * alpha + out[..., :3] * out[..., 3:4] * (1 - alpha)) / np.maximum(out_alpha, 1e-12)
        out = np.concatenate([colour, out_alpha], axis=2)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def _pasted_photo(result: dict) -> str | None:
    """The photo with the edited crop pasted back (``<name>_s<s>_full.png``), not the before/after sweep strip
    ``apply-direction --paste-back`` writes beside it."""
    wanted = f"{result['png'].stem}_full.png"
    for path in result["full"]:
        if Path(path).name == wanted:
            return str(path)
    return str(result["full"][-1]) if result["full"] else None


def _visitor(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


class App:
    """Builds the Blocks and owns the server-side state (engine, queue, visitor folders, runs)."""

    def __init__(self, config: ServeConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine or Engine(config)
        self.jobs = JobQueue()
        self.visitors = VisitorFolders()
        self.runs = RunFolders(config.runs)
        self.svm_cache = Path(self.visitors.root) / "_svm"
        self._svm_lock = threading.Lock()
        self._svm: dict[str, Path] = {}
        self.demo = self._build()

    # -- shared helpers ----------------------------------------------------------------------------------
    def _source_image(self, upload, example: str | None) -> tuple[Path, str]:
        """The uploaded file (gradio's copy) or the chosen example; never a path typed by the browser."""
        if upload:
            path = Path(upload if isinstance(upload, str) else getattr(upload, "name", upload))
            return path, path.name
        examples = self.engine.example_images()
        if example:
            if example not in examples:
                raise LatentEditError(f"unknown example {example!r}")
            return examples[example], example
        raise LatentEditError("upload an image or choose an example first")

    def _run_job(self, visitor: str, label: str, fn):
        """Submit ``fn`` and yield the job while it waits or runs; the caller reads ``job.outcome()``."""
        job = self.jobs.submit(fn, label, owner=visitor)
        yield from job.watch(0.3)

    def _edits(self, state: dict, blond: float, svm_attr: str | None, svm_strength: float, own: float
               ) -> list[DirectionEdit]:
        edits = []
        blond_path = self.engine.shipped_blond()
        if blond_path is not None and blond:
            edits.append(DirectionEdit(blond_path, float(blond), "blond"))
        if svm_attr and svm_strength and svm_attr in self._svm:
            edits.append(DirectionEdit(self._svm[svm_attr], float(svm_strength), f"SVM {svm_attr}"))
        own_path = state.get("own_direction")
        if own_path is not None and own:
            edits.append(DirectionEdit(Path(own_path), float(own), "your direction"))
        return edits

    @staticmethod
    def _layers(first, last, num_ws: int) -> str | None:
        first, last = int(first), int(last)
        if first > last:
            first, last = last, first
        return None if (first, last) == (0, num_ws - 1) else f"{first}-{last}"

    # -- Edit tab ----------------------------------------------------------------------------------------
    def on_invert(self, upload, example, steps, align_mode, state, blond, svm_attr, svm_strength, own, first,
                  last, request: gr.Request):
        visitor = _visitor(request)
        self.visitors.sweep()
        keep = (gr.skip(),) * 5
        try:
            source, shown = self._source_image(upload, example)
            work = self.visitors.fresh(visitor, "edit")
            image, info = self.engine.accept_image(source, work, shown)
            align = (self.engine.needs_alignment(info["width"], info["height"]) if align_mode == "auto"
                     else align_mode == "align")
        except Exception as error:  # bad upload: a message, the page keeps working
            yield (_html("error", _message(error)), *keep, state)
            return
        yield (_html("busy", f"{image.name}: {info['width']}x{info['height']} {info['mode']}"
                     + (", aligning the face first" if align else "")), str(image), None, None, None, None, state)
        job = None
        for job in self._run_job(visitor, f"invert {image.name}",
                                 lambda: self.engine.invert(image, work / "inverted", int(steps), align)):
            if not job.finished:
                yield (_job_html(job), *keep, state)
        try:
            inverted = job.outcome()
            state = dict(state or {})
            state.update(inverted=inverted, work=work)
            preview, notes = self.engine.preview(inverted.latent, self._edits(state, blond, svm_attr, svm_strength,
                                                                             own),
                                                 self._layers(first, last, self.engine.num_ws))
        except Exception as error:
            yield (_html("error", _message(error)), *keep, state)
            return
        psnr = f", PSNR {inverted.psnr_db:.2f} dB" if inverted.psnr_db is not None else ""
        text = (f"inverted {image.name} in {int(steps)} steps{psnr} ({job.finished_at - job.started_at:.1f} s)"
                + (" after aligning the face" if inverted.aligned else "") + "; move a slider to edit")
        command = (f"latentedit invert {'--align ' if inverted.aligned else ''}{image.name} --steps {int(steps)}"
                   f"   # -> inverted/{inverted.name}.npy")
        yield (_html("ok", " ".join([text] + notes)), gr.skip(), str(inverted.reconstruction), preview,
               [str(p) for p in inverted.files], command, state)

    def on_cancel(self, request: gr.Request):
        count = self.jobs.cancel_owner(_visitor(request))
        return _html("note", "cancelling..." if count else "nothing to cancel")

    def on_edit(self, state, blond, svm_attr, svm_strength, own, first, last):
        inverted = (state or {}).get("inverted")
        if inverted is None:
            return gr.skip(), _html("note", "invert an image first")
        try:
            edits = self._edits(state, blond, svm_attr, svm_strength, own)
            preview, notes = self.engine.preview(inverted.latent, edits, self._layers(first, last,
                                                                                      self.engine.num_ws))
        except Exception as error:
            return gr.skip(), _html("error", _message(error))
        described = ", ".join(f"{e.label} {e.strength:+g}" for e in edits) or "no edit"
        return preview, _html("note" if notes else "ok", " ".join([described] + notes))

    def on_save(self, state, blond, svm_attr, svm_strength, own, first, last, paste):
        inverted = (state or {}).get("inverted")
        if inverted is None:
            return _html("note", "invert an image first"), gr.skip(), gr.skip(), gr.skip()
        try:
            edits = self._edits(state, blond, svm_attr, svm_strength, own)
            if not edits:
                blond_path = self.engine.shipped_blond() or state.get("own_direction")
                if blond_path is None:
                    raise LatentEditError("no direction to apply: upload one")
                edits = [DirectionEdit(Path(blond_path), 0.0, "no edit")]
            result = self.engine.save_edit(inverted.latent, edits, self._layers(first, last, self.engine.num_ws),
                                           Path(state["work"]), paste_back=bool(paste))
        except Exception as error:
            return _html("error", _message(error)), gr.skip(), gr.skip(), gr.skip()
        files = [result["png"], result["npy"], *result["manifests"], *result["full"],
                 inverted.latent, inverted.manifest]
        commands = "\n".join([f"latentedit invert {inverted.name}.png   # -> inverted/{inverted.name}.npy"
                              if not inverted.aligned else f"latentedit invert --align PHOTO"] + result["commands"])
        return (_html("ok", f"wrote {result['png'].name}, {result['npy'].name} and manifest.json, the files "
                            f"`latentedit apply-direction` writes"), [str(p) for p in files if Path(p).is_file()],
                commands, _pasted_photo(result))

    def on_direction_upload(self, upload, state, request: gr.Request):
        state = dict(state or {})
        if not upload:
            state.pop("own_direction", None)
            return _html("note", "your direction removed"), state
        try:
            path = Path(upload)
            folder = self.visitors.folder(_visitor(request), "directions")
            stored = self.engine.accept_direction(path, folder, path.name)
        except Exception as error:
            return _html("error", _message(error)), state
        state["own_direction"] = stored
        return _html("ok", f"direction {stored.name} loaded; use the 'your direction' slider"), state

    def on_svm(self, attribute, request: gr.Request):
        if not attribute:
            yield _html("note", "no SVM direction chosen")
            return
        if attribute in self._svm:
            yield _html("ok", f"SVM direction for {attribute} ready")
            return

        def compute() -> Path:
            with self._svm_lock:
                path = self.engine.svm_direction(attribute, self.svm_cache, count=SVM_SAMPLES)
                self._svm[attribute] = path
                return path

        job = None
        for job in self._run_job(_visitor(request), f"SVM direction {attribute}", compute):
            if not job.finished:
                yield _job_html(job)
        try:
            job.outcome()
        except Exception as error:
            yield _html("error", _message(error))
            return
        yield _html("ok", f"SVM direction for {attribute} ready ({SVM_SAMPLES} labelled samples); move its slider")

    # -- Translate tab -----------------------------------------------------------------------------------
    def on_translate(self, upload, example, present, absent, request: gr.Request):
        visitor = _visitor(request)
        try:
            source, shown = self._source_image(upload, example)
            work = self.visitors.fresh(visitor, "translate")
            image, _ = self.engine.accept_image(source, work, shown)
        except Exception as error:
            yield _html("error", _message(error)), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        job = None
        for job in self._run_job(visitor, f"StarGAN {image.name}",
                                 lambda: self.engine.translate(image, present or [], absent or [],
                                                               work / "translated")):
            if not job.finished:
                yield _job_html(job), str(image), gr.skip(), gr.skip(), gr.skip()
        try:
            manifest = job.outcome()
        except Exception as error:
            yield _html("error", _message(error)), str(image), gr.skip(), gr.skip(), gr.skip()
            return
        entry = manifest["images"][0]
        source_text = " ".join(f"{k}={v}" for k, v in entry["source"].items())
        target_text = " ".join(f"{k}={v}" for k, v in entry["target"].items())
        files = [str(manifest["png"]), str(work / "translated" / "transfer.json")]
        yield (_html("ok", f"[{source_text}] -> [{target_text}]"), str(image), str(manifest["png"]), files,
               manifest["command"])

    # -- PULSE tab ---------------------------------------------------------------------------------------
    def on_pulse(self, painting, upload, example, side, seed, count, steps, state, request: gr.Request):
        visitor = _visitor(request)
        try:
            work = self.visitors.fresh(visitor, "pulse")
            reference = self._pulse_reference(painting, upload, example, int(side), work)
        except Exception as error:
            yield _html("error", _message(error)), gr.skip(), gr.skip(), gr.skip(), state, gr.skip(), gr.skip()
            return
        job = None
        for job in self._run_job(visitor, "PULSE", lambda: self.engine.pulse(reference, work / "pulse", int(seed),
                                                                            int(count), int(steps))):
            if not job.finished:
                yield _job_html(job), str(reference), gr.skip(), gr.skip(), state, gr.skip(), gr.skip()
        try:
            records = job.outcome()
        except Exception as error:
            yield _html("error", _message(error)), str(reference), gr.skip(), gr.skip(), state, gr.skip(), gr.skip()
            return
        out = work / "pulse"
        gallery, files, names = [], [], []
        for record in records:
            name = record["name"]
            if record.get("status") == "failed":
                continue
            names.append(name)
            gallery += [(str(out / f"{name}.png"), f"{name} (seed {record.get('seed', '?')})"),
                        (str(out / f"{name}_lr.png"), f"{name}: downscale")]
            files += [str(out / f"{name}{suffix}") for suffix in (".png", ".npy", ".json")]
        reached = sum(bool(r.get("success")) for r in records)
        state = dict(state or {})
        state["pulse"] = {"folder": out, "names": names}
        choices = gr.update(choices=names, value=names[0] if names else None)
        choices_b = gr.update(choices=names, value=names[1] if len(names) > 1 else None)
        yield (_html("ok", f"{reached} of {len(records)} result(s) reached eps; results and their downscales "
                           f"below"), str(reference), gallery, files, state, choices, choices_b)

    def _pulse_reference(self, painting, upload, example, side: int, work: Path) -> Path:
        from latentedit import io as lio
        from latentedit.pulse.search import load_reference

        if upload:
            path = Path(upload)
            stored, _ = self.engine.accept_image(path, work, path.name)
            reference = stored
        elif example:
            references = self.engine.example_references()
            if example not in references:
                raise LatentEditError(f"unknown example reference {example!r}")
            reference = references[example]
        else:
            composite = _painted_layers(painting)
            if composite is None:
                raise LatentEditError("paint a reference, upload one or choose an example")
            if side not in self.engine.reference_sizes():
                raise LatentEditError(f"reference side {side} is not one of {self.engine.reference_sizes()}")
            reference = work / "painted.rgba.png"
            lio.save_png(reference, painted_reference(composite, side))
        load_reference(reference, self.engine.size)  # the command's checks, with their messages
        return reference

    def on_pulse_direction(self, state, name_a, name_b, request: gr.Request):
        from latentedit.directions import difference_files

        pulse = (state or {}).get("pulse")
        if not pulse or not name_a or not name_b or name_a == name_b:
            return _html("note", "run PULSE with 2 or more seeds, then pick two different results"), gr.skip(), state
        if name_a not in pulse["names"] or name_b not in pulse["names"]:
            return _html("error", "unknown result"), gr.skip(), state
        folder = Path(pulse["folder"])
        out = self.visitors.folder(_visitor(request), "directions") / f"{safe_stem(name_a)}_minus_{safe_stem(name_b)}.npy"
        try:
            difference_files(folder / f"{name_a}.npy", folder / f"{name_b}.npy", out)
        except Exception as error:
            return _html("error", _message(error)), gr.skip(), state
        state = dict(state)
        state["own_direction"] = out
        return (_html("ok", f"wrote {out.name} (`latentedit direction diff {name_a}.npy {name_b}.npy`); it is now "
                            f"'your direction' in the Edit tab"), [str(out), str(out.with_suffix('.json'))], state)

    # -- Training tab ------------------------------------------------------------------------------------
    def on_training(self, name):
        if self.runs.root is None:
            return _html("note", "start the server with --runs DIR to watch training runs"), None, None
        if not name:
            runs = self.runs.list_runs()
            return _html("note", f"{len(runs)} run(s) under the run folder; choose one"), None, None
        try:
            folder = self.runs.resolve(name)
            summary = summarize(read_metrics(folder / "metrics.jsonl"), folder)
            plot = plot_curves(summary)
        except Exception as error:
            return _html("error", _message(error)), None, None
        # The grid goes to the page as pixels, not as a path: Gradio refuses to serve files outside its working
        # and temp folders, and a run folder (--runs /data/runs) usually is outside both.
        sample = None
        if summary.sample is not None:
            try:
                sample = np.asarray(open_image(summary.sample).convert("RGB"))
            except Exception:  # a grid being replaced right now: the next refresh shows it
                sample = None
        return _html("ok", f"{name}: {summary.status_line()}"), plot, sample

    def on_training_list(self, name):
        runs = self.runs.list_runs()
        return gr.update(choices=runs, value=name if name in runs else (runs[0] if runs else None))

    def on_unload(self, request: gr.Request):
        visitor = _visitor(request)
        self.jobs.cancel_owner(visitor)
        self.visitors.remove(visitor)

    # -- the page ----------------------------------------------------------------------------------------
    def _build(self) -> gr.Blocks:
        engine = self.engine
        examples = list(engine.example_images())
        num_ws = engine.num_ws
        blond = engine.shipped_blond()
        with gr.Blocks(title="latentedit", delete_cache=(1800, 7200)) as demo:
            gr.Markdown(f"## latentedit: edit faces in the latent space of `{self.config.ckpt}` "
                        f"({engine.size} px)")
            state = gr.State({})
            with gr.Tabs():
                with gr.Tab("Edit", id="edit", elem_id="tab-edit"):
                    with gr.Row():
                        with gr.Column(scale=1):
                            upload = gr.File(label="Face photo or crop", type="filepath", elem_id="edit-upload")
                            example = gr.Dropdown(examples, value=None, label="... or an example",
                                                  elem_id="edit-example")
                            steps = gr.Slider(10, 2000, value=self.config.default_steps, step=10,
                                              label="Inversion steps", elem_id="edit-steps")
                            align = gr.Radio(["auto", "align", "as is"], value="auto", label="Face alignment",
                                             info="auto: square crops up to twice the generator size are used as "
                                                  "they are; other photos are aligned")
                            with gr.Row():
                                invert_button = gr.Button("Invert", variant="primary", elem_id="edit-invert")
                                cancel_button = gr.Button("Cancel", elem_id="edit-cancel")
                            status = gr.HTML(elem_id="edit-status")
                        with gr.Column(scale=1):
                            target = gr.Image(label="Input", type="filepath", interactive=False,
                                              elem_id="edit-input", height=IMAGE_HEIGHT, elem_classes=["le-pixels"])
                            reconstruction = gr.Image(label="Inversion", type="filepath", interactive=False,
                                                      elem_id="edit-reconstruction", height=IMAGE_HEIGHT, elem_classes=["le-pixels"])
                        with gr.Column(scale=1):
                            result = gr.Image(label="Edited", type="numpy", format="png", interactive=False,
                                              elem_id="edit-result", height=IMAGE_HEIGHT, elem_classes=["le-pixels"])
                    with gr.Row():
                        blond_slider = gr.Slider(*STRENGTH_RANGE, value=0.0, step=0.05, elem_id="edit-blond",
                                                 label="Blond (learned direction), W spreads",
                                                 interactive=blond is not None,
                                                 info=None if blond is not None else "examples/blond_learned.npy "
                                                 "is not in this installation")
                        with gr.Column():
                            svm_attr = gr.Dropdown(list(SVM_ATTRIBUTES), value=None, elem_id="edit-svm-attr",
                                                   label="SVM direction (InterFaceGAN; computed once, cached)")
                            svm_strength = gr.Slider(*STRENGTH_RANGE, value=0.0, step=0.05, elem_id="edit-svm",
                                                     label="SVM direction, W spreads")
                        with gr.Column():
                            own_upload = gr.File(label="Your direction (.npy, W or W+)", type="filepath",
                                                 elem_id="edit-direction-upload")
                            own_strength = gr.Slider(*STRENGTH_RANGE, value=0.0, step=0.05, elem_id="edit-own",
                                                     label="Your direction, W spreads")
                    with gr.Row():
                        first = gr.Slider(0, num_ws - 1, value=0, step=1, label="First W+ row edited",
                                          elem_id="edit-first")
                        last = gr.Slider(0, num_ws - 1, value=num_ws - 1, step=1, label="Last W+ row edited",
                                         elem_id="edit-last")
                        paste = gr.Checkbox(False, label="Paste back into the photo (aligned photos)",
                                            visible=engine.supports_paste_back(), elem_id="edit-paste")
                    with gr.Row():
                        save_button = gr.Button("Save PNG, latent and manifest", elem_id="edit-save")
                    with gr.Row():
                        downloads = gr.File(label="Downloads (the files the CLI writes)", file_count="multiple",
                                            interactive=False, elem_id="edit-downloads")
                        with gr.Column():
                            commands = gr.Code(label="The same in the CLI", language="shell", interactive=False,
                                               elem_id="edit-commands")
                            full = gr.Image(label="Pasted back", type="filepath", interactive=False,
                                            visible=engine.supports_paste_back(), elem_id="edit-full")
                    sliders = [blond_slider, svm_attr, svm_strength, own_strength, first, last]
                    invert_event = invert_button.click(
                        self.on_invert, [upload, example, steps, align, state, *sliders],
                        [status, target, reconstruction, result, downloads, commands, state],
                        concurrency_limit=None, show_progress="hidden")
                    cancel_button.click(self.on_cancel, None, status, concurrency_limit=None, queue=False)
                    for slider in (blond_slider, svm_strength, own_strength, first, last):
                        # Not through the queue: a plain request answers faster than the queue's event stream.
                        slider.release(self.on_edit, [state, *sliders], [result, status], queue=False,
                                       trigger_mode="always_last", show_progress="hidden")
                    svm_attr.change(self.on_svm, svm_attr, status, concurrency_limit=None, show_progress="hidden")
                    own_upload.change(self.on_direction_upload, [own_upload, state], [status, state],
                                      concurrency_limit=None)
                    save_button.click(self.on_save, [state, *sliders, paste], [status, downloads, commands, full],
                                      concurrency_limit=None)
                    del invert_event

                with gr.Tab("Translate", id="translate", elem_id="tab-translate"):
                    try:
                        names = list(engine.stargan_attributes())
                        translate_note = None
                    except LatentEditError as error:
                        names, translate_note = [], str(error)
                    with gr.Row():
                        with gr.Column():
                            t_upload = gr.File(label="Face image", type="filepath", elem_id="translate-upload")
                            t_example = gr.Dropdown(examples, value=None, label="... or an example",
                                                    elem_id="translate-example")
                            present = gr.CheckboxGroup(names, label="Make present", elem_id="translate-present")
                            absent = gr.CheckboxGroup(names, label="Make absent", elem_id="translate-absent")
                            t_button = gr.Button("Transform", variant="primary", elem_id="translate-run",
                                                 interactive=bool(names))
                            t_status = gr.HTML(_html("error", translate_note) if translate_note else "",
                                               elem_id="translate-status")
                        t_input = gr.Image(label="Input", type="filepath", interactive=False,
                                           elem_id="translate-input", height=IMAGE_HEIGHT, elem_classes=["le-pixels"])
                        t_result = gr.Image(label=f"StarGAN ({self.config.stargan_ckpt})", type="filepath",
                                            interactive=False, elem_id="translate-result", height=IMAGE_HEIGHT, elem_classes=["le-pixels"])
                    with gr.Row():
                        t_files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                          elem_id="translate-downloads")
                        t_command = gr.Code(label="The same in the CLI", language="shell", interactive=False,
                                            elem_id="translate-command")
                    t_button.click(self.on_translate, [t_upload, t_example, present, absent],
                                   [t_status, t_input, t_result, t_files, t_command], concurrency_limit=None,
                                   show_progress="hidden")

                with gr.Tab("PULSE", id="pulse", elem_id="tab-pulse"):
                    sizes = engine.reference_sizes()
                    with gr.Row():
                        with gr.Column():
                            canvas = gr.ImageEditor(
                                label="Paint a reference (unpainted = unconstrained)", type="numpy",
                                image_mode="RGBA", canvas_size=(256, 256), fixed_canvas=True, sources=(),
                                layers=False, transforms=(), elem_id="pulse-canvas",
                                brush=gr.Brush(colors=["#e6c36a", "#2a1c12", "#7b4a26", "#a9a9a9", "#f0c8a0",
                                                       "#ffffff"], default_color="#e6c36a", color_mode="defaults",
                                               default_size=24))
                            p_upload = gr.File(label=f"... or upload an RGBA reference ({' / '.join(map(str, sizes))}"
                                                     " px)", type="filepath", elem_id="pulse-upload")
                            p_example = gr.Dropdown(list(engine.example_references()), value=None,
                                                    label="... or an example reference", elem_id="pulse-example")
                        with gr.Column():
                            side = gr.Dropdown(sizes, value=16 if 16 in sizes else sizes[-1],
                                               label="Side of the painted reference (px)", elem_id="pulse-side")
                            seed = gr.Number(0, precision=0, label="First seed", elem_id="pulse-seed")
                            count = gr.Slider(1, 8, value=2, step=1, label="Seeds", elem_id="pulse-count")
                            p_steps = gr.Slider(5, 200, value=30, step=5, label="Steps (PULSE's default: 100)",
                                                elem_id="pulse-steps")
                            with gr.Row():
                                p_button = gr.Button("Run PULSE", variant="primary", elem_id="pulse-run")
                                p_cancel = gr.Button("Cancel", elem_id="pulse-cancel")
                            p_status = gr.HTML(elem_id="pulse-status")
                            p_reference = gr.Image(label="Reference used", type="filepath", interactive=False,
                                                   elem_id="pulse-reference", height=IMAGE_HEIGHT, elem_classes=["le-pixels"])
                    gallery = gr.Gallery(label="Results and their downscales", columns=4, elem_id="pulse-results",
                                         elem_classes=["le-pixels"])
                    with gr.Row():
                        p_files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                          elem_id="pulse-downloads")
                        with gr.Column():
                            name_a = gr.Dropdown([], label="Direction from result A ...", elem_id="pulse-a")
                            name_b = gr.Dropdown([], label="... minus result B", elem_id="pulse-b")
                            d_button = gr.Button("Make a direction (A - B)", elem_id="pulse-direction")
                            d_files = gr.File(label="Direction", file_count="multiple", interactive=False,
                                              elem_id="pulse-direction-files")
                    p_button.click(self.on_pulse, [canvas, p_upload, p_example, side, seed, count, p_steps, state],
                                   [p_status, p_reference, gallery, p_files, state, name_a, name_b],
                                   concurrency_limit=None, show_progress="hidden")
                    p_cancel.click(self.on_cancel, None, p_status, concurrency_limit=None, queue=False)
                    d_button.click(self.on_pulse_direction, [state, name_a, name_b], [p_status, d_files, state],
                                   concurrency_limit=None)

                with gr.Tab("Training", id="training", elem_id="tab-training"):
                    runs = self.runs.list_runs()
                    with gr.Row():
                        run = gr.Dropdown(runs, value=runs[0] if runs else None, elem_id="training-run",
                                          label="Run (a folder under --runs)")
                        refresh = gr.Button("Refresh the list", elem_id="training-refresh")
                        live = gr.Checkbox(True, label=f"Refresh every {TRAINING_REFRESH_S:g} s",
                                           elem_id="training-live")
                    t_stat = gr.HTML(elem_id="training-status")
                    with gr.Row():
                        plot = gr.Image(label="Losses (metrics.jsonl)", type="numpy", format="png",
                                        interactive=False, elem_id="training-plot")
                        sample = gr.Image(label="Latest sample grid", type="numpy", format="png", interactive=False,
                                          elem_id="training-sample", height=IMAGE_HEIGHT * 2 - 96,
                                          elem_classes=["le-pixels"])
                    timer = gr.Timer(TRAINING_REFRESH_S)
                    run.change(self.on_training, run, [t_stat, plot, sample], concurrency_limit=None)
                    refresh.click(self.on_training_list, run, run, concurrency_limit=None)
                    timer.tick(self.on_training, run, [t_stat, plot, sample], concurrency_limit=None,
                               show_progress="hidden")
                    live.change(lambda on: gr.Timer(active=bool(on)), live, timer, concurrency_limit=None)
            demo.load(self.on_training, run, [t_stat, plot, sample], concurrency_limit=None)
            demo.unload(self.on_unload)
        return demo

    def close(self) -> None:
        self.visitors.close()


def build_app(config: ServeConfig, engine: Engine | None = None) -> App:
    """The page for ``config`` (loads the generator unless ``engine`` is given)."""
    return App(config, engine)


def serve(config: ServeConfig, block: bool = True, log=print) -> App:
    """Start the server (``latentedit serve``): 127.0.0.1 unless told otherwise, no share link, uploads
    capped at ``config.max_upload_mb``. With ``block`` it returns when the server is stopped (Ctrl-C)."""
    app = build_app(config)
    app.demo.queue(default_concurrency_limit=None, max_size=64)
    try:
        app.demo.launch(server_name=config.host, server_port=int(config.port), share=False, inbrowser=False,
                        max_file_size=f"{config.max_upload_mb:g}mb", show_error=False, quiet=True,
                        prevent_thread_lock=True, ssr_mode=False, enable_monitoring=False, pwa=False,
                        css=CSS, footer_links=[])
        log(f"latentedit serve: http://{config.host}:{int(config.port)}/ (generator {config.ckpt}, "
            f"{app.engine.size} px; Ctrl-C stops it)")
        sys.stdout.flush()
        if block:
            app.demo.block_thread()
    finally:
        if block:
            app.demo.close()
            app.close()
    return app
