"""`pgrecs load` and `pgrecs rejects` (filled in by the ingestion module)."""

COMMANDS: list = []
