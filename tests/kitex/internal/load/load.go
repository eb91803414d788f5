// Package load drives closed-loop load: a number of workers each call in a loop, and the
// calls that both start after the warm-up and end within the measured window are counted.
package load

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// Result is what one run measured, in the JSON shape the benchmark scripts read.
type Result struct {
	// Successful calls in the window.
	Requests int64 `json:"requests"`
	// Failed calls in the window: a transport error or an error status.
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
	// Successful calls per second.
	RPS float64 `json:"rps"`
	// Latencies of the successful calls.
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
}

// Options say how many calls to keep in flight, and for how long.
type Options struct {
	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
}

// worker is what one worker saw; each has its own, so recording takes no lock.
type worker struct {
	latencies []time.Duration
	errors    int64
}

// Run keeps o.Concurrency calls of call in flight for o.Warmup, then for o.Duration, and
// measures the second part. It stops early, with what it has, when ctx is done.
func Run(ctx context.Context, o Options, call func(context.Context) error) Result {
	start := time.Now()
	measureFrom := start.Add(o.Warmup)
	end := measureFrom.Add(o.Duration)
	workers := make([]worker, o.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.latencies = make([]time.Duration, 0, 4096)
		wg.Go(func() {
			for ctx.Err() == nil {
				began := time.Now()
				if began.After(end) {
					return
				}
				err := call(ctx)
				took := time.Since(began)
				if began.Before(measureFrom) || began.Add(took).After(end) {
					continue
				}
				if err != nil {
					w.errors++
				} else {
					w.latencies = append(w.latencies, took)
				}
			}
		})
	}
	wg.Wait()

	var all []time.Duration
	r := Result{Seconds: o.Duration.Seconds()}
	for _, w := range workers {
		all = append(all, w.latencies...)
		r.Errors += w.errors
	}
	slices.Sort(all)
	r.Requests = int64(len(all))
	if r.Seconds > 0 {
		r.RPS = float64(r.Requests) / r.Seconds
	}
	if len(all) > 0 {
		r.P50Ms = Millis(Percentile(all, 50))
		r.P99Ms = Millis(Percentile(all, 99))
		r.P999Ms = Millis(Percentile(all, 99.9))
	}
	return r
}

// Percentile is the p-th percentile (nearest rank) of sorted, which must not be empty.
func Percentile[T cmp.Ordered](sorted []T, p float64) T {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Millis is d in milliseconds.
func Millis(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
