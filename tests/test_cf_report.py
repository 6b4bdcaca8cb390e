"""docs/collaborative.md shows what benchmarks/results holds: its tables are generated, never copied."""

from benchmarks import cf_report


def test_the_collaborative_page_matches_the_results():
    assert cf_report.main(["--check"]) == 0, "run `python -m benchmarks.cf_report`"


def test_every_generated_block_is_in_the_page():
    text = cf_report.DOC.read_text()
    for name in cf_report.SECTIONS:
        assert f"<!-- generated: {name} -->" in text and f"<!-- end: {name} -->" in text
