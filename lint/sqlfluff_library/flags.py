"""dbt's `flags`, as the jinja templater of sqlfluff sees them (lint only): a plain build."""

FULL_REFRESH = False
