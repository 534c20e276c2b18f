"""Unit tests of the H-bridge DC motor driver on a simulated chip."""

import math

import pytest

from viam_session.chips import LineInUseError, open_chip
from viam_session.chips.sim_chip import read_line_changes, read_line_values
from viam_session.drivers.h_bridge import HBridgeMotor

PWM = 12
DIRECTION = 13
FREQUENCY_HZ = 1000.0
MAX_DUTY = 0.8


@pytest.fixture
def chip(tmp_path):
    """Provide a simulated chip held by 'motor', closed after the test."""
    with open_chip('sim', str(tmp_path), holder='motor') as sim_chip:
        yield sim_chip


def make_motor(chip, **overrides):
    """Build a motor on PWM line 12 and direction line 13, with optional overrides."""
    settings = {'chip': chip, 'pwm_line': PWM, 'direction_line': DIRECTION,
                'pwm_frequency_hz': FREQUENCY_HZ, 'max_duty': MAX_DUTY}
    settings.update(overrides)
    return HBridgeMotor(**settings)


@pytest.fixture
def motor(chip):
    """Provide a motor whose lines are claimed."""
    hbridge = make_motor(chip)
    hbridge.claim()
    return hbridge


def outputs(path):
    """Return (PWM duty, direction level) as the chip outputs them now."""
    values = read_line_values(path)
    assert values[PWM].kind == 'pwm'
    assert values[DIRECTION].kind == 'level'
    return values[PWM].value, values[DIRECTION].value


def steps(changes):
    """Return (line, kind, value) of each level or PWM change."""
    return [(c.line, c.kind, c.value) for c in changes if c.kind in ('level', 'pwm')]


def test_claim_puts_pwm_zero_and_direction_low(motor, tmp_path):
    """Both lines are claimed in the safe state: duty 0, direction low."""
    assert outputs(tmp_path) == (0.0, 0.0)
    assert motor.power == 0.0
    claims = [(c.line, c.value) for c in read_line_changes(tmp_path) if c.kind == 'claim']
    assert claims == [(PWM, 0.0), (DIRECTION, 0.0)]
    pwm_changes = [c for c in read_line_changes(tmp_path, PWM) if c.kind == 'pwm']
    assert [c.frequency_hz for c in pwm_changes] == [FREQUENCY_HZ]


@pytest.mark.parametrize('power, duty, direction', [
    (1.0, 0.8, 0.0),
    (0.5, 0.4, 0.0),
    (0.0, 0.0, 0.0),
    (-0.25, 0.2, 1.0),
    (-1.0, 0.8, 1.0),
    (1, 0.8, 0.0),
])
def test_set_power_maps_to_duty_and_direction(motor, tmp_path, power, duty, direction):
    """Power p drives duty |p| * max_duty, direction high for reverse."""
    motor.set_power(power)
    pwm_duty, direction_level = outputs(tmp_path)
    assert pwm_duty == pytest.approx(duty)
    assert direction_level == direction
    assert motor.power == power
    assert isinstance(motor.power, float)


def test_pwm_uses_configured_frequency(motor, tmp_path):
    """Every PWM change uses the motor's frequency."""
    motor.set_power(0.5)
    motor.set_power(-0.5)
    frequencies = {c.frequency_hz for c in read_line_changes(tmp_path, PWM) if c.kind == 'pwm'}
    assert frequencies == {FREQUENCY_HZ}


@pytest.mark.parametrize('start, end, direction', [(0.5, -0.75, 1.0), (-0.5, 0.75, 0.0)])
def test_reversing_goes_through_pwm_zero_before_direction_changes(
        motor, tmp_path, start, end, direction):
    """Changing direction unpowers the bridge first, then flips direction, then powers."""
    motor.set_power(start)
    already = len(read_line_changes(tmp_path))
    motor.set_power(end)
    after = steps(read_line_changes(tmp_path)[already:])
    assert after[0] == (PWM, 'pwm', 0.0)
    assert after[1] == (DIRECTION, 'level', direction)
    assert after[2][:2] == (PWM, 'pwm')
    assert after[2][2] == pytest.approx(abs(end) * MAX_DUTY)
    assert len(after) == 3


def test_same_direction_change_does_not_touch_direction(motor, tmp_path):
    """A new power in the same direction changes only the duty."""
    motor.set_power(-0.5)
    already = len(read_line_changes(tmp_path))
    motor.set_power(-0.25)
    after = steps(read_line_changes(tmp_path)[already:])
    assert [(line, kind) for line, kind, _ in after] == [(PWM, 'pwm')]
    assert after[0][2] == pytest.approx(0.2)


@pytest.mark.parametrize('power', [
    math.nan, math.inf, -math.inf, 1.0001, -1.5, 2, '0.5', None, [0.5], 0.5j])
def test_bad_power_raises_and_leaves_output_unchanged(motor, tmp_path, power):
    """NaN, infinities, out-of-range values and non-numbers change nothing."""
    motor.set_power(-0.5)
    before = read_line_changes(tmp_path)
    with pytest.raises(ValueError, match='power must be'):
        motor.set_power(power)
    assert read_line_changes(tmp_path) == before
    assert motor.power == -0.5
    assert outputs(tmp_path) == (pytest.approx(0.4), 1.0)


def test_stop_leaves_pwm_zero_then_direction_low(motor, tmp_path):
    """stop() unpowers first, then lowers direction."""
    motor.set_power(-0.7)
    already = len(read_line_changes(tmp_path))
    motor.stop()
    assert steps(read_line_changes(tmp_path)[already:]) == [
        (PWM, 'pwm', 0.0), (DIRECTION, 'level', 0.0)]
    assert outputs(tmp_path) == (0.0, 0.0)
    assert motor.power == 0.0


def test_release_leaves_safe_state_and_frees_both_lines(motor, tmp_path):
    """release() stops, gives both lines back at the safe levels, and is safe twice."""
    motor.set_power(0.9)
    motor.release()
    assert outputs(tmp_path) == (0.0, 0.0)
    assert motor.power == 0.0
    released = [c.line for c in read_line_changes(tmp_path) if c.kind == 'release']
    assert released == [PWM, DIRECTION]
    before = read_line_changes(tmp_path)
    motor.release()
    motor.stop()
    assert read_line_changes(tmp_path) == before
    with open_chip('sim', str(tmp_path), holder='next') as other:
        other.claim_output(PWM, 0)
        other.claim_output(DIRECTION, 0)


def test_set_power_before_claim_raises(chip, tmp_path):
    """A motor whose lines are not claimed refuses to drive them."""
    motor = make_motor(chip)
    with pytest.raises(RuntimeError, match='not claimed'):
        motor.set_power(0.5)
    motor.stop()
    motor.release()
    assert read_line_changes(tmp_path) == []


def test_set_power_after_release_raises(motor, tmp_path):
    """After release the motor drives nothing."""
    motor.release()
    before = read_line_changes(tmp_path)
    with pytest.raises(RuntimeError, match='not claimed'):
        motor.set_power(0.5)
    assert read_line_changes(tmp_path) == before


def test_claim_fails_if_direction_line_is_held_and_pwm_is_not_left_claimed(chip, tmp_path):
    """A held direction line fails the claim, and the PWM line is given back."""
    with open_chip('sim', str(tmp_path), holder='intruder') as other:
        other.claim_output(DIRECTION, 1)
        motor = make_motor(chip)
        with pytest.raises(LineInUseError, match=f'line {DIRECTION} of .* in use by intruder'):
            motor.claim()
        pwm_kinds = [c.kind for c in read_line_changes(tmp_path, PWM)]
        assert pwm_kinds == ['claim', 'level', 'release']
        other.claim_output(PWM, 0)
        with pytest.raises(RuntimeError, match='not claimed'):
            motor.set_power(0.5)


def test_claim_fails_if_pwm_line_is_held_and_direction_is_not_claimed(chip, tmp_path):
    """A held PWM line fails the claim before the direction line is touched."""
    with open_chip('sim', str(tmp_path), holder='intruder') as other:
        other.claim_output(PWM, 0)
        motor = make_motor(chip)
        with pytest.raises(LineInUseError, match=f'line {PWM} of .* in use by intruder'):
            motor.claim()
        assert read_line_changes(tmp_path, DIRECTION) == []
        other.claim_output(DIRECTION, 0)


@pytest.mark.parametrize('overrides, message', [
    ({'direction_line': PWM}, 'pwm_line and direction_line must differ'),
    ({'max_duty': 0.0}, r'max_duty must be in \(0, 1\]'),
    ({'max_duty': 1.5}, r'max_duty must be in \(0, 1\]'),
    ({'max_duty': math.nan}, r'max_duty must be in \(0, 1\]'),
    ({'pwm_frequency_hz': 0.0}, 'pwm_frequency_hz must be positive'),
    ({'pwm_frequency_hz': -10.0}, 'pwm_frequency_hz must be positive'),
    ({'pwm_frequency_hz': math.nan}, 'pwm_frequency_hz must be positive'),
    ({'pwm_frequency_hz': math.inf}, 'pwm_frequency_hz must be positive'),
])
def test_bad_configuration_is_refused(chip, tmp_path, overrides, message):
    """Impossible settings raise ValueError before any line is claimed."""
    with pytest.raises(ValueError, match=message):
        make_motor(chip, **overrides)
    assert read_line_changes(tmp_path) == []
