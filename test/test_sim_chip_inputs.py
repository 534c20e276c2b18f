"""Simulated chip inputs, edges across processes, servo pulses and waiting on the record."""

import math
import os
import queue
import signal
import subprocess
import sys
import threading

import pytest

from viam_session.chips import ChipError, LineInUseError
from viam_session.chips.sim_chip import (
    read_line_changes, read_line_values, SimChip, wait_for_line_change)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Drives input line 7 through the levels given on the command line, one record each.
DRIVER_SCRIPT = """
import sys

from viam_session.chips.sim_chip import SimChip

with SimChip(sys.argv[1], holder='switch') as chip:
    for level in sys.argv[2:]:
        chip.drive_input(7, int(level))
"""

# Claims line 7 as an input with an edge callback, says so, then waits to be killed.
CLAIMER_SCRIPT = """
import signal
import sys

from viam_session.chips.sim_chip import SimChip

chip = SimChip(sys.argv[1], holder='reader')
chip.claim_input(7, on_edge=lambda *edge: None)
print('ready', flush=True)
signal.pause()  # until the test kills it
"""


def run_child(script, *args, **kwargs):
    """Start a Python child running `script` with the repository importable."""
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
        filter(None, [REPO_ROOT, os.environ.get('PYTHONPATH')]))}
    return subprocess.Popen([sys.executable, '-c', script, *map(str, args)], env=env,
                            cwd=REPO_ROOT, **kwargs)


@pytest.fixture
def chip(tmp_path):
    """Provide a simulated chip named 'alice', closed after the test."""
    with SimChip(tmp_path, holder='alice') as sim_chip:
        yield sim_chip


@pytest.fixture
def outside(tmp_path):
    """Provide a second chip on the same directory: the world wired to the lines."""
    with SimChip(tmp_path, holder='outside') as sim_chip:
        yield sim_chip


def test_input_never_driven_reads_zero_and_claim_is_recorded(chip, tmp_path):
    """An input nobody drives reads 0; the claim is recorded with the level read."""
    chip.claim_input(3)
    assert chip.read(3) == 0
    assert [(c.line, c.kind, c.value) for c in read_line_changes(tmp_path)] == [
        (3, 'claim_input', 0.0)]


def test_read_follows_levels_driven_from_another_chip(chip, outside, tmp_path):
    """read() returns the level last driven on the line, whoever drove it."""
    outside.drive_input(3, 1)
    chip.claim_input(3)
    assert read_line_changes(tmp_path)[-1].value == 1.0  # the claim saw the level
    assert chip.read(3) == 1
    outside.drive_input(3, 0)
    assert chip.read(3) == 0
    assert read_line_values(tmp_path) == {}  # inputs are not outputs


def test_edges_driven_by_another_process_reach_the_callback_with_record_times(chip, tmp_path):
    """Each change of level is one callback (line, level, t_ns of the record), in order."""
    edges = queue.Queue()
    chip.claim_input(7, on_edge=lambda *edge: edges.put(edge))
    child = run_child(DRIVER_SCRIPT, tmp_path, 1, 1, 0, 1)
    assert child.wait(timeout=30) == 0
    received = [edges.get(timeout=10) for _ in range(3)]
    driven = [c for c in read_line_changes(tmp_path, 7) if c.kind == 'input']
    assert [c.pid for c in driven] == [child.pid] * 4
    # The second 1 is no change, so it is no edge.
    assert received == [(7, 1, driven[0].t_ns), (7, 0, driven[2].t_ns), (7, 1, driven[3].t_ns)]
    assert chip.read(7) == 1


def test_edges_of_lines_driven_before_the_claim_are_not_reported(chip, outside):
    """The callback reports changes after the claim, from the level at the claim."""
    outside.drive_input(4, 1)
    edges = queue.Queue()
    chip.claim_input(4, on_edge=lambda *edge: edges.put(edge))
    chip.claim_input(5, on_edge=lambda *edge: edges.put(edge))
    outside.drive_input(4, 1)
    outside.drive_input(4, 0)
    assert edges.get(timeout=10)[:2] == (4, 0)
    outside.drive_input(5, 1)
    assert edges.get(timeout=10)[:2] == (5, 1)
    assert edges.empty()


def test_released_line_reports_no_more_edges(chip, outside):
    """After release() a line's callback is not called; other lines go on."""
    edges = queue.Queue()
    chip.claim_input(4, on_edge=lambda *edge: edges.put(edge))
    chip.claim_input(5, on_edge=lambda *edge: edges.put(edge))
    chip.release(4)
    outside.drive_input(4, 1)
    outside.drive_input(5, 1)
    assert edges.get(timeout=10)[:2] == (5, 1)  # records are handled in order: 4 came first
    assert edges.empty()


def test_a_failing_callback_does_not_end_the_watch(chip, outside, capfd):
    """A callback that raises is reported on stderr; later edges still arrive."""
    edges = queue.Queue()

    def callback(line, level, t_ns):
        edges.put(level)
        if level == 1:
            raise RuntimeError('callback failed on purpose')

    chip.claim_input(6, on_edge=callback)
    outside.drive_input(6, 1)
    outside.drive_input(6, 0)
    assert [edges.get(timeout=10), edges.get(timeout=10)] == [1, 0]
    assert 'callback failed on purpose' in capfd.readouterr().err


def test_close_stops_the_edge_thread(tmp_path):
    """The chip's edge thread ends when the chip is closed."""
    def edge_threads():
        return [t for t in threading.enumerate() if t.name == 'sim_chip_watcher_test']

    sim_chip = SimChip(tmp_path, holder='watcher_test')
    sim_chip.claim_input(1, on_edge=lambda *edge: None)
    assert len(edge_threads()) == 1
    sim_chip.close()
    assert edge_threads() == []


def test_input_and_output_claims_conflict_and_name_the_holder(chip, outside):
    """A line claimed as an input cannot be claimed as an output elsewhere, and vice versa."""
    chip.claim_input(2)
    outside.claim_output(3, 0)
    pid = os.getpid()
    with pytest.raises(LineInUseError, match=rf'line 2 of .* is in use by alice \(pid {pid}\)'):
        outside.claim_output(2, 0)
    with pytest.raises(LineInUseError, match=rf'line 3 of .* is in use by outside \(pid {pid}'):
        chip.claim_input(3)
    with pytest.raises(LineInUseError, match='line 2 of .* is already claimed by alice'):
        chip.claim_input(2)


def test_input_claim_is_released_when_the_claiming_process_dies(tmp_path, chip):
    """A SIGKILLed process's input claim goes away with it, as its output claims do."""
    child = run_child(CLAIMER_SCRIPT, tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == 'ready'
        with pytest.raises(LineInUseError, match=rf'in use by reader \(pid {child.pid}\)'):
            chip.claim_input(7)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        chip.claim_input(7)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()


def test_outputs_refuse_input_operations_and_inputs_refuse_output_ones(chip):
    """Inputs cannot be written; a chip cannot drive from outside a line it outputs."""
    chip.claim_input(1)
    chip.claim_output(2, 1)
    for operation in (lambda: chip.write(1, 1), lambda: chip.set_pwm(1, 100.0, 0.5),
                      lambda: chip.set_servo(1, 1500.0)):
        with pytest.raises(ChipError, match='line 1 of .* is an input of alice'):
            operation()
    with pytest.raises(ChipError, match='line 2 of .* is an output of alice'):
        chip.drive_input(2, 0)
    assert chip.read(2) == 1
    with pytest.raises(ChipError, match='line 9 of .* is not claimed by alice'):
        chip.read(9)


@pytest.mark.parametrize('level', [2, -1, 0.5, None])
def test_drive_input_refuses_bad_levels(outside, tmp_path, level):
    """Only 0 and 1 can be driven."""
    with pytest.raises(ChipError, match='level must be 0 or 1'):
        outside.drive_input(1, level)
    assert read_line_changes(tmp_path) == []


def test_servo_pulses_are_recorded_and_are_what_the_line_outputs(chip, tmp_path):
    """set_servo records the pulse width and frequency; 0 stops the pulses."""
    chip.claim_output(18, 0)
    chip.set_servo(18, 1500.0)
    chip.set_servo(18, 2500.0, 330.0)
    values = read_line_values(tmp_path)
    assert (values[18].kind, values[18].value, values[18].frequency_hz) == ('servo', 2500, 330)
    chip.set_servo(18, 0)
    assert [(c.value, c.frequency_hz) for c in read_line_changes(tmp_path, 18)
            if c.kind == 'servo'] == [(1500.0, 50.0), (2500.0, 330.0), (0.0, 50.0)]


@pytest.mark.parametrize('pulse_us, frequency_hz, message', [
    (499.0, 50.0, 'servo pulse width must be 0 or in'),
    (2501.0, 50.0, 'servo pulse width must be 0 or in'),
    (-1500.0, 50.0, 'servo pulse width must be 0 or in'),
    (math.nan, 50.0, 'servo pulse width must be 0 or in'),
    (math.inf, 50.0, 'servo pulse width must be 0 or in'),
    (1500.0, 39.0, r'servo frequency must be in \[40, 500\] Hz'),
    (1500.0, 501.0, r'servo frequency must be in \[40, 500\] Hz'),
    (1500.0, math.nan, r'servo frequency must be in \[40, 500\] Hz'),
])
def test_bad_servo_pulses_are_refused(chip, tmp_path, pulse_us, frequency_hz, message):
    """Pulse widths and frequencies lgpio would refuse are refused and record nothing."""
    chip.claim_output(18, 0)
    before = read_line_changes(tmp_path)
    with pytest.raises(ChipError, match=f'line 18: {message}'):
        chip.set_servo(18, pulse_us, frequency_hz)
    assert read_line_changes(tmp_path) == before


def test_wait_for_line_change_wakes_on_another_process_write(tmp_path):
    """A waiter is woken by a change another process records, and gets that change."""
    child = run_child(DRIVER_SCRIPT, tmp_path / 'chip', 1)
    change = wait_for_line_change(tmp_path / 'chip', lambda c: c.kind == 'input', timeout_s=30)
    assert (change.line, change.value, change.pid) == (7, 1.0, child.pid)
    assert child.wait(timeout=30) == 0


def test_wait_for_line_change_times_out_and_respects_after(chip, tmp_path):
    """Changes at or before `after_ns` do not count; no matching change is a TimeoutError."""
    chip.claim_output(1, 0)
    last = read_line_changes(tmp_path)[-1]
    assert wait_for_line_change(tmp_path, lambda c: c.line == 1, timeout_s=1).kind == 'claim'
    with pytest.raises(TimeoutError, match='no matching change'):
        wait_for_line_change(tmp_path, lambda c: c.line == 1, timeout_s=0.2,
                             after_ns=last.t_ns)
