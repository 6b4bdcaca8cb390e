"""docs/scaling.md shows what benchmarks/results holds: its tables are generated, never copied."""

from benchmarks import scaling_report


def test_the_scaling_page_matches_the_results():
    assert scaling_report.main(["--check"]) == 0, "run `python -m benchmarks.scaling_report`"


def test_every_generated_block_is_in_the_page():
    text = scaling_report.DOC.read_text()
    for name in scaling_report.SECTIONS:
        assert f"<!-- generated: {name} -->" in text and f"<!-- end: {name} -->" in text
