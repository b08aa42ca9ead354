"""Errors of the edge agent.

::

    EdgeError
     +-- ConfigError        bad or missing configuration (CLI exit 78); names the key path
     +-- CaptureError       a frame source cannot be opened or read (retried with backoff)
     +-- BufferError_       the encrypted outbox cannot be opened or written
     +-- SyncError          the broker is unreachable or refused us (CLI exit 75)
     +-- ProvisionError     enrollment with central failed (token refused, pin mismatch, bad answer)
     +-- UpdateError        an application update could not be installed or switched (nothing changed,
     |                      or it was rolled back); a refused bundle is wire.release.BundleRefused
     +-- AlreadyRunning     another agent holds this data folder's lock
"""


class EdgeError(Exception):
    """Base class of the agent's own errors."""


class ConfigError(EdgeError):
    """The configuration is invalid. The message names the key path."""


class CaptureError(EdgeError):
    """A frame source failed. Messages never contain stream credentials."""


class BufferError_(EdgeError):  # trailing underscore: BufferError is a builtin
    """The outbox database failed (disk full, corrupt file, wrong schema)."""


class SyncError(EdgeError):
    """The broker cannot be reached or refused the connection."""


class ProvisionError(EdgeError):
    """Provisioning or certificate renewal failed; the message says why and what to do."""


class UpdateError(EdgeError):
    """An application update failed; the message says at which step and what state the device is in."""


class AlreadyRunning(EdgeError):
    """Another agent process already runs on this data folder."""
