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
#                       bytes, `fetch` (the read into the image) and the run
#   entra 1 % churn     1 % of users changed, 1 % of memberships moved:
#                       the delta run's bytes against a full read's
#   google full read    `sync` (nothing to write) against tests/fakes/google.py
# Results go to stdout and to bench/results/cloud-N.txt.  Run it under nice:
# it measures the fakes (Python) as much as idsyncd.
set -euo pipefail
N=${1:?users}
REPS=${2:-3}
export IDS_NO_LDAP=1 FAKE_START_TRIES=1200
SRC=$(cd "$(dirname "$0")/.." && pwd)
export IDS_SRC=$SRC
. "$SRC/tests/integration/lib.sh"
. "$SRC/tests/fakes/graph.sh"
. "$SRC/tests/integration/entra_delta_lib.sh"
. "$SRC/tests/integration/google_lib.sh"
trap 'daemon_stop; graph_stop; gfake_stop; cleanup' EXIT
G=$((N / 50))
OUTF=$SRC/bench/results/cloud-$N.txt

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
fetch_of() { grep -o '(fetch [0-9.]*s' "$1" | tail -1 | tr -dc '0-9.'; }
secs() { python3 -c "import time; print(time.monotonic())"; }

rules=$(printf '  - name: g0\n    match: { member_of: ["CC-Group-000", "CC-Group-010"] }\n    tenant: support\n    roles: [operator]\n')
graph_start --secret-file "$W/secret.raw" --gen-users "$N" --gen-groups "$G" --gen-nesting
graph_ctl '{"member_chunk": 20}'
MAX_DEACT_PCT=100 MAX_REMOVALS_PCT=100 entra_config "$(entra_secret)" '    changes: { mode: auto }' "$rules"
sed -i 's/run_timeout: 5m/run_timeout: 30m/' "$W/idsyncd.yaml"
ids migrate
ids sync
[ "$RC" = 0 ] || { echo "$ERR" >&2; exit 1; }

full_read() { # -> "fetch wall bytes"
	graph_ctl '{"reset_stats": true}'
	local t0 t1
	t0=$(secs)
	ids sync --full
	t1=$(secs)
	[ "$RC" = 0 ] || { echo "$ERR" >&2; exit 1; }
	echo "$(grep -o 'fetch [0-9.]*s' "$W/err" | tail -1 | tr -dc '0-9.') $(python3 -c "print($t1 - $t0)") $(graph_stat 'd["bytes"]')"
}
: >"$W/full"
for _ in $(seq "$REPS"); do full_read >>"$W/full"; done

daemon_start
: >"$W/noop"
for _ in $(seq "$REPS"); do
	graph_ctl '{"reset_stats": true}'
	daemon_run
	echo "$(fetch_of "$W/daemon.log") $(graph_stat "d['requests'] - d['by_endpoint'].get('token', 0)") $(graph_stat 'd["bytes"]') $(q "SELECT extract(epoch FROM finished_at - started_at) FROM sync_run ORDER BY id DESC LIMIT 1")" >>"$W/noop"
done

: >"$W/churn"
for _ in $(seq "$REPS"); do
	graph_ctl '{"churn": 0.01, "reset_stats": true}'
	daemon_run
	echo "$(graph_stat 'd["bytes"]') $(full_read | cut -d' ' -f3)" >>"$W/churn"
done
daemon_stop
graph_stop

# google
gfake_start --gen-users "$N" --gen-groups "$G"
sa_json "$GURL/token"
gconfig_write "" "$rules"
sed -i 's/run_timeout: 5m/run_timeout: 30m/' "$W/idsyncd.yaml"
ids sync
: >"$W/google"
for _ in $(seq "$REPS"); do
	t0=$(secs)
	ids sync
	t1=$(secs)
	[ "$RC" = 0 ] || { echo "$ERR" >&2; exit 1; }
	echo "$(grep -o 'fetch [0-9.]*s' "$W/err" | tail -1 | tr -dc '0-9.') $(python3 -c "print($t1 - $t0)")" >>"$W/google"
done

col() { cut -d' ' -f"$2" "$W/$1" | median; }
ff=$(col full 1) fw=$(col full 2) fb=$(col full 3)
nf=$(col noop 1) nr=$(col noop 2) nb=$(col noop 3) nw=$(col noop 4)
cb=$(col churn 1) cfb=$(col churn 2)
gf=$(col google 1) gw=$(col google 2)
{
	echo "cloud feed bench: $N users, $G groups, $REPS reps, $(nproc) cores, $(uname -m), $(date -u +%F)"
	echo "entra full read (sync --full, no change): fetch ${ff}s, run ${fw}s, ${fb} bytes"
	echo "entra no-change delta run: fetch ${nf}s ($(python3 -c "print(f'{$nf / $ff:.3f}')")x the full read's), run ${nw}s, ${nr} requests, ${nb} bytes"
	echo "entra 1% churn delta run: ${cb} bytes, full read ${cfb} bytes ($(python3 -c "print(f'{$cb / $cfb:.3f}')")x)"
	echo "google full read (sync, no change): fetch ${gf}s, run ${gw}s"
} | tee "$OUTF"
