"""ALPR edge agent: capture -> recognition -> encrypted buffer -> sync.

Kept import-free on purpose: ``central`` imports ``edge_agent.wire`` and must not
pull in the rest of the agent (a test enforces that).
"""

__version__ = "0.1.0"
