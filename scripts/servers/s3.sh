#!/usr/bin/env bash
# A real S3 server for the tests: s3s-fs (an S3 API over a directory, SigV4
# enforced) on 127.0.0.1, a free port, a temporary data directory and one
# bucket.
#
#   scripts/servers/s3.sh start   install s3s-fs if missing, start it, write the env file
#   scripts/servers/s3.sh env     print the env file's path (sourceable: set -a; . FILE)
#   scripts/servers/s3.sh stop    stop the server, remove its data
#
# The env file (target/servers/s3.env) sets MAILVAULT_TEST_S3_ENDPOINT,
# MAILVAULT_TEST_S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
# MAILVAULT_TEST_S3FS_BIN (tests that stop a server start their own), and
# MAILVAULT_RETRY_BASE_MS=10 (retry waits of tests that cut connections).
# ~/.cargo/bin/s3s-fs is the cache: only the first run builds it (~5 min).
set -euo pipefail

cd "$(dirname "$0")/../.."
STATE_DIR="$PWD/target/servers"
ENV_FILE="$STATE_DIR/s3.env"
PID_FILE="$STATE_DIR/s3.pid"
DATA_FILE="$STATE_DIR/s3.data"
LOG_FILE="$STATE_DIR/s3.log"
S3S_VERSION=0.14.1
BIN="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
BUCKET=mailvault-test

install() {
    if [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -q "$S3S_VERSION"; then
        return
    fi
    echo "s3.sh: building s3s-fs $S3S_VERSION (first run only, a few minutes)" >&2
    local start=$SECONDS
    cargo install s3s-fs --version "$S3S_VERSION" --features binary --locked --quiet
    echo "s3.sh: s3s-fs built in $((SECONDS - start)) s" >&2
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

stop() {
    if [[ -f "$PID_FILE" ]]; then
        local pid
        pid=$(cat "$PID_FILE")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$PID_FILE"
    fi
    if [[ -f "$DATA_FILE" ]]; then
        rm -rf "$(cat "$DATA_FILE")"
        rm -f "$DATA_FILE"
    fi
    rm -f "$ENV_FILE"
}

start() {
    install
    stop
    mkdir -p "$STATE_DIR"
    local data port access secret pid
    data=$(mktemp -d "${TMPDIR:-/tmp}/mailvault-s3.XXXXXX")
    echo "$data" > "$DATA_FILE"
    # s3s-fs keeps a bucket as a directory under its root.
    mkdir -p "$data/root/$BUCKET"
    access="mvtest$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    secret="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
    port=$(free_port)
    "$BIN" --host 127.0.0.1 --port "$port" --access-key "$access" --secret-key "$secret" \
        "$data/root" > "$LOG_FILE" 2>&1 &
    pid=$!
    echo "$pid" > "$PID_FILE"
    # Ready when it answers HTTP (an unsigned request gets 403: SigV4 is on).
    local code=000
    for _ in $(seq 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$BUCKET" || true)
        [[ "$code" != 000 ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$LOG_FILE" >&2; echo "s3.sh: s3s-fs exited" >&2; exit 1; }
        sleep 0.1
    done
    if [[ "$code" != 403 ]]; then
        echo "s3.sh: s3s-fs on port $port answered HTTP $code to an unsigned request (want 403)" >&2
        stop
        exit 1
    fi
    umask 077
    cat > "$ENV_FILE" <<EOF
MAILVAULT_TEST_S3_ENDPOINT=http://127.0.0.1:$port
MAILVAULT_TEST_S3_BUCKET=$BUCKET
AWS_ACCESS_KEY_ID=$access
AWS_SECRET_ACCESS_KEY=$secret
MAILVAULT_TEST_S3FS_BIN=$BIN
MAILVAULT_RETRY_BASE_MS=10
EOF
    echo "s3.sh: s3s-fs pid $pid on http://127.0.0.1:$port, bucket $BUCKET; env in $ENV_FILE" >&2
    echo "$ENV_FILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) echo "$ENV_FILE" ;;
    install) install ;;
    *) echo "usage: $0 start|stop|env|install" >&2; exit 2 ;;
esac
