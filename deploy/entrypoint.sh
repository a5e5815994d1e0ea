#!/bin/sh
# The container's entrypoint. Fly.io (like most volume drivers) mounts a fresh volume
# root-owned with mode 0755 over /data, hiding the image's own chown, so the non-root
# service could not create its SQLite file. Started as root, this script gives the
# store's directory (and the store's files) to the service user, then drops to that user
# with setpriv and execs flexhook: flexhook itself never runs as root, and can never regain
# a privilege. Started as any other user (`docker run --user …`), it changes nothing and
# just execs flexhook. Run `flexhook-entrypoint jobs list` (any command) to run a command
# as the service does.
#
# FLEXHOOK_RUN_AS   the service user (default: flexhook)
# FLEXHOOK_BIN      the flexhook binary (default: flexhook on PATH)
set -eu

run_as="${FLEXHOOK_RUN_AS:-flexhook}"
bin="${FLEXHOOK_BIN:-flexhook}"

# The SQLite file named by the store's URL, as flexhook resolves it: FLEXHOOK_STORE__URL
# wins over DATABASE_URL, and both over config/production.toml's sqlite:///data/flexhook.db.
# Empty for PostgreSQL.
store_file() {
    url="${FLEXHOOK_STORE__URL:-${DATABASE_URL:-sqlite:///data/flexhook.db}}"
    case "$url" in
        sqlite://*) path="${url#sqlite://}" ;;
        sqlite:*) path="${url#sqlite:}" ;;
        *) return 0 ;;
    esac
    printf '%s\n' "${path%%\?*}"
}

if [ "$(id -u)" = 0 ]; then
    file="$(store_file)"
    if [ -n "$file" ]; then
        dir="$(dirname -- "$file")"
        mkdir -p -- "$dir"
        # The directory and the store's own files only: never a recursive chown of a
        # volume that may hold other things.
        chown -- "$run_as:" "$dir"
        for f in "$file" "$file-wal" "$file-shm" "$file-journal"; do
            if [ -e "$f" ]; then chown -- "$run_as:" "$f"; fi
        done
    fi
    # No capability left, none that could ever come back (an empty bounding set), and
    # no-new-privs: no setuid binary or file capability can raise flexhook or its children.
    exec setpriv --reuid="$run_as" --regid="$(id -g -- "$run_as")" --init-groups \
        --inh-caps=-all --bounding-set=-all --no-new-privs \
        -- "$bin" "$@"
fi
exec "$bin" "$@"
