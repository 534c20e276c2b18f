"""What the session manager takes from a robot description: actuators and external resources."""

from dataclasses import dataclass
from typing import Mapping, Tuple

from viam_session.supervisor.tree import ExternalResource, load_robot_description

__all__ = ['ACTUATOR_DRIVERS', 'DescribedResources', 'described_resources']

# Driver types whose nodes a session drives through `<node>/command`, by command type: the
# GPIO output takes std_msgs/Bool (value != 0 is on), the others std_msgs/Float64.
ACTUATOR_DRIVERS: Mapping[str, str] = {'dc_motor': 'float64', 'servo': 'float64',
                                       'gpio_output': 'bool', 'session_gate': 'float64'}


@dataclass(frozen=True)
class DescribedResources:
    """Actuators (fully qualified name -> command type) and external resources to stop."""

    actuators: Mapping[str, str]
    external: Tuple[ExternalResource, ...]


def described_resources(path: str, *, namespace: str = '/') -> DescribedResources:
    """Read the description of the robot in `namespace`; raise RobotDescriptionError."""
    tree = load_robot_description(path, namespace=namespace)
    return DescribedResources(
        actuators={fqn: ACTUATOR_DRIVERS[node.driver] for fqn, node in tree.nodes.items()
                   if node.driver in ACTUATOR_DRIVERS},
        external=tuple(tree.resources.values()))
