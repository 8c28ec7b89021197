#!/usr/bin/env bash
# `nginx -t` on deploy/nginx/nginx.conf, offline. The compose service names (gw1..gw3) do not
# resolve here, so a copy of the file with them mapped to 127.0.0.1 is tested; everything else
# is the file as shipped. Needs Debian's nginx (make validate-deploy installs it).
# Usage: tools/validate/nginx_check.sh [deploy/nginx/nginx.conf]
set -euo pipefail
CONF=${1:-deploy/nginx/nginx.conf}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
sed -E 's/\bgw[0-9]+:/127.0.0.1:/g' "$CONF" >"$DIR/nginx.conf"
# Every upstream host must have been one of the compose nodes (no other name slipped in).
if grep -nE '^\s*server\s+[a-zA-Z][^ ;]*:[0-9]+' "$DIR/nginx.conf" | grep -v '127.0.0.1:'; then
  echo "nginx: an upstream server is not one of gw1..gw3" >&2
  exit 1
fi
"$NGINX" -t -q -p "$DIR" -c "$DIR/nginx.conf" -e stderr -g "pid $DIR/nginx.pid;"
echo "nginx: $CONF ok (nginx -t, $("$NGINX" -v 2>&1 | sed 's/.*: //'))"
