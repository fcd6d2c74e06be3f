package customerio_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/integrations/customerio"
	"github.com/opentrackhq/opentrack/integrationtest"
	"github.com/opentrackhq/opentrack/internal/fakecustomerio"
	"github.com/opentrackhq/opentrack/spec"
)

type conformanceHarness struct{ srv *fakecustomerio.Server }

func (h *conformanceHarness) New(t *testing.T) opentrack.Integration {
	h.srv = fakecustomerio.New("site", "key")
	t.Cleanup(h.srv.Close)
	return customerio.NewWithCredentials("site", "key", &customerio.Options{TrackURL: h.srv.URL()})
}

// Received classifies the stand-in's accepted calls by the Segment call
// that maps to them.
func (h *conformanceHarness) Received(t *testing.T) map[spec.Type]int {
	out := map[spec.Type]int{}
	for _, c := range h.srv.Calls() {
		switch {
		case c.Method == http.MethodPut && strings.HasPrefix(c.Path, "/api/v1/customers/") && !strings.Contains(c.Path, "/devices"):
			out[spec.TypeIdentify]++
		case c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/events"):
			var b struct{ Type string }
			if err := json.Unmarshal(c.Body, &b); err != nil {
				t.Fatal(err)
			}
			switch b.Type {
			case "page":
				out[spec.TypePage]++
			case "screen":
				out[spec.TypeScreen]++
			default:
				out[spec.TypeTrack]++
			}
		case c.Path == "/api/v2/entity":
			out[spec.TypeGroup]++
		case c.Path == "/api/v1/merge_customers":
			out[spec.TypeAlias]++
		default:
			t.Errorf("unexpected call %s %s", c.Method, c.Path)
		}
	}
	return out
}

func (h *conformanceHarness) FailNext(t *testing.T, n int, permanent bool) bool {
	status := http.StatusServiceUnavailable
	if permanent {
		status = http.StatusBadRequest
	}
	h.srv.FailNext(n, fakecustomerio.Response{Status: status})
	return true
}

func (h *conformanceHarness) Types() []spec.Type {
	return []spec.Type{spec.TypeTrack, spec.TypeIdentify, spec.TypePage, spec.TypeScreen, spec.TypeGroup, spec.TypeAlias}
}

func TestConformance(t *testing.T) {
	integrationtest.Run(t, &conformanceHarness{})
}
