"""Monitoring and the closed loop: drift, delayed-label performance, SLOs, alert rules and actions.

Submodules are imported by name (``loopml.monitoring.drift``, ``.monitors``, ``.slo``, ``.rules``,
``.loop``) so that a process computing drift never imports the loop's pipeline machinery.
"""
