"""The soak (`python3 -m tools.soak`, `make soak`)."""
