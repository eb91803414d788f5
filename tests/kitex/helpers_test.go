package kitexpeer_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// soon bounds waits for things that happen "at once" on a loaded, shared 2-core machine.
const soon = 20 * time.Second

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs a process that is killed when the test ends, and also if the test binary dies
// (Pdeathsig). Its output is in the returned file, shown when a wait fails.
func start(t *testing.T, name string, args ...string) *os.File {
	t.Helper()
	out, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return out
}

func output(f *os.File) string {
	b, _ := os.ReadFile(f.Name())
	return string(b)
}

// waitFor polls cond every 50 ms until it holds or within has passed.
func waitFor(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// etcd is a throwaway etcd server on free loopback ports with its own data dir.
type etcd struct {
	endpoint string
	client   *clientv3.Client
	log      *os.File
}

func startEtcd(t *testing.T) *etcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("etcd is not installed: run scripts/test, or `apt-get install etcd-server`")
	}
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	log := start(t, bin, "--name", "peer-test", "--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "peer-test="+peer)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	e := &etcd{endpoint: strings.TrimPrefix(client, "http://"), client: c, log: log}
	if !waitFor(soon, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Get(ctx, "ready")
		return err == nil
	}) {
		t.Fatalf("etcd did not answer within %v:\n%s", soon, output(log))
	}
	return e
}

// hasKey tells whether key exists.
func (e *etcd) hasKey(key string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := e.client.Get(ctx, key)
	return err == nil && len(resp.Kvs) > 0
}

// registryKey is registry-etcd's key for an instance of service at addr.
func registryKey(service, addr string) string {
	return "kitex/registry-etcd/" + service + "/" + addr
}

// rustUserService starts the Rust user service registered in e; returns its address once
// its key is in etcd.
func rustUserService(t *testing.T, e *etcd) string {
	t.Helper()
	bin := os.Getenv("USER_SERVICE_BIN")
	if bin == "" {
		bin = "../../target/debug/user-service"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the Rust user service is not built at %s: run `cargo build -p user-service` (or set USER_SERVICE_BIN)", bin)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startRegistered(t, e, addr, bin, "--listen", addr, "--etcd-endpoints", e.endpoint,
		"--database-url", "sqlite://"+filepath.Join(t.TempDir(), "user.db"))
	return addr
}

// startRegistered starts bin with args and waits until the user service it runs has put
// registry-etcd's key for addr.
func startRegistered(t *testing.T, e *etcd, addr, bin string, args ...string) {
	t.Helper()
	log := start(t, bin, args...)
	key := registryKey("service.music.user", addr)
	if !waitFor(soon, func() bool { return e.hasKey(key) }) {
		t.Fatalf("%s did not register %s within %v:\n%s", filepath.Base(bin), key, soon, output(log))
	}
}

// goUserService builds and starts the Go peer (cmd/userservice), registered in e by
// registry-etcd itself; returns its address once its key is in etcd.
func goUserService(t *testing.T, e *etcd) string {
	t.Helper()
	bin := goBuild(t, "./cmd/userservice")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startRegistered(t, e, addr, bin, "-listen", addr, "-etcd-endpoints", e.endpoint)
	return addr
}

// goBuild builds the command pkg (from the Go build cache when nothing changed); its path.
func goBuild(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// waitHealthy waits until url/healthz answers 200, showing log if it never does.
func waitHealthy(t *testing.T, url string, log *os.File) {
	t.Helper()
	if !waitFor(soon, func() bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("%s did not answer within %v:\n%s", url, soon, output(log))
	}
}

// hertzGateway starts the seed's Hertz gateway (cmd/gateway) on e; its base URL once it answers.
func hertzGateway(t *testing.T, e *etcd) string {
	t.Helper()
	bin := goBuild(t, "./cmd/gateway")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	log := start(t, bin, "-listen", addr, "-etcd-endpoints", e.endpoint, "-jwt-secret", strings.Repeat("s", 32))
	url := "http://" + addr
	waitHealthy(t, url, log)
	return url
}

// rustGateway starts the Rust gateway (in development mode: a random token secret) on e;
// returns its base URL once it answers.
func rustGateway(t *testing.T, e *etcd) string {
	t.Helper()
	bin := os.Getenv("GATEWAY_BIN")
	if bin == "" {
		bin = "../../target/debug/gateway"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the Rust gateway is not built at %s: run `cargo build -p gateway` (or set GATEWAY_BIN)", bin)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	log := start(t, bin, "--listen", addr, "--etcd-endpoints", e.endpoint, "--dev")
	url := "http://" + addr
	waitHealthy(t, url, log)
	return url
}
