"""Unit tests of the ROS-free input cores: quadrature decoding, encoder, digital input."""

import math
import queue
import threading

import pytest

from viam_session.chips import LineInUseError
from viam_session.chips.sim_chip import read_line_changes, SimChip
from viam_session.drivers.digital_input_core import DigitalInput
from viam_session.drivers.quadrature import QuadratureDecoder, QuadratureEncoder

A, B, SENTINEL = 17, 27, 40
FORWARD = [(1, 0), (1, 1), (0, 1), (0, 0)]  # A leads B


@pytest.fixture
def chip(tmp_path):
    """Provide the chip the cores claim their lines on."""
    with SimChip(tmp_path, holder='sensor') as sim_chip:
        yield sim_chip


@pytest.fixture
def outside(tmp_path):
    """Provide a second chip on the same directory, wired to the inputs."""
    with SimChip(tmp_path, holder='outside') as sim_chip:
        yield sim_chip


class Sentinel:
    """An extra input on the sensor's chip: once its edge arrives, every earlier one has."""

    def __init__(self, chip, outside):
        self._outside = outside
        self._seen = threading.Semaphore(0)
        self._level = 0
        chip.claim_input(SENTINEL, on_edge=lambda *edge: self._seen.release())

    def flush(self):
        """Wait until the chip's thread has handled every edge driven so far."""
        self._level = 1 - self._level
        self._outside.drive_input(SENTINEL, self._level)
        assert self._seen.acquire(timeout=10)


def test_decoder_counts_forward_and_backward_cycles():
    """Four steps per cycle: +1 each forward (A leads B), -1 each backward."""
    decoder = QuadratureDecoder(a=0, b=0)
    steps = [decoder.update(a, b) for a, b in FORWARD * 3]
    assert steps == [1] * 12
    backward = list(reversed(FORWARD[:-1])) + [(0, 0)]
    assert [decoder.update(a, b) for a, b in backward] == [-1] * 4
    assert (decoder.count, decoder.errors) == (8, 0)


def test_decoder_jitter_on_one_channel_nets_zero_and_repeats_count_nothing():
    """A channel bouncing back and forth counts +1 -1; a state seen again counts 0."""
    decoder = QuadratureDecoder(a=0, b=0)
    assert [decoder.update(1, 0), decoder.update(0, 0), decoder.update(0, 0)] == [1, -1, 0]
    assert decoder.count == 0


def test_decoder_counts_a_double_change_as_an_error_not_a_step():
    """Both channels changing at once is a missed step: counted as an error."""
    decoder = QuadratureDecoder(a=0, b=0)
    assert decoder.update(1, 1) == 0
    assert (decoder.count, decoder.errors) == (0, 1)
    assert decoder.update(0, 1) == 1


def test_encoder_counts_edges_driven_from_outside(chip, outside):
    """Edges driven on A and B by another chip are decoded into counts and radians."""
    encoder = QuadratureEncoder(chip=chip, a_line=A, b_line=B, counts_per_revolution=8.0)
    encoder.claim()
    sentinel = Sentinel(chip, outside)
    assert encoder.sample(1_000_000_000) == (0.0, 0.0)
    levels = {A: 0, B: 0}
    for a, b in FORWARD * 2 + FORWARD[:2]:  # ten steps forward
        for line, level in ((A, a), (B, b)):
            if levels[line] != level:
                outside.drive_input(line, level)
                levels[line] = level
    sentinel.flush()
    assert (encoder.count, encoder.errors) == (10, 0)
    position, velocity = encoder.sample(1_500_000_000)
    assert position == pytest.approx(10 / 8 * 2 * math.pi)
    assert velocity == pytest.approx(10 / 8 * 2 * math.pi / 0.5)
    outside.drive_input(B, 0)  # one step back: (1, 1) -> (1, 0)
    sentinel.flush()
    assert encoder.count == 9
    assert encoder.sample(2_000_000_000)[1] == pytest.approx(-1 / 8 * 2 * math.pi / 0.5)


def test_encoder_starts_from_the_levels_at_claim(chip, outside):
    """Levels driven before the claim are the start, not steps."""
    outside.drive_input(A, 1)
    outside.drive_input(B, 1)
    encoder = QuadratureEncoder(chip=chip, a_line=A, b_line=B, counts_per_revolution=4.0)
    encoder.claim()
    sentinel = Sentinel(chip, outside)
    outside.drive_input(A, 0)  # (1, 1) -> (0, 1): forward
    sentinel.flush()
    assert encoder.count == 1


def test_encoder_release_frees_both_lines_and_stops_counting(chip, outside, tmp_path):
    """release() gives both lines back; later edges are not counted; twice is harmless."""
    encoder = QuadratureEncoder(chip=chip, a_line=A, b_line=B, counts_per_revolution=4.0)
    encoder.claim()
    sentinel = Sentinel(chip, outside)
    encoder.stop()
    encoder.release()
    encoder.release()
    outside.drive_input(A, 1)
    sentinel.flush()
    assert encoder.count == 0
    released = [c.line for c in read_line_changes(tmp_path) if c.kind == 'release']
    assert released == [A, B]


def test_encoder_claim_fails_if_b_is_held_and_leaves_a_free(chip, outside, tmp_path):
    """A held B line fails the claim naming the holder, and A is given back."""
    outside.claim_output(B, 0)
    encoder = QuadratureEncoder(chip=chip, a_line=A, b_line=B, counts_per_revolution=4.0)
    with pytest.raises(LineInUseError, match=f'line {B} of .* in use by outside'):
        encoder.claim()
    outside.claim_output(A, 0)


@pytest.mark.parametrize('settings, message', [
    ({'b_line': A}, 'a_line and b_line must differ'),
    ({'counts_per_revolution': 0.0}, 'counts_per_revolution must be positive'),
    ({'counts_per_revolution': math.nan}, 'counts_per_revolution must be positive'),
])
def test_encoder_bad_settings_are_refused(chip, tmp_path, settings, message):
    """Impossible settings raise ValueError before any line is claimed."""
    arguments = {'chip': chip, 'a_line': A, 'b_line': B, 'counts_per_revolution': 4.0}
    with pytest.raises(ValueError, match=message):
        QuadratureEncoder(**{**arguments, **settings})
    assert read_line_changes(tmp_path) == []


@pytest.mark.parametrize('active_level', [0, 1])
def test_digital_input_reports_each_change_with_its_time(chip, outside, tmp_path, active_level):
    """Changes are reported once each, as the logical value, with the record's time."""
    changes = queue.Queue()
    switch = DigitalInput(chip=chip, line=22, active_level=active_level,
                          on_change=lambda value, t_ns: changes.put((value, t_ns)))
    switch.claim()
    assert switch.value is (active_level == 0)  # an undriven line reads 0
    for level in (1, 1, 0):
        outside.drive_input(22, level)
    driven = [c for c in read_line_changes(tmp_path, 22) if c.kind == 'input']
    first, second = changes.get(timeout=10), changes.get(timeout=10)
    assert first == (active_level == 1, driven[0].t_ns)
    assert second == (active_level == 0, driven[2].t_ns)
    assert switch.value is (active_level == 0)
    switch.stop()
    switch.release()
    switch.release()
    assert read_line_changes(tmp_path, 22)[-1].kind == 'release'


def test_digital_input_bad_active_level_is_refused(chip):
    """The active level is 0 or 1."""
    with pytest.raises(ValueError, match='active_level must be 0 or 1'):
        DigitalInput(chip=chip, line=22, active_level=2, on_change=lambda *change: None)
