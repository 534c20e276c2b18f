"""
What `launch/robot.launch.py` decides from its arguments, without `launch` (testable anywhere).

- `robot_namespace`: the robot's namespace from the namespace launch pushes
  (`PushRosNamespace`) and the `namespace` argument, by ROS's rules: a relative argument goes
  under the pushed namespace, an absolute one stands alone.
- `respawn_options`: launch's respawn options for a node whose description has `respawn`.
  `respawn_max_retries` has moved between launch's classes (`ExecuteProcess` before 3.x,
  `ExecuteLocal` after), so it is looked up on the whole class hierarchy of the action. A
  launch without it would respawn a failing driver for ever: then the node is not respawned
  by launch at all, and the reason is returned for the launch log.
- `given_overrides`: the manager's and supervisor's parameters set by arguments only when
  they were given, so that a parameter file (`params_file`) or the node default stands
  otherwise.
"""

import inspect
import math
import re
from typing import Any, Dict, Mapping, Optional, Tuple

from viam_session.supervisor.tree import Respawn

__all__ = ['LOG_LEVELS', 'flag', 'given_overrides', 'log_level', 'respawn_options',
           'robot_namespace']

LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')
_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')


def flag(name: str, text: str) -> bool:
    """Return a true/false launch argument; raise ValueError naming it otherwise."""
    if text.lower() not in ('true', 'false'):
        raise ValueError(f'launch argument {name} must be true or false, got {text!r}')
    return text.lower() == 'true'


def log_level(text: str) -> str:
    """Return the `log_level` argument, checked (rcl would end every node for a bad one)."""
    if text.lower() not in LOG_LEVELS:
        raise ValueError(f'launch argument log_level must be one of {", ".join(LOG_LEVELS)}, '
                         f'got {text!r}')
    return text.lower()


def robot_namespace(pushed: Optional[str], argument: str) -> str:
    """Return the absolute namespace of the robot; raise ValueError for a bad `argument`."""
    text = argument.strip()
    tokens = text.strip('/').split('/') if text.strip('/') else []
    if not all(_NAME.match(token) for token in tokens):
        raise ValueError(f'launch argument namespace must be a ROS namespace such as r1 or '
                         f"/fleet/r1 (names of letters, digits and '_', not starting with a "
                         f'digit), got {argument!r}')
    base = [] if text.startswith('/') else [token for token in (pushed or '').split('/')
                                            if token]
    return '/' + '/'.join(base + tokens)


def respawn_options(respawn: Respawn, action_class: type) -> Tuple[Dict[str, Any], str]:
    """
    Return (the keyword arguments that make launch respawn a node, a note for the log).

    Nothing without `respawn` in the description. `action_class` is the launch action the
    node is started with (launch_ros' LifecycleNode); its constructors up the class hierarchy
    say whether launch can bound the restarts.
    """
    if respawn.max_attempts <= 0:
        return {}, ''
    if not any('respawn_max_retries' in _parameters(cls.__init__)
               for cls in inspect.getmro(action_class) if '__init__' in vars(cls)):
        return {}, (f'this launch has no respawn_max_retries ({action_class.__name__} and its '
                    'bases): not respawned by launch, which would restart it without limit')
    return {'respawn': True, 'respawn_delay': respawn.backoff_s,
            'respawn_max_retries': respawn.max_attempts}, ''


def given_overrides(*, window: str, automatic_stop: str, policy: str,
                    policies: Tuple[str, ...]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """
    Return (session manager, supervisor) parameters for the arguments that were given ('').

    Raise ValueError naming the argument for a bad value.
    """
    manager: Dict[str, Any] = {}
    supervisor: Dict[str, Any] = {}
    if window:
        try:
            window_s = float(window)
        except ValueError:
            window_s = math.nan
        if not math.isfinite(window_s) or window_s <= 0:
            raise ValueError(f'launch argument window must be seconds > 0, got {window!r}')
        manager['default_window_s'] = window_s
    if automatic_stop:
        manager['automatic_stop'] = flag('automatic_stop', automatic_stop)
    if policy:
        if policy not in policies:
            raise ValueError(f'launch argument policy must be one of {", ".join(policies)}, '
                             f'got {policy!r}')
        supervisor['connectivity_loss_policy'] = policy
    return manager, supervisor


def _parameters(function: Any) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(function).parameters
    except (TypeError, ValueError):     # a constructor in C: no signature to read
        return {}
