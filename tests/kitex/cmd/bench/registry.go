package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// spread is a latency distribution as the propagation tools print it, in milliseconds.
type spread struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// propagation is what volo-etcd's propagation example and kitexclient's propagation
// subcommand print: how long a registry change takes to reach a client's traffic.
type propagation struct {
	Rounds         int    `json:"rounds"`
	RegisterFirst  spread `json:"register_first_request_ms"`
	DeregisterLast spread `json:"deregister_last_request_ms"`
}

// calls is the number of calls both propagation clients keep in flight.
const calls = 4

// runOnEveryCPU runs a registry tool on the server and load CPUs both: these phases compare
// no servers under load, and etcd, the registrations and the watching client would otherwise
// share the load CPU.
func (b *bench) runOnEveryCPU(bin string, args ...string) ([]byte, error) {
	return runTool(30*time.Minute, nil, "taskset", append([]string{"-c", b.everyCPU(), bin}, args...)...)
}

// everyCPU is the server and load CPUs, as a taskset list.
func (b *bench) everyCPU() string {
	return cpuList(append(slices.Clone(b.serverCPUs), b.loadCPUs...))
}

// propagationPhase measures both discoverers; each figure is kept even if the other fails.
func (b *bench) propagationPhase() error {
	// Ours: the example runs its own etcd, servers and client in one process.
	path := filepath.Join(b.ps.dir, "propagation.json")
	_, errOurs := b.runOnEveryCPU(b.rustBin("examples/propagation"),
		"--rounds", strconv.Itoa(b.cfg.propagationRounds), "--concurrency", strconv.Itoa(calls), "--json", path)
	if errOurs == nil {
		errOurs = b.readPropagation(path, "ours")
	}

	// Kitex's resolver re-resolves every 5 s, so each of its rounds takes seconds.
	e, err := b.ps.startEtcd("etcd-propagation", b.everyCPU())
	if err != nil {
		return err
	}
	out, errTheirs := b.runOnEveryCPU(b.goBin("kitexclient"), "-etcd-endpoints", e.endpoint,
		"propagation", "-rounds", strconv.Itoa(b.cfg.kitexPropagationRounds), "-concurrency", strconv.Itoa(calls))
	if errTheirs == nil {
		var raw json.RawMessage
		if errTheirs = lastJSON(out, &raw); errTheirs == nil {
			errTheirs = b.report.addPropagation("kitex", raw)
		}
	}
	if errOurs != nil || errTheirs != nil {
		return fmt.Errorf("ours: %v; Kitex: %v", errOurs, errTheirs)
	}
	return nil
}

func (b *bench) readPropagation(path, who string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return b.report.addPropagation(who, raw)
}

// scale is what volo-etcd's scale example writes.
type scale struct {
	Instances        int     `json:"instances"`
	RegisterS        float64 `json:"register_s"`
	VisibleS         float64 `json:"scale_visible_s"`
	ColdVisibleS     float64 `json:"cold_visible_s"`
	KeepalivesPerTTL float64 `json:"keepalives_per_ttl"`
	DiscovererRSSMB  float64 `json:"discoverer_rss_mb"`
	TTLS             float64 `json:"ttl_s"`
}

// scalePhase: many instances against our discoverer (the example runs its own etcd).
func (b *bench) scalePhase() error {
	path := filepath.Join(b.ps.dir, "scale.json")
	args := []string{"--instances", strconv.Itoa(b.cfg.instances), "--json", path}
	if b.cfg.quick {
		// The keepalive window is 3 TTLs (30 s) by default; one is enough for a smoke run.
		args = append(args, "--window-ttls", "1")
	}
	if _, err := b.runOnEveryCPU(b.rustBin("examples/scale"), args...); err != nil {
		return err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return b.report.addScale(raw)
}
