# Shared by the scripts: install what the project needs on Debian/Ubuntu, when it is missing.

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "error: $* missing and this is not a Debian/Ubuntu machine: install them yourself" >&2
        exit 1
    fi
    if [ -z "$apt_updated" ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# protoc (etcd-client's build needs it), etcd 3.4+ (tests and the local stack run it), the
# PostgreSQL server binaries (tests start their own throwaway server with them), Apache
# Thrift's compiler and Python library (the interoperability test's client), and Prometheus.
ensure_tools() {
    local missing=()
    command -v protoc >/dev/null || missing+=(protobuf-compiler)
    command -v curl >/dev/null || missing+=(curl)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v etcdctl >/dev/null || missing+=(etcd-client)
    [ -n "${PG_BIN:-}" ] || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
    # A standard Apache Thrift client, for the interoperability test.
    command -v thrift >/dev/null || missing+=(thrift-compiler)
    [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import thrift' 2>/dev/null || missing+=(python3-thrift)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    # A real Prometheus scrapes the stack in a test (and beside scripts/dev --prometheus);
    # its recommended node exporter is not needed.
    if ! command -v prometheus >/dev/null; then
        echo "==> installing prometheus"
        apt_install --no-install-recommends prometheus
    fi
}

# The browser tests (gateway/tests/browser.rs): Debian's Chromium, Node.js, and Playwright
# at the version tests/browser/package-lock.json pins (npm checks its integrity hash).
ensure_browser_tools() {
    local missing=()
    [ -n "${CHROMIUM_BIN:-}" ] || command -v chromium >/dev/null || missing+=(chromium)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    local want have
    want=$(/usr/bin/python3 -c 'import json; print(json.load(open("tests/browser/package-lock.json"))["packages"]["node_modules/playwright-core"]["version"])')
    have=$(/usr/bin/python3 -c 'import json; print(json.load(open("tests/browser/node_modules/playwright-core/package.json"))["version"])' 2>/dev/null || true)
    if [ "$want" != "$have" ]; then
        echo "==> installing playwright-core $want (npm ci in tests/browser)"
        npm ci --prefix tests/browser --no-audit --no-fund --silent
    fi
}

# wrk, the HTTP load generator of scripts/bench (the same one for both gateways).
ensure_wrk() {
    if ! command -v wrk >/dev/null; then
        echo "==> installing wrk"
        apt_install wrk
    fi
}

# N distinct free loopback ports (all held while the kernel picks them).
free_ports() { # N
    /usr/bin/python3 -c 'import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}

# The whole stack of scripts/dev (etcd, the user service, the gateway from target/debug) in the
# background, on free ports, with its data and logs in DIR; returns once the gateway answers.
# Sets DEV_PID and GATEWAY_URL. stop_dev_stack stops it in scripts/dev's order (the gateway,
# the service, which deregisters, then etcd).
start_dev_stack() { # DIR
    local dir=$1 ports deadline=$((SECONDS + 300))
    read -r -a ports < <(free_ports 5)
    DATA_DIR=$dir ETCD_CLIENT_PORT=${ports[0]} ETCD_PEER_PORT=${ports[1]} \
        USER_PORT=${ports[2]} GATEWAY_PORT=${ports[3]} USER_METRICS_PORT=${ports[4]} \
        scripts/dev >"$dir/dev.out" 2>&1 &
    DEV_PID=$!
    GATEWAY_URL="http://127.0.0.1:${ports[3]}"
    until grep -q "Ctrl-C stops it." "$dir/dev.out" 2>/dev/null; do
        if ! kill -0 "$DEV_PID" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
            echo "error: the stack did not come up; the end of $dir/dev.out:" >&2
            tail -n 20 "$dir/dev.out" >&2
            return 1
        fi
        sleep 0.2
    done
}

stop_dev_stack() {
    [ -n "${DEV_PID:-}" ] || return 0
    kill -TERM "$DEV_PID" 2>/dev/null || true
    wait "$DEV_PID" 2>/dev/null || true
    DEV_PID=
}
