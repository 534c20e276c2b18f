"""
Real network faults for tests and benchmarks (root, network namespaces).

`NetnsPair` joins two namespaces with a veth pair (link down/up); `ImpairedPair` joins them
through an impairment link (TAP devices and a forwarder process) that also drops and delays
frames by a seeded random law.
"""

from viam_session_harness.netfault.impaired_pair import ImpairedPair
from viam_session_harness.netfault.netns import netns_unavailable_reason, NetnsError, NetnsPair

__all__ = ['ImpairedPair', 'NetnsError', 'NetnsPair', 'netns_unavailable_reason']
