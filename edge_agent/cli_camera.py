"""``alpr-edge test-camera``: open a configured camera, grab a few frames and
show, per frame, what the camera gives (size, brightness, sharpness, the
tamper checks) and what the recognizer read, with timings. For a field tech
aiming or cleaning a camera.

Plate text is masked unless ``--show-text`` is given: the tech asked for it,
on their own terminal, for a plate they can see on the street. It is printed
to stdout only, never logged, never stored, and nothing is buffered or sent.
The device audit log records that the command ran, with the frame count and
whether text was shown (never the text).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import click

from .cli_common import ConfigFailure, config_option
from .cli_common import load_config as _load
from .errors import CaptureError


@dataclasses.dataclass(frozen=True)
class PlateSeen:
    text: str
    confidence: float
    box: tuple[int, int, int, int]

    def shown(self, show_text: bool) -> str:
        return self.text if show_text else "*" * len(self.text)


@dataclasses.dataclass(frozen=True)
class FrameReport:
    index: int
    width: int
    height: int
    brightness: float        # mean grey level, 0-255
    sharpness: float         # detail over contrast (edge_agent.tamper), compare between frames
    similarity: float | None  # to this test's first usable frame (1.0 = same view)
    tamper: tuple[str, ...]  # what this frame alone shows: black; blurred/moved against the first frame
    grab_ms: float
    recognize_ms: float
    plates: tuple[PlateSeen, ...]
    error: str | None = None

    def to_doc(self, show_text: bool) -> dict:
        doc = {k: v for k, v in dataclasses.asdict(self).items() if k != "plates"}
        doc["plates"] = [{"confidence": round(p.confidence, 3), "box": list(p.box), "length": len(p.text),
                          **({"text": p.text} if show_text else {})} for p in self.plates]
        return doc


@dataclasses.dataclass(frozen=True)
class CameraTest:
    camera: object                 # edge_agent.config.Camera
    recognizer: str                # its model_version
    load_ms: float                 # loading the recognizer
    open_ms: float                 # opening the camera
    frames: tuple[FrameReport, ...]
    last_image: object = None      # the last frame grabbed (for --save), never kept otherwise


def grab(cfg, camera_id: str | None, frames: int, *, interval: float = 0.0) -> CameraTest:
    """Open the camera, take ``frames`` frames, measure and recognize each.
    Raises click exceptions a tech can act on."""
    from . import capture, recognition
    from .agent import _tamper
    from .errors import ConfigError
    from .reads import Frame
    from .tamper import TamperDetector
    cams = {c.id: c for c in cfg.cameras}
    if camera_id is None:
        if not cams:
            raise ConfigFailure("cameras: none configured")
        camera = cfg.cameras[0]
    elif camera_id not in cams:
        raise click.BadParameter(f"no camera {camera_id!r} in the config (cameras: {', '.join(cams)})",
                                 param_hint="--camera")
    else:
        camera = cams[camera_id]
    if camera.source != "picamera2" and not camera.uri.strip():
        raise ConfigFailure(f"camera {camera.id}: uri is not set (alpr-edge provision --camera-uri ID=URI)")
    t0 = time.perf_counter()
    try:
        recognizer = recognition.create(cfg.recognition.type, dict(cfg.recognition.options))
    except OSError as exc:   # a model or sidecar file: named, without the errno
        raise ConfigFailure(f"recognition: cannot read {exc.filename or 'its files'}: "
                            f"{(exc.strerror or str(exc)).lower()}") from None
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigFailure(f"recognition: {exc}") from None
    load_ms = (time.perf_counter() - t0) * 1e3
    # confirm_checks 1: each frame's own finding, not the agent's confirmed state
    detector = TamperDetector(dataclasses.replace(_tamper(cfg), check_seconds=0, confirm_checks=1))
    source = capture.create(camera)
    reports: list[FrameReport] = []
    last_image = None
    try:
        t0 = time.perf_counter()
        try:
            source.open()
        except CaptureError as exc:
            raise click.ClickException(
                f"camera {camera.id} cannot be opened: {exc}. Check its cable, power or network and "
                "cameras[].uri; a USB or Pi camera is held by a running agent (systemctl stop alpr-edge "
                "first)") from None
        open_ms = (time.perf_counter() - t0) * 1e3
        for i in range(1, frames + 1):
            started = time.perf_counter()
            try:
                frame = source.read()
            except CaptureError as exc:
                reports.append(FrameReport(i, 0, 0, 0.0, 0.0, None, (), (time.perf_counter() - started) * 1e3,
                                           0.0, (), str(exc)))
                break
            grabbed = time.perf_counter()
            if frame is None:
                reports.append(FrameReport(i, 0, 0, 0.0, 0.0, None, (), (grabbed - started) * 1e3, 0.0, (),
                                           "the source ended (end of the file or folder)"))
                break
            last_image = frame.image
            measure = detector.check(frame.image)
            t0 = time.perf_counter()
            error = None
            try:
                found = recognizer.recognize(Frame(frame.camera_id, frame.seq, frame.captured_at, frame.image))
            except Exception as exc:  # a frame the recognizer refuses: say so, go on
                found, error = [], f"the recognizer refused this frame ({type(exc).__name__})"
            done = time.perf_counter()
            h, w = frame.image.shape[:2]
            reports.append(FrameReport(
                i, w, h, round(measure.brightness, 1), round(measure.sharpness, 4),
                None if measure.similarity is None else round(measure.similarity, 3), detector.flags,
                round((grabbed - started) * 1e3, 2), round((done - t0) * 1e3, 2),
                tuple(PlateSeen(d.plate, d.confidence, tuple(int(v) for v in d.box)) for d in found), error))
            if interval and i < frames:
                time.sleep(interval)
    finally:
        source.close()
        recognizer.close()
    return CameraTest(camera, recognizer.model_version, round(load_ms, 1), round(open_ms, 1), tuple(reports),
                      last_image)


def _record(cfg, frames: int, got: int, show_text: bool) -> None:
    """In the device audit log: that text was shown, never the text."""
    import os

    from .auditlog import open_for
    path = cfg.data_dir / "audit.sqlite"
    try:
        if not path.exists() and os.geteuid() != cfg.data_dir.stat().st_uid:
            return  # never create the log as another account than the agent's (as log_cli_use)
        log = open_for(cfg)
        if log is not None:
            log.append("test-camera", {"frames": frames, "read": got, "show_text": show_text})
            log.close()
    except Exception:  # the command must work when the log cannot be written (a full disk)
        pass


@click.command("test-camera")
@config_option
@click.option("--camera", "camera_id", help="Camera id from the config (default: the first camera).")
@click.option("--frames", default=5, show_default=True, type=click.IntRange(1, 200), help="Frames to grab.")
@click.option("--interval", default=0.0, show_default=True, type=click.FloatRange(0, 60),
              help="Seconds to wait between frames.")
@click.option("--show-text", is_flag=True,
              help="Show the plate text read (masked as *** by default). Printed on this terminal only; never "
                   "logged or stored. The audit log records that it was shown.")
@click.option("--save", type=click.Path(dir_okay=False),
              help="Save the last frame grabbed here (JPEG, mode 0600), e.g. to check the aim.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: camera, frames[], summary.")
def test_camera(config_path, camera_id, frames, interval, show_text, save, as_json) -> None:
    """Grab a few frames from a camera and show, per frame, its size,
    brightness (0-255), sharpness, the tamper checks (black; blurred or moved
    against the first frame of this test), the plates read and the timings.
    Nothing is buffered or sent. Plate text is masked unless --show-text.

    \b
    Exit status: 0 every frame was read; 1 the camera cannot be opened, or
    gave fewer frames than asked, or a frame looks black; 78 config error."""
    cfg = _load(config_path)
    test = grab(cfg, camera_id, frames, interval=interval)
    camera, reports = test.camera, test.frames
    good = [r for r in reports if r.width]
    saved = _save(save, test.last_image) if save else None
    _record(cfg, frames, len(good), show_text)
    problems = []
    if len(good) < frames:
        problems.append(f"only {len(good)} of {frames} frames read: {reports[-1].error if reports else 'none'}")
    black = sum(1 for r in good if "black" in r.tamper)
    if black:
        problems.append(f"{black} frame(s) black: is the lens covered, or is there no light?")
    plates = sum(len(r.plates) for r in good)
    if as_json:
        summary = {"frames_asked": frames, "frames_read": len(good), "plates": plates,
                   "load_recognizer_ms": test.load_ms, "open_ms": test.open_ms,
                   "grab_ms_mean": _mean([r.grab_ms for r in good]),
                   "recognize_ms_mean": _mean([r.recognize_ms for r in good]), "problems": problems}
        click.echo(json.dumps({"camera": camera.id, "source": camera.source, "recognizer": test.recognizer,
                               "text_shown": show_text, "frames": [r.to_doc(show_text) for r in reports],
                               "summary": summary, "saved": saved}))
    else:
        click.echo(f"camera {camera.id} ({camera.source}): {len(good)} of {frames} frames"
                   + ("" if show_text else "; plate text masked (--show-text to show it)"))
        click.echo(f"  recognizer {test.recognizer}: loaded in {test.load_ms:.0f} ms; camera opened in "
                   f"{test.open_ms:.0f} ms")
        for r in reports:
            if not r.width:
                click.echo(f"  frame {r.index}: {r.error}")
                continue
            sim = "-" if r.similarity is None else f"{r.similarity:.2f}"
            click.echo(f"  frame {r.index}: {r.width}x{r.height}  brightness {r.brightness:5.1f}  sharpness "
                       f"{r.sharpness:.3f}  same view {sim}  tamper {', '.join(r.tamper) or 'none'}  "
                       f"grab {r.grab_ms:.1f} ms  recognize {r.recognize_ms:.1f} ms")
            for p in r.plates:
                click.echo(f"    plate {p.shown(show_text):<10} confidence {p.confidence:.2f}  at x={p.box[0]} "
                           f"y={p.box[1]} {p.box[2]}x{p.box[3]}")
            if r.error:
                click.echo(f"    {r.error}")
        click.echo(f"{plates} plate(s) read in {len(good)} frame(s); mean grab "
                   f"{_mean([r.grab_ms for r in good]):.1f} ms, recognize {_mean([r.recognize_ms for r in good]):.1f} ms")
        if saved:
            click.echo(f"last frame saved to {saved}")
        click.echo("OK" if not problems else "PROBLEM: " + "; ".join(problems))
    if problems:
        click.get_current_context().exit(1)


def _save(path: str, image) -> str | None:
    if image is None:
        return None
    import cv2

    from .provision import write_private
    ok, buf = cv2.imencode(".jpg", image)
    if not ok:
        raise click.ClickException("could not encode the frame as JPEG")
    write_private(path, buf.tobytes())
    return str(Path(path).resolve())


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 2) if values else 0.0
