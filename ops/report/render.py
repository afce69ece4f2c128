"""How a report run is shown: Rich tables for people, a dict for JSON, Markdown for tickets."""

from __future__ import annotations

from typing import Any

from ops.report.run import Planned, ReportRun
from ops.units import format_bytes, format_cpus, format_utc


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def _bar(pct: float | None, width: int = 10) -> str:
    """A text bar for usage vs limit; plain characters so it survives mail and logs."""
    if pct is None:
        return ""
    filled = max(0, min(width, round(pct / 100 * width)))
    return "█" * filled + "░" * (width - filled)


def _finding(f: Any) -> dict[str, Any]:
    return {
        "key": f.key,
        "kind": f.kind,
        "scope": f.scope,
        "check": f.check,
        "message": f.message,
        "value": f.value,
        "state": f.state,
        "since": f.since,
        "notify": f.notify,
    }


def report_json(run: ReportRun) -> dict[str, Any]:
    """Machine-readable run: the rates, the host gauges, the findings with their
    state, what a quiet run reports (``events``), and what the history said."""
    host = run.sample["host"]
    return {
        "time": run.sample["time"],
        "host": {
            "hostname": host["hostname"],
            "boot_id": host.get("boot_id"),
            "cpu_count": host["cpu_count"],
            "load_avg": host["load_avg"],
            "memory": host["memory"],
            "swap": host["swap"],
            "disks": host["disks"],
            "rates": run.rates.get("host"),
            "top_cpu": host.get("top_cpu"),
            "top_memory": host.get("top_memory"),
        },
        "note": run.rates.get("note"),
        "interval_s": run.rates.get("interval_s"),
        "docker_error": run.sample.get("docker_error"),
        "containers": [
            {**c, "planned": run.planned_for(c)} if run.planned else c
            for c in run.rates.get("containers") or []
        ],
        "findings": [_finding(f) for f in run.findings],
        "events": [
            {
                "ts": e.ts,
                "key": e.key,
                "kind": e.kind,
                "scope": e.scope,
                "state": e.state,
                "message": e.message,
            }
            for e in run.events
        ],
        "clock": {"verdict": run.clock, "note": run.clock_note},
        "warnings": run.warnings,
        "db": str(run.db) if run.db else None,
        "sample_id": run.sample_id,
    }


def report_tables(run: ReportRun) -> list[Any]:
    from rich.table import Table

    host = run.sample["host"]
    hr = run.rates.get("host") or {}
    mem = host["memory"]
    used_pct = 100 * (mem["total"] - mem["available"]) / mem["total"] if mem["total"] else None
    title = f"{host['hostname']}: {host['cpu_count']} CPUs, {format_bytes(mem['total'])}"
    if run.rates.get("note"):
        title += f" ({run.rates['note']}: rates from the next run)"
    t = Table(title=title, title_justify="left")
    for col in ("CPU", "load 1/5/15", "memory", "swap", "disk r/w", "net rx/tx"):
        t.add_column(col, justify="right")
    la = host["load_avg"]
    t.add_row(
        f"{_bar(hr.get('cpu_pct'))} {_fmt(hr.get('cpu_pct'), '%')}",
        f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f}",
        f"{_bar(used_pct)} {_fmt(used_pct, '%')} of {format_bytes(mem['total'])}",
        format_bytes(host["swap"]["used"]) if host["swap"]["total"] else "none",
        f"{_rate(hr.get('disk_read_Bps'))} / {_rate(hr.get('disk_write_Bps'))}",
        f"{_rate(hr.get('net_rx_Bps'))} / {_rate(hr.get('net_tx_Bps'))}",
    )
    tables = [t]
    disks = Table(title="disks", title_justify="left")
    for col in ("mount", "used", "size"):
        disks.add_column(col, justify="right" if col != "mount" else "left")
    for d in host["disks"]:
        disks.add_row(
            d["mountpoint"], f"{_bar(d['percent'])} {d['percent']:.0f}%", format_bytes(d["total"])
        )
    tables.append(disks)
    containers = run.rates.get("containers") or []
    if containers:
        ct = Table(title="containers", title_justify="left")
        for col in (
            "container",
            "state",
            "CPU",
            "CPU of limit",
            "throttled",
            "memory",
            "of limit",
            "restarts",
            "OOM kills",
            *(["planned CPU / mem"] if run.planned else []),
        ):
            ct.add_column(col, justify="left" if col in ("container", "state") else "right")
        for c in sorted(containers, key=lambda c: c["name"] or ""):
            throttled, used = c.get("throttled_ratio"), c.get("mem_usage")
            ct.add_row(
                c["name"] or "—",
                c.get("state") or "—",
                _fmt(c.get("cpu_pct"), "%"),
                f"{_bar(c.get('cpu_pct_of_limit'))} {_fmt(c.get('cpu_pct_of_limit'), '%')}",
                _fmt(None if throttled is None else 100 * throttled, "%"),
                format_bytes(used) if used is not None else "—",
                f"{_bar(c.get('mem_pct_of_limit'))} {_fmt(c.get('mem_pct_of_limit'), '%')}",
                _fmt(c.get("restarts"), digits=0),
                _fmt(c.get("oom_kills"), digits=0),
                *([_planned(run.planned_for(c))] if run.planned else []),
            )
        tables.append(ct)
    if run.findings or run.events:
        ft = Table(title="findings", title_justify="left")
        ft.add_column("kind")
        ft.add_column("where")
        ft.add_column("what")
        ft.add_column("state")
        for f in run.findings:
            ft.add_row(f.kind, f.scope, f.message, _state(f))
        for e in run.events:
            if e.state == "resolved":
                ft.add_row(e.kind, e.scope, e.message, "resolved")
        tables.append(ft)
    return tables


def _state(f: Any) -> str:
    if f.state in ("new", "worse"):
        return str(f.state)
    since = format_utc(f.since) if f.since is not None else "?"
    return f"since {since}"


def report_markdown(run: ReportRun) -> str:
    data = report_json(run)
    host = data["host"]
    hr = host["rates"] or {}
    lines = [
        f"# {host['hostname']}",
        "",
        f"- CPU: {_fmt(hr.get('cpu_pct'), '%')} of {host['cpu_count']} CPUs; load {host['load_avg'][0]:.2f}",
        f"- memory: {format_bytes(host['memory']['total'] - host['memory']['available'])} used of {format_bytes(host['memory']['total'])}",
    ]
    swap = host["swap"]
    lines.append(f"- swap: {format_bytes(swap['used']) if swap['total'] else 'none'}")
    lines.append(
        f"- disk r/w: {_rate(hr.get('disk_read_Bps'))} / {_rate(hr.get('disk_write_Bps'))}; "
        f"net rx/tx: {_rate(hr.get('net_rx_Bps'))} / {_rate(hr.get('net_tx_Bps'))}"
    )
    for d in host["disks"]:
        lines.append(
            f"- disk {_md(d['mountpoint'])}: {d['percent']:.0f}% of {format_bytes(d['total'])}"
        )
    if data["note"]:
        lines.append(f"- rates: {data['note']}")
    if data["docker_error"]:
        lines.append(f"- containers: not sampled ({data['docker_error']})")
    if data["containers"]:
        lines += [
            "",
            "| container | state | CPU % | CPU % of limit | throttled % | memory | % of limit"
            " | restarts | OOM kills |" + (" planned CPU / mem |" if run.planned else ""),
            "|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if run.planned else ""),
        ]
        for c in sorted(data["containers"], key=lambda c: c["name"]):
            mem = format_bytes(c["mem_usage"]) if c.get("mem_usage") is not None else "—"
            throttled = c.get("throttled_ratio")
            lines.append(
                f"| {_md(c['name'])} | {_md(c.get('state') or '—')} | {_fmt(c.get('cpu_pct'))} | "
                f"{_fmt(c.get('cpu_pct_of_limit'))} | "
                f"{_fmt(None if throttled is None else 100 * throttled)} | {mem} | "
                f"{_fmt(c.get('mem_pct_of_limit'))} | {_fmt(c.get('restarts'), digits=0)} | "
                f"{_fmt(c.get('oom_kills'), digits=0)} |"
                + (f" {_planned(c.get('planned'))} |" if run.planned else "")
            )
    if data["findings"]:
        lines += ["", "## Findings", ""]
        lines += [
            f"- **{f['kind']}** {_md(f['scope'])}: {_md(f['message'])} ({f['state']})"
            for f in data["findings"]
        ]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """A name in a Markdown table cell: pipes and markup characters escaped."""
    return "".join(f"\\{ch}" if ch in "\\`*_[]<>|" else ch for ch in str(text))


def _rate(bps: float | None) -> str:
    return "—" if bps is None else f"{format_bytes(int(bps))}/s"


def _planned(p: Planned | None) -> str:
    if p is None:
        return "not in stack"
    return f"{format_cpus(p['cpu_limit_millicores'])} / {format_bytes(p['memory_limit_bytes'])}"
