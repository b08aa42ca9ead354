"""Screenshots of the console's main pages, for docs/console/ and the README.

Builds the console tests' central (users of every role, four cameras at real
positions, reads sealed by the devices and stored by the real collector),
serves it over HTTPS on a free loopback port and photographs each role's main
page in Debian's headless Chromium at 1280x720 (and the search at tablet width).
Hits come from a hotlist and reads matched by the real matcher (tests/hits_env.py);
the live hits page is photographed just after a hit arrived over its event stream,
a hit's page (whole page) after its visual check.

    .venv/bin/python bench/console_screenshots.py [--out docs/console]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from central.console.server import ConsoleServer  # noqa: E402
from central.fleet.broker import free_port  # noqa: E402
from console_env import PASSWORD, ConsoleWorld  # noqa: E402
from hits_env import LISTED, HitWorld  # noqa: E402
from test_enrollment_env import Clock  # noqa: E402

WHY = "purpose=stolen-vehicle&case=26-004512"
SHOTS = [  # (file, user, path, viewport)
    ("sign-in.png", None, "/sign-in", (1280, 720)),
    ("operator-search.png", "otto", f"/search?submitted=1&plate=7AB*&match=wildcard&range=7d&{WHY}", (1280, 720)),
    ("operator-search-tablet.png", "otto", f"/search?submitted=1&plate=7AB*&match=wildcard&range=7d&{WHY}",
     (820, 1180)),
    ("operator-read.png", "otto", "READ", (1280, 720)),
    ("operator-hits.png", "otto", "HITS", (1280, 720)),
    ("operator-hit.png", "otto", "HIT", (1280, 720)),
    ("supervisor-hotlist.png", "sue", "/hotlists/stolen", (1280, 720)),
    ("supervisor-approvals.png", "sue", "/approvals", (1280, 720)),
    ("fleet.png", "tech", "/fleet", (1280, 720)),
    ("business.png", "pat", "/business", (1280, 720)),
    ("auditor-log.png", "audrey", "/audit/log", (1280, 720)),
    ("auditor-verify.png", "audrey", "/audit/verify", (1280, 720)),
]


def more_entries(world) -> None:
    """A few more entries (imported as a CSV, as an agency's daily file would be) for the hotlist's page."""
    import io
    from central.hotlist.lists import Hotlists
    from central.store.sqlite import SQLiteStore
    store = SQLiteStore(world.env.data / "central.sqlite")
    day = (world.clock() + dt.timedelta(days=60)).date().isoformat()
    rows = ["plate,state,reason,source_agency,source_ref,case_number,expires"]
    for i, (plate, reason) in enumerate([("5KXT204", "stolen vehicle"), ("8MWR551", "stolen vehicle"),
                                         ("3FPD917", "stolen plates on vehicle"), ("6BZN330", "stolen vehicle"),
                                         ("2HLQ786", "stolen vehicle; armed suspect"),
                                         ("7VEJ642", "stolen vehicle")]):
        rows.append(f"{plate},CA,{reason},{'LAPD' if i % 2 else 'LASD'},SV-26-{1100 + i},26-00{4600 + i},{day}")
    Hotlists(store.db.conn, world.cfg.hotlist, clock=world.clock).import_csv(
        world.env.user("sue"), "stolen", io.BytesIO("\n".join(rows).encode()))
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "console"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as tmp:
        world = ConsoleWorld(Path(tmp), clock=Clock(), console=f"port = {free_port()}\n")
        server = ConsoleServer(world.cfg).start()
        hits = HitWorld(world)
        more_entries(world)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"])
                for name, user, path, (w, h) in SHOTS:
                    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": w, "height": h},
                                              base_url=server.url)
                    page = ctx.new_page()
                    if user:
                        page.goto("/sign-in")
                        page.get_by_label("User name").fill(user)
                        page.get_by_label("Password").fill(PASSWORD)
                        with page.expect_navigation():
                            page.get_by_role("button", name="Sign in").click()
                    if path == "READ":
                        page.goto(f"/search?submitted=1&plate=7ABC123&range=7d&{WHY}")
                        path = page.get_by_role("link", name="Open read").first.get_attribute("href")
                    full = False
                    if path == "HITS":   # a hit arrives live while the page is open
                        page.goto("/hits")
                        page.wait_for_function("document.getElementById('live-status').textContent"
                                               ".startsWith('Live')")
                        new = hits.hit(LISTED[1])
                        page.get_by_role("link", name=f"Open hit {new}").wait_for()
                    elif path == "HIT":  # the newest hit, its visual check done: the source check is next
                        new = hits.hit(LISTED[0])
                        page.goto(f"/hits/{new}")
                        with page.expect_navigation():
                            page.get_by_role("button", name=f"Yes, the image shows {LISTED[0]}").click()
                        full = True
                    else:
                        page.goto(path)
                    page.screenshot(path=str(out / name), full_page=full)
                    print(f"wrote {out / name}")
                    ctx.close()
                browser.close()
        finally:
            hits.close()
            server.stop()
            world.close()


if __name__ == "__main__":
    main()
