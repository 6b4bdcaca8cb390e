"""The SQL text cleaning (sql/010_text.sql) on real PostgreSQL, checked against Python's html and ftfy."""

from __future__ import annotations

import html.entities
import importlib.util
from pathlib import Path

import ftfy
import pytest


@pytest.fixture
def conn(sql):
    """These tests never commit: they share one database, each rolled back (conftest `sql`)."""
    return sql


def one(conn, sql, *params):
    return conn.execute(sql, params).fetchone()[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<p>Caf&eacute; &amp; Bar&nbsp;&nbsp; <b>bold</b></p>", "Café & Bar bold"),
        ("Professional &amp; Educational Journals", "Professional & Educational Journals"),
        ("&amp;lt;br&amp;gt;Double escaped", "Double escaped"),
        ('<span class="a-size-medium a-color-secondary"', None),
        ("&#8220;Hi&#x201D; &hearts; &unknownent; 5 < 6", "\u201cHi\u201d \u2665 &unknownent; 5 < 6"),
        ("<script>var x = 1;</script>Text<!-- note -->", "Text"),
        ("  lots \t of\n\nspace  ", "lots of space"),
        ("ｆｕｌｌｗｉｄｔｈ ﬁ", "fullwidth fi"),  # NFKC
        ("zero\u200bwidth", "zerowidth"),
        ("", None),
        (None, None),
    ],
)
def test_clean_text(conn, raw, expected):
    assert one(conn, "select pgrecs.clean_text(%s)", raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Café crème brûlée",
        "don’t stop – it’s “quoted” …",
        "Ålesund – Ærøskøbing",
        "naïve façade № 5 ™",
        "日本語のテキスト",
        "emoji 😀 party",
    ],
)
def test_mojibake_repair_matches_ftfy(conn, text):
    for codec in ("cp1252", "latin-1"):
        try:
            broken = text.encode("utf-8").decode(codec)
        except UnicodeDecodeError:
            continue  # an undefined cp1252 byte: Python cannot produce this mojibake
        expected = ftfy.fix_text(broken, uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False)
        assert expected == text
        assert one(conn, "select pgrecs.fix_mojibake(%s)", broken) == text, codec


@pytest.mark.parametrize("text", ["Café", "São Paulo", "Straße", "plain ascii", "Â£"])
def test_mojibake_leaves_correct_text_alone(conn, text):
    if text == "Â£":  # real mojibake of "£": repaired, as ftfy does
        assert one(conn, "select pgrecs.fix_mojibake(%s)", text) == ftfy.fix_text(text) == "£"
    else:
        assert one(conn, "select pgrecs.fix_mojibake(%s)", text) == text == ftfy.fix_text(text)


def test_entity_table_is_pythons_html5_table(conn):
    table = one(conn, "select pgrecs.html_entities()")
    expected = {k[:-1]: v for k, v in html.entities.html5.items() if k.endswith(";")}
    assert table == expected


def test_entity_file_is_the_generators_output():
    """sql/009_html_entities.sql is scripts/gen_html_entities.py's output, not edited by hand."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "gen_html_entities.py"
    spec = importlib.util.spec_from_file_location("gen_html_entities", script)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.TARGET.read_text() == generator.render()


def test_every_entity_decodes_like_python(conn):
    import html as pyhtml

    names = [k for k in html.entities.html5 if k.endswith(";")]
    raw = " ".join(f"&{name}" for name in names)
    assert one(conn, "select pgrecs.html_unescape(%s)", raw) == pyhtml.unescape(raw)


def test_description_boilerplate_removed(conn):
    raw = "Product Description: Great widget. Click here to buy now! Visit the Acme Store. See more"
    assert one(conn, "select pgrecs.clean_description(%s)", raw) == "Great widget."


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("SHINY LEAF", "Shiny Leaf"), ("NYX", "NYX"), ("dove", "Dove"), ("L'Oreal Paris", "L'Oreal Paris"),
     ("iPhone", "iPhone"), ("Kitchen &amp; Dining", "Kitchen & Dining"), ("LOREALPARIS", "Lorealparis")],
)
def test_clean_label_casing(conn, raw, expected):
    assert one(conn, "select pgrecs.clean_label(%s)", raw) == expected


def test_label_key_equates_spellings(conn):
    keys = conn.execute(
        "select pgrecs.label_key(x) from unnest(%s::text[]) as x",
        (["Professional &amp; Educational Journals", "Professional & Educational Journals",
          "PROFESSIONAL & EDUCATIONAL JOURNALS"],)).fetchall()
    assert {k[0] for k in keys} == {"professional & educational journals"}


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [("Bundle, 16 fl. Oz X 2", 16, "fl oz"), ("Face cream | 3.4 oz", 3.4, "oz"), ("Shampoo 250ml", 250, "ml"),
     ("Comb set 4 pcs", 4, "count"), ("Spray bottles 2-Pack", 2, "count"), ("Flour 1.5 kg bag", 1.5, "kg")],
)
def test_parse_size(conn, text, value, unit):
    row = conn.execute("select size_value, size_unit from pgrecs.parse_size(%s)", (text,)).fetchone()
    assert row is not None and float(row[0]) == value and row[1] == unit


def test_parse_size_none(conn):
    assert conn.execute("select * from pgrecs.parse_size('Blue widget')").fetchone() == (None, None)


def test_compose_item_text_template(conn):
    text = one(
        conn,
        "select pgrecs.compose_item_text(title => %s, description => %s, brand => %s, category_path => %s, attributes => %s)",
        "<b>Caf&eacute; Mug</b>", "<p>Holds 12 oz.</p> See more", "ACME KITCHEN",
        ["Kitchen &amp; Dining", "Mugs"],
        '{"Color": "Blue", "ASIN": "B0001", "Tags": ["a", "b"], "Format:": "Print", "Nested": {"x": 1}}',
    )
    assert text == "Café Mug. Brand: Acme Kitchen. Category: Kitchen & Dining > Mugs. Color: Blue; Format: Print; Tags: a, b. Holds 12 oz."


@pytest.mark.parametrize(
    ("composed", "problem"),
    [(None, "empty text"), ("  ", "empty text"),
     # short but meaningful: real product titles
     ("FROG CANDLE", None), ("SPACE OWL", None), ("BINGO SET", None), ("Mug", None), ("茶碗", None),
     ("12 PENCILS SMALL TUBE RED RETROSPOT", None), ("test. Brand: Acme. Category: Shoes", None),
     # junk
     ("12345 #### 999 000", "no words"), ("85123A", "no words"), ("SKU-4421", "no words"), ("?", "no words"),
     ("3 x 4 cm", "no words"), ("Brand: X1. Category: 99", "no words"),
     ("aaaaaa", "repeated characters"), ("xxx ZZZZ", "repeated characters"),
     ("test", "placeholder text"), ("N/A", "placeholder text"), ("n.a.", "placeholder text"),
     ("Sample item 42", "placeholder text"), ("TBD", "placeholder text"), ("Lorem ipsum dolor sit amet", "placeholder text"),
     ("A perfectly fine item text", None)],
)
def test_item_text_problem(conn, composed, problem):
    assert one(conn, "select pgrecs.item_text_problem(%s)", composed) == problem


@pytest.mark.parametrize(
    ("composed", "override", "problem"),
    [("test", None, "placeholder text"), ("test", True, None), ("FROG CANDLE", False, "refused by the merchant"),
     ("FROG CANDLE", None, None), (None, True, "empty text")],
)
def test_the_merchants_override_beats_the_rule(conn, composed, override, problem):
    assert one(conn, "select pgrecs.item_embed_problem(%s, %s)", composed, override) == problem


def test_text_functions_are_immutable_parallel_safe_and_commented(conn):
    rows = conn.execute(
        """
        select p.proname, p.provolatile, p.proparallel, obj_description(p.oid, 'pg_proc') is not null
        from pg_proc as p
        where p.pronamespace = 'pgrecs'::regnamespace
            and p.proname in ('clean_text', 'html_unescape', 'html_entities', 'strip_html', 'fix_mojibake',
                              'clean_description', 'clean_label', 'label_key', 'parse_size', 'compose_item_text',
                              'item_text_problem', 'item_embed_problem', 'boilerplate_pattern')
        """).fetchall()
    assert len(rows) == 13
    for name, volatility, parallel, commented in rows:
        assert (volatility, parallel, commented) == ("i", "s", True), name
