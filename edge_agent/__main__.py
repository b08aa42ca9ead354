"""``python -m edge_agent`` runs ``alpr-edge``."""

from edge_agent.cli import main

main(prog_name="alpr-edge")
