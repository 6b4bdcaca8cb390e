"""docs/cli.md shows what benchmarks/results/cli_startup.json holds: its table is generated, never copied."""

from benchmarks import cli_report


def test_the_cli_page_matches_the_results():
    assert "<!-- generated: cli_startup -->" in cli_report.DOC.read_text()
    assert cli_report.main(["--check"]) == 0, "run `python -m benchmarks.cli_report`"
