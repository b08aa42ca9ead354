"""The wire contract between edge devices and central.

This package is the *only* part of ``edge_agent`` that ``central`` imports (a
test enforces it). It owns:

- :mod:`.topics`   MQTT topic names and their parsing;
- :mod:`.schema`   the read payload (``PlateRead``) with its version field, the
                   batch frame that carries many sealed reads in one MQTT
                   message, and the acknowledgement central sends back;
- :mod:`.envelope` the sealed-envelope format: X25519 + HKDF-SHA256 + AES-256-GCM
                   to central's public key, so a device cannot open what it sealed;
- :mod:`.release`  application release bundles (Ed25519-signed manifest with
                   versions and SHA-256s) that central builds and devices verify.

Errors (all subclass :class:`WireError`)::

    WireError
     +-- MalformedMessage   framing, JSON or schema violation (says what, never the plate)
     |    +-- BundleRefused  a release bundle unsigned, tampered, malformed or a downgrade
     +-- EnvelopeError      any failure to open an envelope (opaque on purpose)
"""

from .envelope import EnvelopeHeader, Opener, Sealer, generate_keypair, key_id, load_private_key, load_public_key
from .errors import EnvelopeError, MalformedMessage, WireError
from .schema import (
    SCHEMA_VERSION,
    Ack,
    Alternate,
    Batch,
    Location,
    PlateRead,
    decode_ack,
    decode_batch,
    decode_read,
    encode_ack,
    encode_batch,
    encode_read,
    fold_confusables,
    new_read_id,
    normalise_plate,
)
from .topics import Topics

__all__ = [
    "SCHEMA_VERSION", "Ack", "Alternate", "Batch", "EnvelopeError", "EnvelopeHeader", "Location",
    "MalformedMessage", "Opener", "PlateRead", "Sealer", "Topics", "WireError", "decode_ack",
    "decode_batch", "decode_read", "encode_ack", "encode_batch", "encode_read", "fold_confusables", "generate_keypair",
    "key_id", "load_private_key", "load_public_key", "new_read_id", "normalise_plate",
]
