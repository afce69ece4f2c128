"""Load tests with SLO verdicts: scenarios.yaml -> Locust (headless, every core) -> result.json.

``run_scenario()`` is the library entry point the CLI calls: it checks the
target (allowed, answering) before any load, runs Locust through
``ops.loadtest.runner``, judges the objectives and an optional baseline in
``ops.loadtest.verdict``, and writes the run directory (``result.json``,
``report.html``, ``locust.html``, ``locust.log``) in one rename.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ops.errors import CheckFailed, ExternalToolError, OpsError, SpecError, TargetRefused
from ops.extras import require
from ops.files import atomic_write, finish_run_dir, new_run_dir
from ops.loadtest.result import LoadtestResult, Mode, Status
from ops.units import shown

if TYPE_CHECKING:
    from ops.loadtest.scenario import Scenario

DEFAULT_RUNS = Path("loadtest-runs")
DEFAULT_SLO = "error_rate < 1%"  # judged when a scenario sets no objectives at all


def default_scenarios() -> Path:
    """``loadtests/scenarios.yaml`` here, else the copy shipped in the wheel (``ops/_data``)."""
    local = Path("loadtests") / "scenarios.yaml"
    if local.exists():
        return local
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_data" / "loadtests" / "scenarios.yaml"
    return packaged if packaged.exists() else here.parent / "loadtests" / "scenarios.yaml"


@dataclass(frozen=True)
class Overrides:
    """Values that replace the scenario's own (``None``: keep the scenario's)."""

    users: int | None = None
    spawn_rate: float | None = None
    duration: float | None = None
    arrival_rate: float | None = None
    max_requests: int | None = None


@dataclass
class Outcome:
    """A finished run: the result document and where it was written.

    A worker (``mode="worker"``) judges nothing: its master does, so it has
    no result and no run directory, and passes when it ran to its end.
    """

    result: LoadtestResult | None
    run_dir: Path | None

    @property
    def passed(self) -> bool:
        return self.result is None or self.result.get("verdict") == "pass"


def default_host(stack_path: Path | None) -> tuple[str | None, set[str]]:
    """(default target, allowed host names) from stack.yaml, when there is one."""
    if stack_path is None or not stack_path.exists():
        return None, set()
    from ops.stack import load_stack

    stack = load_stack(stack_path).stack
    port = stack.edge.https_port
    suffix = "" if port == 443 else f":{port}"
    return f"https://{stack.domain}{suffix}", {stack.domain}


def apply_overrides(scenario: Scenario, o: Overrides) -> Scenario:
    """The scenario with the request's overrides, validated against the same bounds."""
    from pydantic import ValidationError

    from ops.loadtest.scenario import Scenario

    changes = {k: v for k, v in vars(o).items() if v is not None}
    if not changes:
        return scenario
    try:
        checked = Scenario.model_validate({**scenario.model_dump(exclude={"slo"}), **changes})
        return checked.model_copy(update={"slo": scenario.slo})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "scenario"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise OpsError(f"the {loc.replace('_', ' ')} override: {msg}", fields=(loc,)) from None


def run_scenario(
    name: str,
    *,
    scenarios_path: Path | None = None,
    stack_path: Path | None = Path("stack.yaml"),
    host: str | None = None,
    allow_hosts: tuple[str, ...] = (),
    insecure: bool = False,
    overrides: Overrides = Overrides(),
    processes: int | None = None,
    mode: Mode = "local",
    expect_workers: int = 1,
    master_host: str = "127.0.0.1",
    master_port: int = 5557,
    master_bind_host: str = "*",
    runs_dir: Path = DEFAULT_RUNS,
    baseline: Path | None = None,
    tolerance: float = 0.10,
    force_baseline: bool = False,
    on_status: Callable[[Status], None] | None = None,
    on_start: Callable[[str, Scenario, str], None] | None = None,
) -> Outcome:
    """Run scenario ``name`` and judge it; raises OpsError (exit 2) before any load on bad input.

    ``scenarios.yaml`` is read once, here. ``stack.yaml`` is read only when it
    is needed: for the default target when neither ``host`` nor the scenario
    names one, or when the target is allowed only as the stack's domain; an
    unrelated broken stack.yaml does not stop a run at ``host``. Errors name
    the inputs (``fields``: ``host``, ``allow_hosts``, ``duration`` ...), never
    command-line flags. ``on_start`` gets the target, the scenario as it will
    run (overrides applied) and why the target is allowed, before any load.
    A baseline from another scenario or target is refused unless
    ``force_baseline``; then the result lists why (``baseline_mismatch``).
    """
    require("locust", "loadtest", "loadtest")
    from ops.loadtest import runner, verdict
    from ops.loadtest.safety import check_target, preflight
    from ops.loadtest.scenario import load_scenarios

    scenarios_path = scenarios_path or default_scenarios()
    loaded = load_scenarios(scenarios_path)
    scenario = apply_overrides(loaded.get(name), overrides)
    target = (host or scenario.host or "").rstrip("/")
    if not target:
        stack_host, _ = default_host(stack_path)
        target = (stack_host or "").rstrip("/")
    if not target:
        raise SpecError(
            "no host: set one in the scenario, give a target host, or a stack.yaml whose "
            "domain to use",
            path=str(scenarios_path),
            key=f"scenarios.{name}.host",
            line=loaded.lines.line(("scenarios", name)),
            fields=("host", "stack_path"),
        )
    if scenario.user_classes and scenario.users < len(scenario.user_classes):
        raise SpecError(
            f"{scenario.users} users for {len(scenario.user_classes)} user classes: some classes "
            "would never run; raise users or list fewer classes",
            path=str(scenarios_path),
            key=f"scenarios.{name}.users",
            line=loaded.lines.line(("scenarios", name, "users")),
            fields=("users",),
        )
    default_slo = not scenario.slo
    if default_slo:
        from ops.loadtest.scenario import OVERALL, parse_threshold

        scenario = scenario.model_copy(update={"slo": {OVERALL: [parse_threshold(DEFAULT_SLO)]}})
    # Whatever named the host (--host, the scenario, the stack's domain), one
    # that is not this machine needs allow_hosts; its addresses are pinned.
    checked = check_target(target, {*scenario.allow_hosts, *allow_hosts})
    reason = checked.reason
    base = verdict.load_baseline(baseline) if baseline is not None else None
    mismatch: list[str] = []
    if base is not None:
        where = str(baseline)
        mismatch = baseline_mismatch(base, name, target)
        if mismatch and not force_baseline:
            raise SpecError(
                f"the baseline is {mismatch[0]}: its figures are not comparable",
                path=where,
                fields=("force_baseline",),
            )
        if not base.get("overall", {}).get("requests"):
            raise SpecError(
                "the baseline run completed no requests; pick a complete run", path=where
            )
    preflight(target, verify=checked.verify_tls(insecure))
    nprocs = processes or os.cpu_count() or 1
    opts = runner.RunOptions(
        host=target,
        processes=nprocs,
        mode=mode,
        expect_workers=expect_workers,
        master_host=master_host,
        master_port=master_port,
        master_bind_host=master_bind_host,
        addresses=checked.addresses,
        verify_tls=checked.verify_tls(insecure),
    )
    staging, final = new_run_dir(runs_dir, name)
    if on_start is not None:
        on_start(target, scenario, reason)
    try:
        out = runner.run_locust(
            scenario, loaded.locustfile(name).resolve(), opts, staging, on_status
        )
    except BaseException:
        _keep_failed(staging, final)
        raise
    if mode == "worker":
        tail = runner.log_tail(staging)
        shutil.rmtree(staging, ignore_errors=True)
        if out.exit_code != 0 and not out.interrupted:
            raise _locust_failed(f"the Locust worker exited with {out.exit_code}", tail)
        return Outcome(None, None)
    if out.raw.get("stop_reason") == "foreign_host":
        _keep_failed(staging, final)
        raise TargetRefused(
            f"stopped: a request went to {out.raw.get('foreign_url')}, outside {target} "
            "(an absolute URL, a followed redirect, a proxy or a client pointed elsewhere "
            "in the locustfile)"
        )
    if not out.raw:
        failed = _keep_failed(staging, final)
        tail = runner.log_tail(failed)
        raise _locust_failed(
            f"locust exited with {out.exit_code} before writing results",
            tail,
            f" (log: {failed / 'locust.log'})",
        )
    result = verdict.build_result(
        out.raw,
        name=name,
        scenario=scenario,
        host=target,
        processes=nprocs if mode == "local" else 0,
        mode=mode,
        interrupted=out.interrupted,
    )
    result["tls"] = checked.tls(insecure)
    verdict.extra_percentiles(result, out.raw, scenario)
    result["slos"] = verdict.judge(result, scenario)
    if default_slo:
        for row in result["slos"]:
            note = "default objective: the scenario sets none"
            row["note"] = f"{note}; {row['note']}" if "note" in row else note
    result["baseline"] = str(baseline) if baseline is not None else None
    result["baseline_mismatch"] = mismatch
    result["tolerance_pct"] = round(tolerance * 100, 1) if baseline is not None else None
    result["regressions"] = verdict.compare(result, base, tolerance) if base is not None else []
    ok = (
        all(s["pass"] for s in result["slos"])
        and not result["regressions"]
        and not result["exceptions"]
        and not out.interrupted
        and result["overall"]["requests"] > 0
    )
    result["verdict"] = "pass" if ok else "fail"
    result["files"] = {
        "result": "result.json",
        "report": "report.html",
        "locust_report": "locust.html",
        "log": "locust.log",
    }
    result["run_dir"] = str(final)
    _write_run(staging, result)
    final = finish_run_dir(staging, final)
    if result["run_dir"] != str(final):  # renamed around a concurrent run
        result["run_dir"] = str(final)
        atomic_write(final / "result.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    return Outcome(result, final)


def _origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip().rstrip("/"))
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def baseline_mismatch(base: LoadtestResult, name: str, target: str) -> list[str]:
    """Why a baseline run is not this run's counterpart: another scenario or another target."""
    out: list[str] = []
    if base.get("scenario") != name:
        out.append(f"a run of scenario {shown(base.get('scenario'))}, not {shown(name)}")
    host = str(base.get("host") or "")
    if _origin(host) != _origin(target):
        out.append(f"a run against {shown(host)}, not {shown(target)}")
    return out


def _locust_failed(what: str, tail: str, where: str = "") -> OpsError:
    """Locust ended without a result: our own refusal in it (a ``vots-ops:`` line,
    e.g. user classes an arrival rate cannot pace) is bad input; anything else
    is the tool failing while running (exit 3)."""
    message = f"{what}: {tail or 'no output'}{where}"
    if tail.startswith("vots-ops: "):
        return OpsError(message)
    return ExternalToolError(message)


def _write_run(workdir: Path, result: LoadtestResult) -> None:
    from ops.loadtest.report import html_report

    locust_html = workdir / "locust.html"
    base = locust_html.read_text(encoding="utf-8") if locust_html.exists() else None
    atomic_write(workdir / "result.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    atomic_write(workdir / "report.html", html_report(result, base))


def _keep_failed(staging: Path, final: Path) -> Path:
    failed = final.with_name(final.name + ".failed")
    try:
        staging.rename(failed)
    except OSError:
        return staging
    return failed


def check_outcome(outcome: Outcome) -> None:
    """Raise CheckFailed (exit 1) naming what broke, for a pipeline."""
    r = outcome.result
    if outcome.passed or r is None:
        return
    broken = [f"{s['target']}: {s['threshold']}" for s in r.get("slos", []) if not s["pass"]]
    broken += [
        f"{g['target']}: {g['metric']} {g['change_pct']:+}%"
        for g in r.get("regressions", [])
        if g["change_pct"] is not None
    ]
    if r.get("exceptions"):
        n = sum(e["count"] for e in r["exceptions"])
        broken.append(f"{n} task errors (first: {r['exceptions'][0]['msg'][:80]})")
    if r.get("stop_reason") == "interrupted":
        broken.append("run interrupted")
    if r["overall"]["requests"] == 0:
        broken.append("no requests completed")
    where = f" (report: {outcome.run_dir / 'report.html'})" if outcome.run_dir else ""
    raise CheckFailed(f"{len(broken)} failed: " + "; ".join(broken) + where)


__all__ = ["LoadtestResult", "Outcome", "Overrides", "check_outcome", "run_scenario"]
