"""Report: VM and per-container utilisation, history, findings, anomalies, right-sizing.

One job per module:

* ``procfs`` — the host's figures read straight from /proc (psutil's definitions,
  psutil as the fallback); ``cgroups`` — a container's counters from its cgroup
  files; ``containers`` — every container through the engine (``ops.engine``),
  counters from its cgroup or the engine's stats; ``sample`` — one raw sample of
  both; ``rates`` — rates between two samples, never made up.
* ``history`` — the SQLite store: samples, points, hourly aggregates, retention.
* ``anomalies`` and ``rightsizing`` — pure analyses of series; ``advice`` —
  right-sizing from the history and the file that carries it to ``plan``.
* ``run`` — one cron run (sample, rate, store, judge); ``render``, ``html``,
  ``prom`` (outputs) and ``serve`` (``/metrics``); ``schedule`` (cron, systemd).

The CLI is ``vots-ops report``.
"""
