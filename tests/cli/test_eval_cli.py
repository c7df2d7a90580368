"""``keel eval``: the report, the CI gate's exit codes, regressions against a baseline,
scorer selection, export and replay."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from keel._cli.main import app
from keel.evals import Case, Dataset, ExpectedCall, Report

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

AGENT = '''
from keel import Agent, tool
from keel.testing import ScriptedModel, call


@tool
def refund(order_id: str) -> str:
    """Refund an order."""
    return "refunded " + order_id


agent = Agent(name="support", tools=[refund])


def eval_model(case):
    order = case.metadata["order"]
    asked = {WRONG}.get(case.id, order)
    return ScriptedModel([call("refund", order_id=asked), "Refunded " + order + "."], name={NAME!r})


def short(sample):
    return len(sample.output) < 15
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "v1.py").write_text(
        AGENT.replace("{WRONG}", "{}").replace("{NAME!r}", "'scripted'")
    )
    (tmp_path / "v2.py").write_text(
        AGENT.replace("{WRONG}", '{"b": "o-9"}').replace("{NAME!r}", "'scripted'")
    )
    (tmp_path / "unpriced.py").write_text(
        AGENT.replace("{WRONG}", "{}").replace("{NAME!r}", "'acme:secret'")
    )
    cases = [
        Case(
            id=name,
            input=f"refund o-{name}",
            reference=f"Refunded o-{name}.",
            expected_tools=[ExpectedCall("refund", {"order_id": f"o-{name}"})],
            metadata={"order": f"o-{name}"},
            tags=["refunds"],
        )
        for name in ("a", "b", "c")
    ]
    Dataset(cases).save(tmp_path / "cases.jsonl")
    return tmp_path


def keel(project: Path, *args: str) -> Any:
    return runner.invoke(app, [*args, "--db", str(project / "keel.db")])


def test_an_eval_prints_a_table_and_writes_json_and_html(project: Path) -> None:
    done = keel(
        project,
        "eval",
        str(project / "cases.jsonl"),
        "--agent",
        f"{project}/v2.py:agent",
        "--json",
        str(project / "r.json"),
        "--html",
        str(project / "r.html"),
        "--repeats",
        "2",
    )
    assert done.exit_code == 0, done.output  # no gate: a report only
    assert re.search(r"^b\s+FAIL 0%\s+1\.00\s+0\.00", done.stdout, re.M)
    assert "cases      2 of 3 passed; pass rate 66.7% (spread 0.000 over 2 repeats)" in done.stdout
    assert "call #1: refund: arguments.order_id: expected 'o-b', got 'o-9'" in done.stdout
    report = Report.from_json((project / "r.json").read_text())
    assert [c.passed for c in report.cases] == [True, False, True]
    run_id = report.case("b").run_ids[0]
    assert f"see: keel runs show {run_id}" in done.stdout
    assert 'class="case" id="case-b"' in (project / "r.html").read_text()
    shown = keel(project, "runs", "show", run_id)
    assert shown.exit_code == 0
    assert "refund" in shown.stdout


def test_the_gate_exits_1_below_min_score_above_max_cost_or_max_regressions(
    project: Path,
) -> None:
    cases, v1, v2 = str(project / "cases.jsonl"), f"{project}/v1.py:agent", f"{project}/v2.py:agent"
    assert (
        keel(project, "eval", cases, "-a", v1, "--min-score", "1", "--max-cost", "0").exit_code == 0
    )
    low = keel(project, "eval", cases, "-a", v2, "--min-score", "0.9")
    assert low.exit_code == 1
    assert "gate failed: pass rate 0.667 is below --min-score 0.9" in low.output
    assert keel(project, "eval", cases, "-a", v2, "--min-score", "0.6").exit_code == 0
    scorer = keel(project, "eval", cases, "-a", v2, "--min-score", "tool_calls=0.9")
    assert scorer.exit_code == 1
    assert "tool_calls mean 0.667 is below" in scorer.output
    unpriced = keel(project, "eval", cases, "-a", f"{project}/unpriced.py:agent", "--max-cost", "1")
    assert unpriced.exit_code == 1
    assert "the cost is unknown" in unpriced.output

    keel(project, "eval", cases, "-a", v1, "--json", str(project / "base.json"))
    compared = keel(
        project,
        "eval",
        cases,
        "-a",
        v2,
        "--baseline",
        str(project / "base.json"),
        "--max-regressions",
        "0",
    )
    assert compared.exit_code == 1
    assert "1 regression(s), 0 improvement(s)" in compared.stdout
    assert re.search(r"regressed b: passed, now fails; tool_calls 1\.00 -> 0\.00", compared.stdout)
    assert "gate failed: 1 regression(s), more than --max-regressions 0" in compared.output
    allowed = keel(
        project,
        "eval",
        cases,
        "-a",
        v2,
        "--baseline",
        str(project / "base.json"),
        "--max-regressions",
        "1",
    )
    assert allowed.exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-score", "2"], "the number must be from 0 to 1"),
        (["--min-score", "x"], "--min-score takes a number"),
        (["--max-regressions", "1"], "give --baseline report.json"),
        (["--scorer", "bogus"], "unknown scorer 'bogus'"),
        (["--scorer", "judge"], "--scorer judge needs --judge-model"),
        (["--agent", "nowhere.py:agent"], "no file nowhere.py"),
        (["--tag", "nothing"], "has no cases tagged nothing"),
    ],
)
def test_bad_usage_exits_2(project: Path, args: list[str], message: str) -> None:
    base = ["eval", str(project / "cases.jsonl"), "--agent", f"{project}/v1.py:agent"]
    done = keel(project, *base, *args)
    assert done.exit_code == 2, done.output
    assert message in done.output


def test_a_bad_dataset_exits_2_naming_the_line(project: Path) -> None:
    (project / "bad.jsonl").write_text('{"id": "a", "input": "x"}\n{"id": "b"}\n')
    done = keel(project, "eval", str(project / "bad.jsonl"), "--agent", f"{project}/v1.py:agent")
    assert done.exit_code == 2
    assert "bad.jsonl:2: missing field 'input'" in done.output


def test_scorers_are_chosen_by_name_or_module_callable(project: Path) -> None:
    done = keel(
        project,
        "eval",
        str(project / "cases.jsonl"),
        "-a",
        f"{project}/v1.py:agent",
        "--scorer",
        "contains",
        "--scorer",
        "tool_calls_subset",
        "--scorer",
        f"{project}/v1.py:short",
        "--json",
        str(project / "r.json"),
    )
    assert done.exit_code == 0, done.output
    report = Report.from_json((project / "r.json").read_text())
    assert report.scorers == ("contains", "tool_calls_subset", "short")


def test_export_then_replay_fails_where_a_tool_call_changed(project: Path) -> None:
    cases, v1 = str(project / "cases.jsonl"), f"{project}/v1.py:agent"
    keel(project, "eval", cases, "-a", v1, "--json", str(project / "r.json"))
    runs = [c.run_ids[0] for c in Report.from_json((project / "r.json").read_text()).cases]
    out = project / "recorded.jsonl"
    exported = keel(
        project, "eval", "export", "--run", runs[0], "--run", runs[1], "--out", str(out)
    )
    assert exported.exit_code == 0, exported.output
    assert "wrote 2 cases" in exported.output
    recorded = [json.loads(line) for line in out.read_text().splitlines()]
    assert [c["id"] for c in recorded] == runs[:2]

    same = keel(project, "eval", str(out), "-a", v1, "--replay")
    assert same.exit_code == 0, same.output

    (project / "v3.py").write_text(
        (project / "v1.py").read_text().replace('"refunded " + order_id', '"queued " + order_id')
    )
    changed = keel(project, "eval", str(out), "-a", f"{project}/v3.py:agent", "--replay")
    assert changed.exit_code == 1, changed.output
    assert "replay_tool_calls: call #1 refund: result was 'refunded o-a', now 'queued o-a'" in (
        changed.stdout
    )
    assert "gate failed: pass rate 0.000 is below --min-score 1.0" in changed.output

    listed = keel(project, "eval", "export", "--tool", "refund", "--limit", "2")
    assert listed.exit_code == 0
    assert len(listed.stdout.splitlines()) == 2
    nothing = keel(project, "eval", "export")
    assert nothing.exit_code == 2
    assert "say which runs to export" in nothing.output


def test_the_example_dataset_passes_on_the_example_agent(tmp_path: Path) -> None:
    done = runner.invoke(
        app,
        [
            "eval",
            str(ROOT / "examples" / "evals" / "support_cases.jsonl"),
            "--agent",
            f"{ROOT}/examples/evals/support_eval.py:agent",
            "--min-score",
            "1",
            "--db",
            str(tmp_path / "keel.db"),
        ],
    )
    assert done.exit_code == 0, done.output
    assert "3 of 3 passed" in done.stdout


def test_a_judge_scorer_from_the_command_line_journals_its_runs(project: Path) -> None:
    (project / "rubric.txt").write_text("Does the answer say what was refunded?")
    rubric = "@" + str(project / "rubric.txt")
    done = keel(
        project, "eval", str(project / "cases.jsonl"), "-a", f"{project}/v1.py:agent",
        "--scorer", "judge", "--judge-model", "rules", "--rubric", rubric,
        "--json", str(project / "r.json"),
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    report = Report.from_json((project / "r.json").read_text())
    assert report.scorers == ("judge",)
    detail = report.cases[0].repeats[0].scores[0].detail
    judge_run = re.search(r"judge run (run_\w+)", detail)
    assert judge_run is not None, detail
    shown = keel(project, "runs", "list", "--agent", "judge", "--json")
    assert judge_run.group(1) in shown.stdout
    timeline = keel(project, "runs", "show", judge_run.group(1)).stdout
    assert "input: User's message: refund o-a Reference answer: Refunded o-a." in timeline
