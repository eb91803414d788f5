// Command bench runs the Rust stack and the Go stack it replaces (Kitex v0.16.3, registry-etcd
// v0.2.6, Hertz v0.10.4) side by side in one run on one machine, and writes report.json and
// report.md. scripts/bench builds everything and runs it; see that script.
//
// The driver runs pinned to the load CPUs: everything it starts inherits them (etcd, wrk,
// kitexclient, the registry examples), except the servers under test and the gateways'
// shared backend, which it pins to -server-cpus with taskset. Each server's runtime keeps its
// defaults for the CPUs it is given (Go's GOMAXPROCS, Tokio's worker count).
//
// Phases, each starting and stopping its own processes:
//
//  1. gateways: our gateway and the seed's Hertz gateway in front of one Rust user service
//     (beside them on the server CPUs), on GET /api/user/:user_id and POST /api/user/login;
//  2. RPC and stack: our user service and the Kitex one, each on its own etcd and SQLite file,
//     under kitexclient; then each behind its own gateway, HTTP in;
//  3. propagation: a new instance's first request and a stopped one's last, through our
//     discoverer (volo-etcd's example) and through Kitex's resolver (kitexclient);
//  4. scale: 1000 instances against our discoverer (volo-etcd's example);
//  5. observability: the cost of our metrics and traces: the Rust stack (gateway and service
//     on the server CPUs) with metrics recorded and served and every request traced and
//     exported, against the same stack with both off; then tracing alone, ours against the Go
//     stack traced as its users trace it (obs-opentelemetry in Hertz and Kitex), each against
//     itself untraced.
//
// In each round of phases 1, 2 and 5 both sides run back to back, each after its own warm-up,
// the first of them alternating; figures are medians over rounds, ratios the median of the
// per-round ratios.
package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"kitexpeer/internal/otlp"
)

//go:embed wrk.lua
var wrkLua []byte

type config struct {
	rounds      int
	seconds     time.Duration // one measured run
	warmup      time.Duration // before each measured run
	connections int           // HTTP connections and Thrift calls in flight
	out         string
	quick       bool
	serverCPUs  string // taskset list for the servers under test
	backendCPUs string // taskset list for the gateways' shared backend; empty: the server CPUs
	phases      string // which phases to run, comma-separated
	rustBin     string // cargo's release dir
	goBin       string // where scripts/bench put the Go commands
	// Propagation rounds through our discoverer and through Kitex's resolver (which polls
	// every 5 s, so each of its rounds takes seconds).
	propagationRounds, kitexPropagationRounds int
	instances                                 int    // registered at once in the scale phase
	command                                   string // as the user typed it, for the report
}

// bench is one run: its settings, its processes and what it measured so far.
type bench struct {
	cfg         config
	ps          *procs
	wrkScript   string
	loadThreads int // wrk threads: one per load CPU
	loadCPUs    []int
	serverCPUs  []int
	report      *report
}

func (b *bench) goBin(name string) string   { return filepath.Join(b.cfg.goBin, name) }
func (b *bench) rustBin(name string) string { return filepath.Join(b.cfg.rustBin, name) }

func main() {
	var cfg config
	var seconds int
	flag.IntVar(&cfg.rounds, "rounds", 5, "interleaved rounds")
	flag.IntVar(&seconds, "seconds", 10, "length of one measured run, in seconds")
	flag.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "warm-up before each measured run")
	flag.IntVar(&cfg.connections, "connections", 32, "HTTP connections (wrk) and Thrift calls in flight (kitexclient)")
	flag.StringVar(&cfg.out, "out", "target/bench", "directory for report.json, report.md and the run's logs")
	flag.BoolVar(&cfg.quick, "quick", false, "a smoke run: 1 round of 3 s, few propagation rounds, 200 instances")
	flag.StringVar(&cfg.serverCPUs, "server-cpus", "0", "CPUs for the servers under test (taskset list); run the driver on the others")
	flag.StringVar(&cfg.backendCPUs, "backend-cpus", "", "CPUs for the gateways' shared user service (taskset list); empty: the server CPUs")
	flag.StringVar(&cfg.phases, "phases", "gateways,rpc,propagation,scale,observability", "phases to run, comma-separated")
	flag.StringVar(&cfg.rustBin, "rust-bin", "target/release", "directory of the Rust release binaries")
	flag.StringVar(&cfg.goBin, "go-bin", "target/bench/bin", "directory of the Go commands (userservice, gateway, kitexclient)")
	flag.IntVar(&cfg.propagationRounds, "propagation-rounds", 100, "propagation rounds through our discoverer")
	flag.IntVar(&cfg.kitexPropagationRounds, "kitex-propagation-rounds", 10, "propagation rounds through Kitex's resolver (seconds each)")
	flag.IntVar(&cfg.instances, "instances", 1000, "instances registered in the scale phase")
	flag.StringVar(&cfg.command, "command", "", "the command line to print in the report (scripts/bench sets it)")
	flag.Parse()
	cfg.seconds = time.Duration(seconds) * time.Second
	// Tracing is on only where the observability phase turns it on: our binaries and the Go
	// peer's would otherwise all export to a collector set in the caller's environment.
	os.Unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	if cfg.quick {
		cfg.rounds, cfg.seconds, cfg.warmup = 1, 3*time.Second, time.Second
		cfg.propagationRounds, cfg.kitexPropagationRounds, cfg.instances = 10, 2, 200
	}
	if cfg.command == "" {
		cfg.command = strings.Join(os.Args, " ")
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	if cfg.rounds < 1 || cfg.seconds < time.Second || cfg.connections < 1 {
		return fmt.Errorf("-rounds, -seconds and -connections must be at least 1")
	}
	serverCPUs, err := parseCPUList(cfg.serverCPUs)
	if err != nil {
		return fmt.Errorf("-server-cpus: %w", err)
	}
	loadCPUs, err := allowedCPUs()
	if err != nil {
		return err
	}
	for _, c := range serverCPUs {
		for _, l := range loadCPUs {
			if c == l {
				return fmt.Errorf("the driver may run on CPU %d, which -server-cpus gives the servers: "+
					"run it with taskset on the other CPUs (scripts/bench does)", c)
			}
		}
	}
	work := filepath.Join(cfg.out, "run")
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	b := &bench{
		cfg:         cfg,
		ps:          &procs{dir: work},
		wrkScript:   filepath.Join(work, "wrk.lua"),
		loadThreads: runtime.NumCPU(), // Go counts the CPUs this process may run on
		loadCPUs:    loadCPUs,
		serverCPUs:  serverCPUs,
		report:      newReport(cfg, loadCPUs),
	}
	if err := os.WriteFile(b.wrkScript, wrkLua, 0o644); err != nil {
		return err
	}

	// Ctrl-C or SIGTERM: stop what runs (by pid, newest first), then leave.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-signals
		fmt.Fprintf(os.Stderr, "\nbench: %v: stopping everything it started\n", s)
		b.ps.shutdown()
		os.Exit(130)
	}()
	defer b.ps.shutdown()

	started := time.Now()
	fmt.Printf("bench: %d round(s) of %v (warm-up %v), %d connections; servers on CPU %s, load on CPU %s; logs in %s\n",
		cfg.rounds, cfg.seconds, cfg.warmup, cfg.connections, cfg.serverCPUs, cpuList(loadCPUs), work)
	phases := []struct {
		name string
		run  func() error
	}{
		{"gateways", b.gatewayPhase},
		{"rpc", b.rpcAndStackPhase}, // and the whole stack, which shares its services
		{"propagation", b.propagationPhase},
		{"scale", b.scalePhase},
		{"observability", b.observabilityPhase},
	}
	chosen := strings.Split(cfg.phases, ",")
	for _, p := range phases {
		if !slices.Contains(chosen, p.name) {
			continue
		}
		fmt.Printf("== %s\n", p.name)
		if err := p.run(); err != nil {
			// A phase that fails leaves its figures empty; the others still run.
			fmt.Fprintf(os.Stderr, "bench: phase %s failed: %v\n", p.name, err)
			b.report.fail(p.name, err)
		}
		b.ps.stopAll()
	}
	b.report.Detail["elapsed_s"] = time.Since(started).Seconds()
	b.report.Detail["loadavg_end"] = loadavg()
	if err := b.report.write(cfg.out); err != nil {
		return err
	}
	fmt.Printf("bench: wrote %s and %s in %v\n", filepath.Join(cfg.out, "report.json"),
		filepath.Join(cfg.out, "report.md"), time.Since(started).Round(time.Second))
	if len(b.report.failures) > 0 {
		return fmt.Errorf("%d phase(s) failed; their figures are missing from the report", len(b.report.failures))
	}
	return nil
}

// gatewayPhase: both gateways in front of the same Rust user service.
func (b *bench) gatewayPhase() error {
	e, err := b.ps.startEtcd("etcd-gateways", "")
	if err != nil {
		return err
	}
	// The shared backend runs beside the gateway under test, not with the load: it costs
	// about as much CPU per request as a gateway, so on the load CPU it (with wrk) would set
	// the pace. Beside the gateway, the server CPUs are what saturates, and the only thing
	// that differs between the two runs is the gateway.
	backendCPUs := b.cfg.backendCPUs
	if backendCPUs == "" {
		backendCPUs = b.cfg.serverCPUs
	}
	backend, _, err := b.rustService("backend", backendCPUs, e)
	if err != nil {
		return err
	}
	ours, oursURL, err := b.rustGateway("gateway", e)
	if err != nil {
		return err
	}
	theirs, theirsURL, err := b.hertzGateway("hertz", e)
	if err != nil {
		return err
	}
	if err := register(oursURL); err != nil {
		return err
	}
	get := func(name string, p *proc, url string) (*side, error) {
		token, id, err := login(url)
		if err != nil {
			return nil, err
		}
		path := fmt.Sprintf("/api/user/%d", id)
		return &side{name: name, servers: []*proc{p}, load: b.wrk(url, httpRequest{method: "GET", path: path, token: token})}, nil
	}
	getOurs, err := get("gateway (volo-http)", ours, oursURL)
	if err != nil {
		return err
	}
	getTheirs, err := get("Hertz", theirs, theirsURL)
	if err != nil {
		return err
	}
	loginReq := httpRequest{method: "POST", path: "/api/user/login", body: credentials}
	comparisons := []*comparison{
		{key: "gateway_get", title: "Gateway vs Hertz: GET /api/user/:user_id with a bearer token",
			sides: [2]*side{getOurs, getTheirs}},
		{key: "gateway_login", title: "Gateway vs Hertz: POST /api/user/login (JSON binding and validation)",
			sides: [2]*side{
				{name: "gateway (volo-http)", servers: []*proc{ours}, load: b.wrk(oursURL, loginReq)},
				{name: "Hertz", servers: []*proc{theirs}, load: b.wrk(theirsURL, loginReq)},
			}},
	}
	if err := b.rounds(comparisons); err != nil {
		return err
	}
	b.report.Detail["gateway_backend_rss_mb"] = rss(backend)
	return nil
}

// rpcAndStackPhase: each system's own service (own etcd, own SQLite file) under kitexclient,
// then behind its own gateway.
func (b *bench) rpcAndStackPhase() error {
	type stack struct {
		service, gateway *proc
		serviceAddr, url string
		token            string
		id               int64
	}
	var ours, theirs stack
	var err error
	eOurs, err := b.ps.startEtcd("etcd-rust", "")
	if err != nil {
		return err
	}
	eTheirs, err := b.ps.startEtcd("etcd-go", "")
	if err != nil {
		return err
	}
	if ours.service, ours.serviceAddr, err = b.rustService("user-service", b.cfg.serverCPUs, eOurs); err != nil {
		return err
	}
	if theirs.service, theirs.serviceAddr, err = b.kitexService("kitex-userservice", eTheirs); err != nil {
		return err
	}
	if ours.gateway, ours.url, err = b.rustGateway("stack-gateway", eOurs); err != nil {
		return err
	}
	if theirs.gateway, theirs.url, err = b.hertzGateway("stack-hertz", eTheirs); err != nil {
		return err
	}
	for _, s := range []*stack{&ours, &theirs} {
		if err := register(s.url); err != nil {
			return err
		}
		if s.token, s.id, err = login(s.url); err != nil {
			return err
		}
	}
	getUser := func(s stack) []string { return []string{"-method", "get", "-user-id", strconv.FormatInt(s.id, 10)} }
	getPath := func(s stack) httpRequest {
		return httpRequest{method: "GET", path: fmt.Sprintf("/api/user/%d", s.id), token: s.token}
	}
	comparisons := []*comparison{
		{key: "rpc_get", title: "RPC: UserService.GetUser under kitexclient (Framed)",
			sides: [2]*side{
				{name: "user-service (Volo)", servers: []*proc{ours.service}, load: b.kitexLoad(ours.serviceAddr, getUser(ours)...)},
				{name: "Kitex userservice", servers: []*proc{theirs.service}, load: b.kitexLoad(theirs.serviceAddr, getUser(theirs)...)},
			}},
		{key: "stack_get", title: "Whole stack, HTTP in: GET /api/user/:user_id (gateway + service on the server CPUs)",
			sides: [2]*side{
				{name: "Rust stack", servers: []*proc{ours.gateway, ours.service}, load: b.wrk(ours.url, getPath(ours))},
				{name: "Go stack (Hertz + Kitex)", servers: []*proc{theirs.gateway, theirs.service}, load: b.wrk(theirs.url, getPath(theirs))},
			}},
	}
	return b.rounds(comparisons)
}

// observabilityPhase: the cost of observability, each stack against itself with it off, on
// GET /api/user/:user_id, gateway and service on the server CPUs, each stack on its own etcd
// and SQLite file. Traced stacks export every request (unless OTEL_TRACES_SAMPLER says
// otherwise; both SDKs read it) to an OTLP receiver of their own, which the driver runs on the
// load CPUs, as a collector on another host would be.
//   - telemetry_cost: the Rust stack with metrics on (the gateway's /metrics and the service's
//     --metrics-listen, scraped once a second by the driver, as a Prometheus would) and traces
//     exported (--otlp-endpoint), against the Rust stack with both off;
//   - rust_tracing_cost and go_tracing_cost: tracing alone, the Rust stack (metrics off)
//     against the same stack off, and the Go stack (Hertz gateway and Kitex service with
//     obs-opentelemetry, which its users trace with; no Prometheus exporter for either is
//     served here) against itself untraced: the two ratios, side by side, compare the costs.
func (b *bench) observabilityPhase() error {
	type stack struct {
		service, gateway *proc
		url, token       string
		id               int64
	}
	// One receiver per traced stack, so that each one's spans are counted apart. Receivers
	// first: the port freeAddr frees could otherwise be the one a receiver is given.
	sinks := map[string]*otlp.Receiver{}
	defer func() {
		for _, sink := range sinks {
			_ = sink.Stop(context.Background())
		}
	}()
	for _, name := range []string{"telemetry-on", "rust-traced", "go-traced"} {
		sink, err := otlp.StartCounting("127.0.0.1:0")
		if err != nil {
			return err
		}
		sinks[name] = sink
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	// Go takes its receiver from the environment, as the OTel SDK reads it.
	goEnv := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + sinks["go-traced"].Endpoint()}
	start := func(name string, golang bool, service, gateway []string, env ...string) (s stack, err error) {
		e, err := b.ps.startEtcd("etcd-"+name, "")
		if err != nil {
			return s, err
		}
		if golang {
			s.service, _, err = b.kitexService(name+"-service", e, env...)
		} else {
			s.service, _, err = b.rustService(name+"-service", b.cfg.serverCPUs, e, service...)
		}
		if err != nil {
			return s, err
		}
		if golang {
			s.gateway, s.url, err = b.hertzGateway(name+"-gateway", e, env...)
		} else {
			s.gateway, s.url, err = b.rustGateway(name+"-gateway", e, gateway...)
		}
		if err != nil {
			return s, err
		}
		if err := register(s.url); err != nil {
			return s, err
		}
		s.token, s.id, err = login(s.url)
		return s, err
	}
	rustOff, err := start("telemetry-off", false, nil, []string{"--metrics", "off"})
	if err != nil {
		return err
	}
	rustOn, err := start("telemetry-on", false,
		[]string{"--metrics-listen", metricsAddr, "--otlp-endpoint", sinks["telemetry-on"].Endpoint()},
		[]string{"--otlp-endpoint", sinks["telemetry-on"].Endpoint()})
	if err != nil {
		return err
	}
	rustTraced, err := start("rust-traced", false,
		[]string{"--otlp-endpoint", sinks["rust-traced"].Endpoint()},
		[]string{"--metrics", "off", "--otlp-endpoint", sinks["rust-traced"].Endpoint()})
	if err != nil {
		return err
	}
	goOff, err := start("go-untraced", true, nil, nil)
	if err != nil {
		return err
	}
	goTraced, err := start("go-traced", true, nil, nil, goEnv...)
	if err != nil {
		return err
	}
	stopScraping := scrapeEverySecond(rustOn.url+"/metrics", "http://"+metricsAddr+"/metrics")
	defer stopScraping()
	get := func(s stack) loader {
		return b.wrk(s.url, httpRequest{method: "GET", path: fmt.Sprintf("/api/user/%d", s.id), token: s.token})
	}
	sideOf := func(name string, s stack) *side {
		return &side{name: name, servers: []*proc{s.gateway, s.service}, load: get(s)}
	}
	comparisons := []*comparison{
		{key: "telemetry_cost", title: "Observability: the Rust stack with metrics (scraped every second) and traces (exported over OTLP/HTTP) on vs both off, GET /api/user/:user_id",
			sides: [2]*side{sideOf("metrics and traces on", rustOn), sideOf("both off", rustOff)}},
		{key: "rust_tracing_cost", title: "Tracing alone, ours: the Rust stack traced vs not, GET /api/user/:user_id",
			sides: [2]*side{sideOf("traced", rustTraced), sideOf("untraced", rustOff)}},
		{key: "go_tracing_cost", title: "Tracing alone, theirs: the Go stack (Hertz + Kitex, obs-opentelemetry) traced vs not, GET /api/user/:user_id",
			sides: [2]*side{sideOf("traced", goTraced), sideOf("untraced", goOff)}},
	}
	if err := b.rounds(comparisons); err != nil {
		return err
	}
	// Proof that the traced stacks exported: what each receiver counted.
	for name, sink := range sinks {
		b.report.spansExported[name] = sink.Count()
	}
	b.report.Detail["spans_exported_by_stack"] = b.report.spansExported
	return nil
}

// rounds runs every comparison once per round, then records them.
func (b *bench) rounds(comparisons []*comparison) error {
	for round := 0; round < b.cfg.rounds; round++ {
		for _, c := range comparisons {
			if err := b.round(c, round); err != nil {
				return fmt.Errorf("%s, round %d: %w", c.key, round+1, err)
			}
		}
	}
	for _, c := range comparisons {
		for _, s := range c.sides {
			s.rssMB = map[string]float64{}
			for _, p := range s.servers {
				s.rssMB[p.name] = rss(p)
			}
		}
		b.report.add(c)
	}
	return nil
}

// round runs both sides of c back to back, the first alternating between rounds so neither
// system always runs on a machine the other just warmed (or heated).
func (b *bench) round(c *comparison, round int) error {
	order := []int{0, 1}
	if round%2 == 1 {
		order = []int{1, 0}
	}
	line := fmt.Sprintf("  %-14s round %d:", c.key, round+1)
	for _, i := range order {
		s := c.sides[i]
		m, err := b.measure(s)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		s.runs = append(s.runs, m)
		line += fmt.Sprintf("  %s %.0f req/s p99 %.2f ms cpu %.2f", s.name, m.RPS, m.P99, m.cpuTotal())
		if m.Errors > 0 {
			line += fmt.Sprintf(" (%d errors)", m.Errors)
		}
	}
	fmt.Println(line)
	return nil
}

// measure warms s up, then loads it for the measured window, reading the servers' CPU time
// and the CPUs' busy time around the window.
func (b *bench) measure(s *side) (measurement, error) {
	if _, err := s.load(b.cfg.warmup); err != nil {
		return measurement{}, fmt.Errorf("warm-up: %w", err)
	}
	cpuBefore := make([]float64, len(s.servers))
	for i, p := range s.servers {
		if !p.running() {
			return measurement{}, fmt.Errorf("%s has exited; %s", p.name, p.tail())
		}
		cpuBefore[i], _ = cpuSeconds(p.pid())
	}
	coresBefore, _ := cpuTimes()
	started := time.Now()
	r, err := s.load(b.cfg.seconds)
	window := time.Since(started).Seconds()
	if err != nil {
		return measurement{}, err
	}
	coresAfter, _ := cpuTimes()
	m := measurement{result: r, CPU: map[string]float64{}}
	for i, p := range s.servers {
		after, err := cpuSeconds(p.pid())
		if err != nil {
			return measurement{}, fmt.Errorf("%s: %w; %s", p.name, err, p.tail())
		}
		m.CPU[p.name] = (after - cpuBefore[i]) / window
	}
	m.ServerCPUsBusy = busy(coresBefore, coresAfter, b.serverCPUs)
	m.LoadCPUsBusy = busy(coresBefore, coresAfter, b.loadCPUs)
	if r.Requests == 0 {
		return m, fmt.Errorf("no request answered")
	}
	return m, nil
}

// busy is the fraction of the time the given CPUs were not idle between two /proc/stat reads.
func busy(before, after map[int][2]int64, cpus []int) float64 {
	var busy, total int64
	for _, c := range cpus {
		busy += after[c][0] - before[c][0]
		total += after[c][1] - before[c][1]
	}
	if total == 0 {
		return 0
	}
	return float64(busy) / float64(total)
}

// rss is p's peak RSS in MiB, or 0 if it cannot be read (the process is gone).
func rss(p *proc) float64 {
	mb, _ := peakRSSMB(p.pid())
	return mb
}

// rustService starts our user service on cpus with a fresh SQLite file, registered in e.
func (b *bench) rustService(name, cpus string, e *etcd, extra ...string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	args := append([]string{"--listen", addr, "--etcd-endpoints", e.endpoint,
		"--database-url", "sqlite://" + filepath.Join(b.ps.dir, name+".db")}, extra...)
	p, err := b.ps.start(name, cpus, b.rustBin("user-service"), args...)
	if err != nil {
		return nil, "", err
	}
	return p, addr, e.registered(p, addr)
}

// kitexService starts the Go peer's Kitex user service on the server CPUs with a fresh
// SQLite file, registered in e by registry-etcd.
func (b *bench) kitexService(name string, e *etcd, env ...string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := b.ps.startWithEnv(name, b.cfg.serverCPUs, env, b.goBin("userservice"), "-listen", addr,
		"-etcd-endpoints", e.endpoint, "-database-url", "sqlite://"+filepath.Join(b.ps.dir, name+".db"))
	if err != nil {
		return nil, "", err
	}
	return p, addr, e.registered(p, addr)
}

// jwtSecret is the benchmark's token secret (both gateways need 32 bytes or more).
var jwtSecret = strings.Repeat("bench-secret-", 3)

// rustGateway starts our gateway on the server CPUs, discovering through e; extra are more
// flags.
func (b *bench) rustGateway(name string, e *etcd, extra ...string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	// Hertz has no log-in limits and no load shedding: ours are off, so that both gateways
	// do the same work (a closed loop at full load would otherwise be partly refused).
	args := append([]string{"--listen", addr, "--etcd-endpoints", e.endpoint,
		"--jwt-secret", jwtSecret, "--login-rate-limit-per-ip", "off",
		"--login-rate-limit-per-account", "off", "--shed-cpu-threshold", "off"}, extra...)
	p, err := b.ps.start(name, b.cfg.serverCPUs, b.rustBin("gateway"), args...)
	if err != nil {
		return nil, "", err
	}
	return p, "http://" + addr, healthy(p, addr)
}

// hertzGateway starts the seed's Hertz gateway on the server CPUs, resolving through e.
func (b *bench) hertzGateway(name string, e *etcd, env ...string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := b.ps.startWithEnv(name, b.cfg.serverCPUs, env, b.goBin("gateway"), "-listen", addr,
		"-etcd-endpoints", e.endpoint, "-jwt-secret", jwtSecret)
	if err != nil {
		return nil, "", err
	}
	return p, "http://" + addr, healthy(p, addr)
}

// parseCPUList reads a taskset-style list: "0", "0,2", "0-3".
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		from, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("not a CPU list: %q", s)
		}
		to := from
		if isRange {
			if to, err = strconv.Atoi(hi); err != nil || to < from {
				return nil, fmt.Errorf("not a CPU list: %q", s)
			}
		}
		for c := from; c <= to; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// allowedCPUs is the CPUs the driver may run on (its affinity), which its children inherit.
func allowedCPUs() ([]int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return parseCPUList(rest)
		}
	}
	return nil, fmt.Errorf("/proc/self/status: no Cpus_allowed_list")
}
