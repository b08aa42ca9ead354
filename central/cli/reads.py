"""``alpr-central reads ...``: what an operator does with a search result
besides looking at it. ``confirm`` records the text the read's image shows,
a confirmation or a correction of what the camera read; it joins the labelled
set that adapts the OCR to this site (:mod:`central.governance.labels`)."""

from __future__ import annotations

import click

from . import output as out
from .common import config_option
from .session import Session, json_option, token_option


@click.group("reads")
def reads_group() -> None:
    """Stored reads: confirm or correct what the camera read."""


@reads_group.command("confirm")
@config_option
@click.argument("read_id")
@click.option("--text", required=True,
              help="The plate as the read's image shows it (letters and digits; spaces and dashes dropped). "
                   "Type what you see: the same as the read confirms it, anything else corrects it.")
@click.option("--purpose", help="Why you look at this read: one of the configured purposes (required).")
@click.option("--case", "case_number", help="Case or incident number (required).")
@token_option
@json_option
def confirm(config_path, read_id, text, purpose, case_number, token_file, as_json) -> None:
    """Confirm or correct the text of read READ_ID (from a search result).

    Operators and supervisors; like viewing a read it needs a purpose and a
    case number, and it is written to the access log. The read's crop and the
    text become a labelled example for site adaptation ('models adapt'); it is
    deleted with the read when retention purges it. Confirming the same read
    again replaces your earlier label."""
    from ..governance.labels import LabelledSet
    with Session(config_path, token_file) as s:
        e = LabelledSet(s.store).confirm(s.user, read_id, text, purpose=purpose, case_number=case_number,
                                         purposes=s.cfg.query.purposes,
                                         case_number_pattern=s.cfg.query.case_number_pattern)
    result = "confirmed" if e.source == "search-confirmed" else "corrected"
    if as_json:
        click.echo(out.dumps({"read_id": e.read_id, "result": result, "example_id": e.example_id,
                              "read_text": e.read_text, "text": e.true_text, "model_version": e.model_version}))
        return
    if result == "confirmed":
        click.echo(f"read {e.read_id}: confirmed {e.true_text} (labelled example {e.example_id})")
    else:
        click.echo(f"read {e.read_id}: corrected {e.read_text} -> {e.true_text} (labelled example {e.example_id}; "
                   f"read by model {e.model_version or 'unknown'})")


COMMANDS = (reads_group,)
