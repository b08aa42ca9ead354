"""``alpr-edge recognize`` and ``alpr-edge evaluate`` (click commands).

Register on the CLI group with ``cli.add_command(recognize)`` and
``cli.add_command(evaluate)``; ``python -m edge_agent.recognize_cmd`` runs
``recognize`` (or ``evaluate`` when the first argument is ``evaluate``).
"""

from __future__ import annotations

import os

# Refuse decompression bombs before OpenCV allocates them (pixels per image).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))

import datetime as dt  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import stat  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import click  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from .reads import Frame  # noqa: E402
from .recognition._evaluate import EQUATE  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = ["recognize", "evaluate"]

VIDEO_EXT = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg", ".ts"}
MAX_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 40_000_000


def _model_options(f):
    f = click.option("--model-dir", type=click.Path(file_okay=False), default=None, help="Folder with manifest.json (default: shipped models).")(f)
    f = click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="Interpreter threads.")(f)
    f = click.option("--plate-rules", default="generic", show_default=True, help="none, generic or a US state code.")(f)
    f = click.option("--tile-grid", type=click.IntRange(1, 4), default=1, show_default=True, help="Also detect on N x N tiles (small plates in big frames).")(f)
    f = click.option("--detect-threshold", type=click.FloatRange(0, 1), default=None,
                     help="Score a box must reach (default 0.5; with the verifier, sqrt of detector x verifier score).")(f)
    f = click.option("--tile-threshold", type=click.FloatRange(0, 1), default=None,
                     help="Score a detection made on a tile must reach (default 0.7).")(f)
    f = click.option("--detect-size", type=int, default=None,
                     help="Detector input long side, a multiple of 32 (default: the model's; larger finds smaller plates).")(f)
    f = click.option("--verify/--no-verify", default=True, show_default=True,
                     help="Score boxes with the set's box verifier too (sqrt of detector x verifier score).")(f)
    f = click.option("--ocr-views", type=click.IntRange(1, 4), default=None,
                     help="Views of each crop the OCR reads and averages (default 4; 1 reads it once, 4x less OCR work).")(f)
    return f


def _make(model_dir, threads, plate_rules, detect_threshold, tile_grid=1, detect_size=None, tile_threshold=None,
          ocr_views=None, verify=True):
    from .recognition.tflite import TFLiteRecognizer

    opts = {"model_dir": model_dir, "num_threads": threads, "plate_rules": plate_rules, "tile_grid": tile_grid,
            "detect_size": detect_size, "verify": verify}
    if detect_threshold is not None:
        opts["detect_threshold"] = detect_threshold
    if tile_threshold is not None:
        opts["tile_threshold"] = tile_threshold
    if ocr_views is not None:
        opts["ocr_views"] = ocr_views
    try:
        return TFLiteRecognizer(**opts)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _regular_file(path: str) -> int:
    """The size of ``path``; ValueError unless it is a regular file (a directory,
    FIFO or device would block or mislead the readers)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ValueError(f"cannot open: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError("a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file")
    return st.st_size


def load_image(path: str) -> np.ndarray:
    """Read an image file; ValueError with a clear reason if impossible."""
    size = _regular_file(path)
    if size == 0:
        raise ValueError("empty file")
    if size > MAX_BYTES:
        raise ValueError(f"file too large ({size} bytes > {MAX_BYTES})")
    try:
        with open(path, "rb") as fh:
            data = np.frombuffer(fh.read(), np.uint8)
    except OSError as exc:
        raise ValueError(f"cannot open: {exc.strerror or exc}") from None
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None:
        raise ValueError("not a readable image (corrupt, unsupported or too many pixels)")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ValueError(f"image too large ({img.shape[1]}x{img.shape[0]} > {MAX_PIXELS} pixels)")
    if img.shape[0] < 8 or img.shape[1] < 8:
        raise ValueError(f"image too small ({img.shape[1]}x{img.shape[0]})")
    return img


def _reads_json(dets) -> list[dict]:
    return [
        {"plate": d.plate, "confidence": d.confidence, "box": list(d.box),
         "alternates": [{"plate": a.plate, "confidence": a.confidence} for a in d.alternates],
         "char_confidences": list(d.char_confidences)}
        for d in dets
    ]


def _run(rec, img, seq):
    t0 = time.perf_counter()
    dets = rec.recognize(Frame("cli", seq, dt.datetime.now(dt.timezone.utc), img))
    return dets, round((time.perf_counter() - t0) * 1000, 2)


def _frames(path: str, every: int, max_frames: int):
    """Yield ``(index, seconds into the video, image)`` for every ``every``-th frame."""
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError("cannot open video")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps < 1000 else 10.0  # a stream that does not say: the agent's default camera rate
    try:
        idx = produced = 0
        while produced < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            if idx % every == 0:
                produced += 1
                yield idx, idx / fps, img
            idx += 1
        if idx == 0:
            raise ValueError("video has no readable frames")
    finally:
        cap.release()


def _video_passes(rec, path: str, every: int, max_frames: int):
    """One ``(read, first frame, last frame, best frame)`` per vehicle pass, as
    the agent tracks a camera (``edge_agent.tracking.Tracker`` with the agent's
    default ``[tracking]`` settings; time is the video's own). The read's box is
    in the best frame, whose crop the agent would keep."""
    from .config import Tracking
    from .tracking import Tracker

    t = Tracking()
    tracker = Tracker(window_seconds=t.window_seconds, max_track_seconds=t.max_track_seconds,
                      reemit_seconds=t.reemit_seconds, min_hits=t.min_hits)
    start = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    index: dict[dt.datetime, int] = {}

    def passes(done):
        for read, track in done:
            yield read, index[track.first_seen], index[track.last_seen], index[track.best_frame.captured_at]

    for idx, seconds, img in _frames(path, every, max_frames):
        at = start + dt.timedelta(seconds=seconds)
        index[at] = idx
        frame = Frame("cli", idx, at, img)
        yield from passes(tracker.update(frame, rec.recognize(frame)))
    yield from passes(tracker.flush())


@click.command("recognize")
@click.argument("files", nargs=-1, required=True)  # each checked in turn: a bad one gets its error line
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per image (per frame for videos).")
@click.option("--every", type=click.IntRange(1), default=1, show_default=True, help="Videos: read every Nth frame.")
@click.option("--max-frames", type=click.IntRange(1), default=1000, show_default=True, help="Videos: at most this many frames.")
@click.option("--passes", is_flag=True,
              help="Videos: one read per vehicle pass, as the camera would send it (tracked across frames, "
                   "voted per character), instead of one line per frame.")
@_model_options
def recognize(files, as_json, every, max_frames, passes, model_dir, threads, plate_rules, detect_threshold, tile_grid,
              detect_size, tile_threshold, ocr_views, verify):
    """Read the plates in image and video FILES.

    With --json, one JSON object per line per image: {"file", "ms", "reads":
    [{"plate", "confidence", "box": [x, y, w, h], "alternates", "char_confidences"}]};
    a video gives one per frame (with "frame"), or with --passes one per
    vehicle pass (with "frames": [first, last] and "best_frame", the frame the
    box is in and whose crop the camera would keep; "ms": recognition time since
    the previous pass).
    A file that cannot be read gets {"file", "error"} and the rest go on (exit 1)."""
    rec = _make(model_dir, threads, plate_rules, detect_threshold, tile_grid, detect_size, tile_threshold, ocr_views, verify)
    failed = False
    rows = []

    def emit(obj):
        if as_json:
            click.echo(json.dumps(obj))
        elif "error" in obj:
            click.echo(f"{obj['file']}: error: {obj['error']}", err=True)
        else:
            where = obj["file"] + (f"#{obj['frame']}" if "frame" in obj else "")
            if "frames" in obj:
                where = obj["file"] + "#{}-{}".format(*obj["frames"])
            if not obj["reads"]:
                rows.append((where, "-", "", "", obj["ms"]))
            for r in obj["reads"]:
                rows.append((where, r["plate"], f"{r['confidence']:.2f}", ",".join(map(str, r["box"])), obj["ms"]))

    try:
        for seq, path in enumerate(files):
            try:
                if os.path.splitext(path)[1].lower() in VIDEO_EXT:
                    if _regular_file(path) == 0:
                        raise ValueError("empty file")
                    try:  # readable? (OpenCV would only say it cannot open it)
                        open(path, "rb").close()
                    except OSError as exc:
                        raise ValueError(f"cannot open: {exc.strerror or exc}") from None
                    if passes:
                        t0 = time.perf_counter()
                        for read, first, last, best in _video_passes(rec, path, every, max_frames):
                            ms = round((time.perf_counter() - t0) * 1000, 2)
                            emit({"file": path, "frames": [first, last], "best_frame": best, "ms": ms,
                                  "reads": _reads_json([read])})
                            t0 = time.perf_counter()
                    else:
                        for idx, _seconds, img in _frames(path, every, max_frames):
                            dets, ms = _run(rec, img, idx)
                            emit({"file": path, "frame": idx, "ms": ms, "reads": _reads_json(dets)})
                else:
                    dets, ms = _run(rec, load_image(path), seq)
                    emit({"file": path, "ms": ms, "reads": _reads_json(dets)})
            except ValueError as exc:
                failed = True
                emit({"file": path, "error": str(exc)})
    finally:
        rec.close()
    if rows and not as_json:
        w = max(len(r[0]) for r in rows)
        click.echo(f"{'file':<{w}}  {'plate':<10} {'conf':>5}  {'box':<20} {'ms':>7}")
        for r in rows:
            click.echo(f"{r[0]:<{w}}  {r[1]:<10} {r[2]:>5}  {r[3]:<20} {r[4]:>7.1f}")
    if failed:
        sys.exit(1)


@click.command("evaluate")
@click.option("--detect", "detect_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Folder with boxes.jsonl or labels.jsonl (detection recall/precision, and of the reads emitted; end-to-end if texts).")
@click.option("--split", default=None, help="Only this split of boxes.jsonl (e.g. val).")
@click.option("--crops", "crop_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Folder with labels.csv of plate crops (OCR top-1/top-5).")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many items per folder.")
@click.option("--equate", multiple=True, default=EQUATE, show_default=True,
              help="Characters taken as one for the crops' 'equated' top-1/top-5 (repeat for more groups, e.g. "
                   "--equate O0 --equate I1; issue 27 rules us-crops with O0).")
@click.option("--confusions", "n_confusions", type=click.IntRange(0), default=10, show_default=True,
              help="Rows of the misreads-by-character table to print (true -> read, counts); --json has them all.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_model_options
def evaluate(detect_dirs, split, crop_dirs, limit, equate, n_confusions, as_json, model_dir, threads, plate_rules,
             detect_threshold, tile_grid, detect_size, tile_threshold, ocr_views, verify):
    """Measure the models on labelled folders.

    Prints detection recall/precision (by plate width too), reads emitted,
    end-to-end exact match, OCR top-1/top-5, and the misreads by character:
    each read aligned to its true text by edit distance, substitutions
    counted as true -> read pairs, dropped and extra characters apart.

    The project's reference sets are recognised by folder name: us-crops,
    detect (with --split val) and scenes-eu-br (whose listed unlabelled plates
    are then ignored in the checked precision); for them the figures as issue
    27 rules them are printed with their targets ("ruled"). With --limit they
    are a sample's, not the ruled figures."""
    from .recognition._evaluate import equate_table, eval_crops, eval_scenes, reference_name, ruled
    from .recognition._reference import UNLABELLED

    if not detect_dirs and not crop_dirs:
        raise click.UsageError("give at least one --detect or --crops folder")
    try:
        equate_table(equate)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--equate") from None
    rec = _make(model_dir, threads, plate_rules, detect_threshold, tile_grid, detect_size, tile_threshold, ocr_views, verify)
    result = {"model_version": rec.model_version, "threads": threads, "plate_rules": plate_rules, "tile_grid": tile_grid,
              "tile_threshold": rec.tile_threshold, "detect_size": rec.det_size,
              "detect_threshold": rec.detect_threshold, "verify": rec.verify, "ocr_views": rec.ocr_views,
              "limit": limit, "scenes": [], "crops": []}
    try:
        for d in detect_dirs:
            name = reference_name(d, split)
            s = eval_scenes(rec, d, split, limit, unlabelled=UNLABELLED.get(name))
            s["ruled"] = ruled(s, name, "scenes")
            result["scenes"].append(s)
        for d in crop_dirs:
            c = eval_crops(rec, d, limit, equate=equate)
            c["ruled"] = ruled(c, reference_name(d), "crops")
            result["crops"].append(c)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        rec.close()
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"model {result['model_version']}, {threads} thread(s), rules {plate_rules}")
    for s in result["scenes"]:
        line = f"{s['folder']} [{s['split'] or 'all'}]: {s['images']} images, {s['plates']} plates, recall {_v(s['recall'])}, precision {_v(s['precision'])}"
        if "end_to_end_exact" in s:
            line += f", end-to-end exact {_v(s['end_to_end_exact'])}"
        f, r = s["frame_ms"], s["reads"]
        click.echo(line + f", frame ms p50 {_v(f.get('p50'))} p90 {_v(f.get('p90'))}")
        click.echo(f"  reads emitted: {r['reads']}, recall {_v(r['recall'])}, precision {_v(r['precision'])} "
                   "(boxes whose OCR confidence is under min_confidence give no read)")
        widths = ", ".join(f"{k} {_v(v['recall'])} ({v['plates']})" for k, v in s["recall_by_width"].items())
        r60 = s["recall_from_60px"]
        click.echo(f"  recall by plate width (plates): {widths}; plates 60 px and wider {_v(r60['recall'])} ({r60['plates']})")
        if "checked" in s:
            c = s["checked"]
            click.echo(f"  precision {_v(c['precision'])} with the {c['detections_on_them']} detections of the "
                       f"{c['unlabelled_plates']} listed plates the labels leave out ignored")
        if "confusions" in s:
            _echo_confusions(s["confusions"], n_confusions, f"reads of labelled plates ({s['confusions']['plates_without_read']} without a read)")
        _echo_ruled(s["ruled"], limit)
    for c in result["crops"]:
        m = c["crop_ms"]
        click.echo(f"{c['folder']}: {c['crops']} crops, top-1 {_v(c['top1'])}, top-5 {_v(c['top5'])}, top-1 with confusables folded {_v(c['top1_folded'])}, crop ms p50 {_v(m.get('p50'))} p90 {_v(m.get('p90'))}")
        e = c["equated"]
        click.echo(f"  with {' and '.join('/'.join(g) for g in e['groups'])} taken as one character: top-1 {_v(e['top1'])}, top-5 {_v(e['top5'])}")
        click.echo("  top-1 misses by kind: " + ", ".join(f"{k} {v}" for k, v in c["errors"].items()))
        _echo_confusions(c["confusions"], n_confusions, "top-1 reads")
        _echo_ruled(c["ruled"], limit)


def _v(x) -> str:
    """A figure in words: '-' when there is none (no plates, no frames)."""
    return "-" if x is None else str(x)


def _echo_confusions(conf: dict, rows: int, what: str) -> None:
    if not rows:
        return
    subs = conf["substitutions"]
    dels = ", ".join(f"{d['true']} {d['count']}" for d in conf["deletions"][:rows]) or "none"
    ins = ", ".join(f"{d['read']} {d['count']}" for d in conf["insertions"][:rows]) or "none"
    click.echo(f"  misreads by character, {what}: {conf['misread']} of {conf['pairs']} misread; "
               f"{sum(x['count'] for x in subs)} substitutions, {sum(x['count'] for x in conf['deletions'])} dropped, "
               f"{sum(x['count'] for x in conf['insertions'])} extra")
    if subs:
        click.echo("    true -> read  count")
        for x in subs[:rows]:
            click.echo(f"    {x['true']:>4} -> {x['read']:<4}  {x['count']:>5}")
    click.echo(f"    dropped (true): {dels}; extra (read): {ins}")


def _echo_ruled(r: dict | None, limit) -> None:
    if not r:
        return
    parts = [f"{k} {v['value']} (target >= {v['target']}: {'met' if v['met'] else 'short'})" for k, v in r["figures"].items()]
    note = " [a --limit sample, not the ruled figure]" if limit else ""
    click.echo(f"  ruled targets for {r['set']} (issue 27){note}: " + "; ".join(parts))


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) > 1 and sys.argv[1] == "evaluate":
        evaluate.main(sys.argv[2:], prog_name="evaluate")
    else:
        recognize.main(sys.argv[1:], prog_name="recognize")
