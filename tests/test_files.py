"""Run directories: built under a hidden name, renamed into place, never clobbering another run."""

from __future__ import annotations

from pathlib import Path

from ops.files import finish_run_dir, new_run_dir


def test_two_runs_in_the_same_second_both_land(tmp_path: Path) -> None:
    now = 1_796_119_200.0  # an injected clock: "the same second" whatever the real one does
    a_staging, a_final = new_run_dir(tmp_path, "slo", now=now)
    b_staging, b_final = new_run_dir(tmp_path, "slo", now=now + 0.5)
    assert a_final == b_final  # same second, same name chosen by both
    (a_staging / "result.json").write_text("a")
    (b_staging / "result.json").write_text("b")
    first = finish_run_dir(a_staging, a_final)
    second = finish_run_dir(b_staging, b_final)
    assert first == a_final and second == a_final.with_name(a_final.name + "-2")
    assert (first / "result.json").read_text() == "a" and (
        second / "result.json"
    ).read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])
