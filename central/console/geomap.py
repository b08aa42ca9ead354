"""Maps of cameras and reads that work with no internet.

With ``[console] tile_url`` empty (the default) the map is a plain basemap: an
SVG with a graticule and the points placed by an equirectangular projection
around their centre (good to a few metres over a city). With a tile server
configured (``https://tiles.example/{z}/{x}/{y}.png``, e.g. one the city runs on
its own network) the same SVG lays the tiles of a Web-Mercator zoom level under
the points. Either way the server draws it: no JavaScript, no CDN.
"""

from __future__ import annotations

import dataclasses
import math

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 800, 450, 40


@dataclasses.dataclass(frozen=True)
class Point:
    lat: float
    lon: float
    label: str
    kind: str = "camera"     # camera | read | offline
    href: str = ""


def _mercator(lat: float, lon: float, zoom: int) -> tuple[float, float]:
    """Pixel coordinates at a zoom level (256-pixel tiles)."""
    n = 256 * 2 ** zoom
    lat = max(min(lat, 85.05), -85.05)
    x = (lon + 180) / 360 * n
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return x, y


def _step(extent: float) -> float:
    for s in (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 45):
        if extent / s <= 8:
            return s
    return 90


def render(points: list[Point], *, tile_url: str = "", title: str = "Map") -> Markup:
    """An accessible SVG (role img, a title, and a text list beside it in the
    template) of ``points``; an empty list gives a note instead."""
    points = [p for p in points if p.lat is not None and p.lon is not None]
    if not points:
        return Markup('<p class="note">No positions to show: no camera or read here has coordinates.</p>')
    lats, lons = [p.lat for p in points], [p.lon for p in points]
    lat0, lon0 = (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2
    parts = [f'<svg class="map" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="map-title" '
             f'xmlns="http://www.w3.org/2000/svg"><title id="map-title">{escape(title)}</title>'
             f'<rect class="map-bg" width="{WIDTH}" height="{HEIGHT}"/>']
    if tile_url:
        span = max(max(lats) - min(lats), (max(lons) - min(lons)), 0.002)
        zoom = max(1, min(18, int(math.log2(360 / span * (WIDTH - 2 * PAD) / 256 / 1.2))))
        cx, cy = _mercator(lat0, lon0, zoom)
        ox, oy = cx - WIDTH / 2, cy - HEIGHT / 2

        def xy(lat, lon):
            x, y = _mercator(lat, lon, zoom)
            return x - ox, y - oy
        for tx in range(int(ox // 256), int((ox + WIDTH) // 256) + 1):
            for ty in range(int(oy // 256), int((oy + HEIGHT) // 256) + 1):
                if 0 <= ty < 2 ** zoom:
                    url = tile_url.replace("{z}", str(zoom)).replace("{x}", str(tx % 2 ** zoom)).replace(
                        "{y}", str(ty))
                    parts.append(f'<image href="{escape(url)}" x="{tx * 256 - ox:.1f}" y="{ty * 256 - oy:.1f}" '
                                 'width="256" height="256"/>')
    else:
        k = math.cos(math.radians(lat0))
        ext_x = max((max(lons) - min(lons)) * k, 0.004)
        ext_y = max(max(lats) - min(lats), 0.004)
        scale = min((WIDTH - 2 * PAD) / ext_x, (HEIGHT - 2 * PAD) / ext_y)

        def xy(lat, lon):
            return WIDTH / 2 + (lon - lon0) * k * scale, HEIGHT / 2 - (lat - lat0) * scale
        step = _step(max(ext_x / k, ext_y) * 1.5)
        lat_lo, lat_hi = lat0 - HEIGHT / 2 / scale, lat0 + HEIGHT / 2 / scale
        lon_lo, lon_hi = lon0 - WIDTH / 2 / scale / k, lon0 + WIDTH / 2 / scale / k
        v = math.floor(lon_lo / step) * step
        while v <= lon_hi:
            x = xy(lat0, v)[0]
            parts.append(f'<line class="grid" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{HEIGHT}"/>')
            if 50 <= x <= WIDTH - 70:  # no label cut by the edge or over the latitude labels
                parts.append(f'<text class="grid-label" x="{x + 3:.1f}" y="{HEIGHT - 6}">{v:.4f}</text>')
            v += step
        v = math.floor(lat_lo / step) * step
        while v <= lat_hi:
            y = xy(v, lon0)[1]
            parts.append(f'<line class="grid" x1="0" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}"/>'
                         f'<text class="grid-label" x="4" y="{y - 3:.1f}">{v:.4f}</text>')
            v += step
    for p in points:
        x, y = xy(p.lat, p.lon)
        shape = (f'<circle class="pt pt-{escape(p.kind)}" cx="{x:.1f}" cy="{y:.1f}" r="7"/>' if p.kind != "read"
                 else f'<rect class="pt pt-read" x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" height="12"/>')
        label = f'<text class="pt-label" x="{x + 10:.1f}" y="{y + 4:.1f}">{escape(p.label)}</text>'
        body = f'<g><title>{escape(p.label)} ({p.lat:.5f}, {p.lon:.5f})</title>{shape}{label}</g>'
        parts.append(f'<a href="{escape(p.href)}">{body}</a>' if p.href else body)
    if not tile_url:
        parts.append(f'<text class="map-note" x="{WIDTH - 8}" y="16" text-anchor="end">plain basemap '
                     '(no tile server configured)</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
