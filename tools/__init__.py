"""Switchboard's test, benchmark and deployment-check tooling: one package, every entry point run
as `python3 -m tools.<module>` from the repository root (tools/README.md lists them)."""
