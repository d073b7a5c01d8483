#!/usr/bin/env bash
# bench/persist.sh — changes.persist at a tier of bench/run's directory
# (issue 14's row "persist: one change, ldapmodify returning -> grant
# committed, 100 changes at tier M, debounce 1 s"):
#
#   bench/persist.sh [--tier M] [--samples 100] [--debounce 1] [--build DIR]
#
# Starts a throwaway PostgreSQL and slapd and loads the tier's directory
# as bench/run does (its own code: bench/persist.py imports bench/run),
# runs `idsyncd run` with persist: true and an interval of an hour, then
# adds SAMPLES people to CC-t01-Operators one at a time: each sample is
# the time from ldapmodify's return to the moment another session sees
# the person's channel grants (polled every 2 ms).  Also per sample: the
# wait before its run started (the debounce) and the run's own duration
# (sync_run).  Writes bench/results/persist.md.  Run it on a quiet
# machine, under nice when it is shared.
exec /usr/bin/python3 "$(dirname "$0")/persist.py" "$@"
