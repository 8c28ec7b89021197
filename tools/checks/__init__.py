"""Checks run by `make test`: Autobahn, API fuzzing, observability (promtool, dashboard, scrape)."""
