package bigquery_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/bigquery"
	"github.com/opentrackhq/opentrack/integrationtest"
	"github.com/opentrackhq/opentrack/internal/fakebigquery"
	"github.com/opentrackhq/opentrack/spec"
)

type conformanceHarness struct{ srv *fakebigquery.Server }

func (h *conformanceHarness) New(t *testing.T) opentrack.Integration {
	h.srv = fakebigquery.New(nil)
	t.Cleanup(h.srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	client, err := h.srv.NewClient(ctx, "proj")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return bigquery.New(client, "segment", &bigquery.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// Received counts the rows of the per-call tables.
func (h *conformanceHarness) Received(t *testing.T) map[spec.Type]int {
	out := map[spec.Type]int{}
	for table, typ := range map[string]spec.Type{
		"tracks": spec.TypeTrack, "identifies": spec.TypeIdentify, "pages": spec.TypePage,
		"screens": spec.TypeScreen, "groups": spec.TypeGroup, "aliases": spec.TypeAlias,
	} {
		out[typ] = len(h.srv.Rows("proj", "segment", table))
	}
	return out
}

func (h *conformanceHarness) FailNext(t *testing.T, n int, permanent bool) bool {
	status := http.StatusServiceUnavailable
	if permanent {
		// A track writes two rows (tracks and its event table) in two
		// requests: fail both, or one of them lands.
		status, n = http.StatusBadRequest, 2*n
	}
	h.srv.AddFault(fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: status, Times: n})
	return true
}

func (h *conformanceHarness) Types() []spec.Type {
	return []spec.Type{spec.TypeTrack, spec.TypeIdentify, spec.TypePage, spec.TypeScreen, spec.TypeGroup, spec.TypeAlias}
}

func TestConformance(t *testing.T) {
	integrationtest.Run(t, &conformanceHarness{})
}
