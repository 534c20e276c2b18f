"""liveliness_writers: the liveliness HEARTBEATs in a frame, and nothing from other frames."""

import struct

from viam_session_harness.netfault.rtps_liveliness import liveliness_writers

PREFIX = bytes(range(1, 13))
OTHER_PREFIX = bytes(range(21, 33))
WRITER = b'\x00\x00\x0f\x03'


def _submessage(kind: int, flags: int, body: bytes) -> bytes:
    order = '<' if flags & 0x01 else '>'
    return bytes([kind, flags]) + struct.pack(order + 'H', len(body)) + body


def _heartbeat(flags: int) -> bytes:
    order = '<' if flags & 0x01 else '>'
    body = b'\x00\x00\x00\x00' + WRITER + struct.pack(order + 'iIiIi', 0, 1, 0, 0, 7)
    return _submessage(0x07, flags, body)


def _frame(*submessages: bytes, protocol: int = 17, fragment_offset: int = 0) -> bytes:
    rtps = b'RTPS\x02\x03\x01\x0f' + PREFIX + b''.join(submessages)
    udp = struct.pack('!HHHH', 7410, 7411, 8 + len(rtps), 0) + rtps
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, fragment_offset, 64,
                     protocol, 0, bytes([10, 214, 0, 2]), bytes([10, 214, 0, 1])) + udp
    return b'\x02' * 6 + b'\x04' * 6 + b'\x08\x00' + ip


def test_a_liveliness_heartbeat_names_its_writer_in_either_byte_order() -> None:
    info_destination = _submessage(0x0E, 0x01, bytes(12))
    for flags in (0x07, 0x06):     # little endian, big endian; final and liveliness set
        frame = _frame(info_destination, _heartbeat(flags), _submessage(0x80, 0x01, bytes(8)))
        assert liveliness_writers(frame) == [PREFIX.hex() + WRITER.hex()]


def test_an_empty_info_timestamp_does_not_end_the_message() -> None:
    invalidate_time = _submessage(0x09, 0x03, b'')
    assert liveliness_writers(_frame(invalidate_time, _heartbeat(0x07))) == [
        PREFIX.hex() + WRITER.hex()]


def test_info_source_changes_the_writer_prefix() -> None:
    info_source = _submessage(0x0C, 0x01, bytes(8) + OTHER_PREFIX)
    assert liveliness_writers(_frame(info_source, _heartbeat(0x07))) == [
        OTHER_PREFIX.hex() + WRITER.hex()]


def test_other_frames_assert_nothing() -> None:
    assert liveliness_writers(_frame(_heartbeat(0x03))) == []     # no liveliness flag
    assert liveliness_writers(_frame(_heartbeat(0x07), protocol=6)) == []    # not UDP
    assert liveliness_writers(_frame(_heartbeat(0x07), fragment_offset=185)) == []
    arp = b'\xff' * 6 + b'\x04' * 6 + b'\x08\x06' + bytes(28)
    assert liveliness_writers(arp) == []
    assert liveliness_writers(_frame(_heartbeat(0x07))[:40]) == []    # cut short
