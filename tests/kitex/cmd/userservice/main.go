// Command userservice is the seed's user service in Go: a Kitex UserService registered in
// etcd by registry-etcd under service.music.user, with the users in SQLite. Its flags, rules
// and answers are the Rust user service's (services/user).
//
// On SIGINT or SIGTERM Kitex deregisters it, drains calls in flight (up to 5 s), and the
// process closes the database, flushes its spans and exits 0.
//
// With OTEL_EXPORTER_OTLP_ENDPOINT set it traces its calls with kitex-contrib/obs-opentelemetry
// (service.name: the registered name), continuing the caller's trace from the W3C traceparent
// that Kitex clients and ours send as a metainfo value over TTHeader; see internal/telemetry.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"strings"
	"sync/atomic"

	"github.com/cloudwego/kitex/pkg/registry"
	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/server"
	oteltracing "github.com/kitex-contrib/obs-opentelemetry/tracing"
	etcd "github.com/kitex-contrib/registry-etcd"

	"kitexpeer/internal/store"
	"kitexpeer/internal/telemetry"
	"kitexpeer/kitex_gen/music/service/user/userservice"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8888", "address to serve Thrift on")
	endpoints := flag.String("etcd-endpoints", "127.0.0.1:2379", "etcd endpoints, comma-separated")
	name := flag.String("service-name", "service.music.user", "name to register under")
	databaseURL := flag.String("database-url", "sqlite://data/user.db",
		"where users are stored: sqlite://PATH (relative to the working directory)")
	flag.Parse()
	if err := serve(*listen, strings.Split(*endpoints, ","), *name, *databaseURL); err != nil {
		log.Fatal(err)
	}
}

// serve runs the service until SIGINT or SIGTERM, then closes the database and flushes the
// spans.
func serve(listen string, endpoints []string, name, databaseURL string) error {
	addr, err := net.ResolveTCPAddr("tcp", listen)
	if err != nil {
		return err
	}
	tracing, err := telemetry.Setup(context.Background(), name)
	if err != nil {
		return err
	}
	defer tracing.Shutdown()
	users, err := store.Open(databaseURL)
	if err != nil {
		return err
	}
	defer users.Close()
	r, err := etcd.NewEtcdRegistry(endpoints)
	if err != nil {
		return err
	}
	opts := []server.Option{
		server.WithServiceAddr(addr),
		server.WithRegistry(&deregisterOnlyRegistered{Registry: r}),
		server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: name}),
		// Metainfo and the caller's timeout travel in TTHeader; Kitex reads them only with this.
		server.WithMetaHandler(transmeta.ServerTTHeaderHandler),
	}
	if tracing != nil {
		opts = append(opts, server.WithSuite(oteltracing.NewServerSuite()))
	}
	svr := userservice.NewServer(&UserServiceImpl{users: users}, opts...)
	log.Printf("user service listening on %s, users in %s", listen, databaseURL)
	// Run serves until Kitex's own SIGINT/SIGTERM handler fires, then deregisters and drains;
	// its error is a failed start, register or deregister.
	return svr.Run()
}

// deregisterOnlyRegistered passes Deregister on only after a Register succeeded. Kitex
// registers a second after Run but deregisters on every stop, and registry-etcd v0.2.6
// dereferences a nil lease when it deregisters what it never registered: without this, a
// SIGTERM in the first second panics (exit 2).
type deregisterOnlyRegistered struct {
	registry.Registry
	registered atomic.Bool
}

func (r *deregisterOnlyRegistered) Register(info *registry.Info) error {
	err := r.Registry.Register(info)
	r.registered.Store(err == nil)
	return err
}

func (r *deregisterOnlyRegistered) Deregister(info *registry.Info) error {
	if !r.registered.Load() {
		return nil
	}
	return r.Registry.Deregister(info)
}
