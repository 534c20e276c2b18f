"""Unit tests of the ROS-free GPIO output core on a simulated chip."""

import pytest

from viam_session.chips import open_chip
from viam_session.chips.sim_chip import read_line_changes, read_line_values
from viam_session.drivers.gpio_output_core import GpioOutput

LINE = 23


@pytest.fixture
def chip(tmp_path):
    """Provide a simulated chip held by 'relay', closed after the test."""
    with open_chip('sim', str(tmp_path), holder='relay') as sim_chip:
        yield sim_chip


def level(path):
    """Return the level the line outputs now."""
    return read_line_values(path)[LINE].value


@pytest.mark.parametrize('active_level, safe_value, safe_level', [
    (1, False, 0.0), (0, False, 1.0), (1, True, 1.0), (0, True, 0.0)])
def test_claimed_at_the_safe_level(chip, tmp_path, active_level, safe_value, safe_level):
    """The line is claimed at the level of the safe value, through the active level."""
    output = GpioOutput(chip=chip, line=LINE, active_level=active_level, safe_value=safe_value)
    output.claim()
    claims = [c.value for c in read_line_changes(tmp_path) if c.kind == 'claim']
    assert claims == [safe_level]
    assert level(tmp_path) == safe_level
    assert output.value is safe_value


@pytest.mark.parametrize('active_level', [0, 1])
def test_on_drives_the_active_level_and_stop_returns_to_safe(chip, tmp_path, active_level):
    """On is the active level, off the other; stop() goes back to the safe value."""
    output = GpioOutput(chip=chip, line=LINE, active_level=active_level)
    output.claim()
    output.set_value(True)
    assert level(tmp_path) == active_level
    assert output.value is True
    output.stop()
    assert level(tmp_path) == 1 - active_level
    assert output.value is False


@pytest.mark.parametrize('value', [1, 0, 1.0, 'true', None, float('nan')])
def test_non_bool_values_are_refused_and_change_nothing(chip, tmp_path, value):
    """Only True and False are values."""
    output = GpioOutput(chip=chip, line=LINE)
    output.claim()
    output.set_value(True)
    before = read_line_changes(tmp_path)
    with pytest.raises(ValueError, match='value must be a bool'):
        output.set_value(value)
    assert read_line_changes(tmp_path) == before
    assert output.value is True


def test_release_leaves_the_safe_level_and_frees_the_line(chip, tmp_path):
    """release() stops, then gives the line back; twice is harmless; no writes after."""
    output = GpioOutput(chip=chip, line=LINE, active_level=0)
    output.claim()
    output.set_value(True)
    output.release()
    output.release()
    assert level(tmp_path) == 1.0
    assert [c.kind for c in read_line_changes(tmp_path)][-1] == 'release'
    with pytest.raises(RuntimeError, match='not claimed'):
        output.set_value(True)
    with open_chip('sim', str(tmp_path), holder='next') as other:
        other.claim_output(LINE, 0)


@pytest.mark.parametrize('settings, message', [
    ({'active_level': 2}, 'active_level must be 0 or 1'),
    ({'active_level': True}, 'active_level must be 0 or 1'),
    ({'safe_value': 1}, 'safe_value must be a bool'),
])
def test_bad_settings_are_refused(chip, tmp_path, settings, message):
    """Impossible settings raise ValueError before the line is claimed."""
    with pytest.raises(ValueError, match=message):
        GpioOutput(chip=chip, line=LINE, **settings)
    assert read_line_changes(tmp_path) == []
