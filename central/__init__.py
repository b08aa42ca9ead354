"""ALPR central collector: ingest -> store -> policy -> query/export.

Imports nothing of ``edge_agent`` but its wire contract, ``edge_agent.wire``.
"""

__version__ = "0.1.0"
