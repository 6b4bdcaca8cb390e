"""`dbt.*` helpers the models call, as the jinja templater of sqlfluff sees them (lint only)."""


def string_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"
