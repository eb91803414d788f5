package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds every readiness wait: things that start "at once" on a loaded 2-core machine.
const startTimeout = 30 * time.Second

// proc is one process the driver started.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string        // its stdout and stderr, shown when it fails to start
	exited chan struct{} // closed once it has exited
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return fmt.Sprintf("the end of %s:\n%s", p.log, strings.Join(lines, "\n"))
}

// stop sends SIGTERM (so services deregister as in production), then SIGKILL if the process
// is still there after 10 s.
func (p *proc) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// procs is every process the driver started, stopped newest first.
type procs struct {
	dir    string // logs and data
	mu     sync.Mutex
	list   []*proc
	closed bool // after shutdown: start nothing more
}

// start runs bin with args, pinned to cpus when it is not empty; the process gets its own
// process group, so Ctrl-C reaches the driver alone, which then stops everything in order.
func (ps *procs) start(name, cpus, bin string, args ...string) (*proc, error) {
	return ps.startWithEnv(name, cpus, nil, bin, args...)
}

// startWithEnv is start with env ("NAME=value") added to the driver's environment.
func (ps *procs) startWithEnv(name, cpus string, env []string, bin string, args ...string) (*proc, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil, errors.New("stopping")
	}
	if cpus != "" {
		// taskset execs bin: the pid we hold is the server's own.
		args = append([]string{"-c", cpus, bin}, args...)
		bin = "taskset"
	}
	log := filepath.Join(ps.dir, name+".log")
	out, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig: if the driver is killed outright, its servers do not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: log, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	ps.list = append(ps.list, p)
	return p, nil
}

// stop stops the given processes, newest first, and forgets them.
func (ps *procs) stop(which ...*proc) {
	for i := len(which) - 1; i >= 0; i-- {
		which[i].stop()
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	kept := ps.list[:0]
	for _, p := range ps.list {
		if p.running() {
			kept = append(kept, p)
		}
	}
	ps.list = kept
}

// stopAll stops every process still running, newest first.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := append([]*proc(nil), ps.list...)
	ps.mu.Unlock()
	ps.stop(list...)
}

// shutdown refuses new processes, then stops those running: on a signal, while the run may
// be starting more.
func (ps *procs) shutdown() {
	ps.mu.Lock()
	ps.closed = true
	ps.mu.Unlock()
	ps.stopAll()
}

// waitUntil polls cond every 20 ms until it holds; fails if p exits or startTimeout passes.
func waitUntil(p *proc, what string, cond func() bool) error {
	deadline := time.Now().Add(startTimeout)
	for !cond() {
		if !p.running() {
			return fmt.Errorf("%s exited before %s; %s", p.name, what, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s within %v; %s", p.name, what, startTimeout, p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// freeAddr is a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// etcd is a throwaway etcd server on loopback, with its data dir under the run's dir.
type etcd struct {
	proc     *proc
	endpoint string // host:port of its client URL
}

// startEtcd starts an etcd server on cpus (a taskset list; empty: the driver's own).
func (ps *procs) startEtcd(name, cpus string) (*etcd, error) {
	client, err := freeAddr()
	if err != nil {
		return nil, err
	}
	peer, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := ps.start(name, cpus, "etcd", "--name", name, "--data-dir", filepath.Join(ps.dir, name),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", name+"=http://"+peer)
	if err != nil {
		return nil, err
	}
	e := &etcd{proc: p, endpoint: client}
	return e, waitUntil(p, "answer on /health", func() bool {
		resp, err := http.Get("http://" + client + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// hasKey tells whether key exists, through etcd's JSON gateway (no client library needed).
func (e *etcd) hasKey(key string) bool {
	req, _ := json.Marshal(map[string]any{"key": base64.StdEncoding.EncodeToString([]byte(key)), "count_only": true})
	resp, err := http.Post("http://"+e.endpoint+"/v3/kv/range", "application/json", bytes.NewReader(req))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var answer struct {
		Count string `json:"count"` // an int64, which the gateway writes as a string
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&answer) != nil {
		return false
	}
	n, _ := strconv.Atoi(answer.Count)
	return n > 0
}

// registered waits until the user service p has put registry-etcd's key for addr in e.
func (e *etcd) registered(p *proc, addr string) error {
	key := "kitex/registry-etcd/service.music.user/" + addr
	return waitUntil(p, "key "+key+" in etcd", func() bool { return e.hasKey(key) })
}

// healthy waits until the gateway p answers 200 on /healthz.
func healthy(p *proc, addr string) error {
	return waitUntil(p, "answer on /healthz", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// clockTicks is USER_HZ, which Linux fixes at 100 on every architecture we run on.
const clockTicks = 100

// cpuSeconds is the CPU time (user + system, all threads) the process has used so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields we want follow its closing parenthesis.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(utime+stime) / clockTicks, nil
}

// peakRSSMB is the process's peak resident memory (VmHWM) so far, in MiB.
func peakRSSMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// cpuTimes is, per CPU number, the busy and total jiffies from /proc/stat: to tell whether the
// load core, not the server, was the bottleneck.
func cpuTimes() (map[int][2]int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	times := map[int][2]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 6 || !strings.HasPrefix(fields[0], "cpu") || fields[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(fields[0][3:])
		if err != nil {
			continue
		}
		var total, idle int64
		// user nice system idle iowait irq softirq steal; guest time is already in user.
		for i, f := range fields[1:min(len(fields), 9)] {
			v, _ := strconv.ParseInt(f, 10, 64)
			total += v
			if i == 3 || i == 4 { // idle, iowait
				idle += v
			}
		}
		times[n] = [2]int64{total - idle, total}
	}
	return times, nil
}
