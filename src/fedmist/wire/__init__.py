"""Message envelope and payload codecs. numpy only: no torch, no pickle."""

from fedmist.wire.envelope import Envelope, Limits, ProtocolError, body_digest, decode, encode

__all__ = ["Envelope", "Limits", "ProtocolError", "body_digest", "decode", "encode"]
