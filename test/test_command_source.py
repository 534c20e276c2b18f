"""Which writers may drive an actuator (drivers.command_source, no ROS)."""

from viam_session.driver_parameters import with_command_source
from viam_session.drivers.command_source import CommandSource, resolve_source

MANAGER_GID = bytes(range(16))
ROGUE_GID = bytes(range(1, 17))


def test_only_the_source_nodes_writers_pass_and_the_rest_are_counted():
    """The manager's writer passes; another node's and an unknown writer are dropped."""
    graph = [('/session_manager', MANAGER_GID), ('/_ros2cli_1234', ROGUE_GID)]
    source = CommandSource('/session_manager', lambda: graph)
    assert source.accepts(MANAGER_GID)
    assert not source.accepts(ROGUE_GID)
    assert not source.accepts(bytes(16))    # not in the graph (yet)
    assert source.dropped == 2
    assert source.describe() == ('/session_manager only; 2 command(s) from other publishers '
                                 'dropped, last from a writer not (yet) in the ROS graph')


def test_without_writer_gids_a_foreign_writer_on_the_topic_stops_everything():
    """No GID (rclpy before Kilted): accepted only while the source is the only writer."""
    graph = [('/session_manager', MANAGER_GID)]
    source = CommandSource('/session_manager', lambda: graph)
    assert source.accepts(None)
    graph.append(('/_ros2cli_1234', ROGUE_GID))
    assert not source.accepts(None)
    assert "other writers: ['/_ros2cli_1234']" in source.last_dropped_from
    graph.pop()
    assert source.accepts(None)


def test_a_writer_is_looked_up_once_but_an_unknown_one_again():
    """Known writers are remembered; one missing from the graph is looked for again later."""
    graph = []
    lookups = []
    source = CommandSource('/session_manager', lambda: lookups.append(1) or graph)
    assert not source.accepts(MANAGER_GID)          # its node's discovery came later
    graph.append(('/session_manager', MANAGER_GID))
    assert source.accepts(MANAGER_GID)
    assert source.accepts(MANAGER_GID)
    assert len(lookups) == 2


def test_no_source_accepts_every_writer():
    """Empty: a driver used without a session manager (ros2 topic pub by hand)."""
    source = CommandSource('', lambda: [])
    assert source.accepts(ROGUE_GID) and source.accepts(None)
    assert source.dropped == 0 and source.describe() == 'any publisher'


def test_relative_sources_are_in_the_drivers_namespace():
    assert resolve_source('session_manager', '/r1') == '/r1/session_manager'
    assert resolve_source('session_manager', '/') == '/session_manager'
    assert resolve_source('/session_manager', '/r1') == '/session_manager'
    assert resolve_source('', '/r1') == ''


def test_actuators_get_the_session_manager_unless_their_description_says_otherwise():
    """Launch and the supervisor fill in command_source for drivers that take commands only."""
    assert with_command_source('dc_motor', {'pwm_line': 12}, '/r1/session_manager') == {
        'pwm_line': 12, 'command_source': '/r1/session_manager'}
    assert with_command_source('session_gate', {}, '/session_manager') == {
        'command_source': '/session_manager'}
    assert with_command_source('dc_motor', {'command_source': ''}, '/session_manager') == {
        'command_source': ''}     # left open on purpose by the description
    assert with_command_source('encoder', {'a_line': 17}, '/session_manager') == {'a_line': 17}
    assert with_command_source('dc_motor', {}, '') == {}


def test_a_writer_named_by_the_graph_s_placeholder_is_looked_for_again():
    """
    A restarted driver can see the manager's writer before the manager's node information.

    The graph then names the node `_NODE_NAMESPACE_UNKNOWN_/_NODE_NAME_UNKNOWN_`; remembered as
    that, the writer was dropped for good (a respawned driver never took a command again).
    """
    graph = [('/_NODE_NAMESPACE_UNKNOWN_/_NODE_NAME_UNKNOWN_', MANAGER_GID)]
    source = CommandSource('/session_manager', lambda: graph)
    assert not source.accepts(MANAGER_GID)
    graph[0] = ('/session_manager', MANAGER_GID)
    assert source.accepts(MANAGER_GID)
