package kitexpeer_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/transport"

	"kitexpeer/kitex_gen/music/base"
	"kitexpeer/kitex_gen/music/service/user"
	"kitexpeer/kitex_gen/music/service/user/userservice"
)

// A mixed fleet: one Rust and one Go instance under service.music.user. Our gateway and a
// Kitex client (the seed's options) each spread their calls over both; then one instance is
// sent SIGTERM under load.
//
// When the Rust instance leaves, no call fails through either client: it deregisters, then
// serves on for --deregister-linger 6s, longer than Kitex's resolver takes to notice (it polls
// every 5 s). When the Go instance leaves, no call fails through our gateway, which watches
// etcd; the Kitex client may lose a few, and that is the Go system's own behaviour, measured
// here and not hidden: a Kitex server closes its connections right after deregistering, and
// Kitex retries a refused connection but not a call on a connection the server closed.
//
// Each instance has its own database holding the same first user ("fleet") and a second one
// named after the instance, so every answer to "fetch user 2" says which instance served it.
func TestMixedFleet(t *testing.T) {
	for _, leaving := range []string{"go", "rust"} {
		t.Run("SIGTERM the "+leaving+" instance", func(t *testing.T) {
			e := startEtcd(t)
			fleet := map[string]*userService{
				"rust": rustUserService(t, e, "--deregister-linger", "6s"),
				"go":   goUserService(t, e),
			}
			for name, instance := range fleet {
				direct := directClient(t, instance.addr)
				for _, username := range []string{"fleet", name + "-instance"} {
					resp, err := direct.CreateUser(context.Background(), &user.CreateUserRequest{Username: username, Password: "secret1"})
					if got := code(t, resp, err); got != base.ErrCode_Success {
						t.Fatalf("create %s on the %s instance: %v", username, name, got)
					}
				}
			}
			gw := rustGateway(t, e)
			_, login := call(t, "POST", gw+"/api/user/login", `{"username":"fleet","password":"secret1"}`, "")
			token, _ := login.Data["token"].(string)
			if token == "" {
				t.Fatalf("login through the gateway: %+v", login)
			}
			kitex := kitexClient(t, e, transport.Framed)

			load := startFleetLoad(map[string]func() (string, error){
				"gateway": func() (string, error) { return fetchThroughGateway(gw, token) },
				"kitex":   func() (string, error) { return fetchThroughKitex(kitex) },
			})
			defer load.stop()

			everyoneServedByBoth := func() bool {
				for _, client := range []string{"gateway", "kitex"} {
					for name := range fleet {
						if load.served(client, name+"-instance") == 0 {
							return false
						}
					}
				}
				return true
			}
			if !waitFor(soon, everyoneServedByBoth) {
				t.Fatalf("both clients did not reach both instances within %v: %v", soon, load.snapshot())
			}

			stopping := time.Now()
			fleet[leaving].terminate(t)
			t.Logf("SIGTERM → exit: %v", time.Since(stopping).Round(time.Millisecond))
			// The load goes on past one more poll of Kitex's resolver, so the whole window in
			// which a Kitex client may still pick the stopped instance is under load.
			time.Sleep(kitexRefresh + time.Second)
			load.stop()

			t.Logf("served (client → instance → calls): %v", load.snapshot())
			for _, client := range []string{"gateway", "kitex"} {
				t.Logf("the %s's last call to the leaving instance ended %v after SIGTERM", client, load.lastServed(client, leaving+"-instance").Sub(stopping).Round(time.Millisecond))
			}
			for _, client := range []string{"gateway", "kitex"} {
				failures := load.failures(client)
				if len(failures) == 0 {
					continue
				}
				if client == "kitex" && leaving == "go" {
					t.Logf("the Kitex client lost %d calls when the Kitex server left, %v after SIGTERM (first: %v)", len(failures), failures[0].at.Sub(stopping).Round(time.Millisecond), failures[0].err)
					continue
				}
				t.Errorf("%d calls through the %s failed after SIGTERM of the %s instance, the first %v after it: %v", len(failures), client, leaving, failures[0].at.Sub(stopping).Round(time.Millisecond), failures[0].err)
			}
		})
	}
}

// kitexRefresh is how often a Kitex client re-resolves its instances (it polls).
const kitexRefresh = 5 * time.Second

// directClient is a Kitex client of the one instance at addr, with no registry.
func directClient(t *testing.T, addr string) userservice.Client {
	t.Helper()
	c, err := userservice.NewClient("service.music.user", client.WithHostPorts(addr), client.WithRPCTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fetchThroughGateway fetches user 2 through the gateway at gw; the name of whoever served it.
func fetchThroughGateway(gw, token string) (string, error) {
	req, err := http.NewRequest("GET", gw+"/api/user/2", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	env, err := decodeEnvelope(resp)
	if err != nil {
		return "", err
	}
	u, _ := env.Data["user"].(map[string]any)
	name, _ := u["username"].(string)
	if env.Code != 0 || name == "" {
		return "", &unexpected{what: env}
	}
	return name, nil
}

// fetchThroughKitex fetches user 2 through the Kitex client; the name of whoever served it.
func fetchThroughKitex(c userservice.Client) (string, error) {
	resp, err := c.GetUser(context.Background(), &user.GetUserRequest{UserId: 2})
	if err != nil {
		return "", err
	}
	if resp.GetBaseResp().GetStatusCode() != 0 {
		return "", &unexpected{what: resp}
	}
	return resp.GetUser().GetUsername(), nil
}

// fleetLoad keeps calls going through several clients and counts who served each one.
type fleetLoad struct {
	mu     sync.Mutex
	counts map[string]map[string]int       // client → instance → calls
	last   map[string]map[string]time.Time // client → instance → when it last answered
	failed map[string][]failure            // client → what went wrong
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// startFleetLoad runs two workers per client until stop.
func startFleetLoad(clients map[string]func() (string, error)) *fleetLoad {
	l := &fleetLoad{counts: map[string]map[string]int{}, last: map[string]map[string]time.Time{}, failed: map[string][]failure{}, done: make(chan struct{})}
	for name, fetch := range clients {
		l.counts[name] = map[string]int{}
		l.last[name] = map[string]time.Time{}
		for range 2 {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for {
					select {
					case <-l.done:
						return
					default:
					}
					servedBy, err := fetch()
					l.mu.Lock()
					if err != nil {
						l.failed[name] = append(l.failed[name], failure{at: time.Now(), err: err})
					} else {
						l.counts[name][servedBy]++
						l.last[name][servedBy] = time.Now()
					}
					l.mu.Unlock()
				}
			}()
		}
	}
	return l
}

// stop ends the load and waits for the calls in flight.
func (l *fleetLoad) stop() {
	l.once.Do(func() { close(l.done) })
	l.wg.Wait()
}

func (l *fleetLoad) served(client, instance string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[client][instance]
}

func (l *fleetLoad) lastServed(client, instance string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[client][instance]
}

func (l *fleetLoad) snapshot() map[string]map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	copied := map[string]map[string]int{}
	for client, byInstance := range l.counts {
		copied[client] = map[string]int{}
		for instance, n := range byInstance {
			copied[client][instance] = n
		}
	}
	return copied
}

func (l *fleetLoad) failures(client string) []failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]failure(nil), l.failed[client]...)
}

// failure is a call that failed, and when.
type failure struct {
	at  time.Time
	err error
}
