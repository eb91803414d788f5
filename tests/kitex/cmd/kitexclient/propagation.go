package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/kitex/pkg/discovery"
	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/cloudwego/kitex/pkg/registry"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/server"
	etcd "github.com/kitex-contrib/registry-etcd"

	"kitexpeer/internal/load"
	"kitexpeer/kitex_gen/music/base"
	"kitexpeer/kitex_gen/music/service/user"
	"kitexpeer/kitex_gen/music/service/user/userservice"
)

// roundDeadline bounds each wait of a round. Kitex re-resolves by polling every 5 s, so a
// change takes seconds to reach its traffic.
const roundDeadline = 30 * time.Second

// propagation measures how fast a registry change reaches a Kitex client's traffic through
// registry-etcd's resolver, as volo-etcd's example measures it for ours
// (registry/examples/propagation.rs):
//
//   - (a) register → first request: from calling Register for a new, already serving
//     instance to the first request that instance serves;
//   - (b) deregister → last request: from calling Deregister to the last request the instance
//     serves, the one after which none arrives for -quiet (negative: none arrived after it).
//
// A baseline instance, registered by its Kitex server, stays, so that the client always has
// somewhere to call. Each round's instance is registered and deregistered by calling
// registry-etcd directly; every instance counts the calls it serves.
func propagation(t *target, args []string) error {
	fs := subcommand(t, "propagation", "")
	service := fs.String("service-name", "bench", "name the instances register under")
	rounds := fs.Int("rounds", 10, "measured rounds")
	concurrency := fs.Int("concurrency", 4, "calls the client keeps in flight")
	jitter := fs.Duration("jitter", 5*time.Second, "wait a random time up to this before each change (Kitex re-resolves every 5 s)")
	quiet := fs.Duration("quiet", 100*time.Millisecond, "how long an instance must see no call before its last one counts as the last")
	fs.Parse(args)
	if t.addr != "" {
		return errors.New("propagation resolves through etcd: -addr does not apply")
	}
	if fs.NArg() > 0 || *rounds < 1 || *concurrency < 1 {
		fs.Usage()
		os.Exit(2)
	}
	// Kitex and registry-etcd log every registration and server start at Info.
	klog.SetLevel(klog.LevelWarn)
	endpoints := strings.Split(t.etcdEndpoints, ",")

	baselineRegistry, err := etcd.NewEtcdRegistry(endpoints)
	if err != nil {
		return err
	}
	baseline, err := startInstance(*service, server.WithRegistry(baselineRegistry))
	if err != nil {
		return err
	}
	c, err := t.client(*service, *concurrency)
	if err != nil {
		baseline.stop()
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	var failures atomic.Int64
	var callers sync.WaitGroup
	for range *concurrency {
		callers.Go(func() {
			for ctx.Err() == nil {
				if _, err := c.GetUser(ctx, &user.GetUserRequest{UserId: 1}); err != nil {
					failures.Add(1)
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	// netpoll v0.7.2 closes a stopped server's listening fd twice: a stop racing with a new
	// connection can close that connection's fd instead (seen: an etcd client's, whose HTTP/2
	// frames an instance then read as Thrift). So servers stop only once the calls have.
	var instances []*instance
	defer func() {
		cancel()
		callers.Wait()
		baseline.stop()
		var stopping sync.WaitGroup
		for _, in := range instances {
			stopping.Go(in.stop)
		}
		stopping.Wait()
	}()
	// Kitex registers a server about a second after Run.
	if !waitUntil(roundDeadline, func() bool { return baseline.served.count.Load() > 0 }) {
		return fmt.Errorf("the client did not reach the baseline instance within %v", roundDeadline)
	}
	// Calls failed until then: the resolver found no instance.
	failures.Store(0)

	var first, last []float64
	for round := 1; round <= *rounds; round++ {
		in, err := startInstance(*service)
		if err != nil {
			return err
		}
		instances = append(instances, in)
		m, err := measureRound(in, *service, endpoints, *quiet, *jitter)
		if err != nil {
			fmt.Fprintf(os.Stderr, "round %d: %v\n", round, err)
			continue
		}
		fmt.Fprintf(os.Stderr, "round %d: register → first request %.1f ms, deregister → last request %.1f ms\n",
			round, m.first, m.last)
		first, last = append(first, m.first), append(last, m.last)
	}
	fmt.Fprintf(os.Stderr, "%d of %d rounds measured; %d failed calls\n", len(first), *rounds, failures.Load())
	if len(first) == 0 {
		return errors.New("no round measured")
	}
	return json.NewEncoder(os.Stdout).Encode(struct {
		Rounds         int    `json:"rounds"`
		RegisterFirst  spread `json:"register_first_request_ms"`
		DeregisterLast spread `json:"deregister_last_request_ms"`
	}{len(first), summarize(first), summarize(last)})
}

// roundTimes is what one round measured, in milliseconds.
type roundTimes struct {
	first, last float64
}

// measureRound registers in, a new serving instance, waits for its first call, deregisters it
// and waits for its last. Each change waits a random time up to jitter first, so that it lands
// anywhere in Kitex's polling cycle rather than in step with it.
func measureRound(in *instance, service string, endpoints []string, quiet, jitter time.Duration) (roundTimes, error) {
	// registry-etcd's Registry holds one registration (its lease, its keep-register loop):
	// one per instance.
	r, err := etcd.NewEtcdRegistry(endpoints)
	if err != nil {
		return roundTimes{}, err
	}
	info := &registry.Info{ServiceName: service, Addr: in.addr, Weight: discovery.DefaultWeight}

	pause(jitter)
	registering := now()
	if err := r.Register(info); err != nil {
		return roundTimes{}, err
	}
	if !waitUntil(roundDeadline, func() bool { return in.served.firstAt() != 0 }) {
		r.Deregister(info)
		return roundTimes{}, fmt.Errorf("instance %s got no call within %v", in.addr, roundDeadline)
	}
	// Let it take a share of the traffic before it leaves.
	waitUntil(5*time.Second, func() bool { return in.served.count.Load() >= 20 })

	pause(jitter)
	leaving := now()
	if err := r.Deregister(info); err != nil {
		return roundTimes{}, err
	}
	if !waitUntil(roundDeadline, func() bool { return now()-max(in.served.lastAt(), leaving) >= quiet }) {
		return roundTimes{}, fmt.Errorf("instance %s still got calls %v after Deregister", in.addr, roundDeadline)
	}
	return roundTimes{
		first: load.Millis(in.served.firstAt() - registering),
		last:  load.Millis(in.served.lastAt() - leaving),
	}, nil
}

// epoch anchors now: durations since it are monotonic and fit in an atomic.
var epoch = time.Now()

func now() time.Duration { return time.Since(epoch) }

// served is what one instance saw, updated by its handler on every call.
type served struct {
	first, last atomic.Int64 // as now(); 0 until the first call
	count       atomic.Int64
}

func (s *served) record() {
	t := int64(now())
	s.first.CompareAndSwap(0, t)
	// Calls finish out of order: keep the latest.
	for last := s.last.Load(); t > last && !s.last.CompareAndSwap(last, t); last = s.last.Load() {
	}
	s.count.Add(1)
}

func (s *served) firstAt() time.Duration { return time.Duration(s.first.Load()) }
func (s *served) lastAt() time.Duration  { return time.Duration(s.last.Load()) }

// countingHandler answers every call with Success and records it.
type countingHandler struct{ served *served }

func success() *base.BaseResp {
	return &base.BaseResp{StatusMessage: "Success", ServiceTime: time.Now().UnixMilli()}
}

func (h *countingHandler) CreateUser(context.Context, *user.CreateUserRequest) (*user.CreateUserResponse, error) {
	h.served.record()
	return &user.CreateUserResponse{BaseResp: success()}, nil
}

func (h *countingHandler) Login(context.Context, *user.LoginRequest) (*user.LoginResponse, error) {
	h.served.record()
	return &user.LoginResponse{BaseResp: success()}, nil
}

func (h *countingHandler) GetUser(_ context.Context, req *user.GetUserRequest) (*user.GetUserResponse, error) {
	h.served.record()
	return &user.GetUserResponse{BaseResp: success(), User: &user.User{UserId: req.UserId, Username: "bench"}}, nil
}

// instance is a Kitex UserService server on a loopback port, serving from the start.
type instance struct {
	addr   net.Addr
	served *served
	svr    server.Server
	done   chan struct{} // closed once Run has returned
}

func startInstance(service string, opts ...server.Option) (*instance, error) {
	// Listening before Run: the instance accepts calls from the moment it is registered.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	in := &instance{addr: ln.Addr(), served: &served{}, done: make(chan struct{})}
	in.svr = userservice.NewServer(&countingHandler{in.served}, append(opts,
		server.WithListener(ln),
		server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: service}),
		// The process's signals are not the instances': they stop when told to.
		server.WithExitSignal(func() <-chan error { return nil }),
		server.WithExitWaitTime(time.Second),
	)...)
	go func() {
		defer close(in.done)
		if err := in.svr.Run(); err != nil {
			log.Printf("instance %s: %v", in.addr, err)
		}
	}()
	return in, nil
}

// stop deregisters the instance if its server registered it, and drains it.
func (in *instance) stop() {
	if err := in.svr.Stop(); err != nil {
		log.Printf("instance %s: %v", in.addr, err)
	}
	<-in.done
}

// pause sleeps a random time in [0, up).
func pause(up time.Duration) {
	if up > 0 {
		time.Sleep(rand.N(up))
	}
}

// waitUntil polls cond until it holds or within has passed; whether it held.
func waitUntil(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Microsecond)
	}
	return true
}

// spread is {"p50", "p99", "max"} of a figure over the rounds.
type spread struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func summarize(values []float64) spread {
	sorted := append([]float64(nil), values...)
	slices.Sort(sorted)
	return spread{P50: load.Percentile(sorted, 50), P99: load.Percentile(sorted, 99), Max: sorted[len(sorted)-1]}
}
