"""Camera effects for synthetic plates: perspective, blur, noise, glare,
night/IR look, JPEG artefacts, occlusion; and crops as a detector would cut
them. All randomness comes from the caller's ``numpy.random.Generator``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .plates import render_plate


def warp_plate(rng, plate: np.ndarray, out_w: float, max_tilt: float = 0.08):
    """Perspective-warp ``plate`` so it is about ``out_w`` px wide.

    Returns ``(warped_bgr, alpha_mask, quad)``; the quad holds the four plate
    corners in the warped image's coordinates.
    """
    h, w = plate.shape[:2]
    out_h = out_w * h / w * rng.uniform(0.85, 1.1)
    j = max_tilt
    dst = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], np.float32)
    dst += (rng.uniform(-j, j, (4, 2)) * [out_w, out_h]).astype(np.float32)
    ang = np.deg2rad(rng.normal(0, 3))
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32)
    dst = dst @ rot.T
    dst -= dst.min(0)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    M = cv2.getPerspectiveTransform(src, dst)
    size = (int(np.ceil(dst[:, 0].max())) + 1, int(np.ceil(dst[:, 1].max())) + 1)
    interp = cv2.INTER_AREA if out_w < w else cv2.INTER_LINEAR
    warped = cv2.warpPerspective(plate, M, size, flags=interp)
    alpha = cv2.warpPerspective(np.full((h, w), 255, np.uint8), M, size, flags=cv2.INTER_LINEAR)
    return warped, alpha, dst


def photometric(rng, img: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Lighting and sensor effects on a BGR uint8 image."""
    out = img.astype(np.float32)
    H, W = out.shape[:2]
    if rng.random() < 0.3 * strength:  # glare blob
        g = np.zeros((H, W), np.float32)
        cv2.ellipse(g, (int(rng.integers(W)), int(rng.integers(H))),
                    (int(W * rng.uniform(0.1, 0.5)), int(H * rng.uniform(0.1, 0.5))), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        k = int(max(W, H) * 0.2) | 1
        g = cv2.GaussianBlur(g, (k, k), 0)
        out += g[..., None] * rng.uniform(60, 200)
    if rng.random() < 0.25 * strength:  # shadow over a part
        x = int(rng.integers(W))
        sl = slice(0, x) if rng.random() < 0.5 else slice(x, W)
        out[:, sl] *= rng.uniform(0.4, 0.8)
    out = out * rng.uniform(0.6, 1.3) + rng.uniform(-40, 40)  # contrast / brightness
    out += rng.uniform(-15, 15, 3)  # white balance
    if rng.random() < 0.15 * strength:  # night / IR look
        grey = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
        if rng.random() < 0.5:
            grey = 255 - grey if rng.random() < 0.2 else grey
        grey = (grey - grey.mean()) * rng.uniform(1.0, 2.0) + rng.uniform(60, 160)
        out = np.repeat(grey[..., None], 3, 2)
    out = np.clip(out, 0, 255)
    if rng.random() < 0.5:
        gamma = rng.uniform(0.6, 1.6)
        out = 255.0 * (out / 255.0) ** gamma
    if rng.random() < 0.5 * strength:
        out += rng.normal(0, rng.uniform(2, 14), out.shape)
    out = np.clip(out, 0, 255).astype(np.uint8)
    r = rng.random()
    if r < 0.3 * strength:
        k = int(rng.integers(1, 3)) * 2 + 1
        out = cv2.GaussianBlur(out, (k, k), rng.uniform(0.5, 1.8))
    elif r < 0.45 * strength:  # motion blur
        k = int(rng.integers(3, 8))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1.0 / k
        M = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kern = cv2.warpAffine(kern, M, (k, k))
        out = cv2.filter2D(out, -1, kern / max(kern.sum(), 1e-6))
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 90))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def night_traffic(rng, img: np.ndarray, boxes: list) -> np.ndarray:
    """A scene as a dashcam sees it at night: dark and tinted (magenta, red or
    sodium orange), with blooming lights and a haze of veiling glare; the
    plates at ``boxes`` ([x, y, w, h]) stay lit, as retroreflective plates in
    headlights do. Most plates get a pair of taillights beside and above them.
    The detector scored such plates 0.25-0.5 in ``detect/`` (models 0.4.0)."""
    H, W = img.shape[:2]
    src = img.astype(np.float32) / 255.0
    lit = np.zeros((H, W), np.float32)
    for x, y, w, h in boxes:
        cv2.rectangle(lit, (int(x - 0.1 * w), int(y - 0.2 * h)), (int(x + 1.1 * w), int(y + 1.2 * h)), 1.0, -1)
    if boxes:
        lit = cv2.GaussianBlur(lit, (0, 0), max(1.0, 0.05 * max(b[2] for b in boxes)))[..., None]
    else:
        lit = lit[..., None]
    dark = src ** rng.uniform(1.4, 2.6) * rng.uniform(0.25, 0.6)
    out = dark * (1 - lit) + src * rng.uniform(0.45, 0.95) * lit
    tints = ([1.0, 0.65, 1.1], [0.55, 0.6, 1.1], [0.45, 0.75, 1.1], [1.0, 1.0, 1.0])  # BGR: magenta, red, sodium, none
    out *= np.array(tints[int(rng.integers(len(tints)))], np.float32) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    colours = ([0.35, 0.25, 1.0], [0.85, 0.3, 1.0], [0.2, 0.55, 1.0], [1.0, 1.0, 1.0])  # red, magenta, amber, white
    lights = np.zeros((H, W, 3), np.float32)

    def lamp(cx, cy, rx, ry, colour):
        if any(b[0] - rx < cx < b[0] + b[2] + rx and b[1] - ry < cy < b[1] + b[3] + ry for b in boxes):
            return  # never paint over a plate; only the bloom may reach it
        cv2.ellipse(lights, (int(cx), int(cy)), (max(1, int(rx)), max(1, int(ry))), 0, 0, 360, colour, -1, cv2.LINE_AA)

    for x, y, w, h in boxes:
        if rng.random() < 0.7:
            c = colours[int(rng.integers(2))]
            dx, dy = w * rng.uniform(0.4, 1.6), h * rng.uniform(-2.5, 0.5)
            rx = w * rng.uniform(0.12, 0.45)
            ry = rx * rng.uniform(0.3, 0.8)
            for cx in (x - dx, x + w + dx):
                lamp(cx, y + dy, rx, ry, c)
    for _ in range(int(rng.integers(0, 6))):
        r = W * rng.uniform(0.004, 0.04)
        lamp(rng.uniform(0, W), rng.uniform(0, H), r, r * rng.uniform(0.5, 1.0), colours[int(rng.integers(4))])
    if lights.any():
        core = np.minimum(lights * 2.5, 1.0) + lights.max(2, keepdims=True) * 0.6  # white-hot centre, coloured rim
        bloom = cv2.GaussianBlur(lights, (0, 0), max(2.0, 0.02 * W * rng.uniform(0.5, 2.0))) * rng.uniform(1.0, 3.0)
        veil = cv2.GaussianBlur(lights, (0, 0), 0.15 * max(H, W)) * rng.uniform(2.0, 8.0)
        out = out + core + bloom + veil
    return (np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def _surround(rng, w: int, h: int) -> np.ndarray:
    """Car-body-like surroundings for a plate crop."""
    c = rng.uniform(0, 255, 3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = c
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = img * (1 - t) + np.clip(c + rng.uniform(-80, 80, 3), 0, 255) * t
    noise = rng.normal(0, rng.uniform(1, 20), (max(1, h // 4), max(1, w // 4), 1)).astype(np.float32)
    img += cv2.resize(noise, (w, h), interpolation=cv2.INTER_NEAREST)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def occlude(rng, img: np.ndarray) -> np.ndarray:
    """Small partial occlusion near the plate border (bar, tow ball, dirt)."""
    H, W = img.shape[:2]
    out = img.copy()
    col = rng.uniform(0, 255, 3).tolist()
    if rng.random() < 0.5:  # horizontal bar over the top/bottom band
        y = int(rng.choice([rng.uniform(0, 0.15), rng.uniform(0.82, 0.95)]) * H)
        cv2.rectangle(out, (0, y), (W, y + max(2, int(H * rng.uniform(0.03, 0.1)))), col, -1)
    else:  # blob on a corner
        cx = int(rng.choice([rng.uniform(0, 0.1), rng.uniform(0.9, 1.0)]) * W)
        cy = int(rng.uniform(0, 1) * H)
        cv2.circle(out, (cx, cy), int(H * rng.uniform(0.05, 0.15)), col, -1, cv2.LINE_AA)
    return out


def ocr_crop(rng, plate: np.ndarray | None = None, label: str | None = None, *, hershey_only=False, legible=False,
             traits=False):
    """A plate crop as the detector would deliver it, or (a quarter of them)
    cut as tight as a hand-made crop, where the first and last characters
    touch the edge (models 0.4.0 dropped them there). Returns ``(bgr, label)``.

    ``legible`` makes crops a person reads without doubt, for a held-out that
    tells models apart (the training mix has many crops blurred, shrunk or
    covered past reading): 140-320 px wide, no occlusion, tight crops that
    touch the outer characters but never cut them, a fifth of the odds of
    glare, shadow, night look, noise and blur (side graphics as usual).
    ``traits``: the plate's glyph traits of US serial fonts (``render_plate``)."""
    if plate is None:
        plate, label = render_plate(rng, hershey_only=hershey_only, traits=traits)
    if legible:
        width = float(rng.uniform(140, 320))
    else:
        width = float(rng.choice([rng.uniform(50, 120), rng.uniform(120, 320)]))
    warped, alpha, quad = warp_plate(rng, plate, width, max_tilt=rng.uniform(0.0, 0.1))
    h, w = warped.shape[:2]
    pad = int(max(w, h) * 0.15) + 4
    canvas = _surround(rng, w + 2 * pad, h + 2 * pad)
    a = (alpha.astype(np.float32) / 255.0)[..., None]
    roi = canvas[pad : pad + h, pad : pad + w]
    canvas[pad : pad + h, pad : pad + w] = (roi * (1 - a) + warped * a).astype(np.uint8)
    if rng.random() < 0.15 and not legible:
        canvas[pad : pad + h, pad : pad + w] = occlude(rng, canvas[pad : pad + h, pad : pad + w])
    x0, y0 = quad.min(0) + pad
    x1, y1 = quad.max(0) + pad
    bw, bh = x1 - x0, y1 - y0
    m = rng.uniform(-0.04, 0.12, 4) * [bw, bh, bw, bh]
    if rng.random() < 0.25:  # a hand-tight crop: the outer characters touch the edge or are cut a little
        m[[0, 2]] = rng.uniform(-0.09, -0.02, 2) * bw if not legible else rng.uniform(-0.02, 0.0, 2) * bw
    xa, ya = int(max(0, x0 - m[0])), int(max(0, y0 - m[1]))
    xb, yb = int(min(canvas.shape[1], x1 + m[2])), int(min(canvas.shape[0], y1 + m[3]))
    crop = canvas[ya:yb, xa:xb]
    return photometric(rng, crop, 0.2 if legible else 1.0), label
