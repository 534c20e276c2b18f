"""Every driver on the real lgpio backend, on this machine's error path: no GPIO chip."""

import os

from lifecycle_msgs.msg import State, Transition
import pytest
import rclpy
from rclpy.context import Context
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from conftest import next_domain  # noqa: I100 - the tests' own helpers
from driver_rig import driver_rig
from viam_session.drivers.dc_motor import DcMotorDriver
from viam_session.drivers.digital_input import DigitalInputDriver
from viam_session.drivers.encoder import EncoderDriver
from viam_session.drivers.gpio_output import GpioOutputDriver
from viam_session.drivers.servo import ServoDriver
from viam_session.supervisor.tree import DRIVER_TYPES
from viam_session_harness.sim_drivers import DRIVER_MODULES

pytestmark = pytest.mark.skipif(
    os.path.exists('/dev/gpiochip0'), reason='this machine has a /dev/gpiochip0')

LGPIO_MESSAGE = "configure failed: cannot open /dev/gpiochip0: lgpio says 'can not open gpiochip'"
LGPIO = {'chip_backend': 'lgpio', 'chip': '0'}


@pytest.fixture
def rig(request, tmp_path):
    """Provide driver processes and an observer, in a domain of their own."""
    yield from driver_rig(request, tmp_path, next_domain())


@pytest.mark.parametrize('driver_class', [
    DcMotorDriver, DigitalInputDriver, EncoderDriver, GpioOutputDriver, ServoDriver])
def test_configure_fails_cleanly_with_lgpio_message(driver_class, capfd):
    """Configure fails with lgpio's own words; the node stays unconfigured and can retry."""
    context = Context()
    rclpy.init(context=context, domain_id=next_domain())
    try:
        node = driver_class(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in LGPIO.items()])
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE  # still allowed
        assert LGPIO_MESSAGE in capfd.readouterr().err
        node.make_safe()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_driver_processes_refuse_configure_and_stay_unconfigured(rig):
    """Through the lifecycle service, each executable reports failure and stays unconfigured."""
    gpio_kinds = [kind for kind in DRIVER_MODULES if DRIVER_TYPES[kind].gpio_lines]
    observer = rig.start({kind: (kind, LGPIO) for kind in gpio_kinds})
    for kind in gpio_kinds:
        assert not observer.change_state(kind, Transition.TRANSITION_CONFIGURE, timeout_s=60)
        assert observer.state(kind) == State.PRIMARY_STATE_UNCONFIGURED
        rig.processes[kind].wait_for_log(LGPIO_MESSAGE)
        assert rig.processes[kind].process.poll() is None
    assert list(rig.chip_dir.iterdir()) == []
