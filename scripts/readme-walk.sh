#!/usr/bin/env bash
# Walks the README's first screen on a fresh copy of the repository, as a
# newcomer would: `npm install && npm start`, a message sent with the client
# as the README writes it, its .eml found under var/mail, a queued message
# followed to SENT, then a stop (SIGTERM, exit 0). .ci/run runs it.
#
# The only liberty taken: PORT (and MAILROOM_ADDRESS for the client, which
# the client documents) is a free port rather than 40700, so that a walk
# beside a running mailroom (or another walk) does not meet it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
service=""
cleanup() {
  if [ -n "$service" ] && kill -0 "$service" 2>/dev/null; then kill -TERM "$service" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf 'readme-walk: %s\n' "$*"; }

# The commands as the README has them: if it changes them, this walk must change with it.
grep -Fq 'npm install && npm start   # install, build, start on 127.0.0.1:40700 with the embedded capture relay' "$repo/README.md"
grep -Fq "npm run client -- send --to ann@example.com --subject hi --body 'hello'" "$repo/README.md"
grep -Fq "npm run client -- send --queued --to ann@example.com --subject hi --body 'hello'   # then: status ID, cancel ID, watch" "$repo/README.md"
grep -Fq 'writes every message to `var/mail/*.eml`' "$repo/README.md"

git clone -q "$repo" "$work/mailroom"
cd "$work/mailroom"
port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
export MAILROOM_ADDRESS="127.0.0.1:$port"

say "npm install && npm start (PORT=$port)"
started=$(date +%s)
(npm install --no-audit --no-fund >install.log 2>&1 && PORT=$port exec npm start) >service.log 2>&1 &
service=$!
for _ in $(seq 600); do
  grep -q '"message":"listening"' service.log 2>/dev/null && break
  kill -0 "$service" 2>/dev/null || { cat install.log service.log; say "the service ended before it listened"; exit 1; }
  sleep 0.5
done
grep -q '"message":"listening"' service.log || { cat install.log service.log; say "not listening after 300 s"; exit 1; }
say "listening after $(( $(date +%s) - started )) s"
if grep -i 'npm warn' install.log; then say "npm warned on a clean install"; exit 1; fi

sent=$(npm run --silent client -- send --to ann@example.com --subject hi --body 'hello')
id=$(printf '%s' "$sent" | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).messageId))")
eml=$(grep -l -F "Message-ID: $id" var/mail/*.eml || true)
[ -n "$eml" ] || { say "no .eml under var/mail holds $id"; ls -la var/mail; exit 1; }
grep -q '^hello' "$eml" || { say "$eml does not hold the body"; exit 1; }
say "sent $id: $eml"

queued=$(npm run --silent client -- send --queued --to ann@example.com --subject hi --body 'hello')
qid=$(printf '%s' "$queued" | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).messageId))")
state=""
for _ in $(seq 100); do
  state=$(npm run --silent client -- status "$qid" | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s).state))")
  [ "$state" = "MESSAGE_STATE_SENT" ] && break
  sleep 0.2
done
[ "$state" = "MESSAGE_STATE_SENT" ] || { say "$qid is $state, not SENT"; exit 1; }
say "queued $qid: SENT"

# Stopped as a supervisor stops it: SIGTERM to the service itself (npm, between, passes its exit on).
main=""
for pid in $(pgrep -f 'dist/src/main.js'); do
  [ "$(readlink "/proc/$pid/cwd")" = "$work/mailroom" ] && main=$pid
done
[ -n "$main" ] || { say "no service process under $work/mailroom"; exit 1; }
kill -TERM "$main"
code=0
wait "$service" || code=$?
service=""
[ "$code" -eq 0 ] || { tail -5 service.log; say "npm start exited $code on SIGTERM"; exit 1; }
grep -q '"message":"stopped"' service.log || { tail -5 service.log; say "no 'stopped' line"; exit 1; }
say "stopped cleanly; the README's first screen holds"
