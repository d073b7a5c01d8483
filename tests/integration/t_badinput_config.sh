#!/usr/bin/env bash
# Malformed configuration files (issue 7, config.md "Every error names the
# file, line and column"): truncated, tabs, anchors and aliases (undefined,
# recursive, merge keys), huge, deeply nested, binary, NUL bytes, invalid
# UTF-8, two documents, duplicate keys, overflowing numbers.  Each one —
# several hundred generated files — must make `check-config` exit 78 with
# "FILE:LINE:COL: " (a line inside the file) and never crash, hang or eat
# memory.  Truncations of a valid file may themselves be valid (a YAML
# prefix often is): those must exit 0 or 78, nothing else.
# Files too large to be a config (over 4 MiB) and files that cannot be
# opened are named without a position (there is none).
IDS_NO_LDAP=1
. "$(dirname "$0")/lib.sh"

C=$W/cfg
mkdir -p "$C"
# The generator: one file per case, STRICT_* must fail with a position,
# TRUNC_* / LENIENT_* may also be valid.
/usr/bin/python3 - "$C" <<'PY'
import os, random, sys
d = sys.argv[1]
def w(name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name + ".yaml"), "wb") as f:
        f.write(data)

valid = """database:
  conninfo: "dbname=cc"
sync: { interval: 5m, jitter: 10s }
safety:
  max_deactivations: 100
catalog:
  extra_roles: [ANALYST]
connectors:
  - name: corp
    type: ldap
    company: acme
    uri: ["ldaps://ldap1.example", "ldaps://ldap2.example"]
    users: { base: "ou=people,dc=example", filter: "(objectClass=inetOrgPerson)" }
    groups: { base: "ou=groups,dc=example" }
    attributes: { username: uid, email: mail }
rules:
  - name: ops
    match:
      member_of_regex: "^CC-([a-z]+)-Operators$"
      attribute: { department: "(?i)^support" }
    tenant: "{1}"
    roles: [operator]
    channels: [webchat, email]
    slots: { live: 2, email: 5 }
    groups: [first-line]
  - name: admins
    match: { member_of: ["cn=CC-Admins,ou=groups,dc=example"] }
    company_admin: true
  - name: no-wa
    match: { attribute: { employeeType: "^contractor$" } }
    tenant: "*"
    revoke: { channels: [whatsapp] }
"""
w("LENIENT_valid", valid)
lines = valid.splitlines(keepends=True)

# truncated anywhere: every 7th byte, and every line end
for i in range(0, len(valid), 7):
    w(f"TRUNC_byte{i:04d}", valid[:i])
pos = 0
for n, l in enumerate(lines):
    pos += len(l)
    w(f"TRUNC_line{n:02d}", valid[:pos - 1])

# tabs
w("STRICT_tab_indent", valid.replace("\n  conninfo", "\n\tconninfo"))
w("STRICT_tab_in_list", valid.replace("    type: ldap", "\ttype: ldap"))
w("STRICT_tab_mixed", valid.replace("  max_deactivations", " \tmax_deactivations"))

# anchors and aliases
w("STRICT_alias_undefined", "database: *nope\n")
w("STRICT_alias_recursive_seq", valid.replace("extra_roles: [ANALYST]", "extra_roles: &r [ANALYST, *r]"))
w("STRICT_alias_recursive_map", valid.replace("catalog:\n", "catalog: &c\n  again: *c\n"))
w("STRICT_alias_merge_key", valid.replace("safety:\n", "safety:\n  <<: {max_deactivations: 3}\n"))
w("STRICT_alias_rule_twice", valid.replace("  - name: ops\n", "  - &r1\n    name: ops\n") + "  - *r1\n")
laughs = "lol: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
for k in range(1, 12):
    laughs += f"lol{k}: &a{k} [" + ", ".join([f"*a{k-1}"] * 10) + "]\n"
w("STRICT_alias_billion_laughs", laughs + valid)
w("STRICT_alias_billion_laughs_in_catalog",
  valid.replace("catalog:\n  extra_roles: [ANALYST]\n",
                "catalog:\n  extra_roles: &a0 [A, B, C, D, E, F, G, H, I, J]\n  roles: &a1 ["
                + ", ".join(["*a0"] * 10) + "]\n  channels: [" + ", ".join(["*a1"] * 10) + "]\n"))
w("STRICT_anchor_on_key", "&k database: {conninfo: x}\n*k : y\n")

# huge: many rules and a typo in the last line; one giant scalar; a
# giant key; a file over the 4 MiB limit (no position: see the top)
many = valid + "".join(f"  - name: r{i}\n    match: {{ member_of: [g{i}] }}\n    company_admin: true\n" for i in range(20000))
w("STRICT_huge_many_rules_typo_at_end", many + "  - name: last\n    match: { member_of: [x] }\n    compny_admin: true\n")
w("STRICT_huge_key", "database:\n  " + "k" * 1000000 + ": x\n")
w("STRICT_huge_scalar_bad", valid.replace("max_deactivations: 100", "max_deactivations: " + "9" * 1000000))
w("STRICT_huge_comment_then_error", "#" + "x" * 3000000 + "\ndatabase: [\n")
w("TOOBIG_over_limit", valid + "#" * (4 * 1024 * 1024 + 1) + "\n")

# deeply nested
w("STRICT_deep_seq", "catalog:\n  extra_roles: " + "[" * 100000 + "]" * 100000 + "\n")
w("STRICT_deep_seq_unclosed", "catalog:\n  extra_roles: " + "[" * 100000 + "\n")
w("STRICT_deep_map", "database: " + "{a: " * 50000 + "x" + "}" * 50000 + "\n")
w("STRICT_deep_block", "".join("  " * i + "a:\n" for i in range(1000)))
w("STRICT_deep_in_attributes", valid.replace("attributes: { username: uid, email: mail }",
                                             "attributes: { username: " + "[" * 5000 + "uid" + "]" * 5000 + " }"))

# binary and encodings
rnd = random.Random(7)
for k in range(8):
    w(f"STRICT_binary_random{k}", bytes(rnd.randrange(256) for _ in range(4096)))
w("STRICT_binary_elf", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
w("STRICT_nul_in_value", valid.replace('"dbname=cc"', '"dbname=\x00cc"'))
w("STRICT_nul_in_middle", valid[:200] + "\x00" + valid[200:])
w("STRICT_invalid_utf8_value", valid.encode().replace(b"company: acme", b"company: ac\xffme"))
w("STRICT_invalid_utf8_comment", b"# \xc3\x28\n" + valid.encode())
w("STRICT_overlong_utf8", valid.encode().replace(b"company: acme", b"company: \xc0\xafacme"))
w("STRICT_control_char_in_quotes", valid.replace('"dbname=cc"', '"dbname=\x01cc"'))
w("LENIENT_utf8_bom", "\ufeff" + valid)
w("LENIENT_utf16le", "\ufeff".encode("utf-16-le") + valid.encode("utf-16-le"))
w("LENIENT_crlf", valid.replace("\n", "\r\n"))
w("STRICT_lone_cr", valid.replace("\n", "\r").replace("database", "databse", 1))

# shapes
w("STRICT_empty", "")
w("STRICT_comments_only", "# nothing\n# here\n")
w("STRICT_top_list", "- database\n- connectors\n")
w("STRICT_top_scalar", "just some text\n")
w("STRICT_two_documents", valid + "---\n" + valid)
w("STRICT_duplicate_section", valid + "database:\n  conninfo: other\n")
w("STRICT_unclosed_flow", "database: {conninfo: x\n")
w("STRICT_unclosed_quote", 'database: {conninfo: "x}\n')
w("STRICT_key_no_space", "database:{conninfo: x}\n")
w("STRICT_tag_binary", valid.replace('database:\n  conninfo: "dbname=cc"', "database: !!binary aGVsbG8="))
w("STRICT_directive_only", "%YAML 1.1\n---\n")
w("STRICT_bad_directive", "%YAML 9.9\n---\n" + valid)
w("STRICT_number_overflow", valid.replace("max_deactivations: 100", "max_deactivations: 99999999999999999999999"))
w("STRICT_negative", valid.replace("max_deactivations: 100", "max_deactivations: -1"))
w("STRICT_float", valid.replace("max_deactivations: 100", "max_deactivations: 1e3"))
w("STRICT_null_section", "database:\nconnectors:\n")
w("STRICT_list_as_key", "[a, b]: c\n" + valid)
w("STRICT_very_long_line", "database: {conninfo: x}" + " " * 200000 + "junk\n")
w("STRICT_document_end_only", "...\n")
PY

n=0 strict_ok=0
for f in "$C"/*.yaml; do
	name=$(basename "$f" .yaml)
	n=$((n + 1))
	set +e
	timeout 30 "$IDSYNCD" -c "$f" check-config >"$W/out" 2>"$W/err"
	rc=$?
	set -e
	first=$(head -c 300 "$W/err" | head -n 1)
	lines=$(($(tr -dc '\n' <"$f" | wc -c) + 1))
	line=$(printf '%s' "$first" | sed -n "s#^$f:\([0-9]*\):[0-9]*: .*#\1#p")
	case $name in
	STRICT_*) want="78 with a position" ;;
	TOOBIG_*) want="78 naming the file" ;;
	*) want="0, or 78 with a position" ;;
	esac
	if [ $rc -ge 124 ]; then
		OUT="" ERR=$first bad "$name: crashed, hung or was killed (exit $rc)"
	elif [ $rc -ne 78 ] && { [ $rc -ne 0 ] || [ "${name%%_*}" != TRUNC ] && [ "${name%%_*}" != LENIENT ]; }; then
		OUT="" ERR=$first bad "$name: exit $rc, expected $want"
	elif [ $rc -eq 78 ] && [ "${name%%_*}" = TOOBIG ]; then
		case $first in "$f: "*) strict_ok=$((strict_ok + 1)) ;; *) OUT="" ERR=$first bad "$name: message does not name the file" ;; esac
	elif [ $rc -eq 78 ] && { [ -z "$line" ] || [ "$line" -lt 1 ] || [ "$line" -gt $((lines + 1)) ]; }; then
		OUT="" ERR=$first bad "$name: no FILE:LINE:COL within the file ($lines lines)"
	else
		strict_ok=$((strict_ok + 1))
	fi
done
eq "$n" "$strict_ok" "all $n malformed or truncated files handled"

# a few messages in full (positions counted by hand in the generator's text)
msg() { "$IDSYNCD" -c "$C/$1.yaml" check-config 2>&1 | head -n 1 | sed "s#^$C/##"; }
eq 'STRICT_deep_seq.yaml:2:78: yaml: nested more than 64 levels deep' "$(msg STRICT_deep_seq)" "deep nesting refused at the 65th level"
eq 'STRICT_huge_many_rules_typo_at_end.yaml:60035:5: rules[20003]: unknown key "compny_admin" (did you mean "company_admin"?)' \
	"$(msg STRICT_huge_many_rules_typo_at_end)" "a typo after 20,000 rules found at its line"
eq 'STRICT_alias_recursive_seq.yaml:7:16: catalog.extra_roles[1]: expected a string, got a list' \
	"$(msg STRICT_alias_recursive_seq)" "a list that contains itself"
eq 'STRICT_tab_in_list.yaml:10:1: yaml: found a tab character that violates indentation' "$(msg STRICT_tab_in_list)" "a tab"
eq 'STRICT_two_documents.yaml:33:1: yaml: expected one document, found a second one' "$(msg STRICT_two_documents)" \
	"a second document"
[ "$n" -gt 200 ] && ok "more than 200 files generated" || bad "only $n files generated"

# the valid base file really is valid: the truncations test something
"$IDSYNCD" -c "$C/LENIENT_valid.yaml" check-config >/dev/null 2>&1 && ok "the base file is valid" || bad "the base file is invalid"
finish
