#!/usr/bin/env sh
# Writes the secrets deploy/compose.yaml reads, into deploy/secrets/ (or the folder given):
#   read_keys, write_keys   one random API key each (add lines for more keys)
#   tls.crt, tls.key        a self-signed server certificate for localhost / 127.0.0.1 / veclink
#   postgres_password       a random hex password (URL-safe: it is part of the catalog URL)
# Existing files are kept, so running it again changes nothing. The folder is 0700: the files
# are 0644 because compose bind-mounts them as they are and the server runs as uid 10001.
# Needs openssl and python3.
set -eu
dir="${1:-$(dirname "$0")/secrets}"
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
new_key() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
[ -s read_keys ] || new_key > read_keys
[ -s write_keys ] || new_key > write_keys
[ -s postgres_password ] || python3 -c 'import secrets; print(secrets.token_hex(24))' > postgres_password
if [ ! -s tls.crt ] || [ ! -s tls.key ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 365 -subj "/CN=veclink" \
        -addext "subjectAltName=DNS:localhost,DNS:veclink,IP:127.0.0.1" \
        -keyout tls.key -out tls.crt 2>/dev/null
fi
chmod 644 read_keys write_keys postgres_password tls.crt tls.key
echo "secrets in $dir; clients: --tls-ca $dir/tls.crt, VECLINK_API_KEY=\$(cat $dir/write_keys)"
