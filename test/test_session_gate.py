"""
The session gate: unit tests of its core, then the gate process with real DDS.

The gate relays a session's cmd_vel to the robot's own topic only while the session lives,
and sends zeros at a set rate for a set time when it closes. In the ROS tests a session
manager, the gate and a DC motor driver (the "arm") run as processes; teleop and the robot's
/cmd_vel listener run in this process.
"""

import math
import os
from pathlib import Path
import signal
import subprocess
import sys
from typing import Iterator

from geometry_msgs.msg import Twist, TwistStamped, Vector3
from lifecycle_msgs.msg import State
import pytest
from std_msgs.msg import Float64, Float64MultiArray, MultiArrayDimension

from viam_session.gate.gate_core import GateCore, zero_like
from viam_session_harness.external_robot import ExternalRobot, GateSpec
from viam_session_harness.sim_robot import local_ros_environment
from viam_session_interfaces.msg import SessionEvent

from conftest import next_domain  # noqa: I100 - the tests' own helper

FORWARD = Twist(linear=Vector3(x=0.5), angular=Vector3(z=0.2))

# --- the core -----------------------------------------------------------------------------------


def test_core_relays_only_while_active_and_open():
    """Input goes through only while active and opened by a command != 0."""
    core = GateCore(kind='twist', zero_rate_hz=20.0, zero_duration_s=1.0)
    assert core.zeros_per_burst == 21          # one at once, then 20 a second for 1 s
    assert not core.accept(FORWARD)
    assert not core.command(1.0)                # not active: stays closed
    assert not core.accept(FORWARD)
    core.set_active(True, '')
    assert not core.accept(FORWARD)
    core.command(1.0)
    assert core.accept(FORWARD) and core.relayed == 1


def test_core_close_starts_a_burst_that_drops_input_and_reopening_ends_it():
    """Closing an open gate sends zeros (input dropped); opening again relays at once."""
    core = GateCore(kind='twist', zero_rate_hz=10.0, zero_duration_s=0.5)
    core.set_active(True, '')
    core.command(2.0)
    assert core.command(0.0)                    # closed: a burst of 6
    assert not core.accept(FORWARD)
    zeros = [core.next_zero() for _ in range(7)]
    assert zeros[:6] == [Twist()] * 6 and zeros[6] is None
    assert not core.command(0.0)                # already closed: no second burst
    core.command(1.0)
    core.command(0.0)
    core.command(1.0)                           # reopened mid-burst
    assert core.zeros_left == 0 and core.accept(FORWARD)


def test_core_every_way_out_of_active_sends_zeros():
    """Leaving active starts a burst whether the gate was open or not."""
    core = GateCore(kind='float64', zero_rate_hz=20.0, zero_duration_s=0.0)
    core.set_active(True, '')
    assert core.set_active(False, 'deactivated')
    assert core.next_zero() == Float64(data=0.0) and core.next_zero() is None
    assert core.closed_because == 'deactivated'


def test_core_refuses_non_finite_values_and_bad_settings():
    """Non-finite input and commands are refused; a bad setting is named."""
    core = GateCore(kind='twist', zero_rate_hz=20.0, zero_duration_s=1.0)
    core.set_active(True, '')
    core.command(1.0)
    with pytest.raises(ValueError, match='non-finite'):
        core.accept(Twist(linear=Vector3(x=math.nan)))
    with pytest.raises(ValueError, match='finite'):
        core.command(math.inf)
    assert core.open and core.relayed == 0
    with pytest.raises(ValueError, match='message_type must be one of'):
        GateCore(kind='pose', zero_rate_hz=20.0, zero_duration_s=1.0)
    with pytest.raises(ValueError, match='zero_rate_hz'):
        GateCore(kind='twist', zero_rate_hz=0.0, zero_duration_s=1.0)


def test_zero_keeps_the_frame_and_the_array_length_of_the_last_relayed():
    """A stamped zero keeps the frame; an array zero keeps the length and layout."""
    stamped = TwistStamped()
    stamped.header.frame_id = 'base_link'
    stamped.twist.linear.x = 1.0
    assert zero_like('twist_stamped', stamped).header.frame_id == 'base_link'
    assert zero_like('twist_stamped', stamped).twist == Twist()
    joints = Float64MultiArray(data=[0.3, -0.2, 1.0])
    joints.layout.dim = [MultiArrayDimension(label='joints', size=3, stride=3)]
    zero = zero_like('float64_multi_array', joints)
    assert list(zero.data) == [0.0, 0.0, 0.0] and zero.layout.dim[0].label == 'joints'
    assert zero_like('float64_multi_array', None) is None   # length unknown: nothing sent


# --- the gate process ---------------------------------------------------------------------------


@pytest.fixture
def robot(request, tmp_path: Path) -> Iterator[ExternalRobot]:
    """Run a manager, a base gate to /cmd_vel (20 Hz zeros for 1 s) and an arm motor."""
    description = {'name': 'rover', 'primary': {'name': 'base', 'nodes': [
        {'name': 'base_gate', 'driver': 'session_gate',
         'parameters': {'message_type': 'twist', 'output_topic': '/cmd_vel'}},
        {'name': 'arm_motor', 'driver': 'dc_motor',
         'parameters': {'pwm_line': 12, 'direction_line': 16}}]}}
    rig = ExternalRobot(
        workdir=tmp_path, domain_id=next_domain(), description=description, window_s=0.5,
        gates=[GateSpec('base_gate', '/cmd_vel',
                        parameters={'zero_rate_hz': 20.0, 'zero_duration_s': 1.0})],
        motors={'arm_motor': {'pwm_line': 12, 'direction_line': 16}})
    try:
        rig.start()
        yield rig
    finally:
        rig.close()
        report = getattr(request.node, 'report_call', None)
        if report is None or report.failed:
            for log in sorted(tmp_path.glob('*.log')):
                print(f'--- {log.name}\n{log.read_text()}')


def _is_zero(item) -> bool:
    return item[1] == Twist()


def _stamp_ns(event: SessionEvent) -> int:
    return event.stamp.sec * 1_000_000_000 + event.stamp.nanosec


def test_gate_relays_while_live_then_zeros_at_rate_for_the_set_time(robot):
    """Relayed while live; at expiry zero within ms, 20 Hz for 1 s, then silence."""
    robot.teleop('base_gate', FORWARD)
    client = robot.client('teleop')
    client.command('/base_gate', 1.0)
    relayed = robot.outputs.wait_for(lambda item: item[1] == FORWARD, what='a relayed Twist')
    assert not [a for a in robot.output('/cmd_vel') if a.t_ns < relayed.t_ns], \
        'something went through before the session opened the gate'
    robot.outputs.wait_for(lambda item: item[1] == FORWARD, after_ns=relayed.t_ns + int(0.5e9))

    client._stop_heartbeats()       # the link drops
    expired = robot.wait_for_event(client.handle, SessionEvent.EXPIRED)
    assert list(expired.item.owned_resources) == ['/base_gate']
    first = robot.outputs.wait_for(_is_zero, after_ns=relayed.t_ns, what='a zero Twist')
    delay_ms = (first.wall_ns - _stamp_ns(expired.item)) / 1e6
    print(f'first zero {delay_ms:.2f} ms after the expiry event stamp')
    assert delay_ms < 100.0
    # The burst: nothing but zeros after the first; then no more messages at all.
    last_zero_by_ns = first.t_ns + int(1.0e9)
    with pytest.raises(TimeoutError):
        robot.outputs.wait_for(lambda item: True, after_ns=last_zero_by_ns + int(0.5e9),
                               timeout_s=2.0)
    burst = [a for a in robot.output('/cmd_vel') if a.t_ns >= first.t_ns]
    assert all(_is_zero(a.item) for a in burst), 'input went through after the expiry'
    span_s = (burst[-1].t_ns - first.t_ns) / 1e9
    print(f'{len(burst)} zeros over {span_s:.3f} s')
    assert 17 <= len(burst) <= 21
    assert 0.85 <= span_s <= 1.3
    assert robot.state('base_gate') == State.PRIMARY_STATE_INACTIVE


def test_close_command_sends_zeros_and_opening_again_relays(robot):
    """A command 0 closes the gate (zeros); a command != 0 opens it again while live."""
    robot.teleop('base_gate', FORWARD)
    client = robot.client('teleop', window_s=5.0)
    client.command('/base_gate', 1.0)
    relayed = robot.outputs.wait_for(lambda item: item[1] == FORWARD)
    client.command('/base_gate', 0.0)
    first = robot.outputs.wait_for(_is_zero, after_ns=relayed.t_ns)
    client.command('/base_gate', 1.0)
    again = robot.outputs.wait_for(lambda item: item[1] == FORWARD, after_ns=first.t_ns)
    print(f'reopened {(again.t_ns - first.t_ns) / 1e6:.1f} ms after the first zero')
    assert robot.state('base_gate') == State.PRIMARY_STATE_ACTIVE


def test_another_client_taking_the_base_leaves_the_arm_to_the_first(robot):
    """A drives base (gate) and arm (driver); B takes the base; A's expiry stops only the arm."""
    robot.teleop('base_gate', FORWARD)
    first = robot.client('first')
    first.command('/base_gate', 1.0)
    first.command('/arm_motor', 0.4)
    robot.wait_owned(first.handle, ['/arm_motor', '/base_gate'])
    arm = robot.wait_for_duty(12, lambda duty: duty == pytest.approx(0.4))
    second = robot.client('second', window_s=5.0)
    second.command('/base_gate', 1.0)
    robot.wait_owned(second.handle, ['/base_gate'])
    assert robot.owned(first.handle) == ['/arm_motor']

    first._stop_heartbeats()
    expired = robot.wait_for_event(first.handle, SessionEvent.EXPIRED)
    assert list(expired.item.owned_resources) == ['/arm_motor']
    robot.wait_for_duty(12, lambda duty: duty == 0.0, after_ns=arm.t_ns)
    # The base goes on relaying for the second client: no zero, the gate stays active.
    after = robot.outputs.wait_for(lambda item: item[1] == FORWARD,
                                   after_ns=expired.t_ns + int(0.3e9))
    assert not [a for a in robot.output('/cmd_vel')
                if expired.t_ns <= a.t_ns <= after.t_ns and _is_zero(a.item)]
    assert robot.state('base_gate') == State.PRIMARY_STATE_ACTIVE

    second._stop_heartbeats()
    gone = robot.wait_for_event(second.handle, SessionEvent.EXPIRED)
    assert list(gone.item.owned_resources) == ['/base_gate']
    robot.outputs.wait_for(_is_zero, after_ns=after.t_ns)


def test_sigterm_of_the_gate_sends_its_zeros_before_it_exits(robot):
    """SIGTERM while relaying: a zero at once and the whole burst, then exit code 0."""
    robot.teleop('base_gate', FORWARD)
    client = robot.client('teleop', window_s=5.0)
    client.command('/base_gate', 1.0)
    relayed = robot.outputs.wait_for(lambda item: item[1] == FORWARD)
    robot.processes['base_gate'].send_signal(signal.SIGTERM)
    first = robot.outputs.wait_for(_is_zero, after_ns=relayed.t_ns)
    assert robot.processes['base_gate'].wait(timeout=10) == 0
    burst = [a for a in robot.output('/cmd_vel') if a.t_ns >= first.t_ns]
    assert all(_is_zero(a.item) for a in burst) and 17 <= len(burst) <= 21


@pytest.mark.parametrize('parameter, message', [
    ('message_type:=pose', "parameter 'message_type' must be one of"),
    ('output_topic:=not a topic', "output_topic 'not a topic' is not a valid topic name"),
])
def test_bad_gate_parameters_stop_it_with_a_message(tmp_path, parameter, message):
    """A gate with a bad parameter exits with code 2 and says which."""
    env = local_ros_environment(dict(os.environ, ROS_DOMAIN_ID=str(next_domain())))
    done = subprocess.run([sys.executable, '-m', 'viam_session.gate.gate_node', '--ros-args',
                           '-p', parameter], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
