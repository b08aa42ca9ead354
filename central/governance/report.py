"""The transparency report: one self-contained HTML page (inline CSS and SVG
charts with text labels, no scripts, no external resources) and its JSON
twin, for a quarter, month or year.

Figures: cameras by owner, reads, hits (by hotlist category and
disposition, and the misread rate found by the visual check), searches by purpose (and refused
searches), sharing by recipient, purges, legal holds, the labelled set
(confirmed reads kept to adapt the OCR: by source, labelled in the period,
past their deletion date), and the policy text
(authorized purposes, retention periods, eligible recipients, custodian).
The access log's head (``seq:hash``) at generation is printed so anyone can
later check that the log was not rewritten (``audit verify --expect-head``).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import sqlite3
from pathlib import Path

from .audit import AccessLog, ts, utcnow
from ..store.database import dialect
from ..config import CentralConfig
from ..files import write_file
from .retention import Governor
from .sharing import SharingRegistry
from .users import Permission, User, require

_PERIOD_RE = re.compile(r"^(\d{4})(?:-(?:Q([1-4])|(\d{2})))?\Z", re.IGNORECASE)


def parse_period(period: str) -> tuple[dt.datetime, dt.datetime]:
    """``2026-Q3`` / ``2026-08`` / ``2026`` as [start, end) in UTC."""
    m = _PERIOD_RE.match((period or "").strip())
    if not m:
        raise ValueError("use a quarter (2026-Q3), a month (2026-08) or a year (2026)")
    year = int(m.group(1))
    if m.group(2):
        first, months = (int(m.group(2)) - 1) * 3 + 1, 3
    elif m.group(3):
        first, months = int(m.group(3)), 1
        if not 1 <= first <= 12:
            raise ValueError("month must be 01-12")
    else:
        first, months = 1, 12
    start = dt.datetime(year, first, 1, tzinfo=dt.timezone.utc)
    end_month = first + months
    end = dt.datetime(year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return start, end


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    if dialect(conn) != "sqlite":
        return conn.execute("SELECT to_regclass(?) IS NOT NULL", [name]).fetchone()[0]
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]).fetchone() is not None


_BECOMES = {"provision": True, "device-active": True, "device-suspended": False, "device-revoked": False}


def _active_during(conn: sqlite3.Connection, a: str, b: str) -> set[str]:
    """Devices active at any time in [a, b): from the registry's history (a
    device provisioned, suspended, resumed, revoked, or suspended by its
    business's withdrawal), and any device whose reads were captured in the
    period (only active devices' reads are stored). A device withdrawn or
    revoked during the period still counts; one enrolled after it does not."""
    active: set[str] = set()
    state: dict[str, bool] = {}
    since: dict[str, str] = {}
    for at, action, subject, detail in conn.execute(
            "SELECT at, action, subject, detail FROM registry_events ORDER BY at, id").fetchall():
        if action == "business-withdraw":
            try:
                changes = [(d, False) for d in json.loads(detail).get("suspended", [])]
            except ValueError:
                changes = []
        elif action in _BECOMES:
            changes = [(subject, _BECOMES[action])]
        else:
            continue
        for device, on in changes:
            if state.get(device) and not on and since[device] < b and at >= a:
                active.add(device)           # an active stretch that reached into the period
            if on and not state.get(device):
                since[device] = at
            state[device] = on
    active |= {d for d, on in state.items() if on and since[d] < b}   # still active: from `since` on
    active |= {row[0] for row in conn.execute("SELECT DISTINCT device_id FROM reads WHERE captured_at >= ? "
                                              "AND captured_at < ?", [a, b]).fetchall()}
    return active


def build(conn: sqlite3.Connection, cfg: CentralConfig, user: User, period: str, start: dt.datetime,
          end: dt.datetime, *, now: dt.datetime | None = None) -> dict:
    require(user, Permission.READ_REPORTS)
    now = now or utcnow()
    a, b = ts(start), ts(end)
    owners = []
    if _table_exists(conn, "devices"):  # the registry (issue 4): devices active during the period
        active = sorted(_active_during(conn, a, b))
        names = "coalesce(b.name, d.owner)" if _table_exists(conn, "businesses") else "d.owner"
        join = "LEFT JOIN businesses b ON b.business_id = d.owner" if _table_exists(conn, "businesses") else ""
        marks = ",".join("?" * len(active))
        owners = conn.execute(f"SELECT CASE d.owner WHEN 'department' THEN ? ELSE {names} END AS who, "
                              f"sum(json_array_length(d.cameras{'' if dialect(conn) == 'sqlite' else '::json'})) "
                              f"FROM devices d {join} "
                              f"WHERE d.device_id IN ({marks}) GROUP BY who ORDER BY who",
                              [cfg.policy.agency, *active]).fetchall() if active else []
    if not owners:  # no registry yet: count the cameras that sent reads in the period
        n = conn.execute("SELECT count(*) FROM (SELECT DISTINCT device_id, camera_id FROM reads "
                         "WHERE captured_at >= ? AND captured_at < ?) AS cams", [a, b]).fetchone()[0]
        owners = [("not registered", n)] if n else []
    reads = conn.execute("SELECT count(*) FROM reads WHERE captured_at >= ? AND captured_at < ?", [a, b]).fetchone()[0]
    gov = Governor(conn, cfg.retention)
    hit_rows = conn.execute("SELECT category, coalesce(disposition, 'open'), count(*) FROM hits "
                            "WHERE captured_at >= ? AND captured_at < ? GROUP BY 1, 2 ORDER BY 1, 2", [a, b]).fetchall()
    hits = sum(n for _, _, n in hit_rows)
    checked, misread = conn.execute("SELECT count(visual), coalesce(sum(CASE WHEN visual = 'misread' THEN 1 ELSE 0 END), 0) "
                                    "FROM hits "
                                    "WHERE captured_at >= ? AND captured_at < ?", [a, b]).fetchone()
    by_category: dict[str, int] = {}
    by_disposition: dict[str, int] = {}
    for category, disposition, n in hit_rows:
        by_category[category] = by_category.get(category, 0) + n
        by_disposition[disposition] = by_disposition.get(disposition, 0) + n
    searches = conn.execute("SELECT purpose, count(*), coalesce(sum(result_count), 0) FROM audit_log "
                            "WHERE action = 'search' AND at >= ? AND at < ? GROUP BY purpose ORDER BY purpose",
                            [a, b]).fetchall()
    refused = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'search-refused' AND at >= ? AND at < ?",
                           [a, b]).fetchone()[0]
    recipients = SharingRegistry(conn, cfg.sharing, purposes=cfg.query.purposes).recipients(since=start, until=end)
    refused_shares = conn.execute("SELECT count(*) FROM audit_log WHERE action = 'share-refused' AND at >= ? "
                                  "AND at < ?", [a, b]).fetchone()[0]
    purge_totals: dict[str, int] = {}
    runs = gov.purge_runs(start, end)
    for run in runs:
        for k, v in run["counts"].items():
            purge_totals[k] = purge_totals.get(k, 0) + v
    holds = [h for h in gov.holds() if h.status == "active"]
    labelled = _labelled_set(conn, gov, a, b, now)
    log = AccessLog(conn)
    log.append(user=user.name, organization=user.organization, action="report-transparency",
               detail={"period": period}, at=now)
    head_seq, head_hash = log.head()
    r = cfg.retention
    return {
        "title": f"ALPR transparency report {period}",
        "period": {"name": period, "start": start.date().isoformat(), "end": (end - dt.timedelta(days=1)).date()
                   .isoformat()},
        "generated_at": now.isoformat(timespec="seconds"),
        "agency": cfg.policy.agency,
        "cameras_by_owner": [{"owner": o, "cameras": n} for o, n in owners],
        "cameras_total": sum(n for _, n in owners),
        "reads": reads,
        "hits": hits,
        "hits_by_category": [{"category": k, "hits": v} for k, v in sorted(by_category.items())],
        "hits_by_disposition": [{"disposition": k, "hits": v} for k, v in sorted(by_disposition.items())],
        "hits_visually_checked": checked,
        "hits_misread": misread,
        "misread_rate": round(misread / checked, 4) if checked else None,
        "searches_by_purpose": [{"purpose": p, "searches": n, "results": rc} for p, n, rc in searches],
        "searches_total": sum(n for _, n, _ in searches),
        "searches_refused": refused,
        "sharing_by_recipient": [{"agency": x.agency, "agency_type": x.agency_type, "jurisdiction": x.jurisdiction,
                                  "agreement_id": x.agreement_id, "exports": x.exports, "reads": x.reads}
                                 for x in recipients],
        "sharing_refused": refused_shares,
        "purges": {"runs": len(runs), "deleted": purge_totals},
        "legal_holds_active": len(holds),
        "labelled_set": labelled,
        "policy": {
            "authorized_purposes": list(cfg.query.purposes),
            "retention_days": {"non-hit reads": r.non_hit_days, "hits": r.hit_days,
                               "plate crops and context images": r.image_days,
                               "labelled examples (confirmed reads, at most; they go with their read)": r.labelled_example_days,
                               "hotlist entries (after expiry)": r.hotlist_days, "access logs": r.access_log_days,
                               "device audit logs": r.device_log_days},
            "eligible_recipients": {"agency_types": list(cfg.sharing.eligible_agency_types),
                                    "jurisdictions": list(cfg.sharing.eligible_jurisdictions)},
            "custodian": cfg.policy.custodian, "custodian_contact": cfg.policy.custodian_contact,
            "policy_url": cfg.policy.policy_url,
            "statement": "ALPR data is never sold. It is shared only with public agencies holding an active "
                         "agreement, for an authorized purpose and a case number, after approval by a supervisor "
                         "(Cal. Civ. Code 1798.90.5-1798.90.55).",
        },
        "access_log_head": f"{head_seq}:{head_hash}",
    }


def _labelled_set(conn, gov: Governor, a: str, b: str, now: dt.datetime) -> dict:
    """The labelled set (confirmed reads kept to adapt the OCR to the site,
    :mod:`central.governance.labels`): examples held at generation by source,
    those labelled in the period, and those past their deletion date (the
    purge removes them with their read or crop: 0 after a purge)."""
    from .labels import SOURCES

    if not _table_exists(conn, "labelled_examples"):
        return {"examples": 0, "by_source": [{"source": s, "examples": 0} for s in SOURCES],
                "labelled_in_period": 0, "past_deletion_date": 0}
    got = dict(conn.execute("SELECT source, count(*) FROM labelled_examples GROUP BY source").fetchall())
    added = conn.execute("SELECT count(*) FROM labelled_examples WHERE labelled_at >= ? AND labelled_at < ?",
                         [a, b]).fetchone()[0]
    return {"examples": sum(got.values()), "by_source": [{"source": s, "examples": got.get(s, 0)} for s in SOURCES],
            "labelled_in_period": added, "past_deletion_date": gov.labelled_overdue(now)}


_SOURCE_WORDS = {"hit-confirmed": "hit confirmed by a visual check", "hit-misread": "hit misread, text corrected",
                 "search-confirmed": "search result confirmed by an operator",
                 "search-corrected": "search result corrected by an operator"}


# -- rendering --------------------------------------------------------------------------
def _e(value) -> str:
    return html.escape(str(value), quote=True)


def bar_chart(chart_id: str, title: str, items: list[tuple[str, int]]) -> str:
    """A horizontal bar chart as inline SVG; every bar carries its label and
    value as text, so the figures read without colour or scripts."""
    if not items:
        return f'<figure id="{_e(chart_id)}"><figcaption>{_e(title)}</figcaption><p class="none">none in this period</p></figure>'
    if len(items) == 1:   # one bar says nothing a sentence does not: the figure and that it is the only one
        label, value = items[0]
        return (f'<figure id="{_e(chart_id)}" class="single"><figcaption>{_e(title)}</figcaption>'
                f'<p><b class="figure">{value:,}</b> {_e(label)}: the only one in this period (100%)</p></figure>')
    width, bar_h, label_w = 640, 26, 250
    top = max(v for _, v in items) or 1
    rows = []
    for i, (label, value) in enumerate(items):
        y = i * (bar_h + 6)
        w = max(2, int((width - label_w - 90) * value / top))
        rows.append(f'<text x="0" y="{y + 18}" class="label">{_e(label)}</text>'
                    f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" rx="3"/>'
                    f'<text x="{label_w + w + 8}" y="{y + 18}" class="value">{value:,}</text>')
    height = len(items) * (bar_h + 6)
    return (f'<figure id="{_e(chart_id)}"><figcaption>{_e(title)}</figcaption>'
            f'<svg role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg></figure>')


_CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;max-width:760px;margin:2em auto;color:#222;line-height:1.45}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.kpis{display:flex;gap:1em;flex-wrap:wrap} .kpi{border:1px solid #ccc;border-radius:6px;padding:.6em 1em}
.kpi b{display:block;font-size:1.6em} figure{margin:1em 0} figcaption{font-weight:bold;margin-bottom:.4em}
svg rect{fill:#2f6f9f} svg text{font-size:13px;fill:#222} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left} .none{color:#666} code{font-size:.85em}
"""


def share_chart(chart_id: str, title: str, parts: list[tuple[str, int]]) -> str:
    """Parts of one whole (e.g. searches answered and refused) as one stacked
    bar with each part's count and share written out: it still says something
    when a part is zero."""
    total = sum(v for _, v in parts)
    if not total:
        return f'<figure id="{_e(chart_id)}"><figcaption>{_e(title)}</figcaption><p class="none">none in this period</p></figure>'
    width, x, segs, legend = 640, 0, [], []
    shades = ("#2f6f9f", "#c0504d", "#9bbb59", "#8064a2")
    for i, (label, value) in enumerate(parts):
        w = int(round(width * value / total))
        if w:
            segs.append(f'<rect x="{x}" y="0" width="{w}" height="26" style="fill:{shades[i % len(shades)]}"/>')
        x += w
        legend.append(f"<li><b>{value:,}</b> {_e(label)} ({value / total:.0%})</li>")
    return (f'<figure id="{_e(chart_id)}"><figcaption>{_e(title)}</figcaption>'
            f'<svg role="img" aria-label="{_e(title)}" viewBox="0 0 {width} 26" width="{width}" height="26" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(segs)}</svg><ul class="legend">{"".join(legend)}</ul>'
            f'</figure>')


def render_html(d: dict) -> str:
    kpis = [("reads", "Plate reads", d["reads"]), ("hits", "Hits", d["hits"]),
            ("searches", "Searches", d["searches_total"]), ("refused", "Searches refused", d["searches_refused"]),
            ("cameras", "Cameras active in the period", d["cameras_total"]),
            ("shared", "Disclosures", sum(x["exports"] for x in d["sharing_by_recipient"]))]
    p = d["policy"]
    labels = {"non_hit_reads": "non-hit reads", "hit_reads": "hit reads", "images": "plate and context images",
              "hotlist": "hotlist entries", "hits": "hit records",
              "labelled_examples": "labelled examples (confirmed reads)", "webhook_deliveries": "webhook delivery records",
              "access_log": "access-log entries", "device_log": "device audit records"}
    purge_items = [(labels.get(k, k), v) for k, v in sorted(d["purges"]["deleted"].items())]
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(d['title'])}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(d['agency'])}: {_e(d['title'])}</h1>",
        f"<p>Period {_e(d['period']['start'])} to {_e(d['period']['end'])}; generated {_e(d['generated_at'])}.</p>",
        "<div class='kpis'>" + "".join(f"<div class='kpi' id='kpi-{k}'><b>{v:,}</b>{_e(label)}</div>"
                                       for k, label, v in kpis) + "</div>",
        "<h2>Cameras</h2>",
        bar_chart("chart-cameras", "Cameras by owner", [(x["owner"], x["cameras"]) for x in d["cameras_by_owner"]]),
        "<h2>Hotlist hits</h2>",
        bar_chart("chart-hits-category", "Hits by hotlist category",
                  [(x["category"], x["hits"]) for x in d.get("hits_by_category", [])]),
        bar_chart("chart-hits-disposition", "Hits by disposition (open = not yet closed)",
                  [(x["disposition"], x["hits"]) for x in d.get("hits_by_disposition", [])]),
        f"<p id='misread-rate'>Misread rate (visual check found the image did not show the listed plate): "
        + (f"{d['misread_rate']:.1%} of {d['hits_visually_checked']:,} checked hits"
           if d.get("misread_rate") is not None else "no hits checked in this period") + "</p>",
        "<h2>Searches</h2>",
        bar_chart("chart-searches", "Searches by purpose",
                  [(x["purpose"], x["searches"]) for x in d["searches_by_purpose"]]),
        share_chart("chart-searches-refused", "Searches answered and refused (refused: no or unauthorized "
                    "purpose, no case number, no permission)",
                    [("answered", d["searches_total"]), ("refused", d["searches_refused"])]),
        f"<p id='searches-refused'>Searches refused (no or unauthorized purpose, no case number, no permission): "
        f"{d['searches_refused']:,}</p>",
        "<h2>Sharing</h2>",
        bar_chart("chart-sharing", "Reads shared by recipient",
                  [(f"{x['agency']} ({x['agreement_id']})", x["reads"]) for x in d["sharing_by_recipient"]]),
        "<table id='recipients'><tr><th>Recipient</th><th>Type</th><th>State</th><th>Agreement</th>"
        "<th>Disclosures</th><th>Reads</th></tr>"
        + "".join(f"<tr><td>{_e(x['agency'])}</td><td>{_e(x['agency_type'])}</td><td>{_e(x['jurisdiction'])}</td>"
                  f"<td>{_e(x['agreement_id'])}</td><td>{x['exports']:,}</td><td>{x['reads']:,}</td></tr>"
                  for x in d["sharing_by_recipient"]) + "</table>",
        f"<p id='sharing-refused'>Sharing requests refused: {d['sharing_refused']:,}</p>",
        "<h2>Retention</h2>",
        bar_chart("chart-purges", f"Records deleted by retention ({d['purges']['runs']} purge run(s))", purge_items),
        f"<p id='holds'>Legal holds in force: {d['legal_holds_active']:,}</p>",
        *_labelled_html(d.get("labelled_set")),
        "<h2>Policy</h2>",
        "<p>" + _e(p["statement"]) + "</p>",
        "<p>Authorized purposes:</p><ul id='purposes'>"
        + "".join(f"<li>{_e(x)}</li>" for x in p["authorized_purposes"]) + "</ul>",
        "<table id='retention'><tr><th>Category</th><th>Kept for</th></tr>"
        + "".join(f"<tr><td>{_e(k)}</td><td>{v:,} days</td></tr>" for k, v in p["retention_days"].items())
        + "</table>",
        f"<p>Eligible recipients: {_e(', '.join(p['eligible_recipients']['agency_types']))} in "
        f"{_e(', '.join(p['eligible_recipients']['jurisdictions']))}.</p>",
        f"<p id='custodian'>Custodian of records: {_e(p['custodian'])}"
        + (f", {_e(p['custodian_contact'])}" if p["custodian_contact"] else "")
        + (f". Policy: <a href='{_e(p['policy_url'])}'>{_e(p['policy_url'])}</a>" if p["policy_url"] else "")
        + "</p>",
        f"<p>Access log head at generation: <code id='head'>{_e(d['access_log_head'])}</code></p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _labelled_html(ls: dict | None) -> list[str]:
    if ls is None:
        return []
    return [
        "<h2>Confirmed reads kept to adapt the reader</h2>",
        "<p>Reads whose text people here confirmed or corrected (a hit's visual check, an operator's check of a "
        "search result) are kept with their plate crop as a labelled set, to adapt the plate reader to these "
        "cameras. Each example is deleted with its read or its crop image, whichever goes first.</p>",
        bar_chart("chart-labelled", f"Labelled examples held at generation ({ls['examples']:,} in all)",
                  [(_SOURCE_WORDS.get(x["source"], x["source"]), x["examples"]) for x in ls["by_source"]
                   if x["examples"]]),
        f"<p id='labelled-in-period'>Labelled in this period: {ls['labelled_in_period']:,}</p>",
        f"<p id='labelled-overdue'>Held past their deletion date: {ls['past_deletion_date']:,}"
        + (" (the next retention purge deletes them)" if ls["past_deletion_date"] else "") + "</p>",
    ]


def write(d: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"transparency-{d['period']['name']}"
    html_path, json_path = out_dir / f"{stem}.html", out_dir / f"{stem}.json"
    # Published documents (0644), each through a fresh random temporary name:
    # a link planted at either name is refused, never written through.
    write_file(html_path, render_html(d), 0o644)
    write_file(json_path, json.dumps(d, indent=1, sort_keys=True), 0o644)
    return html_path, json_path
