#!/usr/bin/env bash
# bench/cloud_feed.sh — the cloud connectors' reads against the fakes
# (issue 15), for docs/changes.md and BENCHMARKS.md:
#
#   IDSYNCD=build/idsyncd bench/cloud_feed.sh N [REPS]
#
# with the test servers' environment (pg.env, as for the integration
# tests).  For a tenant of N users (N/50 groups, every tenth nesting the one
# before, 999 a page) it measures, REPS times each (default 3), medians:
#   entra full read     `sync --full` (nothing to write): /users, /groups, transitiveMembers
#                       per group (the `fetch` phase, and the bytes sent)
#   entra no-change     a daemon run through the delta links: requests,
#                       bytes, `fetch` (the read into the image; from the
#                       daemon's /metrics, not the log's 0.01 s), the
#                       run, and its requests' time (libcurl's totals, from
#                       the debug log); its connection kept from the last run
#   entra idle-closed   the same after the fake closed the idle
#                       connection (as Graph does between runs minutes
#                       apart): a new connection, the TLS session resumed
#   entra 1 % churn     1 % of users changed, 1 % of memberships moved:
#                       the daemon's delta runs' bytes, one after the other
#                       (no one-shot run between them: a `sync --full`
#                       resets the stored feed, and the next delta run
#                       would read everything), against a full read's
#                       after the last of them
#   google full read    `sync` (nothing to write) against tests/fakes/google.py
#                       (SKIP_GOOGLE=1 leaves it out)
# Results go to stdout and to bench/results/cloud-N.txt.  Run it under nice:
# it measures the fakes (Python) as much as idsyncd.
set -euo pipefail
N=${1:?users}
REPS=${2:-3}
export IDS_NO_LDAP=1 FAKE_START_TRIES=6000 # 10 min: a 100k tenant on a loaded machine
SRC=$(cd "$(dirname "$0")/.." && pwd)
export IDS_SRC=$SRC
. "$SRC/tests/integration/lib.sh"
. "$SRC/tests/fakes/graph.sh"
. "$SRC/tests/integration/entra_delta_lib.sh"
. "$SRC/tests/integration/google_lib.sh"
trap 'daemon_stop; graph_stop; gfake_stop; cleanup' EXIT
G=$((N / 50))
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
OUTF=$SRC/bench/results/cloud-$N.txt

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# the last daemon run's fetch phase, in seconds to the microsecond
fetch_of() {
	curl -sf "http://$METRICS/metrics" | awk '/^idsyncd_last_run_phase_seconds.*phase="fetch"/ {print $2}'
}
secs() { python3 -c "import time; print(time.monotonic())"; }
# seconds the requests logged in file $1 from line $2 on took, by libcurl's
# totals (the debug lines of connectors/http.c): the network part of a read
req_secs() { tail -n +"$2" "$1" | grep -o 'total [0-9.]*$' | awk '{t += $2} END {printf "%.6f\n", t / 1000}'; }

rules=$(printf '  - name: g0\n    match: { member_of: ["CC-Group-000", "CC-Group-010"] }\n    tenant: support\n    roles: [operator]\n')
graph_start --secret-file "$W/secret.raw" --gen-users "$N" --gen-groups "$G" --gen-nesting
graph_ctl '{"member_chunk": 20}'
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 LOG_LEVEL=debug entra_config "$(entra_secret)" '    changes: { mode: auto }' "$rules"
sed -i 's/run_timeout: 5m/run_timeout: 30m/' "$W/idsyncd.yaml"
METRICS=127.0.0.1:$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
printf 'metrics:\n  listen: "%s"\n' "$METRICS" >>"$W/idsyncd.yaml"
ids migrate
ids sync
[ "$RC" = 0 ] || { echo "$ERR" >&2; exit 1; }

# the last run's time from its sync_run row (started to finished), for
# one-shot and daemon runs alike
run_secs() { q "SELECT extract(epoch FROM finished_at - started_at) FROM sync_run ORDER BY id DESC LIMIT 1"; }

full_read() { # -> "fetch run bytes"
	graph_ctl '{"reset_stats": true}'
	ids sync --full
	[ "$RC" = 0 ] || { echo "$ERR" >&2; exit 1; }
	echo "$(grep -o 'fetch [0-9.]*s' "$W/err" | tail -1 | tr -dc '0-9.') $(run_secs) $(graph_stat 'd["bytes"]') $(req_secs "$W/err" 1)"
}
: >"$W/full"
for _ in $(seq "$REPS"); do full_read >>"$W/full"; done

daemon_start
noop_run() { # -> "fetch requests bytes run requests' time"
	local from
	graph_ctl '{"reset_stats": true}'
	from=$(($(wc -l <"$W/daemon.log") + 1))
	daemon_run
	echo "$(fetch_of) $(graph_stat "d['requests'] - d['by_endpoint'].get('token', 0)") $(graph_stat 'd["bytes"]') $(run_secs) $(req_secs "$W/daemon.log" "$from")"
}
daemon_run # the first run after the full reads reads everything again
: >"$W/noop"
for _ in $(seq "$REPS"); do noop_run >>"$W/noop"; done

# the server closes a connection idle for 0.3 s; the runs are 1 s apart
graph_ctl '{"idle_timeout": 0.3}'
daemon_run
: >"$W/idle"
for _ in $(seq "$REPS"); do
	sleep 1
	noop_run >>"$W/idle"
done
graph_ctl '{"idle_timeout": 0}'

: >"$W/churn"
for _ in $(seq "$REPS"); do
	graph_ctl '{"churn": 0.01, "reset_stats": true}'
	daemon_run
	[ "$(last_run "status||'|'||read_kind")" = "ok|incremental" ] || { echo "churn run: $(last_run "status||'|'||read_kind||'|'||coalesce(error, '')")" >&2; exit 1; }
	graph_stat 'd["bytes"]' >>"$W/churn"
done
daemon_stop
cfb=$(full_read | cut -d' ' -f3)
graph_stop

# google (SKIP_GOOGLE=1: not measured, its line says so; nothing of this
# issue's changes touches a one-shot Google read)
: >"$W/google"
if [ -z "${SKIP_GOOGLE:-}" ]; then
	gfake_start --gen-users "$N" --gen-groups "$G"
	sa_json "$GURL/token"
	gconfig_write "" "$rules"
	sed -i 's/run_timeout: 5m/run_timeout: 30m/' "$W/idsyncd.yaml"
	ids sync
	for _ in $(seq "$REPS"); do
		t0=$(secs)
		ids sync
		t1=$(secs)
		[ "$RC" = 0 ] || { echo "$ERR" >&2; exit 1; }
		echo "$(grep -o 'fetch [0-9.]*s' "$W/err" | tail -1 | tr -dc '0-9.') $(python3 -c "print($t1 - $t0)")" >>"$W/google"
	done
fi

col() { cut -d' ' -f"$2" "$W/$1" | median; }
ff=$(col full 1) fw=$(col full 2) fb=$(col full 3) ft=$(col full 4)
nf=$(col noop 1) nr=$(col noop 2) nb=$(col noop 3) nw=$(col noop 4) nt=$(col noop 5)
idf=$(col idle 1) idr=$(col idle 2) idw=$(col idle 4) idt=$(col idle 5)
x() { python3 -c "print(f'{$1 / $2:.3f}x')"; }
cb=$(col churn 1)
gf=$(col google 1 || true) gw=$(col google 2 || true)
{
	echo "cloud feed bench: $N users, $G groups, $REPS reps, $(nproc) cores, $(uname -m), $(date -u +%F), load average $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "entra full read (sync --full, no change): fetch ${ff}s, run ${fw}s, ${fb} bytes, requests ${ft}s"
	echo "entra no-change delta run: fetch ${nf}s ($(x "$nf" "$ff") the full read's), run ${nw}s ($(x "$nw" "$fw")), ${nr} requests, ${nb} bytes, requests ${nt}s ($(x "$nt" "$ft"))"
	echo "entra no-change delta run, the idle connection closed by the server: fetch ${idf}s ($(x "$idf" "$ff")), run ${idw}s ($(x "$idw" "$fw")), ${idr} requests, requests ${idt}s ($(x "$idt" "$ft"))"
	echo "entra 1% churn delta run: ${cb} bytes, full read ${cfb} bytes ($(x "$cb" "$cfb"))"
	if [ -s "$W/google" ]; then
		echo "google full read (sync, no change): fetch ${gf}s, run ${gw}s"
	else
		echo "google full read: not measured (SKIP_GOOGLE)"
	fi
} | tee "$OUTF"
