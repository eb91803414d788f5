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
# PostgreSQL server binaries (tests start their own throwaway server with them), and Apache
# Thrift's compiler and Python library (the interoperability test's client).
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
}

# wrk, the HTTP load generator of scripts/bench (the same one for both gateways).
ensure_wrk() {
    if ! command -v wrk >/dev/null; then
        echo "==> installing wrk"
        apt_install wrk
    fi
}
