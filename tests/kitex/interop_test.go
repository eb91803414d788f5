package kitexpeer_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bytedance/gopkg/cloud/metainfo"
	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/discovery"
	"github.com/cloudwego/kitex/pkg/retry"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/transport"
	etcdregistry "github.com/kitex-contrib/registry-etcd"

	"kitexpeer/kitex_gen/music/base"
	"kitexpeer/kitex_gen/music/service/user"
	"kitexpeer/kitex_gen/music/service/user/userservice"
)

// kitexClient is a Kitex client of service.music.user resolving through registry-etcd, as the
// seed's gateway builds it, speaking protocol.
func kitexClient(t *testing.T, e *etcd, protocol transport.Protocol) userservice.Client {
	t.Helper()
	r, err := etcdregistry.NewEtcdResolver([]string{e.endpoint})
	if err != nil {
		t.Fatal(err)
	}
	opts := []client.Option{
		client.WithResolver(isolated{r, e.endpoint}),
		client.WithRPCTimeout(3 * time.Second),
		client.WithConnectTimeout(50 * time.Millisecond),
		client.WithFailureRetry(retry.NewFailurePolicy()),
		client.WithTransportProtocol(protocol),
	}
	if protocol&transport.TTHeader != 0 {
		opts = append(opts, client.WithMetaHandler(transmeta.ClientTTHeaderHandler))
	}
	c, err := userservice.NewClient("service.music.user", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// isolated keeps the resolvers of different tests' etcds apart, as one process of Kitex
// clients needs when they use several registries:
//   - Kitex caches resolutions process-wide by resolver name and service, and registry-etcd's
//     resolvers are all named "etcd": without a name of its own, a client of one test's etcd
//     would be handed the instances another test's etcd listed.
//   - Kitex refreshes every cached resolution on one shared 5 s ticker and waits for all of
//     them, and registry-etcd resolves without a deadline: a resolver whose etcd has stopped
//     (an earlier test's) would hang every client's refresh in the process.
type isolated struct {
	discovery.Resolver
	endpoint string
}

func (r isolated) Name() string { return "etcd@" + r.endpoint }

func (r isolated) Resolve(ctx context.Context, desc string) (discovery.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return r.Resolver.Resolve(ctx, desc)
}

// code is a response's status code, failing the test on a transport error.
func code(t *testing.T, resp interface{ GetBaseResp() *base.BaseResp }, err error) base.ErrCode {
	t.Helper()
	if err != nil {
		t.Fatalf("the call did not reach the service: %v", err)
	}
	return base.ErrCode(resp.GetBaseResp().GetStatusCode())
}

// A Kitex client that finds our Rust service through registry-etcd calls every method and
// gets every error code, over each transport a Kitex user may pick.
func TestKitexClientCallsTheRustService(t *testing.T) {
	e := startEtcd(t)
	rustUserService(t, e)
	ctx := context.Background()

	for _, protocol := range []transport.Protocol{transport.Framed, transport.PurePayload, transport.TTHeaderFramed} {
		t.Run(protocol.String(), func(t *testing.T) {
			c := kitexClient(t, e, protocol)
			name := fmt.Sprintf("kitex-%s", protocol)

			created, err := c.CreateUser(ctx, &user.CreateUserRequest{Username: name, Password: "secret1"})
			if got := code(t, created, err); got != base.ErrCode_Success || created.UserId == nil {
				t.Fatalf("CreateUser: %v, %v", got, created)
			}
			id := *created.UserId
			again, err := c.CreateUser(ctx, &user.CreateUserRequest{Username: name, Password: "secret2"})
			if got := code(t, again, err); got != base.ErrCode_UserAlreadyExist {
				t.Errorf("CreateUser of a taken name: %v", got)
			}
			short, err := c.CreateUser(ctx, &user.CreateUserRequest{Username: name + "x", Password: "123"})
			if got := code(t, short, err); got != base.ErrCode_ParamErr {
				t.Errorf("CreateUser with a 3-byte password: %v", got)
			}

			login, err := c.Login(ctx, &user.LoginRequest{Username: name, Password: "secret1"})
			if got := code(t, login, err); got != base.ErrCode_Success || login.GetUserId() != id {
				t.Errorf("Login: %v, %v (want user %d)", got, login, id)
			}
			for _, wrong := range []*user.LoginRequest{
				{Username: name, Password: "wrong-password"},
				{Username: "nobody-" + name, Password: "secret1"},
			} {
				resp, err := c.Login(ctx, wrong)
				if got := code(t, resp, err); got != base.ErrCode_AuthorizationFailed {
					t.Errorf("Login %v: %v", wrong, got)
				}
			}

			got, err := c.GetUser(ctx, &user.GetUserRequest{UserId: id})
			if status := code(t, got, err); status != base.ErrCode_Success || got.GetUser().GetUsername() != name {
				t.Errorf("GetUser: %v, %v", status, got)
			}
			for _, missing := range []int64{id + 1000, 0} {
				resp, err := c.GetUser(ctx, &user.GetUserRequest{UserId: missing})
				if status := code(t, resp, err); status != base.ErrCode_ParamErr {
					t.Errorf("GetUser %d: %v", missing, status)
				}
			}
		})
	}
}

// A metainfo transient value that a Kitex client sends over TTHeader is readable in our
// handler: the span of every call served (volo-etcd's ServerTraceLayer) carries the caller's
// REQUEST_ID, so the log lines of that call carry it.
//
// Backward values do not cross between the two: Volo writes them with an RPC_BACKWARD_ prefix
// and reads only prefixed keys, while Kitex writes and reads bare keys.
func TestKitexMetainfoReachesTheRustHandler(t *testing.T) {
	e := startEtcd(t)
	t.Setenv("RUST_LOG", "info,user_service=debug")
	service := rustUserService(t, e)
	c := kitexClient(t, e, transport.TTHeaderFramed)

	ctx := metainfo.WithValue(context.Background(), "REQUEST_ID", "kitex-42")
	resp, err := c.GetUser(ctx, &user.GetUserRequest{UserId: 1})
	code(t, resp, err)
	logged := func() bool {
		for _, line := range strings.Split(service.output(), "\n") {
			if strings.Contains(line, "answered") && strings.Contains(line, "kitex-42") {
				return true
			}
		}
		return false
	}
	if !waitFor(soon, logged) {
		t.Errorf("no log line of the call carries the request id kitex-42:\n%s", service.output())
	}
}
