"""Where the files pgrecs runs on live: sql/, migrations/, dbt_project/ and the demo sample.

In a source checkout they sit beside app/; a wheel carries them inside the package (the
package-dir and package-data entries in pyproject.toml), so an installed pgrecs needs no checkout.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource(name: str) -> Path:
    """The directory `name` (e.g. "sql", "data/sample"): inside the installed package, else in the checkout."""
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else PACKAGE_DIR.parent / name
