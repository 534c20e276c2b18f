"""What the session manager takes from a robot description: actuators and external resources."""

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Tuple

from viam_session.command_ranges import command_range, CommandRange
from viam_session.supervisor.tree import (
    ExternalResource, load_robot_description, PartsTree, RobotDescriptionError)

__all__ = ['ACTUATOR_DRIVERS', 'DescribedResources', 'IDLE', 'StoppedWith',
           'described_resources']

# Driver types whose nodes a session drives through `<node>/command`, by command type: the
# GPIO output takes std_msgs/Bool (value != 0 is on), the others std_msgs/Float64.
ACTUATOR_DRIVERS: Mapping[str, str] = {'dc_motor': 'float64', 'servo': 'float64',
                                       'gpio_output': 'bool', 'session_gate': 'float64'}
# How the manager's and the supervisor's diagnostics call such an actuator when no session owns
# it and the manager has stopped it: the robot's resting state between sessions, not a fault.
IDLE = 'inactive (idle: no session)'


class StoppedWith:
    """
    The resources stopped together with an actuator or another resource (their `stop_with`).

    `expand()` is what the manager stops when a session is over: what the session owned,
    then, once each, every resource whose `stop_with` reaches one of those, directly or
    through another such resource.
    """

    def __init__(self, resources: Iterable[ExternalResource] = ()) -> None:
        self._along: Dict[str, List[str]] = {}
        for resource in resources:
            for name in resource.stop_with:
                self._along.setdefault(name, []).append(resource.fully_qualified_name)

    def expand(self, names: Iterable[str]) -> List[str]:
        """Return `names`, then what is stopped with any of them; each once, in that order."""
        result = list(dict.fromkeys(names))
        if not self._along:
            return result
        seen = set(result)
        for name in result:     # grows while it is walked: companions of companions
            for companion in self._along.get(name, ()):
                if companion not in seen:
                    seen.add(companion)
                    result.append(companion)
        return result


@dataclass(frozen=True)
class DescribedResources:
    """
    Actuators (fully qualified name -> command type) and external resources to stop.

    `ranges` are the commands each actuator accepts, from its parameters in the description.
    """

    actuators: Mapping[str, str]
    external: Tuple[ExternalResource, ...]
    stopped_with: StoppedWith = field(default_factory=StoppedWith)
    ranges: Mapping[str, CommandRange] = field(default_factory=dict)


def described_resources(path: str, *, namespace: str = '/') -> DescribedResources:
    """Read the description of the robot in `namespace`; raise RobotDescriptionError."""
    tree = load_robot_description(path, namespace=namespace)
    actuators = {fqn: ACTUATOR_DRIVERS[node.driver] for fqn, node in tree.nodes.items()
                 if node.driver in ACTUATOR_DRIVERS}
    problems = _stop_with_problems(tree, actuators)
    if problems:
        raise RobotDescriptionError(path, problems)
    external = tuple(tree.resources.values())
    ranges = {fqn: command_range(tree.nodes[fqn].driver, tree.nodes[fqn].parameters)
              for fqn in actuators}
    return DescribedResources(actuators=actuators, external=external,
                              stopped_with=StoppedWith(external), ranges=ranges)


def _stop_with_problems(tree: PartsTree, actuators: Mapping[str, str]) -> List[str]:
    """Name each `stop_with` of a node that sessions never stop (it would never fire)."""
    problems = []
    for fqn, resource in tree.resources.items():
        for name in resource.stop_with:
            node = tree.nodes.get(name)
            if node is not None and name not in actuators:
                problems.append(
                    f'resource {fqn} of part {resource.part!r}: stop_with {name!r} is a '
                    f'{node.driver!r} node, which sessions never stop; name an actuator '
                    f'({", ".join(ACTUATOR_DRIVERS)}) or a resource')
    return problems
