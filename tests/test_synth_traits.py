"""Glyph traits of US serial fonts in the plate generator (models/synth/plates.py):
off by default (every seeded plate, held-out and test image stays what it was),
drawn per plate without advancing the plate's generator, and doing what they say."""

from __future__ import annotations

import numpy as np

from models.synth import fonts
from models.synth.augment import ocr_crop
from models.synth.plates import GlyphTraits, _short_q, render_plate


def test_traits_are_off_by_default_and_do_not_move_the_plate_s_other_draws():
    for seed in range(30):
        a, la = render_plate(np.random.default_rng(seed))
        b, lb = render_plate(np.random.default_rng(seed), traits=False)
        assert la == lb and np.array_equal(a, b)
        rng = np.random.default_rng(seed)
        before = rng.bit_generator.state
        GlyphTraits.draw(rng)
        assert rng.bit_generator.state == before
    same = sum(np.array_equal(render_plate(np.random.default_rng(s))[0], render_plate(np.random.default_rng(s),
                                                                                       traits=True)[0])
               for s in range(40))
    assert 5 < same < 40          # plates with no trait to show are drawn exactly as without traits


def test_traits_make_idaho_style_prefixes_mostly_with_1_or_2():
    labels = [render_plate(np.random.default_rng(s), traits=True)[1] for s in range(400)]
    plain = [render_plate(np.random.default_rng(s))[1] for s in range(400)]
    prefixed = [t for t, p in zip(labels, plain) if t != p]
    assert 20 <= len(prefixed) <= 70                            # about a tenth
    assert all(t[0].isdigit() and t[1].isalpha() for t in prefixed)
    assert sum(t[0] in "12" for t in prefixed) >= 0.6 * len(prefixed)


def test_a_short_tailed_q_is_the_o_with_a_stub_at_the_lower_right():
    font = fonts.HERSHEY[0]
    o = fonts.glyph_mask("O", font, 3)
    q = _short_q(o)
    assert q.shape == o.shape and np.all(q >= o)
    added = (q > 127) & ~(o > 127)
    ys, xs = np.nonzero(added)
    assert added.sum() > 0 and ys.min() >= o.shape[0] * 0.7 and xs.min() >= o.shape[1] * 0.5


def test_ocr_crops_pass_traits_through():
    a, la = ocr_crop(np.random.default_rng(5), legible=True)
    b, lb = ocr_crop(np.random.default_rng(5), legible=True, traits=False)
    assert la == lb and np.array_equal(a, b)


def test_training_chunks_draw_traits_only_when_asked(tmp_path):
    """``models.training.data ocr --traits`` (the data of the OCR candidates
    trained with traits): the same seed without the flag writes what it always
    wrote; with it, the crops carry traits (a plate drawn with a trait draws the
    next plates differently, so the chunk parts from the plain one early)."""
    from models.training.data import main

    for name, extra in (("plain", []), ("traits", ["--traits"])):
        main(["ocr", "--out", str(tmp_path / name), "--chunks", "1", "--per-chunk", "40", "--seed", "3", *extra])
    plain, traits = (np.load(tmp_path / name / "ocr-3-0000.npz") for name in ("plain", "traits"))
    rng = np.random.default_rng(3 * 100003)
    from models.training.data import ocr_input
    for i in range(5):                      # without the flag: the generator's plain crops, as before
        img, label = ocr_crop(rng, hershey_only=rng.random() < 0.15, legible=False)
        assert label == plain["y"][i] and np.array_equal(ocr_input(img), plain["x"][i])
    assert sum(np.array_equal(a, b) for a, b in zip(plain["x"], traits["x"])) < 10
    assert plain["x"].shape == traits["x"].shape == (40, 64, 128)
