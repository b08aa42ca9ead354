"""The shipped model files: manifest, checksums, sizes, and both runtimes."""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os

import numpy as np
import pytest

from models import manifest, model_dir

MAX_TOTAL_BYTES = 8 * 1024 * 1024


def _semver(v: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in v.split("."))
    assert len(parts) == 3, v
    return parts


def test_manifest_lists_the_three_models_with_matching_checksums():
    man = manifest()
    assert set(man["models"]) == {"detector", "ocr", "verifier"}
    total = 0
    for entry in man["models"].values():
        path = model_dir() / entry["file"]
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
        assert len(data) == entry["bytes"]
        # a model carried over unchanged keeps its own version, never newer than the set's
        assert _semver(entry["version"]) <= _semver(man["version"])
        total += len(data)
    assert total <= MAX_TOTAL_BYTES
    assert man["models"]["ocr"]["charset"] == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def test_synth_charset_matches_manifest():
    from models.synth.plates import CHARSET

    assert manifest()["models"]["ocr"]["charset"] == CHARSET


@pytest.mark.parametrize("tampered", ["plate_detector.tflite", "plate_ocr.tflite", "plate_verifier.tflite"])
def test_tampered_model_is_rejected(tmp_path, tampered):
    from edge_agent.recognition.tflite import TFLiteRecognizer

    for name in ("manifest.json", "plate_detector.tflite", "plate_ocr.tflite", "plate_verifier.tflite"):
        (tmp_path / name).write_bytes((model_dir() / name).read_bytes())
    TFLiteRecognizer(model_dir=str(tmp_path)).close()  # the copy itself is fine
    data = bytearray((tmp_path / tampered).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / tampered).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        TFLiteRecognizer(model_dir=str(tmp_path))


def test_missing_verifier_file_is_a_clear_error(tmp_path):
    from edge_agent.recognition.tflite import TFLiteRecognizer

    for name in ("manifest.json", "plate_detector.tflite", "plate_ocr.tflite"):
        (tmp_path / name).write_bytes((model_dir() / name).read_bytes())
    with pytest.raises(ValueError, match="plate_verifier.tflite missing"):
        TFLiteRecognizer(model_dir=str(tmp_path))


def test_missing_manifest_is_a_clear_error(tmp_path):
    from edge_agent.recognition.tflite import TFLiteRecognizer

    with pytest.raises(ValueError, match="manifest"):
        TFLiteRecognizer(model_dir=str(tmp_path))


def _io_shapes(interp_cls):
    shapes = {}
    for key, entry in manifest()["models"].items():
        it = interp_cls(model_path=os.path.join(model_dir(), entry["file"]), num_threads=1)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        assert list(inp["shape_signature"]) == entry["input_shape"]
        shape = [entry.get("input_size", 384) if v < 0 else v for v in entry["input_shape"]]
        if list(inp["shape"]) != shape:  # a free-shape detector: run it at its default size
            it.resize_tensor_input(inp["index"], shape)
            it.allocate_tensors()
        it.set_tensor(inp["index"], np.zeros(shape, np.float32))
        it.invoke()
        shapes[key] = tuple(it.get_output_details()[0]["shape"])
    return shapes


def test_ai_edge_litert_runtime_loads_models():
    from ai_edge_litert.interpreter import Interpreter

    shapes = _io_shapes(Interpreter)
    assert shapes["detector"] == (1, 96, 96, 5)
    assert shapes["ocr"] == (1, 32, 37)
    assert shapes["verifier"] == (1, 1)


@pytest.mark.skipif(importlib.util.find_spec("tflite_runtime") is None, reason="tflite_runtime not installed")
def test_tflite_runtime_loads_models():
    from tflite_runtime.interpreter import Interpreter

    shapes = _io_shapes(Interpreter)
    assert shapes["detector"] == (1, 96, 96, 5)
    assert shapes["ocr"] == (1, 32, 37)
    assert shapes["verifier"] == (1, 1)


LEGACY_PYTHON = os.environ.get("ALPR_LEGACY_PYTHON", "")

# Run in the legacy venv (numpy < 2, OpenCV 4, tflite_runtime; no ai_edge_litert):
# read each PNG named on the command line: scene*.png as a frame, the others as crops.
_LEGACY_READER = """
import json, os, sys, datetime as dt, cv2
from edge_agent.reads import Frame
from edge_agent.recognition.tflite import TFLiteRecognizer
r = TFLiteRecognizer(runtime="tflite_runtime", num_threads=1)
for path in sys.argv[1:]:
    img = cv2.imread(path)
    if os.path.basename(path).startswith("scene"):
        dets = r.recognize(Frame("t", 0, dt.datetime.now(dt.timezone.utc), img))
        read = [[d.plate, d.confidence, list(d.box)] for d in dets]
    else:
        read = list(r.read_crop(img)[:2])
    print(json.dumps({"runtime": r.runtime, "read": read}))
"""


@pytest.mark.skipif(not os.path.exists(LEGACY_PYTHON),
                    reason="no legacy-runtime venv (make test builds .venv-legacy where tflite-runtime installs)")
def test_legacy_runtime_reads_like_the_default_one(tmp_path):
    """The fallback runtime, in its own venv as the edge-legacy extra installs it,
    loads the shipped models and reads seeded plates (whole frames through
    detector, verifier and OCR, and crops) as ai_edge_litert does here."""
    import datetime as dt
    import subprocess

    import cv2

    from edge_agent.reads import Frame
    from edge_agent.recognition.tflite import TFLiteRecognizer
    from models.synth.augment import ocr_crop
    from models.synth.scenes import scene_with_plates

    paths = []
    for i, text in enumerate(("7ABC123", "KLX4102", "5HJT880")):
        img, _ = scene_with_plates(np.random.default_rng(300 + i), (1280, 720), ((text, 150 + 30 * i),), side=None)
        paths.append(tmp_path / f"scene{i}.png")
        cv2.imwrite(str(paths[-1]), img)
    rng = np.random.default_rng(301)
    for i in range(24):
        crop, _label = ocr_crop(rng, legible=True)
        paths.append(tmp_path / f"crop{i}.png")
        cv2.imwrite(str(paths[-1]), crop)

    root = model_dir().parent
    out = subprocess.run([LEGACY_PYTHON, "-c", _LEGACY_READER, *map(str, paths)], capture_output=True, text=True,
                         cwd=str(root), env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    legacy = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(legacy) == len(paths)
    assert {row["runtime"] for row in legacy} == {"tflite_runtime"}

    rec = TFLiteRecognizer(num_threads=1)
    try:
        assert rec.runtime == "ai_edge_litert"
        for path, row in zip(paths, legacy):
            img = cv2.imread(str(path))
            if path.name.startswith("scene"):
                dets = rec.recognize(Frame("t", 0, dt.datetime.now(dt.timezone.utc), img))
                assert [d.plate for d in dets] == [r[0] for r in row["read"]], path.name
                for d, (_plate, conf, box) in zip(dets, row["read"]):
                    assert abs(d.confidence - conf) < 0.05 and max(abs(a - b) for a, b in zip(d.box, box)) <= 3
            else:
                plate, conf, _alts, _chars = rec.read_crop(img)
                assert plate == row["read"][0], path.name
                assert abs(conf - row["read"][1]) < 0.05
    finally:
        rec.close()
    assert all(row["read"] for row in legacy[:3])  # every seeded scene gives a read


def test_manifest_is_valid_json_file():
    with open(model_dir() / "manifest.json", encoding="utf-8") as fh:
        assert json.load(fh)["name"] == "alpr-us"


def test_runtime_never_imports_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys; from edge_agent.recognition.tflite import TFLiteRecognizer; "
        "r = TFLiteRecognizer(); import numpy as np; r.detect(np.zeros((64, 64, 3), np.uint8)); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(model_dir().parent), check=True)
    assert out.stdout.strip() == "False"


def _hand_read(name: str, min_width: float = 60) -> list[dict]:
    """Rows of a hand-read texts file under models/training/, checked for what
    every such file promises: distinct boxes at least ``min_width`` px wide,
    texts in the charset."""
    rows = [json.loads(line) for line in open(model_dir() / "training" / name, encoding="utf-8")]
    charset = set(manifest()["models"]["ocr"]["charset"])
    assert rows and len({(r["image"], tuple(r["box"])) for r in rows}) == len(rows)
    for r in rows:
        assert set(r["text"]) <= charset and 2 <= len(r["text"]) <= 10 and r["box"][2] >= min_width, r
    return rows


def _assert_unlike_val_texts(rows: list[dict]) -> None:
    """No row reads like a val plate: not the same text, nor one a misread
    character or two away (difflib ratio < 0.8), so val stays unseen."""
    val_texts = {r["text"] for r in _hand_read("detect_val_texts.jsonl")}
    for r in rows:
        near = max(difflib.SequenceMatcher(None, r["text"], v).ratio() for v in val_texts)
        assert near < 0.8, r


def _assert_boxes_in_split(rows: list[dict], split: str) -> None:
    """Every row's box is a labelled plate of its image in ``split`` of the
    shared detect/ set (skips where the set is not present)."""
    index = os.path.join(os.path.dirname(model_dir()), "..", "shared", "data", "detect", "boxes.jsonl")
    if not os.path.exists(index):
        pytest.skip(f"{index} not present: the boxes are checked against it where it is")
    boxes = {}
    with open(index, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            boxes.setdefault(r["image"], []).extend(r["plates"] if r["split"] == split else [])
    for r in rows:
        assert r["box"] in boxes[r["image"]], r


def test_detect_val_texts_name_val_plates_of_the_shared_set():
    """The hand-read texts that let real crops choose OCR models: val-split
    boxes of detect/ (never train), at least 60 px wide, texts in the charset."""
    rows = _hand_read("detect_val_texts.jsonl")
    assert len(rows) == 166
    _assert_boxes_in_split(rows, "val")


def test_detect_train_texts_name_train_plates_none_of_them_also_in_val():
    """The hand-read real crops the OCR may train on (``models.training.ocr
    --real``): train-split boxes of detect/, at least 60 px wide, no Romanian
    dashcam frame (its sequences are split across train and val frame by
    frame), and no plate whose text is also among the val texts (detect/ holds
    copies of some val photos in train), so val stays unseen."""
    rows = _hand_read("detect_train_texts.jsonl")
    assert not any(os.path.basename(r["image"]).startswith("rl-") for r in rows)
    _assert_unlike_val_texts(rows)
    _assert_boxes_in_split(rows, "train")


def test_detect_train_texts_more_name_train_plates_whose_sequences_hide_no_val_read():
    """The second batch of hand-read training crops: Romanian dashcam train
    frames of plates that no val text names (a plate's frames are split
    across train and val, so any plate read in val is left out) and
    non-Romanian train plates 40-60 px wide."""
    rows = _hand_read("detect_train_texts_more.jsonl", min_width=40)
    for r in rows:
        assert os.path.basename(r["image"]).startswith("rl-") or r["box"][2] < 60, r
    _assert_unlike_val_texts(rows)
    _assert_boxes_in_split(rows, "train")
