# Rolling restart under load (tools/rolling/, python3 -m tools.rolling): every node of a local cluster is
# drained with SIGTERM and restarted in turn while switchboard-loadgen runs direct messages
# over WebSockets with --reconnect. Fails on any lost or duplicated message, a delivery out
# of offset order, a resume answered recovered:false, any close 1006, a drain that does not
# exit 0, a burst of reconnects (a second above 2x the even spread) or no full recovery.
# Report: target/artifacts/rolling-restart*.json (+ .loadgen.json, -logs/ with node logs).
ROLLING := python3 -m tools.rolling
ROLLING_ARGS ?=

.PHONY: rolling-restart
rolling-restart: deps ## Rolling restart under load, release builds: 3 nodes, 2,000 connections, 2,000 msg/s, drain 10 s (0 lost, 0 closes 1006)
	$(CARGO) build --release --locked -p switchboard-gateway -p switchboard-loadgen
	$(ROLLING) --binary target/release/switchboard --loadgen target/release/switchboard-loadgen \
		--nodes 3 --pairs 1000 --rate 2000 --drain-seconds 10 --pause-seconds 5 \
		--json target/artifacts/rolling-restart.json $(ROLLING_ARGS)

.PHONY: rolling-restart-short
rolling-restart-short: deps ## Rolling restart, short form for make test (debug builds): 3 nodes, 400 connections, 400 msg/s, drain 5 s
	PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tools/rolling -t .
	$(CARGO) build --locked -p switchboard-gateway -p switchboard-loadgen
	$(ROLLING) --binary target/debug/switchboard --loadgen target/debug/switchboard-loadgen \
		--nodes 3 --pairs 200 --rate 400 --drain-seconds 5 --pause-seconds 2 \
		--settle-seconds 3 --restart-allowance-seconds 3 --tail-seconds 8 \
		--json target/artifacts/rolling-restart-short.json $(ROLLING_ARGS)

TEST_TARGETS += rolling-restart-short
