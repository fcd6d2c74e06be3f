package bigquery

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/fakebigquery"
	"github.com/opentrackhq/opentrack/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenInput is a testdata/golden/*.input.json file: tables that exist
// before the run, and batches of Segment events handed to Batch in order.
type goldenInput struct {
	Description string                          `json:"description"`
	Tables      map[string][]fakebigquery.Field `json:"tables"`
	Batches     [][]json.RawMessage             `json:"batches"`
}

// goldenOutput is what the stand-in holds afterwards, with the counters.
type goldenOutput struct {
	Tables map[string]goldenTable `json:"tables"`
	Stats  Stats                  `json:"stats"`
	Failed map[string]string      `json:"failed,omitempty"`
}

type goldenTable struct {
	Partitioning string               `json:"partitioning,omitempty"`
	Schema       []fakebigquery.Field `json:"schema"`
	Rows         []map[string]any     `json:"rows"`
}

// TestGoldenRowMapping writes each input's events through the real BigQuery
// client into the stand-in and compares the resulting tables (schemas and
// rows) and counters with the golden file. Run with -update to rewrite them.
func TestGoldenRowMapping(t *testing.T) {
	inputs, err := filepath.Glob("testdata/golden/*.input.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, path := range inputs {
		name := strings.TrimSuffix(filepath.Base(path), ".input.json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var in goldenInput
			if err := json.Unmarshal(data, &in); err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, nil, nil)
			for table, fields := range in.Tables {
				if err := e.srv.CreateTable(testProject, testDataset, table, fields); err != nil {
					t.Fatal(err)
				}
			}
			out := goldenOutput{Tables: map[string]goldenTable{}}
			sent := 0
			for _, batch := range in.Batches {
				events := make([]spec.Event, len(batch))
				for i, raw := range batch {
					events[i] = event(t, string(raw))
				}
				sent += len(events)
				err := e.in.Batch(e.ctx, events)
				var be *opentrack.BatchError
				switch {
				case err == nil:
				case errors.As(err, &be):
					for i, ferr := range be.Failed {
						if out.Failed == nil {
							out.Failed = map[string]string{}
						}
						out.Failed[events[i].Fields().MessageID] = ferr.Error()
					}
				default:
					t.Fatalf("Batch: %v", err)
				}
			}
			for _, table := range e.srv.Tables(testProject, testDataset) {
				fields, _ := e.srv.Schema(testProject, testDataset, table)
				typ, field := e.srv.Partitioning(testProject, testDataset, table)
				gt := goldenTable{Schema: fields, Rows: []map[string]any{}}
				if typ != "" {
					gt.Partitioning = typ + " " + field
				}
				for _, r := range e.rows(table) {
					if r.InsertID == "" {
						t.Errorf("%s: row without insertId: %v", table, r.Values)
					}
					gt.Rows = append(gt.Rows, r.Values)
				}
				out.Tables[table] = gt
			}
			out.Stats = e.in.Stats()

			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(out); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			goldenPath := filepath.Join("testdata/golden", name+".golden.json")
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run with -update to accept):\n%s", goldenPath, got)
			}
			if out.Failed != nil {
				t.Errorf("events failed: %v", out.Failed)
			}
		})
	}
}
