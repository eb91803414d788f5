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

// proc is a process a test started. It is killed when the test ends, and also if the test
// binary dies (Pdeathsig); its output is kept in a file, shown when a wait fails.
type proc struct {
	cmd    *exec.Cmd
	out    *os.File
	exited chan struct{} // closed once the process has exited
}

func start(t *testing.T, name string, args ...string) *proc {
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
	p := &proc{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// output is what the process has printed so far.
func (p *proc) output() string {
	b, _ := os.ReadFile(p.out.Name())
	return string(b)
}

func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// terminate sends SIGTERM and waits until the process has exited cleanly.
func (p *proc) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.cmd.Path, err)
	}
	select {
	case <-p.exited:
	case <-time.After(soon):
		t.Fatalf("%s did not exit within %v of SIGTERM:\n%s", filepath.Base(p.cmd.Path), soon, p.output())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited %d after SIGTERM:\n%s", filepath.Base(p.cmd.Path), code, p.output())
	}
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
	proc     *proc
}

func startEtcd(t *testing.T) *etcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("etcd is not installed: run scripts/test, or `apt-get install etcd-server`")
	}
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	p := start(t, bin, "--name", "peer-test", "--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "peer-test="+peer)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	e := &etcd{endpoint: strings.TrimPrefix(client, "http://"), client: c, proc: p}
	if !waitFor(soon, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Get(ctx, "ready")
		return err == nil
	}) {
		t.Fatalf("etcd did not answer within %v:\n%s", soon, p.output())
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

// userService is a running instance of service.music.user, Rust or Go.
type userService struct {
	addr string
	*proc
}

// rustUserService starts the Rust user service on its own SQLite file, registered in e, with
// flags besides; returns once its key is in etcd.
func rustUserService(t *testing.T, e *etcd, flags ...string) *userService {
	t.Helper()
	bin := rustBin("user-service", "USER_SERVICE_BIN")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the Rust user service is not built at %s: run `cargo build -p user-service` (or set USER_SERVICE_BIN)", bin)
	}
	return startUserService(t, e, bin, flags...)
}

// goUserService builds and starts the Go peer (cmd/userservice) on its own SQLite file,
// registered in e by registry-etcd itself; returns once its key is in etcd.
func goUserService(t *testing.T, e *etcd) *userService {
	t.Helper()
	return startUserService(t, e, goBuild(t, "./cmd/userservice"))
}

// startUserService starts bin, either implementation (their flags are alike), and waits until
// it has put registry-etcd's key for its address.
func startUserService(t *testing.T, e *etcd, bin string, flags ...string) *userService {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := append([]string{"--listen", addr, "--etcd-endpoints", e.endpoint,
		"--database-url", "sqlite://" + filepath.Join(t.TempDir(), "user.db")}, flags...)
	p := start(t, bin, args...)
	key := registryKey("service.music.user", addr)
	if !waitFor(soon, func() bool { return e.hasKey(key) || p.hasExited() }) || p.hasExited() {
		t.Fatalf("%s did not register %s within %v:\n%s", filepath.Base(bin), key, soon, p.output())
	}
	return &userService{addr: addr, proc: p}
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

// waitHealthy waits until url/healthz answers 200, showing p's output if it never does.
func waitHealthy(t *testing.T, url string, p *proc) {
	t.Helper()
	if !waitFor(soon, func() bool {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("%s did not answer within %v:\n%s", url, soon, p.output())
	}
}

// hertzGateway starts the seed's Hertz gateway (cmd/gateway) on e; its base URL once it answers.
func hertzGateway(t *testing.T, e *etcd) string {
	t.Helper()
	bin := goBuild(t, "./cmd/gateway")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, bin, "-listen", addr, "-etcd-endpoints", e.endpoint, "-jwt-secret", strings.Repeat("s", 32))
	url := "http://" + addr
	waitHealthy(t, url, p)
	return url
}

// rustGateway starts the Rust gateway (in development mode: a random token secret) on e, with
// flags besides; returns its base URL once it answers.
func rustGateway(t *testing.T, e *etcd, flags ...string) string {
	t.Helper()
	bin := rustBin("gateway", "GATEWAY_BIN")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the Rust gateway is not built at %s: run `cargo build -p gateway` (or set GATEWAY_BIN)", bin)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := start(t, bin, append([]string{"--listen", addr, "--etcd-endpoints", e.endpoint, "--dev"}, flags...)...)
	url := "http://" + addr
	waitHealthy(t, url, p)
	return url
}

// rustBin is where our binary name is: $variable, or cargo's debug build.
func rustBin(name, variable string) string {
	if bin := os.Getenv(variable); bin != "" {
		return bin
	}
	return "../../target/debug/" + name
}
