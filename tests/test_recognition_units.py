"""Unit tests of the numpy decoding, plate rules, motion gate and synth generator
(no models needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.motion import MotionGate
from edge_agent.recognition._ctc import beam_search, char_confidences, greedy, softmax
from edge_agent.recognition._detect import VERIFY_SHAPE, decode, letterbox, nms, shrink, tile_windows, verifier_crop
from edge_agent.recognition._rules import canonical, rerank, validate_rules

CH = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
BLANK = len(CH)


def _probs(path: str, sure: float = 0.97, T: int = 32) -> np.ndarray:
    """Frame probabilities emitting ``path`` ('-' = blank), padded with blanks."""
    p = np.full((T, BLANK + 1), (1 - sure) / BLANK)
    for t in range(T):
        c = path[t] if t < len(path) else "-"
        p[t, BLANK if c == "-" else CH.index(c)] = sure
    return p / p.sum(1, keepdims=True)


def test_beam_search_collapses_repeats_and_keeps_blank_separated_doubles():
    p = _probs("--77-AA-B-BC--1122-33")
    texts, probs = beam_search(p, CH, BLANK)
    assert texts[0] == "7ABBC123"
    assert greedy(p, CH, BLANK) == "7ABBC123"
    assert probs == sorted(probs, reverse=True)
    assert 0 < probs[0] <= 1


def test_beam_search_offers_the_runner_up_character_as_alternate():
    p = _probs("-7-A-B-C-1-2-3")
    p[13] = 0.0
    p[13, CH.index("3")] = 0.6
    p[13, CH.index("8")] = 0.4
    texts, probs = beam_search(p, CH, BLANK)
    assert texts[:2] == ["7ABC123", "7ABC128"]
    assert probs[0] > probs[1]


def test_char_confidences_follow_the_alignment():
    p = _probs("-7-A-B-C-1-2-3")
    p[13] = 0.0
    p[13, CH.index("3")] = 0.6
    p[13, CH.index("8")] = 0.4
    conf = char_confidences(p, "7ABC123", CH, BLANK)
    assert len(conf) == 7
    assert conf[-1] == pytest.approx(0.6, abs=1e-3)
    assert min(conf[:-1]) > 0.9
    assert char_confidences(p, "", CH, BLANK) == ()


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=CH, min_size=1, max_size=9))
def test_beam_top1_equals_clean_path(text):
    path = "-" + "-".join(text) + "-"
    texts, _ = beam_search(_probs(path), CH, BLANK)
    assert texts[0] == text
    assert len(char_confidences(_probs(path), text, CH, BLANK)) == len(text)


def test_softmax_rows_sum_to_one():
    s = softmax(np.random.default_rng(0).normal(size=(32, 37)) * 10)
    assert np.allclose(s.sum(1), 1)


def test_canonical_maps_confusables():
    assert canonical("O0DQ IL1 B8 S5 Z2") == "0000 111 88 55 22"
    assert canonical("7abc") == "7A8C"


def test_rules_rerank():
    # generic: an impossible length is demoted below a plausible one
    out = rerank([("ABCDEFGHIJ", 0.5), ("ABC123", 0.3)], "generic")
    assert out[0][0] == "ABC123"
    # california: 'S' where a digit belongs becomes '5' and wins
    out = rerank([("SAOJ230", 0.5), ("XXXX", 0.1)], "ca")
    assert out[0][0] == "5AOJ230"
    assert "SAOJ230" in [t for t, _ in out]  # vanity stays possible
    assert rerank([("A", 0.4)], "none") == [("A", 0.4)]
    with pytest.raises(ValueError, match="plate_rules"):
        validate_rules("zz")


def test_letterbox_and_decode_round_trip():
    img = np.zeros((720, 1280, 3), np.uint8)
    x, s = letterbox(img, 384)
    assert x.shape == (1, 384, 384, 3) and x.dtype == np.float32
    assert s == pytest.approx(0.3)
    out = np.full((96, 96, 5), -10.0, np.float32)
    out[20, 30] = [5.0, 0.0, 0.0, np.log(40 / 4), np.log(10 / 4)]
    dets = decode(out, 4, 0.5)
    assert len(dets) == 1
    bx, by, bw, bh, score = dets[0]
    assert (bx + bw / 2, by + bh / 2) == pytest.approx((122, 82))
    assert (bw, bh) == pytest.approx((40, 10), rel=1e-4)
    assert score > 0.99
    assert len(nms([(0, 0, 10, 10, 0.9), (1, 1, 10, 10, 0.8), (50, 50, 5, 5, 0.7)])) == 2


def test_letterbox_for_a_free_shape_detector_pads_only_to_a_multiple_of_32():
    img = np.full((720, 1280, 3), (10, 20, 30), np.uint8)
    x, s = letterbox(img, 384, 32)
    assert x.shape == (1, 224, 384, 3)  # 384x216 of picture, 8 rows of padding
    assert s == pytest.approx(0.3)
    assert x[0, 215, 0] == pytest.approx(np.array([30, 20, 10]) / 255)  # RGB
    assert x[0, 216, 0] == pytest.approx(np.full(3, 114 / 255))
    x, _ = letterbox(np.zeros((480, 640, 3), np.uint8), 512, 32)
    assert x.shape == (1, 384, 512, 3)


def test_shrink_matches_area_averaging():
    rng = np.random.default_rng(3)
    img = cv2.resize(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8), (1280, 720), interpolation=cv2.INTER_CUBIC)
    fast = shrink(img, 384, 216).astype(float)
    area = cv2.resize(img, (384, 216), interpolation=cv2.INTER_AREA).astype(float)
    assert fast.shape == area.shape
    assert np.abs(fast - area).mean() < 1.0
    assert shrink(img[:100, :100], 200, 200).shape == (200, 200, 3)  # enlarging still works


def test_verifier_crop_puts_the_box_in_the_middle_with_context():
    img = np.zeros((400, 600, 3), np.uint8)
    img[180:220, 250:370] = 255  # a 120x40 white box
    crop = verifier_crop(img, (250, 180, 120, 40))
    h, w = VERIFY_SHAPE
    assert crop.shape == (h, w, 3) and crop.dtype == np.uint8
    # context 1.5x the width and 2x the height: the box fills the middle 2/3 of the width, 1/2 of the height
    inside = crop[h // 4 + 2 : 3 * h // 4 - 2, w // 6 + 2 : 5 * w // 6 - 2]
    assert inside.min() >= 250
    assert crop[: h // 4 - 2].max() <= 5 and crop[:, : w // 6 - 2].max() <= 5
    # a box at the frame's edge repeats the edge pixels rather than padding with black
    edge = verifier_crop(np.full((100, 100, 3), 200, np.uint8), (0, 0, 40, 20))
    assert edge.min() == 200


def test_tile_windows_cover_the_frame_with_overlap():
    assert tile_windows(1280, 720, 1) == []
    wins = tile_windows(1280, 720, 2)
    assert len(wins) == 4
    cover = np.zeros((720, 1280), bool)
    for x0, y0, tw, th in wins:
        assert x0 >= 0 and y0 >= 0 and x0 + tw <= 1280 and y0 + th <= 720
        assert tw == int(1280 / 2 * 1.25) and th == int(720 / 2 * 1.25)
        cover[y0 : y0 + th, x0 : x0 + tw] = True
    assert cover.all()


def test_verifier_training_auc_matches_pairwise_count():
    from models.training.verifier import auc

    rng = np.random.default_rng(4)
    score = rng.random(200)
    label = rng.random(200) < 0.3
    pos, neg = score[label], score[~label]
    pairs = (pos[:, None] > neg[None, :]).mean()
    assert auc(score, label) == pytest.approx(pairs)
    assert auc(label.astype(float) + 0.0, label) == pytest.approx(1.0)


def test_verifier_synthetic_crops_label_plates_and_badges():
    from edge_agent.recognition._detect import verifier_crop as crop
    from models.training.verifier import synthetic_crops

    rng = np.random.default_rng(2)
    img = np.full((480, 640, 3), 90, np.uint8)
    xs, ys = [], []
    synthetic_crops(img, [[10.0, 10.0, 100.0, 30.0]], rng, crop, 2, 1, xs, ys)
    assert (img == 90).all()  # pasted into a copy
    assert ys.count(1) >= 2 and ys.count(0) == 2  # two jittered crops per pasted plate / badge
    assert all(x.shape == (*VERIFY_SHAPE, 3) for x in xs)
    assert all(x.std() > 5 for x in xs)  # each crop shows what was pasted, not the flat background


def test_motion_gate():
    g = MotionGate(threshold=0.02)
    a = np.full((720, 1280, 3), 100, np.uint8)
    assert g.should_process(a)  # first frame always
    assert not g.should_process(a.copy())
    noisy = a.copy()
    noisy[::97, ::89] = 255  # sensor speckle, below threshold
    assert not g.should_process(noisy)
    moved = a.copy()
    moved[200:500, 300:800] = 30  # a car enters
    assert g.should_process(moved)
    assert not g.should_process(moved)
    assert g.changed_fraction(a) > 0.1
    forced = MotionGate(max_skip=2)
    results = [forced.should_process(a) for _ in range(5)]
    assert results == [True, False, False, True, False]
    for bad in ({"threshold": 2}, {"pixel_delta": 0}, {"width": 5}, {"max_skip": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            MotionGate(**bad)
    with pytest.raises(ValueError):
        g.should_process(np.zeros((0, 0), np.uint8))


def test_synth_is_deterministic_and_labels_are_clean():
    from models.synth.plates import CHARSET, render_plate

    a, la = render_plate(np.random.default_rng(3))
    b, lb = render_plate(np.random.default_rng(3))
    assert la == lb and np.array_equal(a, b)
    img, label = render_plate(np.random.default_rng(4), "abc-123", hershey_only=True)
    assert label == "ABC123" and img.shape == (160, 320, 3)
    assert set(label) <= set(CHARSET)


def test_synth_side_graphics_are_drawn_and_never_labelled():
    from models.synth.plates import SIDE_KINDS, SIDE_WEIGHTS, _art, render_plate

    assert len(SIDE_KINDS) == len(SIDE_WEIGHTS) and sum(SIDE_WEIGHTS) < 1
    for kind in SIDE_KINDS:
        for seed in range(4):
            img, label = render_plate(np.random.default_rng(seed), "abc-1234", hershey_only=True, side=kind)
            again, _ = render_plate(np.random.default_rng(seed), "abc-1234", hershey_only=True, side=kind)
            assert label == "ABC1234" and np.array_equal(img, again)
    # artwork is drawn, and around its box (shapes may spill over a little), not over the whole plate
    for seed in range(4):
        canvas = np.full((160, 320, 3), 230, np.uint8)
        _art(np.random.default_rng(seed), canvas, (20, 30, 60, 100))
        changed = np.argwhere((canvas != 230).any(-1))
        assert len(changed) > 200
        assert changed[:, 1].max() < 20 + 60 + 60 and changed[:, 0].min() >= 0


def _tagged(where: list, name: str, fn):
    """``fn`` wrapped to set ``where[0]`` to ``name`` while it runs (and back
    after), so a recording ``_paste`` knows which part of a plate it draws."""

    def wrapper(*a, **k):
        outer, where[0] = where[0], name
        try:
            return fn(*a, **k)
        finally:
            where[0] = outer

    return wrapper


def test_synth_stacked_characters_stay_smaller_than_the_serial(monkeypatch):
    """Unlabelled stacked characters as tall as the serial's taught the OCR to
    drop a big first character; each must stay about half the serial's height."""
    from models.synth import plates

    heights = {"main": [], "side": []}
    where = ["main"]
    paste, draw_side = plates._paste, plates._draw_side

    def record(img, mask, box, colour):
        heights[where[0]].append(box[3])
        return paste(img, mask, box, colour)

    monkeypatch.setattr(plates, "_paste", record)
    monkeypatch.setattr(plates, "_draw_side", _tagged(where, "side", draw_side))
    for seed in range(60):
        heights["main"].clear(), heights["side"].clear()
        plates.render_plate(np.random.default_rng(seed), "abc-1234", hershey_only=True, side="stacked")
        serial = max(heights["main"])  # the main glyphs (emboss shadows are pasted at the same height)
        assert len(heights["side"]) >= 2 and max(heights["side"]) <= 0.6 * serial


def test_synth_band_sits_at_the_left_edge_and_the_serial_after_it(monkeypatch):
    """A "band" side graphic (European band, specialty cause band) fills the
    plate's left edge; its letters are not labelled and every serial glyph
    stands right of it."""
    from models.synth import plates

    bands, glyphs, where = [], [], ["plate"]
    paste, draw_band, draw_main = plates._paste, plates._draw_band, plates._draw_main

    def band(rng, img, width, font):
        bands.append(width)
        return draw_band(rng, img, width, font)

    monkeypatch.setattr(plates, "_draw_band", _tagged(where, "band", band))
    monkeypatch.setattr(plates, "_draw_main", _tagged(where, "main", draw_main))
    monkeypatch.setattr(plates, "_paste", lambda img, mask, box, colour: (glyphs.append((where[0], box)), paste(img, mask, box, colour)))
    for seed in range(30):
        bands.clear(), glyphs.clear()
        img, label = plates.render_plate(np.random.default_rng(seed), "abc-1234", hershey_only=True, side="band")
        assert label == "ABC1234" and len(bands) == 1
        width = bands[0]
        assert 0.06 * 320 <= width <= 0.14 * 320
        tallest = max(b[3] for w, b in glyphs if w == "main")
        serial = [b for w, b in glyphs if w == "main" and b[3] == tallest]  # the serial's glyphs (and emboss shadows)
        assert len(serial) >= 7 and min(b[0] for b in serial) >= width
        assert all(min(b[2], b[3]) < 0.75 * tallest for w, b in glyphs if w == "band")  # its letters are smaller
    monkeypatch.undo()
    for seed in range(10):  # the band covers the left edge, top to bottom, and nothing right of it
        canvas = np.full((160, 320, 3), 3, np.uint8)
        plates._draw_band(np.random.default_rng(seed), canvas, 30.0, cv2.FONT_HERSHEY_SIMPLEX)
        assert (canvas[:, :31] != 3).any(-1).mean() > 0.95 and not (canvas[:, 32:] != 3).any()


def test_synth_legible_crops_are_large_and_uncovered():
    from models.synth.augment import ocr_crop

    mixed = [ocr_crop(np.random.default_rng(s), hershey_only=True)[0] for s in range(40)]
    legible = [ocr_crop(np.random.default_rng(s), hershey_only=True, legible=True) for s in range(40)]
    again = ocr_crop(np.random.default_rng(5), hershey_only=True, legible=True)
    assert np.array_equal(again[0], legible[5][0]) and again[1] == legible[5][1]
    assert min(c.shape[1] for c in mixed) < 120  # the training mix has small crops
    assert min(c.shape[1] for c, _label in legible) >= 140 * 0.92  # a crop's margins trim at most 4 % a side


def test_synth_night_traffic_darkens_the_scene_but_keeps_plates_lit():
    from models.synth.augment import night_traffic

    scene = np.full((240, 320, 3), 150, np.uint8)
    boxes = [[130.0, 150.0, 60.0, 20.0]]
    plate = (slice(152, 168), slice(132, 188))
    outside = np.ones((240, 320), bool)
    outside[120:200, 60:260] = False  # the plate, its lamps and most of their bloom
    dark, lit = [], []
    for seed in range(12):
        out = night_traffic(np.random.default_rng(seed), scene, boxes)
        again = night_traffic(np.random.default_rng(seed), scene, boxes)
        assert out.dtype == np.uint8 and out.shape == scene.shape and np.array_equal(out, again)
        grey = out.max(-1).astype(float)
        dark.append(np.median(grey[outside]))
        lit.append(np.median(grey[plate]))
    # glare haze may brighten a whole frame now and then, but the night is dark and the plates stand out
    assert np.median(dark) < 0.45 * 150
    assert sum(p > d + 20 for p, d in zip(lit, dark)) >= 10
    assert night_traffic(np.random.default_rng(0), scene, []).shape == scene.shape


def test_synth_serials_follow_us_letter_use():
    """Letter groups skip I, O and Q on about two plates in three (as many
    states do); the others and vanity positions use every letter."""
    from models.synth.plates import CHARSET, DIGITS, fill_pattern

    rng = np.random.default_rng(0)
    serial_letters = "".join(fill_pattern(rng, "LLLLLL") for _ in range(3000))
    share = sum(serial_letters.count(c) for c in "IOQ") / len(serial_letters)
    assert 0.03 < share < 0.05  # 35 % of plates x 3/26 = 0.040; uniform letters would give 0.115
    vanity = "".join(fill_pattern(rng, "AAAAAA") for _ in range(3000))
    assert set(vanity) == set(CHARSET)
    digits = "".join(fill_pattern(rng, "NNN-NNN") for _ in range(100))
    assert set(digits) <= set(DIGITS + "-")


def test_synth_serif_i_keeps_the_stem_and_adds_bars():
    from models.synth.plates import _serif_i

    stem = np.full((60, 8), 255, np.uint8)
    i = _serif_i(stem)
    assert i.shape == (60, 25)
    assert (i[0] == 255).all() and (i[-1] == 255).all()  # bars at top and bottom
    middle = i[30]
    assert middle.sum() == stem[30].sum() and middle[8:16].min() == 255  # the stem, centred


def test_synth_plain_one_is_a_bare_stem_as_thick_as_the_stroke():
    from models.synth.plates import _plain_one

    one = np.zeros((60, 30), np.uint8)
    one[:, 12:20] = 255  # the stem, 8 px thick
    one[:12, 4:12] = 255  # the flag
    one[-6:, 4:26] = 255  # the foot
    bar = _plain_one(one)
    assert bar.shape[0] == 60 and 8 <= bar.shape[1] <= 12
    assert (bar[:, 1:-1] == 255).all() and (bar[:, 0] == 0).all() and (bar[:, -1] == 0).all()


def test_synth_badge_is_pasted_away_from_the_plates():
    from models.synth.scenes import paste_badge

    rng = np.random.default_rng(3)
    plate = [100.0, 100.0, 120.0, 40.0]
    for _ in range(20):
        img = np.full((300, 400, 3), 90, np.uint8)
        box = paste_badge(rng, img, float(rng.uniform(20, 90)), [plate])
        assert box is not None
        changed = (img != 90).any(-1)
        assert changed.any()  # something was drawn...
        assert not changed[100:141, 100:221].any()  # ...never on the plate...
        x, y, w, h = map(int, box)
        changed[y : y + h, x : x + w] = False
        assert not changed.any()  # ...and only inside the box it returns


def test_synth_open_four_has_an_open_top():
    from models.synth.plates import _open_four

    four = _open_four(np.zeros((60, 30), np.uint8))
    assert four.shape == (60, 30)
    top, bar_row = four[:8], four[40]
    assert top[:, 19:24].min() == 255 and top[:, 4:8].min() == 255  # right stem and left stroke
    assert top[:, 10:18].max() == 0  # nothing joins them at the top: the open 4
    assert (bar_row == 255).all()  # the crossbar
    assert four[50, :18].max() == 0 and four[50, 19:24].min() == 255  # below the bar only the stem


def test_missing_fonts_error_clearly(monkeypatch):
    from models.synth import fonts

    monkeypatch.setattr(fonts, "FONT_ROOT", "/nonexistent")
    fonts.truetype_fonts.cache_clear()
    try:
        assert fonts.truetype_fonts() == ()
        with pytest.raises(RuntimeError, match="fonts-"):
            fonts.truetype_fonts(required=True)
    finally:
        monkeypatch.undo()
        fonts.truetype_fonts.cache_clear()


def test_opencv_4_draws_plates_with_hershey_fonts_only(monkeypatch):
    """OpenCV 4 (the edge-legacy extra) has no cv2.FontFace: the generator falls
    back to Hershey fonts instead of failing, and asking for TrueType says why."""
    import cv2

    from models.synth import fonts
    from models.synth.plates import render_plate

    monkeypatch.delattr(cv2, "FontFace", raising=False)
    fonts.truetype_fonts.cache_clear()
    try:
        assert fonts.truetype_fonts() == ()
        with pytest.raises(RuntimeError, match="OpenCV >= 5"):
            fonts.truetype_fonts(required=True)
        img, label = render_plate(np.random.default_rng(5), "4ABC567")
        assert label == "4ABC567" and img.shape == (160, 320, 3)
    finally:
        monkeypatch.undo()
        fonts.truetype_fonts.cache_clear()


def test_widen_keeps_the_function_and_only_grows_hidden_channels():
    """Net2WiderNet on a two-layer 1x1-convolution net in numpy: the widened
    copy computes the same outputs (the trainers' ``--widen-from``)."""
    from models.training.widen import widen

    class Conv2D:  # the two methods widen() uses of a Keras layer
        def __init__(self, *shapes, rng=None):
            self.w = [rng.normal(size=s).astype(np.float32) if rng is not None else np.zeros(s, np.float32) for s in shapes]
            self.weights = self.w

        def get_weights(self):
            return list(self.w)

        def set_weights(self, new):
            assert [a.shape for a in new] == [a.shape for a in self.w]
            self.w[:] = new

    class Model:
        def __init__(self, mid, rng=None):
            self.layers = [Conv2D((1, 1, 4, mid), (mid,), rng=rng), Conv2D((1, 1, mid, 2), (2,), rng=rng)]

        def __call__(self, x):
            (k1, b1), (k2, b2) = (layer.w for layer in self.layers)
            h = np.maximum(x @ k1[0, 0] + b1, 0)
            return h @ k2[0, 0] + b2

    rng = np.random.default_rng(0)
    narrow, wide = Model(3, rng), Model(5)
    widen(narrow, wide, noise=0.0)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    assert np.allclose(narrow(x), wide(x), atol=1e-5)
    assert wide.layers[1].w[0].shape == (1, 1, 5, 2)  # the head keeps its outputs
    widen(narrow, wide, noise=0.05, seed=1)  # symmetry-breaking noise: close, not equal
    assert not np.allclose(narrow(x), wide(x), atol=1e-6)
    assert np.abs(narrow(x) - wide(x)).max() < 0.5 * np.abs(narrow(x)).max()
    other = Model(5)
    other.layers = other.layers[:1]
    with pytest.raises(ValueError):
        widen(narrow, other)  # a layer missing: not the same graph


def test_error_kind_names_how_a_read_misses():
    from edge_agent.recognition._evaluate import error_counts, error_kind

    assert error_kind("7ABC123", "7ABC123") is None
    assert error_kind("CUST0M", "CUSTOM") == "confusable"  # central's folded search still finds it
    assert error_kind("YA411", "4YA411") == "first_dropped"
    assert error_kind("4YA41", "4YA411") == "last_dropped"
    assert error_kind("4YB411", "4YA411") == "other" and error_kind("", "A") == "other"
    pairs = [("YA411", "4YA411"), ("MJSAYN", "IMJSAYN"), ("PR0", "PRO"), ("X", "Y"), ("OK1", "OK1")]
    assert error_counts(pairs) == {"confusable": 1, "first_dropped": 2, "last_dropped": 0, "other": 1}


def test_real_crops_cut_the_box_as_the_agent_does(tmp_path):
    """``models.training.data.real_crops`` cuts a hand-read box with the
    agent's padding (10 % of the width each side, 15 % of the height above and
    below) and preprocesses it as the runtime does; a missing image is an error."""
    import json

    from models.training.data import OCR_H, OCR_W, real_crops

    img = np.zeros((100, 200, 3), np.uint8)
    img[37:63, 40:160] = 255  # box [50, 40, 100, 20] padded by 10 and 3 pixels
    cv2.imwrite(str(tmp_path / "a.png"), img)
    texts = tmp_path / "t.jsonl"
    texts.write_text(json.dumps({"image": "a.png", "box": [50, 40, 100, 20], "text": "ABC123"}) + "\n")
    x, labels = real_crops(str(texts), str(tmp_path))
    assert x.shape == (1, OCR_H, OCR_W) and x.dtype == np.uint8 and labels == ["ABC123"]
    assert x.min() == 255  # nothing outside the padded box
    img[37:63, 40:160] = 0
    img[37:63, 40:45] = 255  # the padding's left edge and top row are in the crop
    img[37, 40:160] = 255
    cv2.imwrite(str(tmp_path / "a.png"), img)
    x = real_crops(str(texts), str(tmp_path))[0][0]
    assert x[:, 0].mean() > 200 and x[0, :].mean() > 200 and x[OCR_H // 2, OCR_W // 2] == 0
    texts.write_text(json.dumps({"image": "missing.png", "box": [1, 1, 5, 5], "text": "A1"}) + "\n")
    with pytest.raises(ValueError, match="cannot read missing.png"):
        real_crops(str(texts), str(tmp_path))


def test_paired_counts_items_only_one_model_gets_and_gives_the_sign_test():
    from edge_agent.recognition._evaluate import paired

    base = [True, True, False, False, False, True]
    cand = [True, False, True, True, False, True]
    assert paired(base, cand) == {"better": 2, "worse": 1, "p": 1.0}  # 2 of 3 discordant: no evidence
    assert paired([False] * 9, [True] * 9) == {"better": 9, "worse": 0, "p": round(2 / 2**9, 4)}
    assert paired([True] * 12 + [False] * 3, [False] * 12 + [True] * 3)["p"] == round(2 * (1 + 15 + 105 + 455) / 2**15, 4)
    assert paired([True, False], [True, False]) == {"better": 0, "worse": 0, "p": 1.0}
    with pytest.raises(ValueError):
        paired([True], [True, False])


def test_confusion_table_counts_a_known_set_of_misreads_exactly():
    """Each read is aligned to its truth by edit distance: substitutions are
    true -> read pairs, a dropped or extra character is counted apart and does
    not shift the characters after it into false substitutions."""
    from edge_agent.recognition._confusion import align, confusions

    assert align("7ABC123", "7ABC123") == list(zip("7ABC123", "7ABC123"))
    assert align("4YA411", "YA411") == [("4", None)] + list(zip("YA411", "YA411"))  # dropped first, not 5 substitutions
    assert align("AB", "AXB") == [("A", "A"), (None, "X"), ("B", "B")]
    pairs = [
        ("CUST0M", "CUSTOM"),    # O -> 0
        ("8RX0D", "BRXOD"),      # B -> 8, O -> 0
        ("YA411", "4YA411"),     # 4 dropped
        ("7ABCC123", "7ABC123"),  # an extra C
        ("MW5", "WWS"),          # W -> M, S -> 5
        ("PR0", "PRO"),          # O -> 0
        ("OK1", "OK1"),          # right: counted as a pair, nothing else
        ("", "AB"),              # nothing read: both dropped
    ]
    c = confusions(pairs)
    assert c.pairs == 8 and c.misread == 7 and c.chars == sum(len(t) for _r, t in pairs)
    assert c.top() == [("O", "0", 3), ("B", "8", 1), ("S", "5", 1), ("W", "M", 1)]
    assert dict(c.deletions) == {"4": 1, "A": 1, "B": 1} and dict(c.insertions) == {"C": 1}
    j = c.as_json()
    assert j["substitutions"][0] == {"true": "O", "read": "0", "count": 3}
    assert j["deletions"] == [{"true": "4", "count": 1}, {"true": "A", "count": 1}, {"true": "B", "count": 1}]
    assert j["insertions"] == [{"read": "C", "count": 1}] and j["misread"] == 7


@given(st.text("AB01O", max_size=8), st.text("AB01O", max_size=8))
@settings(max_examples=200, deadline=None)
def test_alignment_replays_both_texts_and_costs_their_edit_distance(truth, read):
    from edge_agent.recognition._confusion import align

    a = align(truth, read)
    assert "".join(t for t, _r in a if t) == truth and "".join(r for _t, r in a if r) == read
    cost = sum(t != r for t, r in a)
    # the edit distance, computed independently
    prev = list(range(len(read) + 1))
    for i, tc in enumerate(truth, 1):
        cur = [i]
        for j, rc in enumerate(read, 1):
            cur.append(min(prev[j - 1] + (tc != rc), prev[j] + 1, cur[j - 1] + 1))
        prev = cur
    assert cost == prev[-1]


def test_ruled_figures_compare_each_with_its_target():
    from edge_agent.recognition._evaluate import equate_table, reference_name, ruled

    assert reference_name("/data/us-crops/") == "us-crops" and reference_name("/x/detect", "val") == "detect:val"
    assert reference_name("/x/detect") is None and reference_name("/x/mine") is None
    assert "O0".translate(equate_table(["O0"])) == "00" and "IO".translate(equate_table(["o0", "I1"])) == "10"
    for bad in (["O"], ["OO"], ["O-"]):
        with pytest.raises(ValueError):
            equate_table(bad)
    crops = {"top1_o0": 0.97, "top5_o0": 0.985, "equated": {"groups": ["I1"], "top1": 0.5, "top5": 0.5}}
    r = ruled(crops, "us-crops", "crops")  # always O and 0 as one character, as ruled, whatever --equate was
    assert r["figures"]["top1_o0"] == {"value": 0.97, "target": 0.97, "met": True}
    assert r["figures"]["top5_o0"]["met"] is False and r["met"] is False
    scenes = {"recall": 0.991, "precision": 0.88, "recall_from_60px": {"recall": 0.99}, "checked": {"precision": 0.95},
              "end_to_end_exact": 0.85}
    assert ruled(scenes, "scenes-eu-br", "scenes")["met"] is True
    assert ruled({**scenes, "checked": {}}, "scenes-eu-br", "scenes")["figures"]["precision_checked"]["met"] is False
    d = ruled(scenes, "detect:val", "scenes")
    assert set(d["figures"]) == {"recall_from_60px", "precision"} and d["met"] is False
    assert ruled(crops, "scenes-eu-br", "crops") is None and ruled(scenes, None, "scenes") is None
