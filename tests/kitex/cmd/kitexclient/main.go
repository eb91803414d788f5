// Command kitexclient is a Kitex client of service.music.user, for tests and benchmarks.
//
//	kitexclient [target flags] call [flags] create USER PASS | login USER PASS | get ID
//	kitexclient [target flags] load [flags]
//	kitexclient [target flags] propagation [flags]
//
// The target flags may also follow the subcommand:
//
//	-etcd-endpoints E    resolve through registry-etcd (comma-separated; default 127.0.0.1:2379)
//	-addr HOST:PORT      call one address directly instead
//	-transport T         framed (default), buffered, or ttheader (TTHeader-framed, with metainfo)
//
// call prints the response as JSON (exit 1 when the call does not reach the service); load
// prints {"requests", "errors", "seconds", "rps", "p50_ms", "p99_ms", "p999_ms"}; propagation
// prints {"rounds", "register_first_request_ms", "deregister_last_request_ms"}, each
// {"p50", "p99", "max"}. Run a subcommand with -h for its flags.
//
// With OTEL_EXPORTER_OTLP_ENDPOINT set, calls are traced with kitex-contrib/obs-opentelemetry's
// client suite (service.name "kitexclient"; see internal/telemetry): each call is a root
// CLIENT span, and its W3C traceparent goes to the service as a metainfo value, which only
// TTHeader carries (-transport ttheader). The spans are flushed before the process exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/connpool"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/transport"
	oteltracing "github.com/kitex-contrib/obs-opentelemetry/tracing"
	etcd "github.com/kitex-contrib/registry-etcd"

	"kitexpeer/internal/telemetry"
	"kitexpeer/kitex_gen/music/service/user/userservice"
)

// target is where and how the client calls.
type target struct {
	etcdEndpoints string
	addr          string
	transport     string
	traced        bool // clients get the tracing suite
}

// flags adds the target flags to fs, with t's current values as defaults, so that flags
// given before the subcommand survive its own parsing.
func (t *target) flags(fs *flag.FlagSet) {
	fs.StringVar(&t.etcdEndpoints, "etcd-endpoints", t.etcdEndpoints, "etcd endpoints to resolve through, comma-separated")
	fs.StringVar(&t.addr, "addr", t.addr, "call this HOST:PORT directly instead of resolving")
	fs.StringVar(&t.transport, "transport", t.transport, "framed, buffered, or ttheader")
}

// client is a Kitex client of service with the seed's options, a connection pool that keeps
// up to idle connections per instance, and t's target and transport.
func (t *target) client(service string, idle int) (userservice.Client, error) {
	var opts []client.Option
	if t.traced {
		// First: the suite sets TTHeader (unframed) as the transport, and -transport decides.
		opts = append(opts, client.WithSuite(oteltracing.NewClientSuite()))
	}
	opts = append(opts,
		client.WithRPCTimeout(3*time.Second),
		client.WithConnectTimeout(50*time.Millisecond),
		// Kitex keeps 10 idle connections per address by default: with more calls in flight,
		// every call past the tenth would open a connection and close it after.
		client.WithLongConnection(connpool.IdleConfig{MaxIdlePerAddress: idle, MaxIdleTimeout: time.Minute}),
	)
	switch t.transport {
	case "framed":
		opts = append(opts, client.WithTransportProtocol(transport.Framed))
	case "buffered":
		opts = append(opts, client.WithTransportProtocol(transport.PurePayload))
	case "ttheader":
		opts = append(opts, client.WithTransportProtocol(transport.TTHeaderFramed),
			client.WithMetaHandler(transmeta.ClientTTHeaderHandler))
	default:
		return nil, fmt.Errorf("unknown -transport %q: want framed, buffered or ttheader", t.transport)
	}
	if t.addr != "" {
		opts = append(opts, client.WithHostPorts(t.addr))
	} else {
		r, err := etcd.NewEtcdResolver(strings.Split(t.etcdEndpoints, ","))
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithResolver(r))
	}
	return userservice.NewClient(service, opts...)
}

const usage = `usage: kitexclient [target flags] call [flags] create USER PASS | login USER PASS | get ID
       kitexclient [target flags] load [flags]
       kitexclient [target flags] propagation [flags]`

func main() {
	t := &target{etcdEndpoints: "127.0.0.1:2379", transport: "framed"}
	t.flags(flag.CommandLine)
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, usage)
		fmt.Fprintln(os.Stderr, "target flags:")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	commands := map[string]func(*target, []string) error{"call": call, "load": runLoad, "propagation": propagation}
	command, ok := commands[flag.Arg(0)]
	if !ok {
		flag.Usage()
		os.Exit(2)
	}
	tracing, err := telemetry.Setup(context.Background(), "kitexclient")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kitexclient:", err)
		os.Exit(1)
	}
	t.traced = tracing != nil
	err = command(t, flag.Args()[1:])
	tracing.Shutdown()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kitexclient:", err)
		os.Exit(1)
	}
}

// subcommand is the flag set of a subcommand, with the target flags; it exits 2 on bad flags.
func subcommand(t *target, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	t.flags(fs)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: kitexclient", strings.TrimSpace(name+" [flags] "+args))
		fs.PrintDefaults()
	}
	return fs
}
