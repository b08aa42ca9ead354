"""Errors of the central collector.

::

    CentralError
     +-- ConfigError        bad or missing configuration (CLI exit 78); names the key path
     +-- StoreError         the database cannot be opened, migrated or written (CLI exit 75 when unreachable)
     |    +-- SchemaMismatch        the database schema is behind (run ``db migrate``) or ahead of
     |                              this central (upgrade it); CLI exit 78
     +-- QueryError         a search is malformed or lacks a purpose / case number (CLI exit 1)
     +-- PolicyError        an action the rules forbid (governance)
     |    +-- PermissionDenied      the user's role may not do this
     |    +-- AuthenticationError   no valid personal token (one opaque message)
     |    +-- SharingRefused        recipient not eligible (commercial, out of state, no/expired agreement)
     +-- BundleError        an export bundle fails verification (says which check)
     +-- RegistryError      unknown device / business, or a state change the registry refuses (CLI exit 1)
     +-- EnrollmentError    an enrollment token or CSR refused (used, expired, forged, tampered); says which
     +-- ReleaseError       an application release key or bundle cannot be made (key placement, wheel build)
     +-- RemoteConfigError  a remote device configuration cannot be made (settings not allowed, no signing key)
     +-- UnsafePathError    an output path is a symbolic link or not a regular file (also an OSError)
"""


class CentralError(Exception):
    """Base class of central's own errors."""


class ConfigError(CentralError):
    """The configuration is invalid; the message names the key path."""


class StoreError(CentralError):
    """The store failed (open, migrate, write)."""


class SchemaMismatch(StoreError):
    """The store's schema is not the one this code was built for; says what to do."""


class QueryError(CentralError):
    """A search request was refused; the message says why."""


class PolicyError(CentralError):
    """The rules forbid this action."""


class RegistryError(CentralError):
    """The device / business registry refused a change or lookup; says why."""


class EnrollmentError(CentralError):
    """An enrollment token or certificate request was refused; says why (never echoes the secret)."""


class ReleaseError(CentralError):
    """An application release key or bundle cannot be made; says why (never the key)."""


class RemoteConfigError(CentralError):
    """A remote device configuration cannot be made or pushed; says why (never the key)."""


class PermissionDenied(PolicyError):
    """The authenticated user's role does not allow the action."""


class AuthenticationError(PolicyError):
    """No valid token; the message never says which part failed."""


class SharingRefused(PolicyError):
    """The recipient may not receive data; the message gives the reason."""


class BundleError(CentralError):
    """An export bundle is forged, altered or incomplete; the message says which check failed."""


class UnsafePathError(CentralError, OSError):
    """An output file would be written through a symbolic link (or over
    something that is not a regular file); nothing was written."""
