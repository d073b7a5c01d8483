# shellcheck shell=bash
# entra_delta_lib.sh — the daemon driven run by run, for the Entra change
# feed tests (t_entra_delta*.sh), sourced after graph.sh: only the daemon
# keeps a feed's image between runs (one-shot commands read everything).
#
#   daemon_start            `idsyncd run` in the background (interval 1h:
#                           runs happen when the test asks), waits for its
#                           first run; killed at exit
#   daemon_run              SIGUSR1, then waits for that run's sync_run row
#   daemon_reload           SIGHUP (the config was rewritten)
#   last_run COLUMNS        the last run's columns, joined by |
#   plan_clean WHAT         `plan --full` (a full read: transitiveMembers)
#                           must have nothing to do
DAEMON_CONN=cloud
trap 'daemon_stop; graph_stop; cleanup' EXIT

# the config's sync: block gets an interval no test waits for
daemon_config() {
	sed -i 's/^sync:$/sync:\n  interval: 1h\n  jitter: 0s/' "$W/idsyncd.yaml"
}

daemon_start() {
	local n
	n=$(runs_done) # one-shot runs before (bench/cloud_feed.sh) are not the daemon's
	daemon_config
	"$IDSYNCD" -c "$W/idsyncd.yaml" run >"$W/daemon.out" 2>"$W/daemon.log" &
	DAEMON_PID=$!
	wait_runs $((n + 1))
}

daemon_run() {
	local n
	n=$(runs_done)
	kill -USR1 "$DAEMON_PID"
	wait_runs $((n + 1))
}

daemon_reload() {
	daemon_config
	kill -HUP "$DAEMON_PID"
	for _ in $(seq 50); do
		grep -q "SIGHUP" "$W/daemon.log" && break
		sleep 0.1
	done
	sleep 0.5
}

last_run() { q "SELECT $1 FROM sync_run WHERE connector = 'cloud' ORDER BY id DESC LIMIT 1"; }

NOTHING="0 create, 0 update, 0 deactivate, 0 reactivate, 0 grants added, 0 removed"
plan_clean() {
	ids plan --full
	eq 0 "$RC" "$1: plan --full exits 0"
	has "summary cloud: $NOTHING" "$OUT" "$1: plan --full has nothing to do"
}
