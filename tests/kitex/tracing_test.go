package kitexpeer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bytedance/gopkg/cloud/metainfo"
	"github.com/cloudwego/kitex/transport"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"kitexpeer/internal/otlp"
	"kitexpeer/kitex_gen/music/service/user"
)

// One trace across Go and Rust, as the OpenTelemetry Collector receives it over OTLP/HTTP.
// Across Thrift the trace context is a W3C traceparent in a metainfo transient value over
// TTHeader, as kitex-contrib/obs-opentelemetry carries it: its client suite puts it in with
// metainfo.WithValue("traceparent", …), sent as the TTHeader key RPC_TRANSIT_traceparent; its
// server suite reads it back from metainfo.GetAllValues. Our processes take the receiver from
// --otlp-endpoint, the Go ones from OTEL_EXPORTER_OTLP_ENDPOINT.

const (
	userServiceName  = "service.music.user" // service.name of either user service
	gatewayName      = "gateway"            // service.name of our gateway
	kitexClientName  = "kitexclient"        // service.name of cmd/kitexclient
	hertzGatewayName = "hertz-gateway"      // service.name of cmd/gateway
)

// The Go peer alone, as a Kitex user sets tracing up: the server span of a call continues the
// client's trace, its parent the client span.
func TestKitexTracesAcrossKitex(t *testing.T) {
	e := startEtcd(t)
	r := startTraceReceiver(t)
	service := goUserService(t, e)
	kitexCall(t, goBuild(t, "./cmd/kitexclient"), service.addr, "create", "traced-in-go", "secret1")

	trace := waitForKitexClientCall(t, r)
	client, _ := trace.Find(kitexClientName, ptrace.SpanKindClient)
	server, _ := trace.Find(userServiceName, ptrace.SpanKindServer)
	if server.ParentSpanID != client.SpanID {
		t.Errorf("the Kitex server span's parent is %q, not the client span %s:\n%s", server.ParentSpanID, client.SpanID, trace)
	}
	// Nothing else traced this call: the receiver saw this one trace.
	all := r.Spans()
	if len(otlp.Of(all, client.TraceID)) != len(all) {
		t.Errorf("spans outside trace %s:\n%s", client.TraceID, otlp.Trace(all))
	}
	t.Logf("the trace:\n%s", trace)
}

// What obs-opentelemetry's client suite puts on the wire, read off it: a TTHeader string
// key-value RPC_TRANSIT_traceparent (the metainfo key as the suite sets it, lowercase,
// behind Kitex's transient prefix) whose value is the W3C traceparent of the client span.
func TestKitexClientSendsTraceparentInTTHeader(t *testing.T) {
	r := startTraceReceiver(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The call fails: nothing answers it. Its request is all this test wants.
	client := start(t, goBuild(t, "./cmd/kitexclient"), "-addr", l.Addr().String(), "-transport", "ttheader", "call", "get", "1")
	request := readRequest(t, l)
	value, ok := ttheaderString(request, "RPC_TRANSIT_traceparent")
	if !ok {
		t.Fatalf("no TTHeader key RPC_TRANSIT_traceparent in the request: %q", request)
	}
	m := regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`).FindStringSubmatch(value)
	if m == nil {
		t.Fatalf("RPC_TRANSIT_traceparent is %q, not a sampled W3C traceparent", value)
	}
	if service, _ := ttheaderString(request, "RPC_TRANSIT_service.name"); service != kitexClientName {
		t.Errorf("RPC_TRANSIT_service.name: %q", service)
	}
	// The client flushes its spans before it exits.
	select {
	case <-client.exited:
	case <-time.After(soon):
		t.Fatalf("kitexclient did not exit within %v of its failed call:\n%s", soon, client.output())
	}
	trace, ok := r.WaitTrace(m[1], soon, func(tr otlp.Trace) bool {
		_, found := tr.Find(kitexClientName, ptrace.SpanKindClient)
		return found
	})
	if span, _ := trace.Find(kitexClientName, ptrace.SpanKindClient); !ok || span.SpanID != m[2] {
		t.Errorf("the traceparent sent, %s, is not the client span's:\n%s", value, trace)
	}
}

// A traceparent sent as a bare metainfo transient value over TTHeader, as our gateway sends
// it, is continued by the Kitex service, under either spelling of the key: obs-opentelemetry
// turns CGI-style keys (TRACEPARENT) into header keys (traceparent) before it looks.
func TestKitexServiceContinuesATransientTraceparent(t *testing.T) {
	e := startEtcd(t)
	r := startTraceReceiver(t)
	goUserService(t, e)
	c := kitexClient(t, e, transport.TTHeaderFramed)
	for _, key := range []string{"traceparent", "TRACEPARENT"} {
		t.Run(key, func(t *testing.T) {
			traceID, spanID := randomHex(t, 16), randomHex(t, 8)
			ctx := metainfo.WithValue(context.Background(), key, fmt.Sprintf("00-%s-%s-01", traceID, spanID))
			resp, err := c.GetUser(ctx, &user.GetUserRequest{UserId: 1})
			code(t, resp, err)
			trace, ok := r.WaitTrace(traceID, soon, func(tr otlp.Trace) bool {
				_, found := tr.Find(userServiceName, ptrace.SpanKindServer)
				return found
			})
			if !ok {
				t.Fatalf("within %v, no Kitex server span in trace %s; all spans received:\n%s", soon, traceID, otlp.Trace(r.Spans()))
			}
			if server, _ := trace.Find(userServiceName, ptrace.SpanKindServer); server.ParentSpanID != spanID {
				t.Errorf("the Kitex server span's parent is %q, not the caller's span %s:\n%s", server.ParentSpanID, spanID, trace)
			}
		})
	}
}

// HTTP in with a traceparent, through our gateway into our user service: one trace, the
// caller's, from the gateway's server span down to the user service's database spans.
func TestOneTraceThroughGatewayAndRustService(t *testing.T) {
	requireOTLPFlag(t, "user-service", "USER_SERVICE_BIN")
	requireOTLPFlag(t, "gateway", "GATEWAY_BIN")
	e := startEtcd(t)
	r := startTraceReceiver(t)
	rustUserService(t, e, "--otlp-endpoint", r.Endpoint())
	gw := rustGateway(t, e, "--otlp-endpoint", r.Endpoint())

	traceID, callerSpanID := registerTraced(t, gw, "traced-in-rust")

	var gwServer, gwClient, usServer, db otlp.Span
	trace, ok := r.WaitTrace(traceID, soon, func(tr otlp.Trace) bool {
		var found [4]bool
		gwServer, found[0] = tr.Find(gatewayName, ptrace.SpanKindServer)
		gwClient, found[1] = tr.Find(gatewayName, ptrace.SpanKindClient)
		usServer, found[2] = tr.Find(userServiceName, ptrace.SpanKindServer)
		db, found[3] = tr.FindFunc(isDatabaseSpan)
		return found == [4]bool{true, true, true, true}
	})
	if !ok {
		t.Fatalf("within %v, trace %s lacks a gateway SERVER or CLIENT span, a user service SERVER span or a database span (db.system=sqlite):\n%s", soon, traceID, trace)
	}
	if gwServer.ParentSpanID != callerSpanID {
		t.Errorf("the gateway's server span %s has parent %q, not the caller's span %s:\n%s", gwServer.SpanID, gwServer.ParentSpanID, callerSpanID, trace)
	}
	if !trace.Descends(gwClient, gwServer.SpanID) {
		t.Errorf("the gateway's client span %s does not descend from its server span %s:\n%s", gwClient.SpanID, gwServer.SpanID, trace)
	}
	if !isChildOf(trace, usServer, gatewayName, ptrace.SpanKindClient) {
		t.Errorf("the user service's server span %s has parent %q, not a gateway client span:\n%s", usServer.SpanID, usServer.ParentSpanID, trace)
	}
	if !trace.Descends(db, usServer.SpanID) {
		t.Errorf("the database span %s does not descend from the user service's server span %s:\n%s", db.SpanID, usServer.SpanID, trace)
	}
	t.Logf("the trace:\n%s", trace)
}

// Our gateway in front of the Go Kitex service: the Kitex server span continues our trace,
// its parent our gateway's client span.
func TestKitexServiceContinuesTheGatewayTrace(t *testing.T) {
	requireOTLPFlag(t, "gateway", "GATEWAY_BIN")
	e := startEtcd(t)
	r := startTraceReceiver(t)
	goUserService(t, e)
	gw := rustGateway(t, e, "--otlp-endpoint", r.Endpoint())

	traceID, _ := registerTraced(t, gw, "traced-into-go")

	var kitexServer otlp.Span
	trace, ok := r.WaitTrace(traceID, soon, func(tr otlp.Trace) bool {
		_, hasGatewayClient := tr.Find(gatewayName, ptrace.SpanKindClient)
		var hasKitexServer bool
		kitexServer, hasKitexServer = tr.Find(userServiceName, ptrace.SpanKindServer)
		return hasGatewayClient && hasKitexServer
	})
	if !ok {
		t.Fatalf("within %v, trace %s lacks the gateway's CLIENT span or the Kitex service's SERVER span:\n%s\nall spans received:\n%s", soon, traceID, trace, otlp.Trace(r.Spans()))
	}
	if !isChildOf(trace, kitexServer, gatewayName, ptrace.SpanKindClient) {
		t.Errorf("the Kitex server span %s has parent %q, not a gateway client span:\n%s", kitexServer.SpanID, kitexServer.ParentSpanID, trace)
	}
	t.Logf("the trace:\n%s", trace)
}

// Head sampling in our processes: with new traces unsampled (OTEL_TRACES_SAMPLER, the
// standard variable), a request without a traceparent and one whose caller did not sample it
// export no span, yet keep their trace id (x-trace-id); a caller's sampled trace is exported
// whole, gateway and service, which follow its decision.
func TestOnlySampledTracesAreExported(t *testing.T) {
	requireOTLPFlag(t, "user-service", "USER_SERVICE_BIN")
	requireOTLPFlag(t, "gateway", "GATEWAY_BIN")
	e := startEtcd(t)
	r := startTraceReceiver(t)
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
	rustUserService(t, e, "--otlp-endpoint", r.Endpoint())
	gw := rustGateway(t, e, "--otlp-endpoint", r.Endpoint())

	// A new trace: not sampled, but it has an id.
	resp, err := http.Post(gw+"/api/user/register", "application/json", strings.NewReader(`{"username":"unsampled-root","password":"secret1"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Header.Get("x-trace-id")) != 32 {
		t.Fatalf("register without a traceparent: HTTP %d, x-trace-id %q", resp.StatusCode, resp.Header.Get("x-trace-id"))
	}
	// The caller's unsampled trace: its id, no span.
	unsampled := randomHex(t, 16)
	req, _ := http.NewRequest("POST", gw+"/api/user/register", strings.NewReader(`{"username":"unsampled-caller","password":"secret1"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", fmt.Sprintf("00-%s-%s-00", unsampled, randomHex(t, 8)))
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("x-trace-id"); resp.StatusCode != http.StatusOK || got != unsampled {
		t.Fatalf("register with an unsampled traceparent: HTTP %d, x-trace-id %q, want %s", resp.StatusCode, got, unsampled)
	}
	// The caller's sampled trace, sent last: once its spans from both processes are in, so
	// are any that the requests before it made (each process exports in order).
	sampled, _ := registerTraced(t, gw, "sampled-caller")
	trace, ok := r.WaitTrace(sampled, soon, func(tr otlp.Trace) bool {
		_, gateway := tr.Find(gatewayName, ptrace.SpanKindServer)
		_, service := tr.Find(userServiceName, ptrace.SpanKindServer)
		_, db := tr.FindFunc(isDatabaseSpan)
		return gateway && service && db
	})
	if !ok {
		t.Fatalf("within %v, the sampled trace %s lacks the gateway's or the service's SERVER span or a database span:\n%s", soon, sampled, trace)
	}
	if all := r.Spans(); len(all) != len(trace) {
		t.Errorf("spans exported outside the sampled trace %s:\n%s", sampled, otlp.Trace(all))
	}
}

// The Go stack traced as a Hertz and Kitex user traces it (the baseline of scripts/bench's
// observability phase): Hertz's server span continues the caller's trace, the Kitex client
// span descends from it, and the Kitex service's server span is that client span's child.
func TestGoStackTracesFromHertzToKitex(t *testing.T) {
	e := startEtcd(t)
	r := startTraceReceiver(t)
	goUserService(t, e)
	gw := hertzGateway(t, e)

	traceID, callerSpanID, _ := registerInTrace(t, gw, "traced-through-hertz")

	var hertzServer, hertzClient, kitexServer otlp.Span
	trace, ok := r.WaitTrace(traceID, soon, func(tr otlp.Trace) bool {
		var found [3]bool
		hertzServer, found[0] = tr.Find(hertzGatewayName, ptrace.SpanKindServer)
		hertzClient, found[1] = tr.Find(hertzGatewayName, ptrace.SpanKindClient)
		kitexServer, found[2] = tr.Find(userServiceName, ptrace.SpanKindServer)
		return found == [3]bool{true, true, true}
	})
	if !ok {
		t.Fatalf("within %v, trace %s lacks the Hertz gateway's SERVER or CLIENT span or the Kitex service's SERVER span:\n%s\nall spans received:\n%s", soon, traceID, trace, otlp.Trace(r.Spans()))
	}
	if hertzServer.ParentSpanID != callerSpanID {
		t.Errorf("the Hertz server span %s has parent %q, not the caller's span %s:\n%s", hertzServer.SpanID, hertzServer.ParentSpanID, callerSpanID, trace)
	}
	if !trace.Descends(hertzClient, hertzServer.SpanID) {
		t.Errorf("the Kitex client span %s does not descend from the Hertz server span %s:\n%s", hertzClient.SpanID, hertzServer.SpanID, trace)
	}
	if kitexServer.ParentSpanID != hertzClient.SpanID {
		t.Errorf("the Kitex server span's parent is %q, not the gateway's client span %s:\n%s", kitexServer.ParentSpanID, hertzClient.SpanID, trace)
	}
	t.Logf("the trace:\n%s", trace)
}

// A Kitex client with obs-opentelemetry's client suite calls our user service: our server
// span continues the Kitex trace, its parent the Kitex client span.
func TestRustServiceContinuesTheKitexTrace(t *testing.T) {
	requireOTLPFlag(t, "user-service", "USER_SERVICE_BIN")
	e := startEtcd(t)
	r := startTraceReceiver(t)
	service := rustUserService(t, e, "--otlp-endpoint", r.Endpoint())
	kitexCall(t, goBuild(t, "./cmd/kitexclient"), service.addr, "create", "traced-from-go", "secret1")

	trace := waitForKitexClientCall(t, r)
	client, _ := trace.Find(kitexClientName, ptrace.SpanKindClient)
	server, _ := trace.Find(userServiceName, ptrace.SpanKindServer)
	if server.ParentSpanID != client.SpanID {
		t.Errorf("our server span's parent is %q, not the Kitex client span %s:\n%s", server.ParentSpanID, client.SpanID, trace)
	}
	t.Logf("the trace:\n%s", trace)
}

// cmd/otlpsink prints its endpoint, counts what is exported to it, and prints the count when
// told to stop.
func TestOTLPSinkCountsSpans(t *testing.T) {
	sink := start(t, goBuild(t, "./cmd/otlpsink"))
	var endpoint string
	if !waitFor(soon, func() bool {
		endpoint, _, _ = strings.Cut(sink.output(), "\n")
		return strings.HasPrefix(endpoint, "http://127.0.0.1:") && strings.Contains(sink.output(), "\n")
	}) {
		t.Fatalf("otlpsink printed no endpoint within %v:\n%s", soon, sink.output())
	}
	exporter, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter))
	for range 25 {
		_, span := provider.Tracer("probe").Start(context.Background(), "counted")
		span.End()
	}
	// Shutdown flushes: every span has been received when it returns.
	if err := provider.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	sink.terminate(t)
	_, last, _ := strings.Cut(strings.TrimSpace(sink.output()), "\n")
	var count struct {
		Spans int `json:"spans"`
	}
	if err := json.Unmarshal([]byte(last), &count); err != nil || count.Spans != 25 {
		t.Errorf("want {\"spans\":25} last, got:\n%s", sink.output())
	}
}

// startTraceReceiver starts an OTLP/HTTP receiver for the test, stopped after every process
// the test starts later, and points the Go processes at it; spans are batched for 200 ms
// instead of 5 s, so that they arrive soon.
func startTraceReceiver(t *testing.T) *otlp.Receiver {
	t.Helper()
	r, err := otlp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.Endpoint())
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
	return r
}

// requireOTLPFlag fails the test unless our binary name has --otlp-endpoint: without it, it
// would not start.
func requireOTLPFlag(t *testing.T, name, variable string) {
	t.Helper()
	bin := rustBin(name, variable)
	ctx, cancel := context.WithTimeout(context.Background(), soon)
	defer cancel()
	help, err := exec.CommandContext(ctx, bin, "--help").Output()
	if err != nil {
		t.Fatalf("%s --help: %v (build it: cargo build --workspace, or set %s)", bin, err, variable)
	}
	if !bytes.Contains(help, []byte("--otlp-endpoint")) {
		t.Fatalf("%s has no --otlp-endpoint flag: rebuild it (cargo build --workspace)", bin)
	}
}

// kitexCall runs cmd/kitexclient's call once against addr over TTHeader, failing the test
// unless the call reached the service.
func kitexCall(t *testing.T, bin, addr string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), soon)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-addr", addr, "-transport", "ttheader", "call"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kitexclient call %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// waitForKitexClientCall waits for kitexclient's CLIENT span and a user service SERVER span in
// its trace; that trace.
func waitForKitexClientCall(t *testing.T, r *otlp.Receiver) otlp.Trace {
	t.Helper()
	var trace otlp.Trace
	spans, ok := r.Wait(soon, func(spans []otlp.Span) bool {
		client, ok := otlp.Trace(spans).Find(kitexClientName, ptrace.SpanKindClient)
		if !ok {
			return false
		}
		trace = otlp.Of(spans, client.TraceID)
		_, ok = trace.Find(userServiceName, ptrace.SpanKindServer)
		return ok
	})
	if !ok {
		t.Fatalf("within %v, no %s CLIENT span with a %s SERVER span in its trace; all spans received:\n%s", soon, kitexClientName, userServiceName, otlp.Trace(spans))
	}
	return trace
}

// registerTraced registers username through our gateway at gw as part of a trace made up
// here, checking that the gateway answers with its id and the trace's id; the trace id and
// the caller's span id.
func registerTraced(t *testing.T, gw, username string) (traceID, spanID string) {
	t.Helper()
	traceID, spanID, header := registerInTrace(t, gw, username)
	if got := header.Get("x-trace-id"); got != traceID {
		t.Errorf("x-trace-id: %q, want the caller's trace id %s", got, traceID)
	}
	return traceID, spanID
}

// registerInTrace registers username through the gateway at gw (ours or Hertz) with a
// traceparent made up here, checking that it succeeds; the trace id, the caller's span id and
// the answer's header.
func registerInTrace(t *testing.T, gw, username string) (traceID, spanID string, header http.Header) {
	t.Helper()
	traceID, spanID = randomHex(t, 16), randomHex(t, 8)
	body := fmt.Sprintf(`{"username":%q,"password":"secret1"}`, username)
	req, err := http.NewRequest("POST", gw+"/api/user/register", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", fmt.Sprintf("00-%s-%s-01", traceID, spanID))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	defer resp.Body.Close()
	env, err := decodeEnvelope(resp)
	if err != nil || resp.StatusCode != http.StatusOK || env.Code != 0 {
		t.Fatalf("register: HTTP %d %+v %v", resp.StatusCode, env, err)
	}
	return traceID, spanID, resp.Header
}

// readRequest accepts one connection on l and reads one TTHeader frame from it (a big-endian
// uint32 size, then that many bytes): header and payload.
func readRequest(t *testing.T, l net.Listener) []byte {
	t.Helper()
	if err := l.(*net.TCPListener).SetDeadline(time.Now().Add(soon)); err != nil {
		t.Fatal(err)
	}
	conn, err := l.Accept()
	if err != nil {
		t.Fatalf("no connection within %v: %v", soon, err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(soon))
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		t.Fatalf("reading the request: %v", err)
	}
	frame := make([]byte, min(binary.BigEndian.Uint32(size[:]), 1<<20))
	if _, err := io.ReadFull(conn, frame); err != nil {
		t.Fatalf("reading the request: %v", err)
	}
	return frame
}

// ttheaderString finds key among a TTHeader's string key-values (each string a big-endian
// uint16 length and its bytes, key then value); its value, and whether it is there.
func ttheaderString(header []byte, key string) (string, bool) {
	var prefixed []byte
	prefixed = binary.BigEndian.AppendUint16(prefixed, uint16(len(key)))
	prefixed = append(prefixed, key...)
	_, rest, found := bytes.Cut(header, prefixed)
	if !found || len(rest) < 2 {
		return "", false
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) < 2+n {
		return "", false
	}
	return string(rest[2 : 2+n]), true
}

// isChildOf tells whether s's parent is a span of service with kind in trace.
func isChildOf(trace otlp.Trace, s otlp.Span, service string, kind ptrace.SpanKind) bool {
	parent, ok := trace.ByID(s.ParentSpanID)
	return ok && parent.Service == service && parent.Kind == kind
}

// isDatabaseSpan tells whether s is one of our user service's SQLite calls.
func isDatabaseSpan(s otlp.Span) bool {
	return s.Service == userServiceName && s.Kind == ptrace.SpanKindClient && s.Attributes["db.system"] == "sqlite"
}

// randomHex is n random bytes in lowercase hex: a trace id (16) or a span id (8).
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
