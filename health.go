package opentrack

import (
	"encoding/json"
	"fmt"
	"github.com/opentrackhq/opentrack/queue"
	"net/http"
	"strconv"
	"time"
)

// Defaults of [ReadinessOptions].
const (
	DefaultFailingCalls    = 10
	DefaultFailingInterval = time.Minute
)

// ReadinessOptions says when [Manager.ReadinessHandler] answers 503. The
// zero value checks initialization, shutdown and failing destinations, with
// the defaults, and not lag.
type ReadinessOptions struct {
	// MaxOldestAge makes the collector unready while an integration's
	// oldest undelivered event has waited longer than it. Zero means lag
	// is not checked.
	MaxOldestAge time.Duration
	// FailingCalls and FailingInterval make the collector unready while an
	// integration is failing every call: its last FailingCalls calls (of
	// an event or a batch) failed, the latest within FailingInterval, and
	// none succeeded within FailingInterval. Defaults DefaultFailingCalls
	// and DefaultFailingInterval; a negative FailingCalls turns the check
	// off.
	FailingCalls    int
	FailingInterval time.Duration
}

// LivenessHandler answers 200 {"status":"ok"} to every request: the process
// is up and serves HTTP. It stays 200 while shutting down, so that an
// orchestrator does not restart a collector delivering what it accepted;
// mount it as a liveness probe.
func (m *Manager) LivenessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, r, http.StatusOK, healthBody{Status: "ok"})
	})
}

// ReadinessHandler answers whether the collector is fit to take traffic:
// 200 {"status":"ready"}, or 503 {"status":"unavailable","reasons":[...]}
// naming each integration that cannot initialize (its Init is failing, or
// has not returned yet), is failing every call, or lags beyond
// opts.MaxOldestAge, and saying when the Manager is shutting down. opts may
// be nil.
//
// An orchestrator stops sending traffic to an unready collector. A
// destination that fails makes every collector unready at once, and with
// the memory queue a lagging one fills its queue all the same: for a
// readiness probe behind one load balancer, consider turning the failing
// check off (FailingCalls < 0) and alerting on the metrics instead.
func (m *Manager) ReadinessHandler(opts *ReadinessOptions) http.Handler {
	o := ReadinessOptions{}
	if opts != nil {
		o = *opts
	}
	if o.FailingCalls == 0 {
		o.FailingCalls = DefaultFailingCalls
	}
	if o.FailingInterval <= 0 {
		o.FailingInterval = DefaultFailingInterval
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reasons := m.unready(o, time.Now())
		if len(reasons) > 0 {
			writeHealth(w, r, http.StatusServiceUnavailable, healthBody{Status: "unavailable", Reasons: reasons})
			return
		}
		writeHealth(w, r, http.StatusOK, healthBody{Status: "ready"})
	})
}

// StatsHandler answers the delivery counters of every integration as JSON,
// for people: an array with, for each integration, its name, whether it is
// ready (and why not), its counters, and its queue. Mount it where only
// operators reach it.
func (m *Manager) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stats := m.Stats()
		out := make([]statsBody, len(stats))
		for i, s := range stats {
			out[i] = statsBody{Integration: s.Integration, Ready: s.Ready, Accepted: s.Accepted,
				Delivered: s.Delivered, Retried: s.Retried, Failed: s.Failed, Deduplicated: s.Deduplicated,
				Redelivered: s.Redelivered, Panics: s.Panics, Queued: s.Queued, QueuedBytes: s.QueuedBytes,
				OldestAgeSeconds: s.OldestAge.Seconds(), Cursor: s.Cursor}
			if s.Err != nil {
				out[i].Error = s.Err.Error()
			}
		}
		body := statsPage{Integrations: out, Unrouted: m.Unrouted()}
		if st, ok := m.q.(queue.Storage); ok {
			body.Queue = &queueBody{Bytes: st.Size()}
			if oldest := st.Oldest(); !oldest.IsZero() {
				body.Queue.OldestAgeSeconds = time.Since(oldest).Seconds()
			}
		}
		writeHealth(w, r, http.StatusOK, body)
	})
}

// statsPage is what StatsHandler shows.
type statsPage struct {
	Integrations []statsBody `json:"integrations"`
	Unrouted     uint64      `json:"unrouted"`
	Queue        *queueBody  `json:"queue,omitempty"`
}

// queueBody is what a queue with storage holds: its bytes, and the age of
// its oldest record.
type queueBody struct {
	Bytes            int64   `json:"bytes"`
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
}

// statsBody is one integration's counters as StatsHandler shows them.
type statsBody struct {
	Integration      string  `json:"integration"`
	Ready            bool    `json:"ready"`
	Error            string  `json:"error,omitempty"`
	Accepted         uint64  `json:"accepted"`
	Delivered        uint64  `json:"delivered"`
	Retried          uint64  `json:"retried"`
	Failed           uint64  `json:"failed"`
	Deduplicated     uint64  `json:"deduplicated"`
	Redelivered      uint64  `json:"redelivered"`
	Panics           uint64  `json:"panics"`
	Queued           int     `json:"queued"`
	QueuedBytes      int64   `json:"queuedBytes"`
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
	Cursor           uint64  `json:"cursor"`
}

type healthBody struct {
	Status  string       `json:"status"`
	Reasons []unreadyWhy `json:"reasons,omitempty"`
}

// unreadyWhy is one reason the collector is not ready.
type unreadyWhy struct {
	Integration string `json:"integration,omitempty"`
	Reason      string `json:"reason"`
}

// unready returns why the collector is not ready, or nothing.
func (m *Manager) unready(o ReadinessOptions, now time.Time) []unreadyWhy {
	var out []unreadyWhy
	if m.Closed() {
		out = append(out, unreadyWhy{Reason: "shutting down"})
	}
	for i, s := range m.Stats() {
		l := m.lanes[i]
		switch {
		case !s.Ready && s.Err != nil:
			out = append(out, unreadyWhy{s.Integration, "cannot initialize: " + s.Err.Error()})
		case !s.Ready:
			if _, ok := l.in.(Initializer); ok { // else it is ready once its lane runs
				out = append(out, unreadyWhy{s.Integration, "initializing"})
			}
		}
		if why := l.tel.failing(o, now); why != "" {
			out = append(out, unreadyWhy{s.Integration, why})
		}
		if o.MaxOldestAge > 0 && s.OldestAge > o.MaxOldestAge {
			out = append(out, unreadyWhy{s.Integration, fmt.Sprintf("lagging: the oldest undelivered event has waited %s, more than %s",
				s.OldestAge.Round(time.Second), o.MaxOldestAge)})
		}
	}
	return out
}

// failing says why the lane counts as failing every call, or "".
func (lt *laneTelemetry) failing(o ReadinessOptions, now time.Time) string {
	if o.FailingCalls < 0 {
		return ""
	}
	streak := lt.streak.Load()
	since := now.Add(-o.FailingInterval).UnixNano()
	if streak < int64(o.FailingCalls) || lt.lastFail.Load() < since || lt.lastOK.Load() >= since {
		return ""
	}
	why := fmt.Sprintf("failing: the last %d calls failed, and none succeeded in the last %s", streak, o.FailingInterval)
	if b := lt.lastErr.Load(); b != nil && b.err != nil {
		why += "; the last error: " + b.err.Error()
	}
	return why
}

func writeHealth(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"Internal error"}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}
