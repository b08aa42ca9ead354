"""``alpr-central models ...``: site adaptation of the OCR and signed model bundles.

``export-labels`` writes central's labelled set (confirmed reads,
:mod:`central.governance.labels`) in the folder format ``adapt`` takes;
``init-signing`` makes the Ed25519 key that signs model bundles (its public
half goes to every device as ``[recognition.options] bundle_key``); ``adapt``
fine-tunes the shipped OCR on a site's labelled crops and writes a signed
bundle (needs the ``train`` extra: TensorFlow is imported by this command
only); ``verify`` checks a bundle as a device would.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import tempfile

import click

from .common import config_option
from .session import Session, json_option, token_option

logger = logging.getLogger(__name__)


@click.group("models")
def models_group() -> None:
    """Site adaptation of the OCR and signed model bundles for the fleet."""


@models_group.command("init-signing")
@click.option("--private", "private_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the Ed25519 private key (mode 0600); it never leaves central.")
@click.option("--public", "public_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the public key that devices verify bundles with ([recognition.options] bundle_key).")
def init_signing(private_path, public_path) -> None:
    """Generate the Ed25519 key that signs model bundles."""
    from models.bundle import init_signing_key

    try:
        kid = init_signing_key(private_path, public_path)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {private_path} (0600) and {public_path}; key id {kid}")


@models_group.command("adapt")
@config_option
@token_option
@click.argument("labelled", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--from-central", is_flag=True,
              help="Train on central's own labelled set (confirmed reads) instead of a folder: exported into a "
                   "private temporary folder, deleted when the command ends (logged as an export).")
@click.option("--out", required=True, type=click.Path(), help="Folder to write the signed bundle to (must not exist).")
@click.option("--signing-key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The model-signing private key (from 'models init-signing').")
@click.option("--base", "base_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Model set to start from (default: the shipped models).")
@click.option("--version", default=None, help="The bundle's version (default: <base version>+site<UTC minute>).")
@click.option("--steps", type=click.IntRange(1), default=600, show_default=True, help="Training steps in all.")
@click.option("--batch", type=click.IntRange(2), default=32, show_default=True, help="Crops per step (half of them the site's).")
@click.option("--lr", type=click.FloatRange(1e-7, 1e-1), default=1e-4, show_default=True,
              help="Peak learning rate (cosine decay over the steps).")
@click.option("--checks", type=click.IntRange(1, 10), default=3, show_default=True,
              help="Candidates: one after each equal part of the training.")
@click.option("--held-back", type=click.FloatRange(0.05, 0.5), default=0.25, show_default=True,
              help="Share of the crops (whole plates) held back to choose with, never trained on.")
@click.option("--tolerance", type=click.FloatRange(0, 100), default=0.5, show_default=True,
              help="Points of synthetic held-out exact match a candidate may lose against the base.")
@click.option("--heldout-size", type=click.IntRange(10), default=400, show_default=True,
              help="Crops in each generic synthetic held-out.")
@click.option("--synthetic-pool", type=click.IntRange(10), default=2000, show_default=True,
              help="Generated crops mixed into training so plates in general are not forgotten.")
@click.option("--time-budget", type=click.FloatRange(0), default=0, show_default=True,
              help="Minutes of training at most (0: no limit).")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="CPU threads.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the split, the mix and the training.")
@json_option
def adapt(config_path, token_file, labelled, from_central, out, signing_key, base_dir, version, steps, batch, lr, checks, held_back, tolerance, heldout_size,
          synthetic_pool, time_budget, threads, seed, as_json) -> None:
    """Fine-tune the OCR on a site's labelled plate crops; write a signed bundle.

    LABELLED is a folder with labels.csv (columns image,text; image paths
    relative to the folder): crops of plates people at the site have
    confirmed, as 'models export-labels' writes it; or give --from-central to
    read central's labelled set directly (hits' visual checks, operators'
    confirmations of search results). The crops are split by plate (no plate on both sides); the OCR
    is fine-tuned from the base set's on the training plates mixed with
    generated ones, and a candidate is chosen by the rule fixed before
    training (models.training.adapt.RULE, printed below and stored in the
    bundle). A candidate worse than the base on the generic synthetic
    held-outs, or not better on the held-back plates, is refused; if all are,
    no bundle is written (exit 1). Needs the train extra (TensorFlow, CPU).

    Runs as your account (admins only); the start and the outcome
    (counts and the bundle's version, never plate texts) go to the access log."""
    from models.bundle import BundleError, load_private_key
    from models.training.adapt import AdaptError, Settings, load_labelled

    from ..governance.users import Permission, require

    settings = Settings(steps=steps, batch=batch, lr=lr, site_per_batch=batch // 2, checks=checks, held_back=held_back,
                        tolerance=tolerance, heldout_size=heldout_size, synthetic_pool=synthetic_pool,
                        time_budget=time_budget, threads=threads, seed=seed)
    with Session(config_path, token_file) as s:
        require(s.user, Permission.ADAPT_MODELS)
        if importlib.util.find_spec("tensorflow") is None:  # say clearly what is missing, before any work
            raise click.ClickException("models adapt needs TensorFlow: pip install 'alpr-platform[train]'")
        if bool(labelled) == from_central:
            raise click.UsageError("give either a LABELLED folder or --from-central")
        tmp = None
        try:
            key = load_private_key(signing_key)
            if from_central:
                tmp = tempfile.TemporaryDirectory(prefix="alpr-labels-")
                labelled = os.path.join(tmp.name, "labels")
                _export(s, labelled)
            examples, skipped = load_labelled(labelled)
        except (BundleError, AdaptError) as exc:
            if tmp is not None:
                tmp.cleanup()
            raise click.ClickException(str(exc)) from None
        try:
            _adapt(s, examples, skipped, out, key, base_dir, version, settings, as_json, from_central)
        finally:
            if tmp is not None:   # the private copy of the crops goes whatever happened
                tmp.cleanup()


def _export(s: Session, folder: str):
    from ..governance.labels import LabelledSet
    return LabelledSet(s.store).export(s.user, folder, retention=s.cfg.retention)


def _adapt(s, examples, skipped, out, key, base_dir, version, settings, as_json, from_central) -> None:
    import dataclasses

    from models.training.adapt import RULE, AdaptError
    from models.training.adapt import adapt as run

    from ..governance.audit import AccessLog

    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    if not examples:
        raise click.ClickException("no labelled crops to adapt on" + (
            " (central's labelled set is empty: confirm reads with 'reads confirm' or verify hits)"
            if from_central else ""))
    log = AccessLog(s.conn)

    def audit(action: str, detail: dict, count: int) -> None:
        log.append(user=s.user.name, organization=s.user.organization, action=action, detail=detail,
                   result_count=count)

    audit("models-adapt", {"crops": len(examples), "left_out": skipped, "out": os.path.basename(os.path.normpath(out)),
                           "settings": dataclasses.asdict(settings)}, len(examples))
    say(f"{len(examples)} labelled crops ({skipped} rows left out: no text, unknown characters, over 10, no image)")
    say("rule: " + RULE)
    try:
        result = run(examples, out, key, base_dir=base_dir, version=version, settings=settings, progress=say)
    except AdaptError as exc:
        res = getattr(exc, "result", None)
        audit("models-adapt-refused", {"reason": str(exc)}, 0)
        if as_json and res is not None:
            click.echo(json.dumps({"bundle": None, "refused": str(exc), **res.as_json()}))
        elif res is not None:
            _summary(res)
        raise click.ClickException(str(exc)) from None
    audit("models-adapt-bundle", {"version": result.version, "train_crops": result.train_crops,
                                  "held_back_crops": result.held_back_crops, "chosen_step": result.candidates[result.chosen].step},
          result.train_crops)
    logger.info("model bundle written: %d training crops, %d held back", result.train_crops, result.held_back_crops)
    if as_json:
        click.echo(json.dumps(result.as_json()))
        return
    _summary(result)
    click.echo(f"wrote {out}: model version {result.version}, signed")


def _summary(r) -> None:
    click.echo(f"plates: {r.train_plates} to train ({r.train_crops} crops), {r.held_back_plates} held back "
               f"({r.held_back_crops} crops); {r.minutes} min")
    synth = ", ".join(f"{k} {v}" for k, v in r.shipped_synthetic.items())
    click.echo(f"  base: {r.shipped_site_right}/{r.held_back_crops} held-back crops right; synthetic {synth}")
    for i, c in enumerate(r.candidates):
        mark = "chosen" if i == r.chosen else ("refused: " + c.refused if c.refused else "passes")
        synth = ", ".join(f"{k} {v}" for k, v in c.synthetic.items())
        click.echo(f"  step {c.step}: {c.site_right}/{r.held_back_crops} right (only it {c.better}, only base {c.worse}, "
                   f"p {c.p}); synthetic {synth}; {mark}")


@models_group.command("export-labels")
@config_option
@token_option
@click.argument("folder", type=click.Path())
@json_option
def export_labels(config_path, token_file, folder, as_json) -> None:
    """Write central's labelled set to a new FOLDER for 'models adapt' or
    'alpr-edge evaluate --crops'.

    The set is the reads people here confirmed: hits' visual checks (the
    listed plate, or a misread's corrected text) and operators' confirmations
    or corrections of search results ('reads confirm'). FOLDER (created 0700,
    files 0600) gets one JPEG crop per read, labels.csv
    (image,text,read_text,model_version,source) and export.json with the date
    by which the copy must be deleted (central's image retention of its oldest
    crop). A read whose labels disagree is left out and counted. Admins
    only; logged in the access log with counts, never texts.
    'models adapt --from-central' trains on the set without leaving a copy."""
    with Session(config_path, token_file) as s:
        r = _export(s, folder)
    from . import output as out   # (not at the top: 'adapt' has an --out)
    if as_json:
        click.echo(out.dumps({"folder": r.folder, "examples": r.examples, "reads_conflicting": r.reads_conflicting,
                              "by_source": r.by_source, "delete_by": r.delete_by}))
        return
    click.echo(out.fields([("wrote", f"{r.examples} labelled crop(s) to {r.folder}"),
                           ("by source", {k: v for k, v in r.by_source.items() if v} or "none"),
                           ("left out", f"{r.reads_conflicting} read(s) whose labels disagree")]))
    if r.delete_by:
        click.echo(f"ALPR information: keep the folder private and delete it by {out.value(r.delete_by)}")


@models_group.command("verify")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--public-key", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The model-signing public key (from 'models init-signing').")
@json_option
def verify(bundle, public_key, as_json) -> None:
    """Check a model bundle as a device does: signature, then every file's SHA-256."""
    from models.bundle import BundleError, load_public_key, verify_bundle

    try:
        man = verify_bundle(bundle, load_public_key(public_key))
    except BundleError as exc:
        raise click.ClickException(f"{bundle}: NOT VALID: {exc}") from None
    version = f"{man.get('name', 'alpr')}-{man.get('version', '0')}"
    if as_json:
        click.echo(json.dumps({"valid": True, "model_version": version,
                               "files": {k: v["sha256"] for k, v in man["models"].items()}}))
        return
    click.echo(f"{os.path.normpath(bundle)}: valid, model version {version}")
    for k, v in man["models"].items():
        click.echo(f"  {k:<9} {v['file']:<22} {v.get('version', '?'):<28} sha256 {v['sha256'][:16]}...")


COMMANDS = (models_group,)
