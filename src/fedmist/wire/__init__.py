"""Message envelope and payload codecs. numpy only: no torch, no pickle."""

from fedmist.wire.envelope import Envelope, Limits, ProtocolError, decode, encode, body_digest

__all__ = ["Envelope", "Limits", "ProtocolError", "decode", "encode", "body_digest"]
