"""Unit tests of the H-bridge's two-PWM wiring and optional enable line."""

import pytest

from viam_session.chips import LineInUseError, open_chip
from viam_session.chips.sim_chip import read_line_changes, read_line_values
from viam_session.drivers.h_bridge import HBridgeMotor

IN1, IN2, ENABLE = 12, 13, 5


@pytest.fixture
def chip(tmp_path):
    """Provide a simulated chip held by 'motor', closed after the test."""
    with open_chip('sim', str(tmp_path), holder='motor') as sim_chip:
        yield sim_chip


def make_motor(chip, **overrides):
    """Build and claim a two-PWM motor (max duty 0.5) with an enable line."""
    settings = {'chip': chip, 'pwm_line': IN1, 'direction_line': IN2, 'pwm_frequency_hz': 200.0,
                'max_duty': 0.5, 'mode': 'two_pwm', 'enable_line': ENABLE}
    settings.update(overrides)
    motor = HBridgeMotor(**settings)
    motor.claim()
    return motor


def outputs(path):
    """Return (IN1 duty, IN2 duty, enable level) as the chip outputs them now."""
    values = read_line_values(path)
    return values[IN1].value, values[IN2].value, values[ENABLE].value


def steps(changes):
    """Return (line, value) of each level or PWM change."""
    return [(c.line, c.value) for c in changes if c.kind in ('level', 'pwm')]


def test_claims_every_line_safe(chip, tmp_path):
    """IN1, IN2 and enable are claimed low; both PWMs at duty 0."""
    make_motor(chip)
    claims = [(c.line, c.value) for c in read_line_changes(tmp_path) if c.kind == 'claim']
    assert claims == [(IN1, 0.0), (IN2, 0.0), (ENABLE, 0.0)]
    assert outputs(tmp_path) == (0.0, 0.0, 0.0)
    values = read_line_values(tmp_path)
    assert (values[IN1].kind, values[IN2].kind, values[ENABLE].kind) == ('pwm', 'pwm', 'level')


@pytest.mark.parametrize('power, expected', [
    (1.0, (0.5, 0.0, 1.0)), (0.5, (0.25, 0.0, 1.0)), (-0.5, (0.0, 0.25, 1.0)),
    (-1.0, (0.0, 0.5, 1.0)), (0.0, (0.0, 0.0, 1.0))])
def test_power_drives_one_pwm_line_per_direction(chip, tmp_path, power, expected):
    """Forward drives IN1, reverse IN2; the enable line is high while driven."""
    motor = make_motor(chip)
    motor.set_power(power)
    assert outputs(tmp_path) == pytest.approx(expected)


def test_reversing_unpowers_the_old_direction_first(chip, tmp_path):
    """From forward to reverse, IN1 goes to 0 before IN2 rises; enable is set once."""
    motor = make_motor(chip)
    motor.set_power(0.8)
    already = len(read_line_changes(tmp_path))
    motor.set_power(-0.6)
    assert steps(read_line_changes(tmp_path)[already:]) == [(IN1, 0.0), (IN2, 0.3)]


def test_enable_goes_high_before_the_first_duty(chip, tmp_path):
    """The enable line rises before any PWM is driven."""
    motor = make_motor(chip)
    already = len(read_line_changes(tmp_path))
    motor.set_power(0.4)
    assert steps(read_line_changes(tmp_path)[already:]) == [(ENABLE, 1.0), (IN1, 0.2)]


def test_stop_unpowers_both_then_disables(chip, tmp_path):
    """stop(): IN1 duty 0, IN2 duty 0, then enable low."""
    motor = make_motor(chip)
    motor.set_power(-0.4)
    already = len(read_line_changes(tmp_path))
    motor.stop()
    assert steps(read_line_changes(tmp_path)[already:]) == [
        (IN1, 0.0), (IN2, 0.0), (ENABLE, 0.0)]
    assert motor.power == 0.0


def test_pwm_direction_mode_with_enable_line(chip, tmp_path):
    """The enable line works the same with a direction line; release frees all three."""
    motor = make_motor(chip, mode='pwm_direction')
    motor.set_power(-0.5)
    assert outputs(tmp_path) == (0.25, 1.0, 1.0)
    motor.release()
    assert outputs(tmp_path) == (0.0, 0.0, 0.0)
    released = [c.line for c in read_line_changes(tmp_path) if c.kind == 'release']
    assert released == [IN1, IN2, ENABLE]


def test_held_enable_line_fails_the_claim_and_frees_the_others(chip, tmp_path):
    """A held enable line fails the claim naming the holder; IN1 and IN2 are given back."""
    with open_chip('sim', str(tmp_path), holder='board') as other:
        other.claim_output(ENABLE, 1)
        with pytest.raises(LineInUseError, match=f'line {ENABLE} of .* in use by board'):
            make_motor(chip)
        other.claim_output(IN1, 0)
        other.claim_output(IN2, 0)


@pytest.mark.parametrize('overrides, message', [
    ({'enable_line': IN1}, 'enable_line must differ'),
    ({'enable_line': IN2}, 'enable_line must differ'),
    ({'mode': 'three_pwm'}, 'mode must be one of'),
])
def test_bad_wiring_is_refused(chip, tmp_path, overrides, message):
    """An enable line shared with another line, or an unknown mode, is refused."""
    with pytest.raises(ValueError, match=message):
        make_motor(chip, **overrides)
    assert read_line_changes(tmp_path) == []
