package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// measurement is one side's measured run within a round.
type measurement struct {
	result
	CPU            map[string]float64 `json:"cpu_cores"`        // per server process: CPU time ÷ window
	ServerCPUsBusy float64            `json:"server_cpus_busy"` // fraction of the server CPUs not idle
	LoadCPUsBusy   float64            `json:"load_cpus_busy"`   // the same for the load CPUs: near 1, the load was the limit
}

func (m measurement) cpuTotal() float64 {
	var sum float64
	for _, c := range m.CPU {
		sum += c
	}
	return sum
}

// side is one system in a comparison: its servers, how to load them, what they did.
type side struct {
	name    string
	servers []*proc
	load    loader
	runs    []measurement
	rssMB   map[string]float64 // peak RSS of each server at the end of its phase
}

// comparison is ours (sides[0]) against theirs (sides[1]) under the same load.
type comparison struct {
	key, title string
	sides      [2]*side
}

// sideSummary is a side's medians over rounds.
type sideSummary struct {
	Name           string             `json:"name"`
	RPS            float64            `json:"rps"`
	P50            float64            `json:"p50_ms"`
	P99            float64            `json:"p99_ms"`
	P999           float64            `json:"p999_ms"`
	CPUCores       float64            `json:"cpu_cores"`
	RPSPerCore     float64            `json:"rps_per_cpu_core"`
	LoadCPUsBusy   float64            `json:"load_cpus_busy"`
	ServerCPUsBusy float64            `json:"server_cpus_busy"`
	Errors         int64              `json:"errors"` // over all rounds
	RSSMB          float64            `json:"peak_rss_mb"`
	RSSByProcess   map[string]float64 `json:"peak_rss_mb_by_process"`
	Runs           []measurement      `json:"runs"`
}

func summarize(s *side) sideSummary {
	of := func(f func(measurement) float64) float64 {
		values := make([]float64, len(s.runs))
		for i, m := range s.runs {
			values[i] = f(m)
		}
		return median(values)
	}
	sum := sideSummary{
		Name:           s.name,
		RPS:            of(func(m measurement) float64 { return m.RPS }),
		P50:            of(func(m measurement) float64 { return m.P50 }),
		P99:            of(func(m measurement) float64 { return m.P99 }),
		P999:           of(func(m measurement) float64 { return m.P999 }),
		CPUCores:       of(measurement.cpuTotal),
		RPSPerCore:     of(func(m measurement) float64 { return div(m.RPS, m.cpuTotal()) }),
		LoadCPUsBusy:   of(func(m measurement) float64 { return m.LoadCPUsBusy }),
		ServerCPUsBusy: of(func(m measurement) float64 { return m.ServerCPUsBusy }),
		RSSByProcess:   s.rssMB,
		Runs:           s.runs,
	}
	for _, m := range s.runs {
		sum.Errors += m.Errors
	}
	for _, mb := range s.rssMB {
		sum.RSSMB += mb
	}
	return sum
}

// comparisonSummary is a comparison's figures; each ratio is ours ÷ theirs, the median of the
// per-round ratios.
type comparisonSummary struct {
	Title     string      `json:"title"`
	Ours      sideSummary `json:"ours"`
	Theirs    sideSummary `json:"theirs"`
	RatioRPS  float64     `json:"ratio_rps"`
	RatioP50  float64     `json:"ratio_p50"`
	RatioP99  float64     `json:"ratio_p99"`
	RatioP999 float64     `json:"ratio_p999"`
	RatioCPU  float64     `json:"ratio_cpu"`
	key       string
}

func summarizeComparison(c *comparison) comparisonSummary {
	ours, theirs := c.sides[0].runs, c.sides[1].runs
	ratio := func(f func(measurement) float64) float64 {
		values := make([]float64, len(ours))
		for i := range ours {
			values[i] = div(f(ours[i]), f(theirs[i]))
		}
		return median(values)
	}
	return comparisonSummary{
		Title:     c.title,
		Ours:      summarize(c.sides[0]),
		Theirs:    summarize(c.sides[1]),
		RatioRPS:  ratio(func(m measurement) float64 { return m.RPS }),
		RatioP50:  ratio(func(m measurement) float64 { return m.P50 }),
		RatioP99:  ratio(func(m measurement) float64 { return m.P99 }),
		RatioP999: ratio(func(m measurement) float64 { return m.P999 }),
		RatioCPU:  ratio(measurement.cpuTotal),
		key:       c.key,
	}
}

// div is a / b, or 0 when b is 0: JSON has no NaN or infinity, and a figure that cannot be
// computed (a server that used less than a clock tick) must not sink the report.
func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// report collects the run's figures and writes report.json and report.md.
type report struct {
	cfg         config
	comparisons []comparisonSummary
	propagation map[string]propagation // "ours", "kitex"
	scale       *scale
	// spansExported: what each traced stack's OTLP receiver counted in the observability
	// phase, by stack.
	spansExported map[string]int64
	failures      []string
	// Detail is report.json's "detail": every raw figure, the settings and the machine.
	Detail map[string]any
}

func newReport(cfg config, loadCPUs []int) *report {
	return &report{
		cfg:           cfg,
		propagation:   map[string]propagation{},
		spansExported: map[string]int64{},
		Detail: map[string]any{
			"command": cfg.command,
			"date":    time.Now().UTC().Format(time.RFC3339),
			"machine": machine(),
			"settings": map[string]any{
				"rounds": cfg.rounds, "seconds": cfg.seconds.Seconds(), "warmup_s": cfg.warmup.Seconds(),
				"connections": cfg.connections, "quick": cfg.quick,
				"server_cpus": cfg.serverCPUs, "load_cpus": cpuList(loadCPUs), "backend_cpus": cfg.backendCPUs, "phases": cfg.phases,
				"propagation_rounds": cfg.propagationRounds, "kitex_propagation_rounds": cfg.kitexPropagationRounds,
				"propagation_calls_in_flight": calls, "instances": cfg.instances,
			},
		},
	}
}

func (r *report) fail(phase string, err error) {
	r.failures = append(r.failures, fmt.Sprintf("%s: %v", phase, err))
	r.Detail["failures"] = r.failures
}

func (r *report) add(c *comparison) {
	s := summarizeComparison(c)
	r.comparisons = append(r.comparisons, s)
	r.Detail[c.key] = s
}

func (r *report) addPropagation(who string, raw []byte) error {
	var p propagation
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("%s propagation: %w: %s", who, err, raw)
	}
	r.propagation[who] = p
	r.Detail["propagation_"+who] = json.RawMessage(raw)
	return nil
}

func (r *report) addScale(raw []byte) error {
	var s scale
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("scale: %w: %s", err, raw)
	}
	r.scale = &s
	r.Detail["scale"] = json.RawMessage(raw)
	return nil
}

func (r *report) comparison(key string) (comparisonSummary, bool) {
	for _, c := range r.comparisons {
		if c.key == key {
			return c, true
		}
	}
	return comparisonSummary{}, false
}

// keys is report.json's top level, in the order; a figure whose phase failed is null.
func (r *report) keys() [][2]any {
	num := func(ok bool, v float64) any {
		if !ok {
			return nil
		}
		return v
	}
	gw, okGW := r.comparison("gateway_get")
	rpc, okRPC := r.comparison("rpc_get")
	stack, okStack := r.comparison("stack_get")
	cost, okCost := r.comparison("telemetry_cost")
	rustTracing, okRustTracing := r.comparison("rust_tracing_cost")
	goTracing, okGoTracing := r.comparison("go_tracing_cost")
	ours, okOurs := r.propagation["ours"]
	kitex, okKitex := r.propagation["kitex"]
	sc := r.scale
	if sc == nil {
		sc = &scale{}
	}
	return [][2]any{
		{"gateway_vs_hertz_rps", num(okGW, gw.RatioRPS)},
		{"gateway_vs_hertz_p99", num(okGW, gw.RatioP99)},
		{"rpc_vs_kitex_rps", num(okRPC, rpc.RatioRPS)},
		{"rpc_vs_kitex_p99", num(okRPC, rpc.RatioP99)},
		{"stack_vs_go_stack_rps", num(okStack, stack.RatioRPS)},
		{"telemetry_on_vs_off_rps", num(okCost, cost.RatioRPS)},
		{"spans_exported", num(okCost, float64(r.spansExported["telemetry-on"]))},
		{"rust_tracing_vs_untraced_rps", num(okRustTracing, rustTracing.RatioRPS)},
		{"go_tracing_vs_untraced_rps", num(okGoTracing, goTracing.RatioRPS)},
		{"propagation_p99_ms", num(okOurs, ours.RegisterFirst.P99)},
		{"kitex_propagation_p99_ms", num(okKitex, kitex.RegisterFirst.P99)},
		{"deregister_p99_ms", num(okOurs, ours.DeregisterLast.P99)},
		{"kitex_deregister_p99_ms", num(okKitex, kitex.DeregisterLast.P99)},
		{"rss_mb_gateway", num(okGW, gw.Ours.RSSByProcess["gateway"])},
		{"rss_mb_hertz", num(okGW, gw.Theirs.RSSByProcess["hertz"])},
		{"rss_mb_service", num(okRPC, rpc.Ours.RSSByProcess["user-service"])},
		{"rss_mb_kitex_service", num(okRPC, rpc.Theirs.RSSByProcess["kitex-userservice"])},
		{"scale_visible_s", num(r.scale != nil, sc.VisibleS)},
		{"keepalives_per_ttl", num(r.scale != nil, sc.KeepalivesPerTTL)},
		{"discoverer_rss_mb", num(r.scale != nil, sc.DiscovererRSSMB)},
	}
}

func (r *report) write(dir string) error {
	// Written by hand to keep the key order; encoding/json sorts a map's keys.
	var j bytes.Buffer
	j.WriteString("{\n")
	for _, kv := range r.keys() {
		v, _ := json.Marshal(kv[1])
		fmt.Fprintf(&j, "  %q: %s,\n", kv[0], v)
	}
	detail, err := json.MarshalIndent(r.Detail, "  ", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(&j, "  \"detail\": %s\n}\n", detail)
	if err := os.WriteFile(filepath.Join(dir, "report.json"), j.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.markdown()), 0o644)
}

// goal is a target on one row of a table.
type goal struct {
	text string
	met  bool
}

func atLeast(v, target float64) *goal {
	return &goal{fmt.Sprintf("≥ %g", target), v >= target}
}

func atMost(v, target float64, unit string) *goal {
	return &goal{fmt.Sprintf("≤ %g%s", target, unit), v <= target}
}

func (g *goal) cells() string {
	if g == nil {
		return "| | "
	}
	met := "**no**"
	if g.met {
		met = "yes"
	}
	return fmt.Sprintf("| %s | %s ", g.text, met)
}

// markdown is report.md: one table per comparison, then propagation and scale.
func (r *report) markdown() string {
	var md strings.Builder
	m := r.Detail["machine"].(map[string]any)
	fmt.Fprintf(&md, "## Benchmark: the Rust stack against the Go stack it replaces\n\n")
	fmt.Fprintf(&md, "`%s` on %v (%v CPUs, %v, Linux %v), %v; Go side: Kitex v0.16.3, registry-etcd v0.2.6, Hertz v0.10.4 (%v); Rust: %v; HTTP load: wrk %v. "+
		"Load average at the start %v, at the end %v.\n\n",
		r.cfg.command, r.Detail["date"], m["cpus"], m["cpu_model"], m["kernel"], m["memory"], m["go"], m["rustc"], m["wrk"],
		m["loadavg_start"], r.Detail["loadavg_end"])
	settings := r.Detail["settings"].(map[string]any)
	serverCPUs, _ := parseCPUList(r.cfg.serverCPUs)
	backend := r.cfg.backendCPUs
	if backend == "" {
		backend = r.cfg.serverCPUs
	}
	fmt.Fprintf(&md, "Servers under test pinned to CPU %s with `taskset`, each runtime at its defaults for them (GOMAXPROCS and Tokio's worker count: %d); "+
		"the load generator (wrk, or kitexclient for Thrift) and etcd on CPU %s; the gateways' shared backend (our user service) on CPU %s. "+
		"%d interleaved round(s): in each, both systems run back to back (%v warm-up, then %v measured; the first alternates), %d connections or calls in flight. "+
		"Figures are medians over rounds; ratios are ours ÷ theirs, the median of the per-round ratios. "+
		"CPU is the server's user+system time over the measured window (in cores), peak RSS its VmHWM at the end of its phase. "+
		"An error is a socket error or timeout, or an answer other than 200 with envelope code 0. "+
		"The propagation and scale runs compare no servers under load: they run on every CPU.\n\n",
		r.cfg.serverCPUs, len(serverCPUs), settings["load_cpus"], backend, r.cfg.rounds, r.cfg.warmup, r.cfg.seconds, r.cfg.connections)

	for _, c := range r.comparisons {
		var rpsGoal, p99Goal *goal
		note := ""
		switch c.key {
		case "gateway_get":
			rpsGoal, p99Goal = atLeast(c.RatioRPS, 1.5), atMost(c.RatioP99, 1, "")
		case "gateway_login":
			note = "No goal: every login costs the backend an argon2id hash (19 MiB, tens of ms on one core), which bounds both gateways alike; report.json's gateway keys hold the GET route.\n\n"
		case "rpc_get":
			rpsGoal = atLeast(c.RatioRPS, 1.2)
		}
		fmt.Fprintf(&md, "### %s\n\n%s", c.Title, note)
		left, right, ratio := "ours: "+c.Ours.Name, "theirs: "+c.Theirs.Name, "ours ÷ theirs"
		if strings.HasSuffix(c.key, "_cost") { // one stack against itself
			left, right, ratio = c.Ours.Name, c.Theirs.Name, c.Ours.Name+" ÷ "+c.Theirs.Name
		}
		fmt.Fprintf(&md, "| | %s | %s | %s | goal | met? |\n|---|--:|--:|--:|---|---|\n", left, right, ratio)
		row := func(name string, ours, theirs, ratio string, g *goal) {
			fmt.Fprintf(&md, "| %s | %s | %s | %s %s|\n", name, ours, theirs, ratio, g.cells())
		}
		row("requests/s", grouped(c.Ours.RPS), grouped(c.Theirs.RPS), ratioText(c.RatioRPS), rpsGoal)
		row("p50 latency (ms)", ms(c.Ours.P50), ms(c.Theirs.P50), ratioText(c.RatioP50), nil)
		row("p99 latency (ms)", ms(c.Ours.P99), ms(c.Theirs.P99), ratioText(c.RatioP99), p99Goal)
		row("p99.9 latency (ms)", ms(c.Ours.P999), ms(c.Theirs.P999), ratioText(c.RatioP999), nil)
		row("server CPU (cores)", fmt.Sprintf("%.2f", c.Ours.CPUCores), fmt.Sprintf("%.2f", c.Theirs.CPUCores), ratioText(c.RatioCPU), nil)
		row("requests/s per CPU core", grouped(c.Ours.RPSPerCore), grouped(c.Theirs.RPSPerCore), ratioText(div(c.Ours.RPSPerCore, c.Theirs.RPSPerCore)), nil)
		row("peak RSS (MiB)", rssText(c.Ours), rssText(c.Theirs), ratioText(div(c.Ours.RSSMB, c.Theirs.RSSMB)), nil)
		// Beside the server's own CPU: what every process took of the server CPUs (others'
		// jobs on a shared machine show here), and how busy the load CPUs were (near 100%,
		// the load side, not the server, set the pace).
		row("server CPUs busy, all processes", percent(c.Ours.ServerCPUsBusy), percent(c.Theirs.ServerCPUsBusy), "", nil)
		row("load CPUs busy", percent(c.Ours.LoadCPUsBusy), percent(c.Theirs.LoadCPUsBusy), "", nil)
		row("errors (all rounds)", fmt.Sprint(c.Ours.Errors), fmt.Sprint(c.Theirs.Errors), "", nil)
		md.WriteString("\n")
	}

	rustTracing, okRust := r.comparison("rust_tracing_cost")
	goTracing, okGo := r.comparison("go_tracing_cost")
	if okRust && okGo {
		md.WriteString("### Tracing's cost, side by side: each stack traced ÷ itself untraced\n\n")
		md.WriteString("| | ours: Rust stack | theirs: Go stack (obs-opentelemetry) |\n|---|--:|--:|\n")
		fmt.Fprintf(&md, "| requests/s, traced ÷ untraced | %s | %s |\n", ratioText(rustTracing.RatioRPS), ratioText(goTracing.RatioRPS))
		fmt.Fprintf(&md, "| p99 latency, traced ÷ untraced | %s | %s |\n", ratioText(rustTracing.RatioP99), ratioText(goTracing.RatioP99))
		fmt.Fprintf(&md, "| spans exported, warm-ups included | %s | %s |\n\n",
			grouped(float64(r.spansExported["rust-traced"])), grouped(float64(r.spansExported["go-traced"])))
		md.WriteString("A request makes five spans in the Rust stack (the HTTP request, `bind`, the RPC client call, the RPC server call, the query) " +
			"and three in the Go stack (Hertz's server span, Kitex's client and server spans; its database is not instrumented).\n\n")
	}

	ours, okOurs := r.propagation["ours"]
	kitex, okKitex := r.propagation["kitex"]
	if okOurs || okKitex {
		fmt.Fprintf(&md, "### Propagation: a registry change reaching a client's traffic (%d calls in flight)\n\n", calls)
		fmt.Fprintf(&md, "| | ours: volo-etcd watch (%d rounds) | theirs: Kitex resolver, registry-etcd (%d rounds) | goal | met? |\n|---|--:|--:|---|---|\n",
			ours.Rounds, kitex.Rounds)
		cell := func(ok bool, v float64) string {
			if !ok {
				return "failed"
			}
			return ms(v)
		}
		prow := func(name string, o, k float64, g *goal) {
			fmt.Fprintf(&md, "| %s | %s | %s %s|\n", name, cell(okOurs, o), cell(okKitex, k), g.cells())
		}
		var propGoal *goal
		if okOurs {
			propGoal = atMost(ours.RegisterFirst.P99, 10, " ms")
		}
		prow("register → first request, p50 (ms)", ours.RegisterFirst.P50, kitex.RegisterFirst.P50, nil)
		prow("register → first request, p99 (ms)", ours.RegisterFirst.P99, kitex.RegisterFirst.P99, propGoal)
		prow("register → first request, max (ms)", ours.RegisterFirst.Max, kitex.RegisterFirst.Max, nil)
		prow("deregister → last request, p50 (ms)", ours.DeregisterLast.P50, kitex.DeregisterLast.P50, nil)
		prow("deregister → last request, p99 (ms)", ours.DeregisterLast.P99, kitex.DeregisterLast.P99, nil)
		prow("deregister → last request, max (ms)", ours.DeregisterLast.Max, kitex.DeregisterLast.Max, nil)
		md.WriteString("\nA negative deregister figure means no request arrived after the deregistration call.\n\n")
	}

	if s := r.scale; s != nil {
		fmt.Fprintf(&md, "### Scale, ours alone: %d instances registered at once (lease TTL %g s)\n\n", s.Instances, s.TTLS)
		md.WriteString("| | volo-etcd | goal | met? |\n|---|--:|---|---|\n")
		fmt.Fprintf(&md, "| registering all (s) | %.3f %s|\n", s.RegisterS, (*goal)(nil).cells())
		fmt.Fprintf(&md, "| until a client's balancer has all of them (s) | %.3f %s|\n", s.VisibleS, atMost(s.VisibleS, 1, " s").cells())
		fmt.Fprintf(&md, "| a client started once all are registered: until its balancer has all (s) | %.3f %s|\n", s.ColdVisibleS, (*goal)(nil).cells())
		fmt.Fprintf(&md, "| etcd requests per instance per TTL (keepalives) | %.2f %s|\n", s.KeepalivesPerTTL, atMost(s.KeepalivesPerTTL, 3, "").cells())
		fmt.Fprintf(&md, "| RSS of a process watching them all (MiB) | %.1f %s|\n", s.DiscovererRSSMB, atMost(s.DiscovererRSSMB, 20, " MB").cells())
		if s.Instances < 1000 {
			md.WriteString("\nThe goals are stated for 1000 instances; this run registered fewer.\n")
		}
		md.WriteString("\n")
	}

	if len(r.failures) > 0 {
		md.WriteString("### Missing\n\n")
		for _, f := range r.failures {
			fmt.Fprintf(&md, "- %s\n", strings.SplitN(f, "\n", 2)[0])
		}
		md.WriteString("\n")
	}
	return md.String()
}

// grouped writes a count with a space between thousands, as README's tables do.
func grouped(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + " " + s[i:]
	}
	return s
}

func ms(v float64) string {
	if v != 0 && v < 10 && v > -10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func ratioText(v float64) string { return fmt.Sprintf("%.2f", v) }

func percent(v float64) string { return fmt.Sprintf("%.0f%%", v*100) }

func rssText(s sideSummary) string {
	if len(s.RSSByProcess) < 2 {
		return fmt.Sprintf("%.1f", s.RSSMB)
	}
	names := make([]string, 0, len(s.RSSByProcess))
	for name := range s.RSSByProcess {
		names = append(names, name)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %.1f", name, s.RSSByProcess[name])
	}
	return fmt.Sprintf("%.1f (%s)", s.RSSMB, strings.Join(parts, " + "))
}

// machine describes where the run happened.
func machine() map[string]any {
	m := map[string]any{"go": runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cpus := 0
		for _, line := range strings.Split(string(b), "\n") {
			key, value, _ := strings.Cut(line, ":")
			switch strings.TrimSpace(key) {
			case "processor":
				cpus++
			case "model name":
				m["cpu_model"] = strings.TrimSpace(value)
			}
		}
		m["cpus"] = cpus
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(string(b), "MemTotal: %f kB", &kb)
		m["memory"] = fmt.Sprintf("%.0f GiB RAM", kb/1024/1024)
	}
	if out, err := exec.Command("rustc", "--version").Output(); err == nil {
		m["rustc"] = strings.TrimSpace(string(out))
	}
	// wrk -v prints its version and exits 1.
	out, _ := exec.Command("wrk", "-v").CombinedOutput()
	m["wrk"] = strings.Fields(string(out) + " ?")[1]
	m["loadavg_start"] = loadavg()
	return m
}

// loadavg is the 1, 5 and 15 minute load averages: other jobs on a shared machine show here.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
