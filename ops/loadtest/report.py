"""The run's verdict for people: Rich tables for the terminal, a verdict section for the HTML.

The HTML report is Locust's own (charts, tables) with the SLO verdict, the
exact percentiles and any regressions inserted at the top of its body, so one
file says both what happened and whether it was good enough. Every value from
the run (endpoint names come from the locustfile) is HTML-escaped.
"""

from __future__ import annotations

import html
from typing import Any

from ops.loadtest.driver import ADVICE
from ops.loadtest.result import Figures, Latency, LoadtestResult, SloRow

_LAT = ("p50", "p95", "p99", "max")


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def fmt_value(value: float | None, unit: str) -> str:
    """An SLO figure in its unit: ms, % or /s."""
    if value is None:
        return "-"
    if unit == "ms":
        return _ms(value)
    if unit == "%":
        return _pct(value)
    return f"{value:,.1f}/s"


def _margin(row: SloRow) -> str:
    if row["margin"] is None:
        return row.get("note", "-")
    sign = "+" if row["margin"] >= 0 else "-"
    return sign + fmt_value(abs(row["margin"]), row["unit"])


def _mark(row: SloRow) -> str:
    """``*`` on a verdict judged on latencies that include the driver's own queueing."""
    return "*" if "driver saturated" in row.get("note", "") else ""


def _rows(result: LoadtestResult) -> list[tuple[str, Figures]]:
    return [*result["endpoints"].items(), ("overall", result["overall"])]


def _latency(result: LoadtestResult, fig: Figures) -> Latency:
    """The figures' latency on the run's basis (from intended start, or service time)."""
    if result["latency_basis"] == "intended":
        return fig["latency_from_intended_ms"] or {}
    return fig["latency_ms"]


def tables(result: LoadtestResult) -> list[Any]:
    """Rich renderables: endpoints, SLOs, regressions, errors, and the verdict line."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    intended = result["latency_basis"] == "intended"
    title = f"{result['scenario']} → {result['host']}  ({result['measured_s']:.1f} s measured"
    title += ", latency from intended start)" if intended else ", service time)"
    if result.get("tls"):
        title += f"  TLS certificates {result.get('tls')}"
    t = Table(title=title, title_justify="left")
    t.add_column("endpoint")
    for col in ("requests", "failures", "req/s", *_LAT):
        t.add_column(col, justify="right")
    for name, fig in _rows(result):
        lat = _latency(result, fig)
        style = "bold" if name == "overall" else None
        t.add_row(
            Text(name),
            f"{fig['requests']:,}",
            f"{fig['failures']:,}",
            f"{fig['rps']:,.1f}",
            *(_ms(lat.get(k)) for k in _LAT),
            style=style,
        )
    out.append(t)
    if intended:
        o = result["overall"]
        out.append(
            Text(
                f"arrival rate {result['planned']['arrival_rate']:g}/s planned, {o['rps']:,.1f}/s achieved; "
                f"service time p99 {_ms(o['latency_ms'].get('p99'))} vs from intended start "
                f"{_ms((o['latency_from_intended_ms'] or {}).get('p99'))}"
            )
        )
    if result.get("slos"):
        s = Table(title="SLOs", title_justify="left")
        for col in ("target", "objective", "actual", "margin", "result"):
            s.add_column(col, justify="right" if col in ("actual", "margin") else "left")
        for row in result["slos"]:
            ok = row["pass"]
            s.add_row(
                Text(row["target"]),
                Text(row["threshold"]),
                fmt_value(row["actual"], row["unit"]),
                _margin(row),
                Text("pass" + _mark(row), style="green")
                if ok
                else Text("FAIL" + _mark(row), style="bold red"),
            )
        out.append(s)
    if result.get("driver_saturated"):
        out.append(Text(f"* driver saturated: {ADVICE}", style="bold yellow"))
    if result.get("regressions"):
        g = Table(
            title=f"Regressions against {result['baseline']} (tolerance {result['tolerance_pct']:g}%)",
            title_justify="left",
        )
        for col in ("target", "metric", "baseline", "now", "change"):
            g.add_column(col, justify="left" if col in ("target", "metric") else "right")
        for reg in result["regressions"]:
            unit = "%" if reg["metric"] == "error_rate" else reg["unit"] or "ms"
            g.add_row(
                Text(reg["target"]),
                reg["metric"],
                fmt_value(reg["baseline"], unit),
                fmt_value(reg["actual"], unit),
                Text(
                    f"{reg['change_pct']:+.1f}%" if reg["change_pct"] is not None else "new",
                    style="bold red",
                ),
            )
        out.append(g)
    if result.get("errors"):
        e = Table(title="Errors", title_justify="left")
        e.add_column("endpoint")
        e.add_column("error")
        e.add_column("count", justify="right")
        for err in result["errors"][:10]:
            e.add_row(Text(err["endpoint"]), Text(err["error"][:160]), f"{err['count']:,}")
        out.append(e)
    verdict = result["verdict"]
    line = Text(
        "PASS" if verdict == "pass" else "FAIL",
        style="bold green" if verdict == "pass" else "bold red",
    )
    line.append(f"  stop: {result['stop_reason']}; run: {result.get('run_dir', '')}", style="")
    out.append(line)
    return out


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
#vots-verdict{font:14px/1.4 system-ui,sans-serif;margin:16px;padding:12px 16px;border-radius:8px;
  border:2px solid var(--vv);background:#fff;color:#111}
#vots-verdict h1{margin:0 0 8px;font-size:20px;color:var(--vv)}
#vots-verdict table{border-collapse:collapse;margin:8px 0}
#vots-verdict td,#vots-verdict th{border-bottom:1px solid #ddd;padding:3px 10px;text-align:right}
#vots-verdict td:first-child,#vots-verdict th:first-child{text-align:left}
#vots-verdict .fail{color:#b00020;font-weight:bold}#vots-verdict .pass{color:#137333}
"""


def verdict_section(result: LoadtestResult) -> str:
    """The verdict as a self-contained HTML section (inline CSS, no scripts)."""
    ok = result["verdict"] == "pass"
    colour = "#137333" if ok else "#b00020"
    parts = [
        f'<section id="vots-verdict" data-verdict="{_e(result["verdict"])}" style="--vv:{colour}">',
        f"<style>{_CSS}</style>",
        f"<h1>{'PASS' if ok else 'FAIL'}: {_e(result['scenario'])} → {_e(result['host'])}</h1>",
        f"<p>{_e(result['measured_s'])} s measured, stop: {_e(result['stop_reason'])}, "
        f"latency basis: {_e(result['latency_basis'])}"
        + (f", TLS certificates {_e(result.get('tls'))}" if result.get("tls") else "")
        + ". Percentiles are exact (HdrHistogram); "
        "Locust's own tables below round them.</p>",
        "<table id='vots-endpoints'><tr><th>endpoint</th><th>requests</th><th>failures</th><th>req/s</th>"
        + "".join(f"<th>{k}</th>" for k in _LAT)
        + "</tr>",
    ]
    for name, fig in _rows(result):
        lat = _latency(result, fig)
        parts.append(
            f"<tr><td>{_e(name)}</td><td>{fig['requests']:,}</td><td>{fig['failures']:,}</td>"
            f"<td>{fig['rps']:,.1f}</td>"
            + "".join(f"<td>{_e(_ms(lat.get(k)))}</td>" for k in _LAT)
            + "</tr>"
        )
    parts.append("</table>")
    if result.get("driver_saturated"):
        parts.append(f"<p id='vots-driver' class='fail'>* Driver saturated: {_e(ADVICE)}.</p>")
    if result.get("slos"):
        parts.append(
            "<table id='vots-slos'><tr><th>target</th><th>objective</th><th>actual</th><th>margin</th><th>result</th></tr>"
        )
        for row in result["slos"]:
            cls = "pass" if row["pass"] else "fail"
            parts.append(
                f"<tr class='{cls}'><td>{_e(row['target'])}</td><td>{_e(row['threshold'])}</td>"
                f"<td>{_e(fmt_value(row['actual'], row['unit']))}</td><td>{_e(_margin(row))}</td>"
                f"<td class='{cls}'>{'pass' if row['pass'] else 'FAIL'}{_mark(row)}</td></tr>"
            )
        parts.append("</table>")
    if result.get("regressions"):
        parts.append(
            f"<p class='fail'>Regressions against {_e(result['baseline'])} (tolerance {_e(result['tolerance_pct'])}%):</p><ul>"
        )
        for reg in result["regressions"]:
            parts.append(
                f"<li>{_e(reg['target'])} {_e(reg['metric'])}: {_e(reg['baseline'])} → {_e(reg['actual'])} "
                f"({_e(reg['change_pct'])}%)</li>"
            )
        parts.append("</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def html_report(result: LoadtestResult, locust_html: str | None) -> str:
    """Locust's report with the verdict first, or the verdict alone when Locust wrote none."""
    section = verdict_section(result)
    if locust_html:
        # Locust's <head> holds minified JavaScript that itself contains "<body":
        # the real body is the first one after </head>.
        lower = locust_html.lower()
        head_end = lower.find("</head>")
        at = lower.find("<body", head_end) if head_end != -1 else -1
        if at != -1:
            end = locust_html.find(">", at) + 1
            return locust_html[:end] + "\n" + section + "\n" + locust_html[end:]
    title = _e(f"vots-ops loadtest {result['scenario']}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>{section}</body></html>\n"
