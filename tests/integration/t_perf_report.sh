#!/usr/bin/env bash
# What a sync reports about its own cost (issue 8): the log line's phase
# times and rows written, and `sync --format json`'s "timings",
# "rows_written" and "peak_rss_kib" after the plan's own keys.  Rows
# written are counted by hand from the rules below and checked against
# pg_stat_user_tables too; a resync that changes nothing writes only its
# sync_run row (inserted, then finished).
. "$(dirname "$0")/lib.sh"

ou_create
{
	user_ldif alice Alice Smith
	user_ldif bob Bob Jones
	group_ldif CC-Support "$(udn alice)"
} | ldif_add
config_write

# table counters: a backend flushes its own when it exits, before it leaves
# pg_stat_activity, so once idsyncd's is gone they are exact.  Not
# managed_count: its triggers (migration 013) write it, not the run.
stats() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
		        AND application_name = 'idsyncd'")" = 0 ] && break
		sleep 0.1
	done
	q "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables
	   WHERE schemaname = 'idsync' AND relname NOT IN ('schema_migrations', 'company', 'managed_count')"
}

keys() { printf '%s' "$OUT" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)[0]))'; }
ids migrate
ids plan --format json
plan_keys=$(keys)
before=$(stats)
ids sync --format json
eq 0 "$RC" "sync exits 0"
# alice, in CC-Support (support-operators): tenant support (1), her user
# row (1), role operator (1), channels webchat and email (2), slots live
# and email (2), operator group first-line (1) and her membership (1),
# audit create and grant (2), the sync_run row inserted and finished (2),
# connector_feed's row (1: the last full read, issue 14) and the feed's
# image (3: alice, bob and CC-Support, connector_image)
eq 17 "$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["rows_written"])')" \
	"rows_written counts every row the run wrote"
eq "apply diff fetch load resolve rules" \
	"$(printf '%s' "$OUT" | python3 -c 'import json,sys; t=json.load(sys.stdin)[0]["timings"]; print(" ".join(sorted(k for k, v in t.items() if isinstance(v, float) and v >= 0)))')" \
	"timings has every phase, in seconds"
eq True "$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["peak_rss_kib"] > 1024)')" \
	"peak RSS is reported (KiB)"
eq "$plan_keys" "$(keys)" "a sync has the keys of a plan, in the same order (docs/json.md)"
has "17 rows written (fetch " "$ERR" "the log line says so too"
eq $((before + 17)) "$(stats)" "pg_stat_user_tables agrees"

before=$(stats)
ids sync
eq 0 "$RC" "resync exits 0"
has "3 rows written (fetch " "$ERR" "a resync of an unchanged directory writes its sync_run row and its feed row only"
eq $((before + 3)) "$(stats)" "... which pg_stat_user_tables confirms"

ids plan --format json
eq "None None 0" "$(printf '%s' "$OUT" | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]; print(d["timings"], d["peak_rss_kib"], d["rows_written"])')" \
	"a plan stays byte for byte what it plans: no timings, no RSS (null), nothing written"
finish
