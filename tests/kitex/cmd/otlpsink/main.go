// Command otlpsink is an OTLP/HTTP receiver that counts spans, for benchmarks: the
// OpenTelemetry Collector's own OTLP receiver (internal/otlp), keeping nothing. With -print
// it also writes each span to stderr, one a line (trace, span, parent, service, kind, name,
// duration), to look at traces by hand:
//
//	otlpsink [-listen 127.0.0.1:0] [-print]
//
// Once it listens it prints its endpoint, the base URL exporters take as
// OTEL_EXPORTER_OTLP_ENDPOINT (or --otlp-endpoint), alone on the first line of stdout:
//
//	http://127.0.0.1:41234
//
// On SIGINT or SIGTERM it stops receiving, waits for the exports in flight, prints
// {"spans": N} (the spans received) on stdout and exits 0.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"kitexpeer/internal/otlp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to receive OTLP/HTTP on (port 0: any free port)")
	print := flag.Bool("print", false, "write every span received to stderr, one a line")
	flag.Parse()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)

	var r *otlp.Receiver
	var err error
	if *print {
		r, err = otlp.StartPrinting(*listen, os.Stderr)
	} else {
		r, err = otlp.StartCounting(*listen)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Endpoint())
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		log.Printf("stopping: %v", err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(struct {
		Spans int64 `json:"spans"`
	}{r.Count()}); err != nil {
		log.Fatal(err)
	}
}
