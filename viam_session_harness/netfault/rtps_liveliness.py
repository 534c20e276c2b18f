"""
Find the liveliness assertions of MANUAL_BY_TOPIC writers in Ethernet frames (no ROS).

A session's client asserts liveliness with `assert_liveliness()`; Fast DDS sends that as an
RTPS HEARTBEAT submessage with the liveliness flag set, one per matched reader, in a UDP
datagram. The impairment forwarder sees every frame, so it can tell what the robot really
received: `liveliness_writers(frame)` returns the writer GUIDs (source GUID prefix + writer
entity id, hex) that a frame asserts, and nothing for any other frame (not IPv4/UDP, not RTPS,
fragments after the first, other submessages). RTPS 2.x layout: a 20-byte header ('RTPS',
version, vendor, GUID prefix) then submessages of id, flags (bit 0: little endian), length;
a length of 0 means "to the end of the message", except for PAD and INFO_TS, where it means
empty (an INFO_TS that invalidates the time, which Fast DDS puts before other submessages).
"""

import struct
from typing import List

__all__ = ['liveliness_writers']

_ETHERNET_HEADER = 14
_ETHERTYPE_IPV4 = 0x0800
_PROTOCOL_UDP = 17
_UDP_HEADER = 8
_RTPS_HEADER = 20
_PAD = 0x01
_HEARTBEAT = 0x07
_INFO_TIMESTAMP = 0x09
_INFO_SOURCE = 0x0C
_FLAG_LITTLE_ENDIAN = 0x01
_FLAG_LIVELINESS = 0x04


def liveliness_writers(frame: bytes) -> List[str]:
    """Return the GUIDs of the writers whose liveliness `frame` asserts (see module doc)."""
    if len(frame) < _ETHERNET_HEADER + 20:
        return []
    if struct.unpack_from('!H', frame, 12)[0] != _ETHERTYPE_IPV4:
        return []
    ip = _ETHERNET_HEADER
    header_length = (frame[ip] & 0x0F) * 4
    fragment = struct.unpack_from('!H', frame, ip + 6)[0] & 0x1FFF
    if frame[ip + 9] != _PROTOCOL_UDP or fragment != 0:
        return []
    rtps = ip + header_length + _UDP_HEADER
    if frame[rtps:rtps + 4] != b'RTPS' or len(frame) < rtps + _RTPS_HEADER:
        return []
    prefix = frame[rtps + 8:rtps + 20].hex()
    writers = []
    at = rtps + _RTPS_HEADER
    while at + 4 <= len(frame):
        kind, flags = frame[at], frame[at + 1]
        order = '<' if flags & _FLAG_LITTLE_ENDIAN else '>'
        length = struct.unpack_from(order + 'H', frame, at + 2)[0]
        body = at + 4
        if kind == _INFO_SOURCE and body + 20 <= len(frame):
            prefix = frame[body + 8:body + 20].hex()
        elif kind == _HEARTBEAT and flags & _FLAG_LIVELINESS and body + 8 <= len(frame):
            writers.append(prefix + frame[body + 4:body + 8].hex())
        if length == 0 and kind not in (_PAD, _INFO_TIMESTAMP):
            break    # the last submessage, to the end of the message (PAD, INFO_TS: empty)
        at = body + length
    return writers
