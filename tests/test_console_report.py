"""docs/console.md shows what benchmarks/results/console.json holds: its speed table is generated, never copied."""

from benchmarks import console_report


def test_the_console_page_matches_the_results():
    text = console_report.DOC.read_text()
    assert "<!-- generated: console_speed -->" in text and "<!-- end: console_speed -->" in text
    assert console_report.main(["--check"]) == 0, "run `python -m benchmarks.console_report`"
