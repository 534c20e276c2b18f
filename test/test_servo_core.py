"""Unit tests of the ROS-free hobby servo core on a simulated chip."""

import math

import pytest

from viam_session.chips import open_chip
from viam_session.chips.sim_chip import read_line_changes, read_line_values
from viam_session.drivers.servo_core import HobbyServo

LINE = 18


@pytest.fixture
def chip(tmp_path):
    """Provide a simulated chip held by 'servo', closed after the test."""
    with open_chip('sim', str(tmp_path), holder='servo') as sim_chip:
        yield sim_chip


def make_servo(chip, **overrides):
    """Build a servo: 1000-2000 us over 90 degrees, limits [10, 80], 50 Hz, and claim it."""
    settings = {'chip': chip, 'line': LINE, 'min_pulse_us': 1000.0, 'max_pulse_us': 2000.0,
                'travel_deg': 90.0, 'min_angle_deg': 10.0, 'max_angle_deg': 80.0,
                'frequency_hz': 50.0}
    settings.update(overrides)
    servo = HobbyServo(**settings)
    servo.claim()
    return servo


def pulse(path):
    """Return (kind, value, frequency) of what the servo line outputs now."""
    change = read_line_values(path)[LINE]
    return change.kind, change.value, change.frequency_hz


def test_claimed_released_no_pulses(chip, tmp_path):
    """The line is claimed low, with no pulses and no angle."""
    servo = make_servo(chip)
    assert pulse(tmp_path) == ('level', 0.0, 0.0)
    assert servo.angle_deg is None


@pytest.mark.parametrize('angle, width', [(10.0, 1111.111), (45, 1500.0), (80.0, 1888.889)])
def test_angle_maps_linearly_to_pulse_width(chip, tmp_path, angle, width):
    """Angle a is min + a / travel * (max - min) microseconds at the servo frequency."""
    servo = make_servo(chip)
    servo.set_angle(angle)
    kind, value, frequency = pulse(tmp_path)
    assert (kind, frequency) == ('servo', 50.0)
    assert value == pytest.approx(width, abs=1e-3)
    assert servo.angle_deg == angle
    assert isinstance(servo.angle_deg, float)


@pytest.mark.parametrize('angle', [
    9.99, 80.01, -10.0, 180.0, math.nan, math.inf, -math.inf, None, '45', True, [45.0]])
def test_bad_angles_are_refused_and_change_nothing(chip, tmp_path, angle):
    """Angles outside the limits, NaN, infinities and non-numbers leave the servo as it is."""
    servo = make_servo(chip)
    servo.set_angle(30.0)
    before = read_line_changes(tmp_path)
    with pytest.raises(ValueError, match='angle must be'):
        servo.set_angle(angle)
    assert read_line_changes(tmp_path) == before
    assert servo.angle_deg == 30.0


def test_stop_releases_the_servo_and_release_frees_the_line(chip, tmp_path):
    """stop() ends the pulses (width 0); release() also gives the line back, once."""
    servo = make_servo(chip)
    servo.set_angle(45.0)
    servo.stop()
    assert pulse(tmp_path) == ('servo', 0.0, 50.0)
    assert servo.angle_deg is None
    servo.set_angle(20.0)
    servo.release()
    before = read_line_changes(tmp_path)
    servo.release()
    servo.stop()
    assert read_line_changes(tmp_path) == before
    assert [c.kind for c in before][-2:] == ['servo', 'release']
    assert pulse(tmp_path) == ('servo', 0.0, 50.0)
    with pytest.raises(RuntimeError, match='not claimed'):
        servo.set_angle(45.0)


@pytest.mark.parametrize('overrides, message', [
    ({'min_pulse_us': 400.0}, 'servo pulses must satisfy'),
    ({'max_pulse_us': 2600.0}, 'servo pulses must satisfy'),
    ({'min_pulse_us': 2000.0}, 'servo pulses must satisfy'),
    ({'min_pulse_us': math.nan}, 'servo pulses must satisfy'),
    ({'frequency_hz': 30.0}, r'frequency_hz must be in \[40, 500\]'),
    ({'frequency_hz': 500.0}, 'does not fit in the period'),
    ({'travel_deg': 0.0}, 'travel_deg must be positive'),
    ({'travel_deg': math.inf}, 'travel_deg must be positive'),
    ({'min_angle_deg': 80.0}, 'angle limits must satisfy'),
    ({'max_angle_deg': 91.0}, 'angle limits must satisfy'),
    ({'min_angle_deg': -1.0}, 'angle limits must satisfy'),
])
def test_bad_settings_are_refused(chip, tmp_path, overrides, message):
    """Impossible settings raise ValueError before the line is claimed."""
    with pytest.raises(ValueError, match=message):
        make_servo(chip, **overrides)
    assert read_line_changes(tmp_path) == []
