#!/usr/bin/env bash
# What the Debian package installs besides the binary (issue 18), checked
# without a server: the conffile that debian/conffile makes from
# config/example.yaml passes `idsyncd check-config` as it stands, and the
# bash completion offers the binary's commands and options and the
# connector names of the configuration given with -c (a connector whose
# `name:` is not its first key, nested `name:`s and commented-out items
# included, which must not be offered).
set -euo pipefail
: "${IDSYNCD:?IDSYNCD: the idsyncd binary under test}" "${IDS_SRC:?IDS_SRC: the source tree}"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fails=0
eq() {
	if [ "$1" = "$2" ]; then
		echo "ok - $3"
	else
		echo "not ok - $3: expected [$1], got [$2]"
		fails=$((fails + 1))
	fi
}

# --- the conffile
sh "$IDS_SRC/debian/conffile" "$IDS_SRC/config/example.yaml" >"$W/idsyncd.yaml"
set +e
env -u CREDENTIALS_DIRECTORY "$IDSYNCD" -c "$W/idsyncd.yaml" check-config >"$W/out" 2>&1
rc=$?
set -e
eq 0 "$rc" "check-config passes on the packaged conffile (output: $(tr '\n' ' ' <"$W/out"))"
eq 0 "$(grep -c '^connector ' "$W/out")" "the conffile has no connector (every example commented out)"
grep -q '^no connectors configured: nothing will be synced$' "$W/out" ||
	{ echo "not ok - check-config says that nothing will be synced"; exit 1; }
# every connector and rule of the example is kept, commented out
eq "$(grep -c '^  - name:' "$IDS_SRC/config/example.yaml")" "$(grep -c '^#  - name:' "$W/idsyncd.yaml")" \
	"every connector and rule of the example is in the conffile, commented out"

# --- bash completion
if [ ! -r /usr/share/bash-completion/bash_completion ]; then
	echo "not ok - bash-completion is not installed (scripts/deps installs it)"
	exit 1
fi
cat >"$W/c.yaml" <<'Y'
database: { conninfo: "host=/run/postgresql" }
connectors:
  - name: corp-ad             # a comment
    type: ldap
    users: { base: "dc=x" }
    attributes:
      name: cn
  - type: entra
    name: "entra"
  #- name: commented-out
  -   name: 'gws'
rules:
  - name: not-a-connector
Y
comp() {
	bash -c '
	. /usr/share/bash-completion/bash_completion
	. "$IDS_SRC/completion/idsyncd"
	COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
	COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
	_idsyncd idsyncd "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
	echo "${COMPREPLY[*]}"' comp "$@"
}
export IDS_SRC
PATH="$(dirname "$IDSYNCD"):$PATH"
export PATH
eq "corp-ad entra gws" "$(comp idsyncd -c "$W/c.yaml" sync --connector "")" "--connector offers the configuration's connectors"
eq "corp-ad" "$(comp idsyncd plan --config "$W/c.yaml" --connector co)" "... by prefix, -c after the command"
eq "check-config" "$(comp idsyncd ch)" "commands come from --help"
eq "run sync plan check-config migrate status retire approve explain" "$(comp idsyncd "")" "every command"
eq "--format --max-age --config --help" "$(comp idsyncd status --)" "a command's own options"
eq "text json" "$(comp idsyncd explain x --format "")" "--format values"
[ "$fails" -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
