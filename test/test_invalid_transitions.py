"""
Invalid lifecycle requests, as raw lifecycle_msgs/srv/ChangeState calls, to real processes.

A second `activate`, `deactivate` on an unconfigured node, `cleanup` on an active one, an id
that is no transition and a label the state lacks: a driver and a session gate, run by the
lifecycle supervisor, answer success=False, stay in their state and keep serving (valid
transitions after them work); the supervisor keeps its tree and its processes.
"""

import os
from pathlib import Path
import threading
from typing import Dict, Iterator, Tuple

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
import rclpy
from rclpy.client import Client
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from supervisor_rig import SupervisorRig

from viam_session.lifecycle_node import TRANSITION_LABELS
from viam_session.service_call import call_service

NODES = ('/motor', '/gate')
# A loaded machine may keep a request waiting: generous, and only hit when something is wrong.
CALL_TIMEOUT_S = 30.0

INVALID_WHEN_UNCONFIGURED = (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                             Transition.TRANSITION_ACTIVATE)
INVALID_WHEN_ACTIVE = (Transition.TRANSITION_ACTIVATE, Transition.TRANSITION_CLEANUP,
                       Transition.TRANSITION_CONFIGURE, 99)


class LifecycleProbe:
    """Raw ChangeState and GetState calls to a few nodes, from a context of its own."""

    def __init__(self, domain_id: int) -> None:
        self._context = Context()
        rclpy.init(context=self._context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node('lifecycle_probe', context=self._context, enable_rosout=False)
        self._clients: Dict[str, Tuple[Client, Client]] = {
            fqn: (self._node.create_client(ChangeState, f'{fqn}/change_state'),
                  self._node.create_client(GetState, f'{fqn}/get_state')) for fqn in NODES}
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def change_state(self, fqn: str, *, transition_id: int = 0, label: str = '') -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        request.transition.label = label
        return call_service(self._clients[fqn][0], request, CALL_TIMEOUT_S).success

    def state(self, fqn: str) -> str:
        return call_service(self._clients[fqn][1], GetState.Request(),
                            CALL_TIMEOUT_S).current_state.label

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self._spinner.join(timeout=5)
        self._node.destroy_node()
        rclpy.try_shutdown(context=self._context)


@pytest.fixture
def probe(rig: SupervisorRig) -> Iterator[LifecycleProbe]:
    lifecycle_probe = LifecycleProbe(rig.domain_id)
    try:
        yield lifecycle_probe
    finally:
        lifecycle_probe.close()


def _robot(chip: Path) -> dict:
    return {'name': 'rover', 'primary': {'name': 'base', 'nodes': [
        {'name': 'motor', 'driver': 'dc_motor', 'parameters': {
            'chip_backend': 'sim', 'chip': str(chip), 'pwm_line': 2, 'direction_line': 3}},
        {'name': 'gate', 'driver': 'session_gate', 'parameters': {
            'message_type': 'float64', 'output_topic': '/arm/command'}}]}}


def _refuses(probe: LifecycleProbe, fqn: str, transition_id: int, state: str) -> None:
    label = TRANSITION_LABELS.get(transition_id, str(transition_id))
    assert probe.change_state(fqn, transition_id=transition_id) is False, (
        f'{fqn} accepted {label} in state {state}')
    assert probe.state(fqn) == state, f'{fqn} left {state} after a refused {label}'


def _pids(rig: SupervisorRig) -> Dict[str, int]:
    return {fqn: node['pid'] for fqn, node in rig.state()['nodes'].items()}


def test_invalid_requests_are_refused_and_every_process_keeps_serving(
        rig: SupervisorRig, probe: LifecycleProbe) -> None:
    """Refused in unconfigured and active; valid transitions still work; nothing respawned."""
    rig.start_supervisor(rig.description(_robot(rig.chip_dir)), list(NODES),
                         [f'transition_timeout_s:={CALL_TIMEOUT_S}',
                          'default_liveliness_lease_s:=5.0'])
    rig.wait_discovered()
    pids = _pids(rig)
    for fqn in NODES:
        for transition_id in INVALID_WHEN_UNCONFIGURED:
            _refuses(probe, fqn, transition_id, 'unconfigured')

    started = rig.call('startup')
    assert started.success, started.message
    for fqn in NODES:
        for transition_id in INVALID_WHEN_ACTIVE:
            _refuses(probe, fqn, transition_id, 'active')
        assert probe.change_state(fqn, label='activate') is False
        assert probe.state(fqn) == 'active'

    # Still serving: the supervisor's view, its processes, and valid transitions.
    state = rig.state()
    assert {fqn: node['state'] for fqn, node in state['nodes'].items()} == dict.fromkeys(
        NODES, 'active')
    assert _pids(rig) == pids
    for pid in pids.values():
        os.kill(pid, 0)  # raises if the process is gone
    again = rig.call('startup')
    assert again.success, again.message
    for fqn in NODES:
        assert probe.change_state(fqn, transition_id=Transition.TRANSITION_DEACTIVATE)
        assert probe.state(fqn) == 'inactive'
        _refuses(probe, fqn, Transition.TRANSITION_DEACTIVATE, 'inactive')
        assert probe.change_state(fqn, transition_id=Transition.TRANSITION_ACTIVATE)

    stopped = rig.call('shutdown')
    assert stopped.success, stopped.message
    for fqn in NODES:
        assert probe.state(fqn) == 'unconfigured'
        _refuses(probe, fqn, Transition.TRANSITION_DEACTIVATE, 'unconfigured')
    assert _pids(rig) == pids
    assert rig.processes['supervisor'].poll() is None
