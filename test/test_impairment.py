"""
The impairment link (TAP devices + forwarder) carries, cuts, drops and delays real traffic.

A UDP echo server runs in namespace `b`; a prober in namespace `a` sends datagrams across the
link and reports which came back and their round trips. Skipped where namespaces cannot be used.
"""

import json
import subprocess
import sys
from typing import Iterator

import pytest

from viam_session_harness.netfault import ImpairedPair, netns_unavailable_reason

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(netns_unavailable_reason() is not None,
                                 reason=str(netns_unavailable_reason()))]

PORT = 9999
DEADLINE_S = 60.0

# Echoes every datagram, except `?`, which it answers with how many others it has received.
ECHO = f"""
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(('0.0.0.0', {PORT}))
print('ready', flush=True)
received = 0
while True:
    data, peer = server.recvfrom(2048)
    if data == b'?':
        server.sendto(str(received).encode(), peer)
    else:
        received += 1
        server.sendto(data, peer)
"""

# Sends argv[2] datagrams to argv[1], 1 ms apart (a send rate, not a wait), without waiting
# for echoes.
BLAST = f"""
import socket
import sys
import time
blaster = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for sequence in range(int(sys.argv[2])):
    blaster.sendto(b'x%d' % sequence, (sys.argv[1], {PORT}))
    time.sleep(0.001)
"""

# Sends argv[2] datagrams to argv[1] one after another (each waits argv[3] s for its echo);
# prints {"sent": n, "rtts_s": [...]} with the round trip of each echo that came back.
PROBE = f"""
import json
import socket
import sys
import time
host, count, wait_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rtts = []
for sequence in range(count):
    sent = time.monotonic()
    probe.sendto(str(sequence).encode(), (host, {PORT}))
    probe.settimeout(wait_s)
    try:
        while probe.recv(2048) != str(sequence).encode():
            pass
        rtts.append(time.monotonic() - sent)
    except socket.timeout:
        pass
print(json.dumps({{'sent': count, 'rtts_s': rtts}}))
"""


@pytest.fixture(scope='module')
def pair() -> Iterator[ImpairedPair]:
    """Provide one impaired pair with an echo server in `b` for the module's tests."""
    with ImpairedPair(seed=8) as impaired:
        echo = impaired.run(impaired.b.ns, [sys.executable, '-c', ECHO],
                            stdout=subprocess.PIPE, text=True)
        # A datagram that arrives before the server has bound its port is lost.
        assert echo.stdout.readline().strip() == 'ready'
        yield impaired


def in_a(pair: ImpairedPair, script: str, *args: object) -> str:
    """Run a Python script in namespace `a`; return its output."""
    done = subprocess.run(
        ['ip', 'netns', 'exec', pair.a.ns, sys.executable, '-c', script, *map(str, args)],
        capture_output=True, text=True, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


def probe(pair: ImpairedPair, count: int, wait_s: float) -> dict:
    """Send `count` datagrams from `a` to the echo server in `b`; return the prober's report."""
    return json.loads(in_a(pair, PROBE, pair.b.address, count, wait_s))


def received(pair: ImpairedPair) -> int:
    """Ask the echo server, over a clean link, how many datagrams it has received."""
    answer = in_a(pair, 'import socket, sys\n'
                  's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n'
                  's.settimeout(5)\n'
                  f's.sendto(b"?", (sys.argv[1], {PORT}))\n'
                  'print(s.recv(64).decode())', pair.b.address)
    return int(answer)


def test_frames_cross_without_impairment(pair: ImpairedPair) -> None:
    """Every datagram comes back, quickly, and the forwarder counts the frames it carried."""
    pair.set_impairment(loss=0.0, delay_s=0.0)
    result = probe(pair, 50, 2.0)
    assert len(result['rtts_s']) == 50
    assert max(result['rtts_s']) < 0.5
    assert pair.stats()['forwarded'] >= 100


def test_full_loss_cuts_the_link(pair: ImpairedPair) -> None:
    """At 100 % loss nothing crosses; back at 0 % it does again."""
    pair.set_impairment(loss=1.0)
    assert probe(pair, 5, 0.2)['rtts_s'] == []
    pair.set_impairment(loss=0.0)
    assert len(probe(pair, 5, 2.0)['rtts_s']) == 5


def test_link_down_cuts_the_link(pair: ImpairedPair) -> None:
    """With the TAP in `b` down nothing crosses; up again, it does."""
    pair.set_link(pair.b.ns, pair.b.dev, up=False)
    try:
        assert probe(pair, 5, 0.2)['rtts_s'] == []
    finally:
        pair.set_link(pair.b.ns, pair.b.dev, up=True)
    assert len(probe(pair, 5, 2.0)['rtts_s']) >= 4  # the first may wait for ARP


def test_partial_loss_drops_about_that_share(pair: ImpairedPair) -> None:
    """At 30 % loss about 70 % of 1000 datagrams reach the other side (seeded law)."""
    before = received(pair)
    pair.set_impairment(loss=0.3)
    try:
        in_a(pair, BLAST, pair.b.address, 1000)
    finally:
        pair.set_impairment(loss=0.0)
    delivered = (received(pair) - before) / 1000
    print(f'30 % loss: {delivered:.1%} of 1000 datagrams delivered (expected 70 %)')
    assert delivered == pytest.approx(0.7, abs=0.06)  # 4.4 standard deviations


def test_delay_is_added_to_each_direction(pair: ImpairedPair) -> None:
    """A one-way delay of 100 ms adds about 200 ms to a round trip (both directions)."""
    pair.set_impairment(delay_s=0.1)
    try:
        rtts = sorted(probe(pair, 10, 2.0)['rtts_s'])
    finally:
        pair.set_impairment(delay_s=0.0)
    assert len(rtts) == 10
    print(f'delay 100 ms each way: round trips {rtts[0] * 1e3:.1f} to {rtts[-1] * 1e3:.1f} ms')
    assert 0.2 <= rtts[len(rtts) // 2] < 0.3
