"""Errors of the wire contract; the tree is drawn in ``edge_agent.wire``."""


class WireError(Exception):
    """Base class for everything the wire contract rejects."""


class MalformedMessage(WireError):
    """A message or payload does not follow the contract. The text names the
    rule that failed and never contains plate text."""


class EnvelopeError(WireError):
    """An envelope could not be opened. Deliberately says nothing more: wrong
    key, tampering, truncation and unknown key ids all look the same."""

    def __init__(self, message: str = "envelope could not be opened") -> None:
        super().__init__(message)
