package webhook_test

import (
	"net/http"
	"testing"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/webhook"
	"github.com/opentrackhq/opentrack/integrationtest"
	"github.com/opentrackhq/opentrack/internal/webhooktest"
	"github.com/opentrackhq/opentrack/spec"
)

// harness runs the conformance suite against a receiver on 127.0.0.1 that
// verifies each request's signature and keeps the events it accepted.
type harness struct {
	opts webhook.Options
	recv *webhooktest.Server
}

const (
	segmentSecret  = "shared-secret, with a comma"
	standardSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

func (h *harness) New(t *testing.T) opentrack.Integration {
	ro := &webhooktest.Options{}
	switch h.opts.Signing {
	case webhook.SigningStandard:
		ro.StandardSecret = h.opts.Secret
	default:
		ro.SegmentSecret = h.opts.Secret
	}
	h.recv = webhooktest.New(ro)
	t.Cleanup(h.recv.Close)
	opts := h.opts
	in, err := webhook.New(h.recv.URL()+"/hook", &opts)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// Received reads the events back from the bodies the receiver accepted: an
// object, or each element of an array.
func (h *harness) Received(t *testing.T) []integrationtest.Record {
	var out []integrationtest.Record
	for _, req := range h.recv.Accepted() {
		if want := h.opts.BatchSize > 1; req.Batch != want {
			t.Errorf("a request with %d events was an array: %v, want %v", len(req.Events), req.Batch, want)
		}
		for _, raw := range req.Events {
			r, err := integrationtest.RecordFromJSON(raw)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
	}
	return out
}

func (h *harness) FailNext(t *testing.T, n int, permanent bool) bool {
	status := http.StatusServiceUnavailable
	if permanent {
		status = http.StatusBadRequest
	}
	h.recv.FailNext(n, webhooktest.Response{Status: status, Body: `{"error":"scripted"}`})
	return true
}

func (h *harness) Types() []spec.Type {
	return []spec.Type{spec.TypeTrack, spec.TypeIdentify, spec.TypePage, spec.TypeScreen, spec.TypeGroup, spec.TypeAlias}
}

func TestConformance(t *testing.T) {
	t.Run("PerEvent", func(t *testing.T) {
		integrationtest.Run(t, &harness{opts: webhook.Options{Secret: segmentSecret}})
	})
	t.Run("Batched", func(t *testing.T) {
		integrationtest.Run(t, &harness{opts: webhook.Options{BatchSize: 100, Secret: segmentSecret}})
	})
	t.Run("BatchedStandardWebhooks", func(t *testing.T) {
		integrationtest.Run(t, &harness{opts: webhook.Options{BatchSize: 4, MaxBatchBytes: 1500,
			Signing: webhook.SigningStandard, Secret: standardSecret, Method: "PUT"}})
	})
}
