"""Diagnostics of a parts tree: one status per part and one per node, for rqt_robot_monitor."""

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from viam_session.supervisor.status import TreeStatus

__all__ = ['tree_diagnostics']


def tree_diagnostics(status: TreeStatus, *, robot: str, host: str) -> DiagnosticArray:
    """Return a DiagnosticArray (header stamp left to the caller) with parts, then nodes."""
    array = DiagnosticArray()
    listing = status.listing()
    for part, entry in listing['parts'].items():
        level, message = status.part_level(part)
        array.status.append(DiagnosticStatus(
            level=bytes([level]), name=f'{robot}/parts/{part}', message=message,
            hardware_id=host,
            values=[KeyValue(key='nodes', value=', '.join(entry['nodes']))]))
    for fqn, node in status.nodes.items():
        values = [KeyValue(key='part', value=node.part), KeyValue(key='state', value=node.state),
                  KeyValue(key='alive', value=str(node.alive)),
                  KeyValue(key='attempts', value=str(status.budgets[fqn].attempts))]
        if node.pid is not None:
            values.append(KeyValue(key='pid', value=str(node.pid)))
        array.status.append(DiagnosticStatus(
            level=bytes([node.level]), name=f'{robot}/nodes{fqn}', message=node.message(),
            hardware_id=host, values=values))
    return array
