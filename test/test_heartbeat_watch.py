"""The heartbeat watch: hand-off of liveliness changes (no DDS needed), its shard nodes' names."""

import threading
from typing import Callable, List, Tuple

import rclpy
from rclpy.context import Context
from rclpy.node import Node

from conftest import next_domain  # noqa: I100 - the tests' own helpers
from viam_session.sessions.heartbeat_watch import HeartbeatWatch
from viam_session_harness.waiting import poll_until


class Owner:
    """An owner whose executor is a list of posted callbacks, run when the test says."""

    def __init__(self) -> None:
        """Start with nothing posted and nothing delivered."""
        self.posted: List[Tuple[Callable[..., None], tuple]] = []
        self.deliveries: List[List[Tuple[str, bool]]] = []

    def post(self, callback: Callable[..., None], *args: object) -> None:
        """Queue `callback(*args)`, as an executor's create_task does."""
        self.posted.append((callback, args))

    def run_posted(self) -> None:
        """Run every posted callback, oldest first."""
        posted, self.posted = self.posted, []
        for callback, args in posted:
            callback(*args)


class LivelinessInfo:
    """The fields of rclpy's QoSLivelinessChangedInfo that the watch reads."""

    def __init__(self, alive_count: int, alive_count_change: int) -> None:
        """Describe one liveliness change."""
        self.alive_count = alive_count
        self.alive_count_change = alive_count_change


def make_watch(owner: Owner) -> HeartbeatWatch:
    """Return a watch with no shard yet, reporting to `owner`."""
    return HeartbeatWatch(
        context=None, node_name='watch', namespace='/', post=owner.post,
        on_liveliness=owner.deliveries.append, on_crowded=lambda _: None,
        on_incompatible=lambda *_: None,
        on_topic_failure=lambda *_: None, on_failure=lambda error: None)


def test_changes_queued_before_the_owner_runs_arrive_in_one_delivery_in_order():
    """Losses reported while the owner was busy reach it together, in the order DDS gave."""
    owner = Owner()
    watch = make_watch(owner)
    watch._liveliness_changed('/a', LivelinessInfo(1, 1))
    watch._liveliness_changed('/a', LivelinessInfo(0, -1))
    watch._liveliness_changed('/b', LivelinessInfo(0, -1))
    watch._liveliness_changed('/c', LivelinessInfo(1, -1))  # a writer left, another is alive
    owner.run_posted()
    assert owner.deliveries == [[('/a', True), ('/a', False), ('/b', False)]]


def test_a_change_after_a_delivery_gets_a_delivery_of_its_own():
    """Nothing queued is left behind once the owner has taken a batch."""
    owner = Owner()
    watch = make_watch(owner)
    watch._liveliness_changed('/a', LivelinessInfo(0, -1))
    owner.run_posted()
    watch._liveliness_changed('/b', LivelinessInfo(0, -1))
    owner.run_posted()
    assert owner.deliveries == [[('/a', False)], [('/b', False)]]


def test_changes_from_many_threads_are_all_delivered_once():
    """Shard threads queueing at once while the owner delivers lose and repeat nothing."""
    owner = Owner()
    lock = threading.Lock()

    def post(callback: Callable[..., None], *args: object) -> None:
        with lock:
            owner.post(callback, *args)

    watch = HeartbeatWatch(
        context=None, node_name='watch', namespace='/', post=post,
        on_liveliness=owner.deliveries.append, on_crowded=lambda _: None,
        on_incompatible=lambda *_: None,
        on_topic_failure=lambda *_: None, on_failure=lambda error: None)
    topics = [[f'/s{shard}_{k}' for k in range(200)] for shard in range(4)]

    def report(shard_topics: List[str]) -> None:
        for topic in shard_topics:
            watch._liveliness_changed(topic, LivelinessInfo(0, -1))

    threads = [threading.Thread(target=report, args=(t,)) for t in topics]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        with lock:
            posted, owner.posted = owner.posted, []
        for callback, args in posted:
            callback(*args)
    for thread in threads:
        thread.join()
    owner.run_posted()
    delivered = [topic for batch in owner.deliveries for topic, _ in batch]
    assert sorted(delivered) == sorted(topic for t in topics for topic in t)
    for shard_topics in topics:  # each shard's changes keep their order
        assert [topic for topic in delivered if topic in set(shard_topics)] == shard_topics


def test_shard_nodes_keep_their_names_when_the_process_remaps_its_node_name():
    """`-r __node:=session_manager` (as launch passes) names the manager only, not its shards."""
    context = Context()
    rclpy.init(context=context, domain_id=next_domain(),
               args=['--ros-args', '-r', '__node:=session_manager'])
    owner = Owner()
    watch = HeartbeatWatch(
        context=context, node_name='session_manager_heartbeats', namespace='/robot',
        post=owner.post, on_liveliness=owner.deliveries.append, on_crowded=lambda _: None,
        on_incompatible=lambda *_: None, on_topic_failure=lambda *_: None,
        on_failure=lambda error: None)
    observer = Node('observer', context=context, use_global_arguments=False)
    try:
        watch.watch('/robot/heartbeat_a', 1.0)
        wanted = ('session_manager_heartbeats_0', '/robot')
        # Graph polling: rclpy has no graph-change wait in Python.
        poll_until(lambda: wanted in observer.get_node_names_and_namespaces(), timeout_s=30.0,
                   what=f'no {wanted} in the graph', interval_s=0.05)
        names = observer.get_node_names_and_namespaces()
        assert ('session_manager', '/robot') not in names
        assert ('session_manager', '/') not in names
    finally:
        watch.close()
        observer.destroy_node()
        rclpy.shutdown(context=context)
