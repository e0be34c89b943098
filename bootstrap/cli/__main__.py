"""``python -m bootstrap.cli``: the same as the ``drboot`` console script."""

from bootstrap.cli import main

main()
