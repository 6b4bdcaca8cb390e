"""`python -m pgrecs`: the same CLI as the `pgrecs` command."""

from pgrecs.cli import main

main(prog_name="pgrecs")
