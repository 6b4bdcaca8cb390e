"""The docs pages show what benchmarks/results holds: their tables are generated, never copied."""

import pytest

from benchmarks import cf_report, text_rule_report

REPORTS = [cf_report, text_rule_report]


@pytest.mark.parametrize("report", REPORTS, ids=lambda r: r.DOC.name)
def test_the_page_matches_the_results(report):
    assert report.main(["--check"]) == 0, f"run `python -m {report.__name__}`"


@pytest.mark.parametrize("report", REPORTS, ids=lambda r: r.DOC.name)
def test_every_generated_block_is_in_the_page(report):
    text = report.DOC.read_text()
    for name in report.SECTIONS:
        assert f"<!-- generated: {name} -->" in text and f"<!-- end: {name} -->" in text
