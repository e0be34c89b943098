"""Bad input as a table: the cases, the runs, and docs/BAD-INPUT.md generated from them."""
