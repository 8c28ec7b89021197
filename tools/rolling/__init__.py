"""Rolling restart under load (`python3 -m tools.rolling`, `make rolling-restart`)."""
