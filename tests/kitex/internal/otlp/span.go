package otlp

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Span is one received span, flattened: what tests check about it.
type Span struct {
	TraceID      string // 32 lowercase hex digits
	SpanID       string // 16 lowercase hex digits
	ParentSpanID string // "" for a root span
	Name         string
	Kind         ptrace.SpanKind
	Service      string            // its resource's service.name
	Attributes   map[string]string // every attribute, as a string
	Duration     time.Duration
}

// flatten turns one export's resource → scope → span tree into Spans.
func flatten(td ptrace.Traces) []Span {
	var spans []Span
	for _, rs := range td.ResourceSpans().All() {
		service := ""
		if name, ok := rs.Resource().Attributes().Get("service.name"); ok {
			service = name.AsString()
		}
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				attrs := make(map[string]string, s.Attributes().Len())
				for k, v := range s.Attributes().All() {
					attrs[k] = v.AsString()
				}
				spans = append(spans, Span{
					TraceID:      s.TraceID().String(),
					SpanID:       s.SpanID().String(),
					ParentSpanID: s.ParentSpanID().String(), // "" when empty
					Name:         s.Name(),
					Kind:         s.Kind(),
					Service:      service,
					Attributes:   attrs,
					Duration:     s.EndTimestamp().AsTime().Sub(s.StartTimestamp().AsTime()),
				})
			}
		}
	}
	return spans
}

// Trace is the spans of one trace received so far, in arrival order.
type Trace []Span

// Of is the spans of trace traceID among spans.
func Of(spans []Span, traceID string) Trace {
	var t Trace
	for _, s := range spans {
		if s.TraceID == traceID {
			t = append(t, s)
		}
	}
	return t
}

// Find is the first span of service with kind, and whether there is one.
func (t Trace) Find(service string, kind ptrace.SpanKind) (Span, bool) {
	return t.FindFunc(func(s Span) bool { return s.Service == service && s.Kind == kind })
}

// FindFunc is the first span that match accepts, and whether there is one.
func (t Trace) FindFunc(match func(Span) bool) (Span, bool) {
	for _, s := range t {
		if match(s) {
			return s, true
		}
	}
	return Span{}, false
}

// ByID is the span with id spanID, and whether it arrived.
func (t Trace) ByID(spanID string) (Span, bool) {
	return t.FindFunc(func(s Span) bool { return s.SpanID == spanID })
}

// Descends tells whether ancestorID is s's parent, or its parent's, and so on up the spans
// that arrived; a missing link in the chain ends it.
func (t Trace) Descends(s Span, ancestorID string) bool {
	// A cycle cannot be longer than the trace.
	for range len(t) + 1 {
		if s.ParentSpanID == "" {
			return false
		}
		if s.ParentSpanID == ancestorID {
			return true
		}
		parent, ok := t.ByID(s.ParentSpanID)
		if !ok {
			return false
		}
		s = parent
	}
	return false
}

// String lists the spans, one a line: name, kind, service.name, span id, parent id.
func (t Trace) String() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\tNAME\tKIND\tSERVICE\tSPAN\tPARENT")
	for _, s := range t {
		parent := s.ParentSpanID
		if parent == "" {
			parent = "-"
		}
		fmt.Fprintf(w, "\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Kind, s.Service, s.SpanID, parent)
	}
	w.Flush()
	return b.String()
}
