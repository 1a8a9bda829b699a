#!/usr/bin/env bash
# `make certs`: a deployment's service-to-service secrets, into DIR (default data/certs, gitignored):
#   ca.pem, ca.key                  a private CA (its key never leaves DIR)
#   <service>.pem, <service>.key    one certificate per service, its Common Name saying who holds it:
#                                   session_service, execution_service, executor, gateway
#   executor.token, internal.token  LCE_EXECUTOR_TOKEN_FILE and LCE_INTERNAL_TOKEN_FILE
#   compose.env                     PostgreSQL's and Redis's passwords for docker-compose.yml
# Existing files are kept, so running it again only fills what is missing: to renew a certificate or
# a token, delete it and run again (README "Security model"); without ca.pem, every certificate is new.
# OWNER (a uid) is given the keys and secrets the services read, for containers running as that user
# (the service images run as uid 10001).
#
# Usage: scripts/gen-certs.sh [DIR] [OWNER]
set -euo pipefail

dir="${1:-data/certs}"
owner="${2:-}"
days="${LCE_CERT_DAYS:-825}"
services=(session_service execution_service executor gateway)

# openssl's progress lines on success, its messages on failure.
quietly() {
  local out
  out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }
}

umask 077
mkdir -p "$dir"
chmod 700 "$dir"

if [[ ! -f "$dir/ca.pem" ]]; then
  # A new CA: certificates of an older one would not verify any more.
  for name in "${services[@]}"; do rm -f "$dir/$name.pem" "$dir/$name.key"; done
  quietly openssl req -x509 -new -noenc -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days "$days" -subj "/CN=LCE deployment CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

for name in "${services[@]}"; do
  [[ -f "$dir/$name.pem" && -f "$dir/$name.key" ]] && continue
  # Each certificate serves and calls (execution_service does both; an executor serves its health
  # checks). Its names: the compose service's, and this host's loopback for `make run-secure`.
  quietly openssl req -new -noenc -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name"
  quietly openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -out "$dir/$name.pem" \
    -extfile <(printf '%s\n' \
      "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth,clientAuth" \
      "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1,IP:::1")
  rm -f "$dir/$name.csr"
done

for token in executor internal; do
  [[ -f "$dir/$token.token" ]] || openssl rand -hex 32 >"$dir/$token.token"
done

if [[ ! -f "$dir/compose.env" ]]; then
  printf 'POSTGRES_PASSWORD=%s\nREDIS_PASSWORD=%s\n' "$(openssl rand -hex 24)" "$(openssl rand -hex 24)" \
    >"$dir/compose.env"
fi

chmod 644 "$dir"/*.pem
if [[ -n "$owner" ]]; then
  for name in "${services[@]}"; do chown "$owner" "$dir/$name.key"; done
  chown "$owner" "$dir"/*.token
fi
echo "certificates, tokens and passwords in $dir"
