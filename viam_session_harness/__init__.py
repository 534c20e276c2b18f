"""
The harness of the tests, the benchmarks and the demo; not installed with viam_session.

A simulated robot in processes (`sim_robot`, `sim_drivers`), an existing robot's lifecycle nodes
and stop services (`external_robot`), network-namespace fault rigs (`netfault`), the demo and
the ROS domains they may use (`ros_domains`).
"""
