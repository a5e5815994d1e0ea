# Sourced by .ci/run: a throw-away PostgreSQL cluster for the tests, stopped on exit.
# Exports FLEXHOOK_TEST_POSTGRES_URL (a database the tests may create others beside).

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
  echo "== installing PostgreSQL (Debian's postgresql package)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN="$(pg_bin)"
PG_TMP="$(mktemp -d)"
chmod 755 "$PG_TMP"
# PostgreSQL refuses to run as root: run it as the package's `postgres` user.
if [ "$(id -u)" = 0 ]; then
  chown postgres "$PG_TMP"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi
PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# Over TCP the password is checked (so a test can try a wrong one); the socket trusts.
PG_PASSWORD="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
printf '%s\n' "$PG_PASSWORD" > "$PG_TMP/pwfile"
chmod 644 "$PG_TMP/pwfile"
as_pg "$PG_BIN/initdb" -D "$PG_TMP/data" -U flexhook --pwfile="$PG_TMP/pwfile" \
  --auth-host=scram-sha-256 --auth-local=trust -E UTF8 >/dev/null
rm -f "$PG_TMP/pwfile"
as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w \
  -o "-h 127.0.0.1 -p $PG_PORT -k $PG_TMP -c synchronous_commit=on -c max_connections=300" start >/dev/null
stop_postgres() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_TMP"
}
trap stop_postgres EXIT
as_pg "$PG_BIN/createdb" -h "$PG_TMP" -p "$PG_PORT" -U flexhook flexhook_test
export FLEXHOOK_TEST_POSTGRES_URL="postgres://flexhook:$PG_PASSWORD@127.0.0.1:$PG_PORT/flexhook_test"
echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
