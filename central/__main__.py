"""``python -m central`` runs ``alpr-central``."""

from central.cli import main

main(prog_name="alpr-central")
