"""ops.profile.plan_profile: a recipe and a request's overrides merged in the library, as
`vots-ops profile` uses it; errors name the request's fields, never CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.errors import OpsError, SpecError
from ops.profile import ProfileRequest, plan_profile

RECIPE = """\
target: {service: agent, match: 'vots[-_]agent'}
language: python
duration: 30s
rate: 50
options: {native: false, subprocesses: true}
"""

STACK = Path(__file__).resolve().parents[2] / "stack.yaml"


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    (tmp_path / "agent.yaml").write_text(RECIPE)
    return tmp_path


def test_the_recipe_alone(recipes: Path) -> None:
    plan = plan_profile(ProfileRequest(recipe="agent", recipes_dir=recipes, stack_path=STACK))
    assert (plan.language, plan.profiler, plan.duration_s, plan.rate_hz) == (
        "python",
        "py-spy",
        30,
        50,
    )
    assert plan.service == "agent" and plan.match == "vots[-_]agent"
    assert plan.project == "vots"  # from the stack, to find the service's containers
    assert plan.options == {
        "native": False,
        "gil": False,
        "idle": False,
        "subprocesses": True,
        "blocking": False,
    }
    assert plan.name == "agent" and plan.label == "agent"


def test_request_values_win_over_the_recipe(recipes: Path) -> None:
    plan = plan_profile(
        ProfileRequest(
            recipe="agent", recipes_dir=recipes, pid=4242, duration_s=8, native=True, gil=None
        )
    )
    # A target in the request replaces the recipe's; the recipe's match still narrows.
    assert plan.pid == 4242 and plan.service is None and plan.project is None
    assert plan.duration_s == 8 and plan.rate_hz == 50
    assert plan.options["native"] is True and plan.options["subprocesses"] is True


def test_without_a_recipe_the_defaults_per_language() -> None:
    plan = plan_profile(ProfileRequest(pid=1, language="rust"))
    assert (plan.profiler, plan.rate_hz, plan.duration_s) == ("perf", 99, 10)
    plan = plan_profile(ProfileRequest(language="go", pprof_url="http://127.0.0.1:6060", heap=True))
    assert (plan.profiler, plan.pprof_kind) == ("pprof", "heap")


@pytest.mark.parametrize(
    ("request_", "says", "fields"),
    [
        (ProfileRequest(pid=1, container="web"), "give one target", ("pid", "container")),
        (ProfileRequest(language="go"), "needs the pprof URL", ("pprof_url",)),
        (ProfileRequest(pid=1, heap=True), "heap profile comes from a pprof", ("pprof_url",)),
        (
            ProfileRequest(language="go", pprof_url="http://127.0.0.1:1", match="x"),
            "does not apply",
            ("match",),
        ),
        (ProfileRequest(pid=1, language="go", profiler="py-spy"), "py-spy profiles", ("profiler",)),
    ],
)
def test_conflicts_name_the_fields(
    request_: ProfileRequest, says: str, fields: tuple[str, ...]
) -> None:
    with pytest.raises(OpsError, match=says) as info:
        plan_profile(request_)
    assert info.value.fields == fields and "--" not in str(info.value)


def test_an_unknown_recipe_lists_the_known_ones(recipes: Path) -> None:
    with pytest.raises(SpecError, match=r"no recipe 'agnet'; did you mean 'agent'\?"):
        plan_profile(ProfileRequest(recipe="agnet", recipes_dir=recipes))


def test_what_the_request_gives_and_the_plan_does_not_use(recipes: Path) -> None:
    pprof = plan_profile(
        ProfileRequest(language="go", pprof_url="http://127.0.0.1:9", native=True, rate_hz=50)
    )
    assert set(pprof.unused) == {"native", "rate_hz"}
    perf = plan_profile(ProfileRequest(language="rust", pid=1, gil=False))
    assert set(perf.unused) == {"gil"}
    pyspy = plan_profile(ProfileRequest(pid=1, match="python", pprof_url="http://127.0.0.1:9"))
    assert set(pyspy.unused) == {"match", "pprof_url"}
    dump = plan_profile(ProfileRequest(pid=1, duration_s=5, idle=True, native=True), dump=True)
    assert set(dump.unused) == {"duration_s", "idle"}  # a dump reads native frames


def test_a_recipes_values_are_never_unused(recipes: Path) -> None:
    # The recipe's match and subprocesses switch stay, though a pid is given.
    plan = plan_profile(
        ProfileRequest(recipe="agent", recipes_dir=recipes, stack_path=STACK, pid=1)
    )
    assert plan.unused == {}
    req = ProfileRequest(recipe="agent", recipes_dir=recipes, stack_path=STACK)
    assert plan_profile(req, dump=True).unused == {}


def test_run_profile_refuses_an_unused_setting_before_sampling(tmp_path: Path) -> None:
    from ops.profile import run_profile

    req = ProfileRequest(language="go", pprof_url="http://127.0.0.1:9", gil=True)
    with pytest.raises(OpsError, match="gil does nothing with the pprof profiler") as info:
        run_profile(req, runs_dir=tmp_path / "runs")
    assert info.value.fields == ("gil",)
    assert not (tmp_path / "runs").exists()
