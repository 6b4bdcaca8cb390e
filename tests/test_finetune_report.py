"""docs/finetuning.md shows what benchmarks/results holds: its tables are generated, never copied."""

from benchmarks import doc_tables, finetune_report


def test_the_finetuning_page_matches_the_results():
    assert doc_tables.main(["--check"], finetune_report.DOC, finetune_report.SECTIONS,
                           "python -m benchmarks.finetune_report") == 0, "run `python -m benchmarks.finetune_report`"


def test_every_generated_block_is_in_the_page():
    text = finetune_report.DOC.read_text()
    for name in finetune_report.SECTIONS:
        assert f"<!-- generated: {name} -->" in text and f"<!-- end: {name} -->" in text
