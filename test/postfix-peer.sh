#!/usr/bin/env bash
# A real Postfix on loopback for the bounce tests: it takes any mail on
# 127.0.0.1:PORT, discards what it can deliver, bounces mail for @nouser.test
# (5.1.1) with its own delivery status notification (RFC 3464) to the
# envelope sender, and relays mail for bounces.example.test (the return-path
# domain) to 127.0.0.1:BOUNCE_PORT, where mailroom's bounce listener is.
#
#   bash test/postfix-peer.sh start PORT BOUNCE_PORT
#   bash test/postfix-peer.sh stop
#
# It rewrites /etc/postfix/main.cf and the smtpd line of master.cf (root,
# test machines only); the caller holds test/postfix.ts's lock meanwhile.
set -euo pipefail
cmd=${1:-}; port=${2:-}; bounce=${3:-}; log=/var/log/mailroom-postfix-peer.log
case "$cmd" in
start)
  [ -n "$port" ] && [ -n "$bounce" ] || { echo "usage: postfix-peer.sh start PORT BOUNCE_PORT" >&2; exit 2; }
  printf '%s\n' "nouser.test error:5.1.1 mailbox unavailable" "bounces.example.test smtp:[127.0.0.1]:$bounce" > /etc/postfix/mailroom-transport
  cat > /etc/postfix/main.cf <<CF
compatibility_level = 3.6
myhostname = peer.localhost
mydomain = localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
default_transport = discard:peer
relay_transport = discard:peer
local_transport = discard:peer
transport_maps = texthash:/etc/postfix/mailroom-transport
smtpd_reject_unlisted_recipient = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maillog_file = $log
maillog_file_prefixes = /var
smtp_host_lookup = native
biff = no
append_dot_mydomain = no
CF
  sed -i -E "s/^(smtp|[0-9.]+:[0-9]+)[[:space:]]+inet[[:space:]]+n[[:space:]]+-[[:space:]]+[yn][[:space:]]+-[[:space:]]+-[[:space:]]+smtpd\$/127.0.0.1:$port inet n - n - - smtpd/" /etc/postfix/master.cf
  newaliases 2>/dev/null || true
  if postfix status >/dev/null 2>&1; then postfix reload >/dev/null 2>&1; else postfix start >/dev/null 2>&1 || true; fi
  for _ in $(seq 100); do ss -ltn | grep -q "127.0.0.1:$port " && break; sleep 0.1; done
  ss -ltn | grep -q "127.0.0.1:$port " || { echo "postfix did not listen on $port (see $log)" >&2; exit 1; } ;;
stop) postfix stop >/dev/null 2>&1 || true ;;
*) echo "usage: postfix-peer.sh start PORT BOUNCE_PORT | stop" >&2; exit 2 ;;
esac
