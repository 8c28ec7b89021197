"""The benchmark runner (`python3 -m tools.bench`, `make bench`)."""
