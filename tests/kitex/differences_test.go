package kitexpeer_test

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Where registry-etcd and our registry differ by design, side by side: both records are read
// by both sides (the other tests show that), but they are not written alike, and a crashed
// instance lingers for different times. The figures are logged (`go test -v`); the assertions
// are about behaviour, never about speed.
func TestWhereTheRegistriesDiffer(t *testing.T) {
	e := startEtcd(t)
	goBin := goBuild(t, "./cmd/userservice")
	started := time.Now()
	rust := rustUserService(t, e)
	rustRegistered := time.Since(started)
	started = time.Now()
	goService := startUserService(t, e, goBin)
	goRegistered := time.Since(started)
	// Kitex registers about a second after Run() (its delayed register); ours as soon as the
	// listener is bound.
	t.Logf("process start → key in etcd: Rust %v, Go (Kitex + registry-etcd) %v", rustRegistered.Round(time.Millisecond), goRegistered.Round(time.Millisecond))

	rustRecord, rustLease := e.record(t, rust.addr)
	goRecord, goLease := e.record(t, goService.addr)
	t.Logf("records: Rust %s (lease %d s), Go %s (lease %d s)", rustRecord.raw, rustLease, goRecord.raw, goLease)
	for _, r := range []record{rustRecord, goRecord} {
		if r.Network != "tcp" || r.Weight != 10 {
			t.Errorf("not registry-etcd's record for a default server: %s", r.raw)
		}
	}
	if rust.addr != rustRecord.Address || goService.addr != goRecord.Address {
		t.Errorf("the records do not name their keys' addresses: %s, %s", rustRecord.raw, goRecord.raw)
	}
	// registry-etcd writes "tags": null for a server without tags; we write an empty object.
	// Each side reads the other's.
	if goRecord.Tags != nil {
		t.Errorf("registry-etcd wrote tags %v; this test expects its null", goRecord.Tags)
	}
	// registry-etcd's lease is 60 s (KITEX_ETCD_REGISTRY_LEASE_TTL), ours 10 s (--lease-ttl):
	// that is how long a crashed instance stays listed.
	if goLease <= rustLease {
		t.Errorf("leases: registry-etcd %d s, ours %d s; this test expects registry-etcd's to be the longer", goLease, rustLease)
	}

	// Crash both. Ours leaves etcd within its lease; registry-etcd's stays listed until its
	// longer lease runs out, and registry-etcd's resolver keeps handing it to Kitex clients.
	for _, s := range []*userService{rust, goService} {
		if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-s.exited
	}
	crashed := time.Now()
	rustKey := registryKey("service.music.user", rust.addr)
	within := time.Duration(rustLease)*time.Second + soon
	if !waitFor(within, func() bool { return !e.hasKey(rustKey) }) {
		t.Fatalf("our crashed instance was still listed %v later", within)
	}
	gone := time.Since(crashed)
	goKey := registryKey("service.music.user", goService.addr)
	if !e.hasKey(goKey) {
		t.Errorf("registry-etcd's crashed instance left etcd within %v, before its %d s lease ran out", gone, goLease)
	}
	t.Logf("after SIGKILL: ours left etcd in %v; registry-etcd's is still listed (its lease: %d s)", gone.Round(time.Millisecond), goLease)
}

// record is registry-etcd's JSON value, as Go's registry-etcd declares it.
type record struct {
	Network string            `json:"network"`
	Address string            `json:"address"`
	Weight  int               `json:"weight"`
	Tags    map[string]string `json:"tags"`
	raw     string
}

// record reads the instance at addr: its value and the TTL its lease was granted with.
func (e *etcd) record(t *testing.T, addr string) (record, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := e.client.Get(ctx, registryKey("service.music.user", addr))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read the record of %s: %v %v", addr, err, resp)
	}
	kv := resp.Kvs[0]
	r := record{raw: string(kv.Value)}
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		t.Fatalf("the record of %s is not JSON: %s", addr, kv.Value)
	}
	lease, err := e.client.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
	if err != nil {
		t.Fatalf("the lease of %s: %v", addr, err)
	}
	return r, lease.GrantedTTL
}
