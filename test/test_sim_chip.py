"""Unit tests of the simulated GPIO chip: records, line claims across chips and processes."""

import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from viam_session.chips import ChipError, LineInUseError, open_chip
from viam_session.chips.sim_chip import LineChange, SimChip
from viam_session.chips.sim_chip import read_line_changes, read_line_values

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Claims line 5, drives PWM 0.7 on it, says so, then waits to be killed.
CHILD_SCRIPT = """
import signal
import sys

from viam_session.chips.sim_chip import SimChip

chip = SimChip(sys.argv[1], holder='child')
chip.claim_output(5, 0)
chip.set_pwm(5, 1000.0, 0.7)
print('ready', flush=True)
signal.pause()  # until the test kills it
"""


@pytest.fixture
def chip(tmp_path):
    """Provide a simulated chip named 'alice', closed after the test."""
    with SimChip(tmp_path, holder='alice') as sim_chip:
        yield sim_chip


def kinds(changes):
    """Return (line, kind, value) of each change, with NaN values as None."""
    return [(c.line, c.kind, None if math.isnan(c.value) else c.value) for c in changes]


def test_claim_write_and_pwm_are_recorded_in_order(chip, tmp_path):
    """Every change is appended with its line, kind, value, frequency, pid and holder."""
    chip.claim_output(3, 1)
    chip.write(3, 0)
    chip.claim_output(4, 0)
    chip.set_pwm(4, 500.0, 0.25)
    chip.release(3)
    changes = read_line_changes(tmp_path)
    assert kinds(changes) == [
        (3, 'claim', 1.0), (3, 'level', 1.0), (3, 'level', 0.0),
        (4, 'claim', 0.0), (4, 'level', 0.0), (4, 'pwm', 0.25),
        (3, 'release', None)]
    assert all(isinstance(change, LineChange) for change in changes)
    assert {change.pid for change in changes} == {os.getpid()}
    assert {change.holder for change in changes} == {'alice'}
    assert [change.frequency_hz for change in changes if change.kind == 'pwm'] == [500.0]
    assert chip.path == tmp_path


def test_change_timestamps_are_monotonic_clock_and_non_decreasing(chip, tmp_path):
    """t_ns is CLOCK_MONOTONIC (comparable across processes) and never goes back."""
    before = time.monotonic_ns()
    chip.claim_output(1, 0)
    for duty in (0.1, 0.2, 0.3, 0.4, 0.5):
        chip.set_pwm(1, 1000.0, duty)
    chip.write(1, 1)
    after = time.monotonic_ns()
    stamps = [change.t_ns for change in read_line_changes(tmp_path)]
    assert len(stamps) == 8
    assert stamps == sorted(stamps)
    assert before <= stamps[0] and stamps[-1] <= after


def test_read_line_changes_filters_by_line(chip, tmp_path):
    """Asking for one line returns only that line's changes."""
    chip.claim_output(1, 0)
    chip.claim_output(2, 1)
    chip.write(1, 1)
    assert kinds(read_line_changes(tmp_path, 1)) == [
        (1, 'claim', 0.0), (1, 'level', 0.0), (1, 'level', 1.0)]
    assert kinds(read_line_changes(tmp_path, 2)) == [(2, 'claim', 1.0), (2, 'level', 1.0)]
    assert read_line_changes(tmp_path, 9) == []


def test_reading_a_chip_never_written_is_empty(tmp_path):
    """A directory without records reads as no changes and no values."""
    assert read_line_changes(tmp_path / 'missing') == []
    assert read_line_values(tmp_path / 'missing') == {}


def test_read_line_values_shows_what_each_line_outputs_now(chip, tmp_path):
    """The last level or PWM change of each line is its current output."""
    chip.claim_output(1, 0)
    chip.write(1, 1)
    chip.claim_output(2, 0)
    chip.set_pwm(2, 200.0, 0.6)
    chip.set_pwm(2, 200.0, 0.3)
    chip.release(1)
    values = read_line_values(tmp_path)
    assert set(values) == {1, 2}
    assert (values[1].kind, values[1].value) == ('level', 1.0)
    assert (values[2].kind, values[2].value, values[2].frequency_hz) == ('pwm', 0.3, 200.0)


def test_second_chip_cannot_claim_a_held_line_and_error_names_holder(chip, tmp_path):
    """A line has one owner at a time; the refusal names the holder and its pid."""
    chip.claim_output(2, 0)
    before = read_line_changes(tmp_path)
    with SimChip(tmp_path, holder='bob') as other:
        message = rf'line 2 of .* is in use by alice \(pid {os.getpid()}\)'
        with pytest.raises(LineInUseError, match=message):
            other.claim_output(2, 1)
        with pytest.raises(ChipError, match='not claimed by bob'):
            other.write(2, 1)
        other.claim_output(3, 0)  # other lines are free
    assert read_line_changes(tmp_path, 2) == [c for c in before if c.line == 2]


def test_same_chip_claiming_a_line_twice_raises_line_in_use(chip, tmp_path):
    """Claiming a line the chip already holds is refused and records nothing."""
    chip.claim_output(2, 0)
    before = read_line_changes(tmp_path)
    with pytest.raises(LineInUseError, match='line 2 of .* is already claimed by alice'):
        chip.claim_output(2, 1)
    assert read_line_changes(tmp_path) == before


def test_line_in_use_error_is_a_chip_error():
    """Callers catching ChipError also catch line conflicts."""
    assert issubclass(LineInUseError, ChipError)


def test_after_close_line_can_be_claimed_and_keeps_its_last_value(tmp_path):
    """Closing releases every claim; the lines keep their last output, as in the kernel."""
    first = SimChip(tmp_path, holder='alice')
    first.claim_output(1, 1)
    first.claim_output(2, 0)
    first.set_pwm(2, 1000.0, 0.4)
    first.close()
    assert first.closed
    values = read_line_values(tmp_path)
    assert (values[1].kind, values[1].value) == ('level', 1.0)
    assert (values[2].kind, values[2].value) == ('pwm', 0.4)
    assert kinds(read_line_changes(tmp_path))[-2:] == [(1, 'release', None), (2, 'release', None)]
    with SimChip(tmp_path, holder='bob') as second:
        second.claim_output(1, 0)
        second.claim_output(2, 0)


def test_release_lets_another_chip_claim_the_line(chip, tmp_path):
    """A released line is free for anyone; releasing an unheld line does nothing."""
    chip.claim_output(4, 1)
    chip.release(4)
    before = read_line_changes(tmp_path)
    chip.release(4)
    chip.release(8)
    assert read_line_changes(tmp_path) == before
    with SimChip(tmp_path, holder='bob') as other:
        other.claim_output(4, 0)
    chip.claim_output(4, 1)


def test_claims_are_released_when_the_owning_process_dies(tmp_path):
    """A SIGKILLed owner's claim goes away with it, and the line keeps its PWM."""
    child = subprocess.Popen(
        [sys.executable, '-c', CHILD_SCRIPT, str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        env={**os.environ, 'PYTHONPATH': os.pathsep.join(
            filter(None, [REPO_ROOT, os.environ.get('PYTHONPATH')]))})
    try:
        assert child.stdout.readline().strip() == 'ready'
        with SimChip(tmp_path, holder='test') as chip:
            message = rf'line 5 of .* is in use by child \(pid {child.pid}\)'
            with pytest.raises(LineInUseError, match=message):
                chip.claim_output(5, 0)
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
            values = read_line_values(tmp_path)
            assert (values[5].kind, values[5].value, values[5].pid) == ('pwm', 0.7, child.pid)
            chip.claim_output(5, 0)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()


def test_close_twice_is_safe(tmp_path):
    """close() may run twice; the second does nothing."""
    sim_chip = SimChip(tmp_path, holder='alice')
    sim_chip.claim_output(1, 0)
    assert not sim_chip.closed
    sim_chip.close()
    before = read_line_changes(tmp_path)
    sim_chip.close()
    assert sim_chip.closed
    assert read_line_changes(tmp_path) == before


def test_context_manager_closes_the_chip(tmp_path):
    """Leaving the with block releases the lines and closes the chip."""
    with SimChip(tmp_path, holder='alice') as sim_chip:
        sim_chip.claim_output(1, 0)
    assert sim_chip.closed
    assert kinds(read_line_changes(tmp_path))[-1] == (1, 'release', None)


def test_closed_chip_refuses_operations(tmp_path):
    """A closed chip cannot claim or drive lines and records nothing."""
    sim_chip = SimChip(tmp_path, holder='alice')
    sim_chip.claim_output(1, 0)
    sim_chip.close()
    before = read_line_changes(tmp_path)
    with pytest.raises(ChipError, match='is closed'):
        sim_chip.claim_output(2, 0)
    with pytest.raises(ChipError, match='is closed'):
        sim_chip.write(1, 1)
    with pytest.raises(ChipError, match='is closed'):
        sim_chip.set_pwm(1, 100.0, 0.5)
    assert read_line_changes(tmp_path) == before


def test_writes_to_unclaimed_lines_raise_and_record_nothing(chip, tmp_path):
    """Driving a line the chip does not hold is refused."""
    chip.claim_output(1, 0)
    before = read_line_changes(tmp_path)
    with pytest.raises(ChipError, match='line 2 of .* is not claimed by alice'):
        chip.write(2, 1)
    with pytest.raises(ChipError, match='line 3 of .* is not claimed by alice'):
        chip.set_pwm(3, 100.0, 0.5)
    assert read_line_changes(tmp_path) == before


@pytest.mark.parametrize('duty', [-0.01, 1.01, 2.0, math.nan, math.inf, -math.inf])
def test_bad_duty_raises_and_records_nothing(chip, tmp_path, duty):
    """Duty outside [0, 1], NaN and infinities are refused."""
    chip.claim_output(1, 0)
    before = read_line_changes(tmp_path)
    with pytest.raises(ChipError, match=re.escape(f'line 1: PWM duty must be in [0, 1], '
                                                  f'got {duty!r}')):
        chip.set_pwm(1, 100.0, duty)
    assert read_line_changes(tmp_path) == before


@pytest.mark.parametrize('frequency_hz', [0.0, -50.0, math.nan])
def test_bad_frequency_raises_and_records_nothing(chip, tmp_path, frequency_hz):
    """A PWM frequency that is not positive is refused."""
    chip.claim_output(1, 0)
    before = read_line_changes(tmp_path)
    with pytest.raises(ChipError, match='line 1: PWM frequency must be positive'):
        chip.set_pwm(1, frequency_hz, 0.5)
    assert read_line_changes(tmp_path) == before


def test_infinite_frequency_raises_and_records_nothing(chip, tmp_path):
    """An infinite PWM frequency is refused like any other impossible frequency."""
    chip.claim_output(1, 0)
    before = read_line_changes(tmp_path)
    with pytest.raises(ChipError, match='line 1: PWM frequency'):
        chip.set_pwm(1, math.inf, 0.5)
    assert read_line_changes(tmp_path) == before


@pytest.mark.parametrize('level', [2, -1, 0.5, '1', None])
def test_bad_level_raises_and_records_nothing(chip, tmp_path, level):
    """Only 0 and 1 are levels."""
    chip.claim_output(1, 0)
    before = read_line_changes(tmp_path)
    with pytest.raises(ChipError, match=re.escape(f'line 1: level must be 0 or 1, '
                                                  f'got {level!r}')):
        chip.write(1, level)
    assert read_line_changes(tmp_path) == before


@pytest.mark.parametrize('level', [2, -1, 0.5])
def test_claim_with_bad_level_raises_and_leaves_line_free(chip, tmp_path, level):
    """A claim at a level other than 0 or 1 is refused and does not take the line."""
    with pytest.raises(ChipError, match='level must be 0 or 1'):
        chip.claim_output(1, level)
    assert read_line_changes(tmp_path) == []
    chip.claim_output(1, 0)


def test_open_chip_sim_backend_opens_a_sim_chip(tmp_path):
    """The factory opens a simulated chip in the given (new) directory."""
    directory = tmp_path / 'nested' / 'chip'
    with open_chip('sim', str(directory), holder='factory') as sim_chip:
        assert isinstance(sim_chip, SimChip)
        sim_chip.claim_output(1, 1)
    assert read_line_changes(directory)[0].holder == 'factory'


def test_sim_chip_in_unusable_directory_raises_chip_error(tmp_path):
    """A path that cannot be a directory gives a ChipError naming it."""
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    with pytest.raises(ChipError, match='cannot open simulated chip .*file'):
        SimChip(blocker / 'chip', holder='alice')
