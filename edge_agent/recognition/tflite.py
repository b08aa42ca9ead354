"""On-device plate recognition with the shipped TFLite models.

Three models (see ``models/manifest.json``): a single-class plate detector run
on the letterboxed frame, a box verifier that gives each candidate box a
second opinion (plate or not, from a crop of the frame with context), and a
CTC plate OCR run on each kept box. The
OCR output is decoded with a numpy prefix beam search; alternates are
re-ranked by optional US plate-pattern rules (``_rules``).

Plate text is never logged.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import cv2
import numpy as np

from ..reads import Alternate, Detection, Frame
from ..wire.schema import MAX_PLATE_LEN
from . import Recognizer
from ._ctc import beam_search, char_confidences, softmax
from ._detect import decode, letterbox, nms, plate_crop, tile_windows, verifier_crop
from ._rules import rerank, validate_rules
from ._runtime import RUNTIMES, load_interpreter, read_manifest

logger = logging.getLogger(__name__)

__all__ = ["TFLiteRecognizer", "DEFAULTS"]

DEFAULTS: dict[str, Any] = {
    "model_dir": None,
    "num_threads": 1,
    # best F1 on detect/ val for models 0.3.0 and 0.4.0; with the 0.7.0 verifier (on the combined score) the
    # highest recall at precision >= 90 % on detect/ val (never chosen on the AGPL sets)
    "detect_threshold": 0.5,
    "verify": True,
    "min_confidence": 0.05,  # chosen on synthetic scenes (seeds 1000-1029), never on the AGPL sets
    "plate_rules": "generic",
    "max_plates": 10,
    "tile_grid": 1,
    # tiles zoom in, where the detector fires more on text and badges; best F1 on detect/ val
    # for models 0.4.0 with tile_grid 2 (recall 88.0 / precision 89.7 % against 83.8 / 92.5 % untiled);
    # with the 0.7.0 verifier tiles at 0.7 give 89.3 / 89.0 % on detect/ val against 88.6 / 91.9 % untiled
    "tile_threshold": 0.7,
    "detect_size": None,
    "box_padding": 0.1,  # chosen on synthetic scenes (seeds 2000-2039)
    # views of each crop the OCR reads (see _views); 4 chosen on the synthetic held-out chunks, never on us-crops
    "ocr_views": 4,
    "runtime": "auto",
    "verify_checksums": True,
    # path of central's model-signing public key (PEM): when set, model_dir must be a bundle
    # signed with it (models.bundle), checked with every file's SHA-256 before anything loads
    "bundle_key": None,
}


def _views(grey: np.ndarray, n: int) -> list[np.ndarray]:
    """The first ``n`` views of a grey crop that the OCR reads: the crop as
    given; with a replicated border (6 % of the width each side, 4 % of the
    height top and bottom: characters touching the edge get room); 3 % of the
    width trimmed off each side; 6 % of the height trimmed off top and bottom.
    Averaging them (models 0.6.0) lifts exact match on the synthetic held-out
    chunks from 84.95 / 84.60 % to 86.45 / 86.30 %."""
    h, w = grey.shape[:2]
    out = [grey]
    if n > 1:
        px, py = int(round(w * 0.06)), int(round(h * 0.04))
        out.append(cv2.copyMakeBorder(grey, py, py, px, px, cv2.BORDER_REPLICATE))
    if n > 2:
        dx = int(w * 0.03)
        out.append(grey[:, dx : w - dx])
    if n > 3:
        dy = int(h * 0.06)
        out.append(grey[dy : h - dy])
    return out[:n]


MAX_OCR_VIEWS = 4  # how many views _views() knows


def _default_model_dir() -> str:
    from models import model_dir

    return str(model_dir())


class TFLiteRecognizer(Recognizer):
    """Detector + OCR. Options (all keyword-only, from the ``[recognition]``
    TOML table):

    ``model_dir`` folder with ``manifest.json`` (default: shipped models);
    ``num_threads`` interpreter threads (>= 1); ``detect_threshold`` detector
    heatmap score (0..1); ``min_confidence`` drop reads whose OCR confidence is
    lower (0..1); ``plate_rules`` ``"none"``, ``"generic"`` or a US state code;
    ``max_plates`` per frame; ``tile_grid`` 1 = detect on the whole
    letterboxed frame only, N > 1 = also on N x N overlapping tiles (finds
    smaller plates in 1080p frames, costs N*N extra detector runs);
    ``tile_threshold`` the score a detection made on a tile must reach (0..1);
    ``detect_size`` long side of the detector input in pixels, a multiple of
    32 (default: the manifest's ``input_size``; larger finds smaller plates
    and costs more; only for a detector with a free input shape, which also
    pads a 16:9 frame to 384x224 rather than a square); ``box_padding`` fraction added around a detected
    box before OCR; ``ocr_views`` how many views of each crop the OCR reads
    and averages (1-4; 1 reads the crop once, each view costs one OCR run);
    ``runtime`` ``"auto"``, ``"ai_edge_litert"`` or
    ``"tflite_runtime"``; ``verify_checksums`` check files against the manifest;
    ``bundle_key`` path of central's model-signing public key: when set, the
    model set must be a bundle signed with it (``models.bundle``: signature
    and every file's checksum are verified before any model loads, and a
    model set that fails is refused with ValueError).
    """

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown recognition option(s): {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
        o = {**DEFAULTS, **options}
        self.num_threads = _int(o, "num_threads", 1, 64)
        self.max_plates = _int(o, "max_plates", 1, 100)
        self.tile_grid = _int(o, "tile_grid", 1, 4)
        self.detect_threshold = _frac(o, "detect_threshold")
        self.tile_threshold = _frac(o, "tile_threshold")
        self.min_confidence = _frac(o, "min_confidence")
        self.box_padding = _frac(o, "box_padding")
        self.ocr_views = _int(o, "ocr_views", 1, MAX_OCR_VIEWS)
        if not isinstance(o["plate_rules"], str):
            raise ValueError("plate_rules must be a string")
        self.plate_rules = validate_rules(o["plate_rules"])
        if not isinstance(o["verify"], bool):
            raise ValueError(f"verify must be true or false, got {o['verify']!r}")
        if o["runtime"] not in ("auto", *RUNTIMES):
            raise ValueError(f"runtime: {o['runtime']!r} is not one of auto, {', '.join(RUNTIMES)}")
        folder = o["model_dir"] if o["model_dir"] is not None else _default_model_dir()
        if not isinstance(folder, (str, os.PathLike)) or not os.path.isdir(folder):
            raise ValueError(f"model_dir: {folder!r} is not a folder")
        verified: dict[str, bytes] = {}  # a signed bundle's models load from the bytes that were verified
        if o["bundle_key"] is not None:
            from models.bundle import load_public_key, open_bundle

            if not isinstance(o["bundle_key"], (str, os.PathLike)):
                raise ValueError("bundle_key must be the path of a PEM public key")
            man, verified = open_bundle(folder, load_public_key(o["bundle_key"]))
            logger.info("model bundle in %s verified", folder)
        else:
            man = read_manifest(str(folder), verify=bool(o["verify_checksums"]))
        det, ocr = man["models"]["detector"], man["models"]["ocr"]
        self._det, self.runtime = load_interpreter(os.path.join(folder, det["file"]), self.num_threads, o["runtime"],
                                                   verified.get("detector"))
        self._ocr, _ = load_interpreter(os.path.join(folder, ocr["file"]), self.num_threads, o["runtime"],
                                        verified.get("ocr"))
        self._det_in = self._det.get_input_details()[0]["index"]
        self._det_out = self._det.get_output_details()[0]["index"]
        self._ocr_in = self._ocr.get_input_details()[0]["index"]
        self._ocr_out = self._ocr.get_output_details()[0]["index"]
        self._ver = None
        if o["verify"] and "verifier" in man["models"]:
            self._ver, _ = load_interpreter(os.path.join(folder, man["models"]["verifier"]["file"]), self.num_threads,
                                            o["runtime"], verified.get("verifier"))
            self._ver_in = self._ver.get_input_details()[0]["index"]
            self._ver_out = self._ver.get_output_details()[0]["index"]
        elif o["verify"]:
            logger.warning("model set in %s has no box verifier: detections keep the detector's scores", folder)
        self.verify = self._ver is not None
        self._det_dynamic = any(int(v) < 0 for v in self._det.get_input_details()[0]["shape_signature"][1:3])
        self._det_shape = tuple(self._det.get_input_details()[0]["shape"])
        self.det_size = _detect_size(o["detect_size"], det, self._det_dynamic)
        self.stride = int(det.get("stride", 4))
        _, self.ocr_h, self.ocr_w, _ = (int(v) for v in ocr["input_shape"])
        self.charset = ocr["charset"]
        self.blank = int(ocr.get("blank_index", len(self.charset)))
        self.model_version = f"{man.get('name', 'alpr')}-{man.get('version', '0')}"

    # -- OCR -----------------------------------------------------------------
    def read_crop(self, bgr: np.ndarray) -> tuple[str, float, tuple[Alternate, ...], tuple[float, ...]]:
        """Read one plate crop (uint8 BGR or grey). Returns ``(plate, confidence,
        alternates, char_confidences)``; ``plate`` may be empty when nothing is
        legible. Texts longer than a plate can be (``MAX_PLATE_LEN``) are never
        returned; the plate-pattern rules order the texts, and each keeps the
        probability the OCR gave it."""
        if not isinstance(bgr, np.ndarray) or bgr.dtype != np.uint8 or bgr.size == 0:
            raise ValueError("a crop must be a non-empty uint8 image")
        if bgr.ndim == 3 and bgr.shape[2] == 1:
            bgr = bgr[:, :, 0]
        if bgr.ndim not in (2, 3) or (bgr.ndim == 3 and bgr.shape[2] not in (3, 4)):
            raise ValueError(f"a crop must be grey, BGR or BGRA, not of shape {bgr.shape}")
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY if bgr.shape[2] == 3 else cv2.COLOR_BGRA2GRAY) if bgr.ndim == 3 else bgr
        views = [self._ocr_probs(v) for v in _views(grey, self.ocr_views)]
        scores: dict[str, float] = {}
        for probs in views:  # a text's probability: its mean over the views (0 where a beam lacks it)
            for t, p in zip(*beam_search(probs, self.charset, self.blank)):
                scores[t] = scores.get(t, 0.0) + p / len(views)
        ranked = rerank(sorted(scores.items(), key=lambda kv: -kv[1]), self.plate_rules)
        ranked = [(t, p) for t, p in ranked if 0 < len(t) <= MAX_PLATE_LEN]
        if not ranked:
            return "", 0.0, (), ()
        plate, conf = ranked[0]
        per_view = [char_confidences(probs, plate, self.charset, self.blank) for probs in views]
        chars = tuple(round(sum(c) / len(c), 4) for c in zip(*per_view))
        alts = tuple(Alternate(t, round(min(1.0, p), 4)) for t, p in ranked[1:6])
        return plate, round(min(1.0, conf), 4), alts, chars

    def _ocr_probs(self, grey: np.ndarray) -> np.ndarray:
        """Per-frame character probabilities (T, C) for one grey crop."""
        interp = cv2.INTER_AREA if grey.shape[1] > self.ocr_w else cv2.INTER_LINEAR
        x = cv2.resize(grey, (self.ocr_w, self.ocr_h), interpolation=interp).astype(np.float32) * (1.0 / 255.0)
        self._ocr.set_tensor(self._ocr_in, x[None, :, :, None])
        self._ocr.invoke()
        return softmax(self._ocr.get_tensor(self._ocr_out)[0].astype(np.float32))

    # -- detection -----------------------------------------------------------
    def _detect_once(self, bgr: np.ndarray, threshold: float, ox: int = 0, oy: int = 0):
        x, s = letterbox(bgr, self.det_size, 32 if self._det_dynamic else 0)
        if x.shape != self._det_shape:  # free input shape: once per frame size
            self._det.resize_tensor_input(self._det_in, x.shape)
            self._det.allocate_tensors()
            self._det_shape = x.shape
        self._det.set_tensor(self._det_in, x)
        self._det.invoke()
        out = self._det.get_tensor(self._det_out)[0]
        return [(bx / s + ox, by / s + oy, bw / s, bh / s, sc) for bx, by, bw, bh, sc in decode(out, self.stride, threshold)]

    def detect(self, bgr: np.ndarray) -> list[tuple[int, int, int, int, float]]:
        """Plate boxes ``(x, y, w, h, score)`` in ``bgr``'s pixel coordinates."""
        H, W = bgr.shape[:2]
        # with the verifier, a box's score is sqrt(detector * verifier), so no box under
        # threshold**2 from the detector can pass: that is where candidates start
        floor = (lambda t: t * t) if self._ver is not None else (lambda t: t)
        dets = [(*d, self.detect_threshold) for d in self._detect_once(bgr, floor(self.detect_threshold))]
        for x0, y0, tw, th in tile_windows(W, H, self.tile_grid):
            tile = bgr[y0 : y0 + th, x0 : x0 + tw]
            dets += [(*d, self.tile_threshold) for d in self._detect_once(tile, floor(self.tile_threshold), x0, y0)]
        dets = nms(dets, 0.4, self.max_plates * 3 if self._ver is not None else self.max_plates)
        if self._ver is not None:
            dets = [(bx, by, bw, bh, float(np.sqrt(sc * self._verify(bgr, (bx, by, bw, bh)))), t) for bx, by, bw, bh, sc, t in dets]
        boxes = []
        for bx, by, bw, bh, score, thr in sorted(dets, key=lambda d: -d[4]):
            if score < thr or len(boxes) >= self.max_plates:
                continue
            x0, y0 = max(0.0, bx), max(0.0, by)
            x1, y1 = min(float(W), bx + bw), min(float(H), by + bh)
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                boxes.append((int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0)), score))
        return boxes

    def _verify(self, bgr: np.ndarray, box) -> float:
        """The verifier's probability that ``box`` is a plate."""
        x = verifier_crop(bgr, box).astype(np.float32) * (1.0 / 255.0)
        self._ver.set_tensor(self._ver_in, x[None])
        self._ver.invoke()
        return float(1.0 / (1.0 + np.exp(-self._ver.get_tensor(self._ver_out).reshape(-1)[0])))

    def recognize(self, frame: Frame) -> list[Detection]:
        img = _check_image(frame.image)
        out = []
        for x, y, w, h, _score in self.detect(img):
            plate, conf, alts, chars = self.read_crop(plate_crop(img, (x, y, w, h), self.box_padding))
            if not plate or conf < self.min_confidence:
                continue
            out.append(Detection(plate, conf, (x, y, w, h), alts, chars))
        return out

    def close(self) -> None:
        self._det = self._ocr = self._ver = None


def _check_image(img) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise ValueError("frame image must be a uint8 numpy array")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 8 or img.shape[1] < 8:
        raise ValueError(f"frame image has unsupported shape {img.shape}")
    return img


def _detect_size(value, entry: dict, dynamic: bool) -> int:
    """The detector's input long side: the option, else the manifest's."""
    default = int(entry.get("input_size", entry["input_shape"][1]))
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 128 <= value <= 1920 or value % 32:
        raise ValueError(f"detect_size must be a multiple of 32 in 128..1920, got {value!r}")
    if not dynamic and value != default:
        raise ValueError(f"detect_size: this detector has a fixed {default}x{default} input")
    return value


def _int(o: dict, key: str, lo: int, hi: int) -> int:
    v = o[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{key} must be an integer in {lo}..{hi}, got {v!r}")
    return v


def _frac(o: dict, key: str) -> float:
    v = o[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{key} must be a number in 0..1, got {v!r}")
    return float(v)
