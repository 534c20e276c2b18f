"""
Commands that prove their session without revealing its secret (no ROS).

A session has two names: a secret id, which only the start reply carries and which ends,
resumes and authenticates the session, and a public handle, which everything the robot
publishes uses. Commands travel on a topic anyone on the domain may read, so a command names
its session by the handle and carries a sequence number and an HMAC-SHA256 tag keyed by the
secret. Reading commands therefore teaches an observer nothing it can use: without the secret
it cannot compute a tag, and a recorded command replayed later is refused because its
sequence is not above the last one the robot accepted for that session.

Why an HMAC rather than the secret itself, a secret topic name or a service per command: topic
names and every message on a topic are visible to any ROS tool (`ros2 topic echo`, rosbag),
while the tag is useless to them; a command stays one small message on the
existing topic, and checking a tag costs microseconds.

The tag covers, in this order: a fixed label and version, then the handle, the resource (each
UTF-8, prefixed by its length as a big-endian uint32), the value (IEEE 754 double, big-endian)
and the sequence (big-endian uint64). Length prefixes make the encoding unambiguous.
"""

import hashlib
import hmac
import struct
import threading
from typing import Tuple

__all__ = ['CommandSigner', 'TAG_BYTES', 'command_tag', 'tag_matches']

TAG_BYTES = 32
_LABEL = b'viam_session command v1\0'


def _field(text: str) -> bytes:
    data = text.encode('utf-8')
    return struct.pack('>I', len(data)) + data


def command_tag(secret: str, handle: str, resource: str, value: float, sequence: int) -> bytes:
    """Return the HMAC-SHA256 tag of one command, keyed by the session's secret id."""
    message = (_LABEL + _field(handle) + _field(resource)
               + struct.pack('>dQ', float(value), sequence))
    return hmac.new(secret.encode('utf-8'), message, hashlib.sha256).digest()


def tag_matches(secret: str, handle: str, resource: str, value: float, sequence: int,
                tag: bytes) -> bool:
    """Return whether `tag` is the command's tag (compared in constant time)."""
    if len(tag) != TAG_BYTES or not 0 <= sequence < 2 ** 64:
        return False
    return hmac.compare_digest(command_tag(secret, handle, resource, value, sequence), tag)


class CommandSigner:
    """A client's side: numbers its commands from `last_sequence` up and tags them."""

    def __init__(self, secret: str, handle: str, last_sequence: int = 0) -> None:
        self._secret = secret
        self.handle = handle
        self._sequence = last_sequence
        self._lock = threading.Lock()

    def sign(self, resource: str, value: float) -> Tuple[int, bytes]:
        """Return (sequence, tag) for the next command."""
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        return sequence, command_tag(self._secret, self.handle, resource, value, sequence)
