"""Report: VM and per-container utilisation, history, anomalies and right-sizing.

Pieces: ``collect`` (host figures from /proc, psutil as the fallback; container
counters from cgroup files, the Docker engine via ``engine`` for the rest; rates
between two samples), ``history`` (SQLite store with retention and
downsampling), ``analysis`` (anomalies, right-sizing advice), ``advice``,
``render``/``html``/``prom`` (outputs) and ``run`` (one cron run). The CLI is
``vots-ops report``.
"""
