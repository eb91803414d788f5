package load

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentileIsTheNearestRank(t *testing.T) {
	sorted := []int{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	for p, want := range map[float64]int{0: 10, 10: 10, 11: 20, 50: 50, 99: 100, 99.9: 100, 100: 100} {
		if got := Percentile(sorted, p); got != want {
			t.Errorf("p%v = %d, want %d", p, got, want)
		}
	}
}

func TestCountsOnlyTheMeasuredWindow(t *testing.T) {
	var calls atomic.Int64
	r := Run(context.Background(), Options{Concurrency: 4, Warmup: 50 * time.Millisecond, Duration: 200 * time.Millisecond},
		func(context.Context) error {
			time.Sleep(time.Millisecond)
			if calls.Add(1)%10 == 0 {
				return errors.New("every tenth call fails")
			}
			return nil
		})
	if r.Requests == 0 || r.Errors == 0 || r.Requests+r.Errors >= calls.Load() {
		t.Errorf("%+v out of %d calls: want successes and errors, warm-up excluded", r, calls.Load())
	}
	if r.Seconds != 0.2 || r.RPS != float64(r.Requests)/0.2 {
		t.Errorf("%+v: rps is successes over the window", r)
	}
	if r.P50Ms < 1 || r.P50Ms > r.P99Ms || r.P99Ms > r.P999Ms {
		t.Errorf("%+v: percentiles out of order", r)
	}
}
