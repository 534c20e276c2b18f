"""
Each driver as a process of its own on a simulated chip, read back from this test process.

Self-protection is off here (`command_timeout_s: 0`), so one-shot commands from a publisher
with the default QoS drive the outputs; see test_driver_self_protection.py for the rest.
"""

import math

from lifecycle_msgs.msg import State, Transition
import pytest

from conftest import next_domain  # noqa: I100 - the tests' own helpers
from driver_rig import driver_rig
from viam_session.chips.sim_chip import read_line_changes, read_line_values, SimChip
from viam_session.time_convert import monotonic_to_ros_time, time_to_seconds
from viam_session_harness.sim_drivers import command_publisher_qos

DEFAULT_QOS = command_publisher_qos('default')
OFF = {'command_timeout_s': 0.0}


@pytest.fixture
def rig(request, tmp_path):
    """Provide driver processes on a simulated chip and an observer, in a domain of their own."""
    yield from driver_rig(request, tmp_path, next_domain())


def deactivate_and_measure(rig, observer, name, line, kind, safe_value):
    """Request deactivation; return ms from the request to `line` at its safe value."""
    requested_ns = observer.request_transition(name, Transition.TRANSITION_DEACTIVATE)
    safe = rig.wait_for_line(line, kind, safe_value, after_ns=requested_ns)
    delay_ms = (safe.t_ns - requested_ns) * 1e-6
    print(f'{name}: deactivate request -> {kind} {safe_value} on the chip: {delay_ms:.2f} ms')
    return delay_ms


def stamp_error_s(state, t_ns):
    """Return how far a message's header stamp is from CLOCK_MONOTONIC instant `t_ns`."""
    return abs(time_to_seconds(state.header.stamp)
               - time_to_seconds(monotonic_to_ros_time(t_ns * 1e-9)))


def test_gpio_output_is_safe_until_active_and_again_after_deactivate(rig):
    """An active-low relay: claimed high (off), on only while active, off on deactivate."""
    observer = rig.start({'relay': ('gpio_output', {'line': 23, 'active_level': 0, **OFF})},
                         command_qos=DEFAULT_QOS)
    assert observer.change_state('relay', Transition.TRANSITION_CONFIGURE)
    assert [(c.kind, c.value) for c in read_line_changes(rig.chip_dir, 23)] == [
        ('claim', 1.0), ('level', 1.0)]
    observer.publish('relay', True)
    rig.processes['relay'].wait_for_log('command ignored: driver is not active')
    assert read_line_values(rig.chip_dir)[23].value == 1.0
    assert observer.change_state('relay', Transition.TRANSITION_ACTIVATE)
    sent_ns = observer.publish('relay', True)
    rig.wait_for_line(23, 'level', 0.0, after_ns=sent_ns)
    observer.wait_for_joint_state('relay', lambda s: s.position[0] == 1.0, after_ns=sent_ns)
    deactivate_and_measure(rig, observer, 'relay', 23, 'level', 1.0)
    assert observer.state('relay') == State.PRIMARY_STATE_INACTIVE
    assert observer.change_state('relay', Transition.TRANSITION_CLEANUP)
    assert read_line_changes(rig.chip_dir, 23)[-1].kind == 'release'
    assert read_line_values(rig.chip_dir)[23].value == 1.0


def test_dc_motor_two_pwm_lines_with_enable_refuses_bad_power(rig):
    """Reverse drives IN2 with enable high; NaN and out-of-range power change nothing."""
    parameters = {'mode': 'two_pwm', 'pwm_line': 12, 'direction_line': 13, 'enable_line': 5,
                  'max_duty': 0.5, **OFF}
    observer = rig.start({'wheel': ('dc_motor', parameters)}, command_qos=DEFAULT_QOS)
    observer.bring_up('wheel')
    sent_ns = observer.publish('wheel', -0.5)
    rig.wait_for_line(13, 'pwm', 0.25, after_ns=sent_ns)
    observer.wait_for_joint_state('wheel', lambda s: s.effort[0] == -0.5, after_ns=sent_ns)
    values = read_line_values(rig.chip_dir)
    assert (values[12].value, values[5].value) == (0.0, 1.0)
    already = len(read_line_changes(rig.chip_dir))
    for bad in (math.nan, math.inf, -math.inf, 1.5, -1.01):
        observer.publish('wheel', bad)
    # Commands arrive in order: once this one is on the chip, the bad ones were handled.
    sent_ns = observer.publish('wheel', -0.2)
    rig.wait_for_line(13, 'pwm', 0.1, after_ns=sent_ns)
    assert [(c.line, c.value) for c in read_line_changes(rig.chip_dir)[already:]] == [(13, 0.1)]
    # One warning, then throttled (1 s).
    rig.processes['wheel'].wait_for_log('command rejected: power must be a finite number, '
                                        'got nan')
    deactivate_and_measure(rig, observer, 'wheel', 13, 'pwm', 0.0)
    values = read_line_values(rig.chip_dir)
    assert (values[12].value, values[13].value, values[5].value) == (0.0, 0.0, 0.0)


def test_servo_moves_within_its_limits_and_is_released_on_deactivate(rig):
    """An angle becomes a pulse width; angles beyond the limits are refused; released safe."""
    parameters = {'pwm_line': 18, 'min_angle_deg': 20.0, 'max_angle_deg': 160.0, **OFF}
    observer = rig.start({'shoulder': ('servo', parameters)}, command_qos=DEFAULT_QOS)
    observer.bring_up('shoulder')
    assert read_line_values(rig.chip_dir)[18].kind == 'level'  # no pulses yet
    sent_ns = observer.publish('shoulder', 90.0)
    rig.wait_for_line(18, 'servo', 1500.0, after_ns=sent_ns)
    state = observer.wait_for_joint_state(
        'shoulder', lambda s: s.position[0] == pytest.approx(math.pi / 2), after_ns=sent_ns)
    assert math.isnan(state.message.velocity[0])
    before = read_line_changes(rig.chip_dir)
    observer.publish('shoulder', 170.0)
    rig.processes['shoulder'].wait_for_log('angle must be in [20, 160] degrees, got 170.0')
    assert read_line_changes(rig.chip_dir) == before
    deactivate_and_measure(rig, observer, 'shoulder', 18, 'servo', 0.0)
    observer.wait_for_joint_state('shoulder', lambda s: math.isnan(s.position[0]),
                                  after_ns=sent_ns)


def test_digital_input_publishes_each_edge_driven_by_this_process(rig):
    """A switch to ground (active low) reports edges driven here, stamped with their time."""
    observer = rig.start({'bumper': ('digital_input', {'line': 22, 'active_level': 0})})
    with SimChip(rig.chip_dir, holder='test') as world:
        world.drive_input(22, 1)  # released: not active
        observer.bring_up('bumper')
        observer.bool_states['bumper'].wait_for(lambda m: m.data is False, after_ns=0,
                                                timeout_s=30)
        for level, active in ((0, True), (1, False), (0, True)):
            world.drive_input(22, level)
            edge = read_line_changes(rig.chip_dir, 22)[-1]
            state = observer.wait_for_joint_state(
                'bumper', lambda s, a=active: s.position[0] == float(a), after_ns=edge.t_ns)
            observer.bool_states['bumper'].wait_for(lambda m, a=active: m.data is a,
                                                    after_ns=edge.t_ns, timeout_s=30)
            assert stamp_error_s(state.message, edge.t_ns) < 0.005
            print(f'bumper: edge -> JointState received {(state.t_ns - edge.t_ns) * 1e-6:.2f} ms')
        assert observer.change_state('bumper', Transition.TRANSITION_DEACTIVATE)
        assert observer.change_state('bumper', Transition.TRANSITION_CLEANUP)
    assert read_line_changes(rig.chip_dir, 22)[-1].kind == 'release'


def test_encoder_publishes_position_and_velocity_of_driven_quadrature(rig):
    """A hundred forward steps driven here are a quarter turn of a 400-count encoder."""
    parameters = {'a_line': 17, 'b_line': 27, 'counts_per_revolution': 400.0,
                  'publish_rate_hz': 50.0}
    observer = rig.start({'wheel_encoder': ('encoder', parameters)})
    observer.bring_up('wheel_encoder')
    started_ns = observer.wait_for_joint_state('wheel_encoder',
                                               lambda s: s.position[0] == 0.0).t_ns
    with SimChip(rig.chip_dir, holder='test') as world:
        levels = [0, 0]
        for step in range(100):
            channel = step % 2  # A, B, A, B: 00 -> 10 -> 11 -> 01 -> 00 is forward
            levels[channel] = 1 - levels[channel]
            world.drive_input((17, 27)[channel], levels[channel])
    quarter_turn = observer.wait_for_joint_state(
        'wheel_encoder', lambda s: s.position[0] == pytest.approx(math.pi / 2),
        after_ns=started_ns)
    moving = [item.message.velocity[0] for item in observer.joint_states['wheel_encoder']
              .snapshot() if started_ns < item.t_ns <= quarter_turn.t_ns]
    assert max(moving) > 0.0 and min(moving) >= 0.0
    assert observer.change_state('wheel_encoder', Transition.TRANSITION_DEACTIVATE)
    assert observer.change_state('wheel_encoder', Transition.TRANSITION_CLEANUP)
    assert [c.kind for c in read_line_changes(rig.chip_dir)][-2:] == ['release', 'release']
