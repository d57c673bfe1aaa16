"""``python -m inspekt`` is the ``inspekt`` command (used where the console script is not on PATH)."""

from inspekt.cli import main

main()
