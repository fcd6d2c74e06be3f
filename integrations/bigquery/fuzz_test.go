package bigquery

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack/spec"
)

// validColumn is BigQuery's rule for a column name, as the stand-in enforces
// it, without the reserved prefixes.
var validColumn = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,299}$`)

// FuzzMapEvent maps events decoded from arbitrary JSON and checks that every
// row's columns are names BigQuery takes, each once, and that every value
// left out is accounted for.
func FuzzMapEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"track","messageId":"m","userId":"u","event":"Order Completed","properties":{"revenue":12.5,"a":{"b":{"c":1}},"1st":true,"!!":1,"userId":"x","tags":[1,"a"]}}`,
		`{"type":"identify","userId":"u","traits":{"email":"a@b.co","_PARTITIONTIME":"x","__root__":1,"ÄÖ":2,"aB_c":null}}`,
		`{"type":"page","anonymousId":"a","name":"Home","properties":{"name":"Home","category":"x","id":"e"},"context":{"page":{"url":"u"},"ip":"1.2.3.4"}}`,
		`{"type":"group","userId":"u","groupId":"g","traits":{"n":1e400,"m":-0,"t":"2024-01-02T03:04:05Z"}}`,
		`{"type":"alias","userId":"u","previousId":"p"}`,
		`{"type":"screen","userId":"u","name":"S","properties":{"_table_x":1,"_file_y":2}}`,
		`{"type":"track","userId":"u","event":"` + strings.Repeat("Long Name ", 120) + `","properties":{"` + strings.Repeat("k", 400) + `":1}}`,
	} {
		f.Add([]byte(s))
	}
	var m mapper
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := spec.Decode(data, "")
		if err != nil || e == nil {
			return
		}
		out := make(map[string][]*row)
		var order []string
		if err := m.mapEvent(e, 0, now, out, &order); err != nil {
			return
		}
		for _, table := range order {
			if !validTable(table) {
				t.Fatalf("table name %q", table)
			}
			for _, r := range out[table] {
				seen := map[string]bool{}
				for _, f := range r.fields {
					if !validColumn.MatchString(f.name) || reservedPrefix(f.name) {
						t.Fatalf("%s: column %q is not a name BigQuery takes", table, f.name)
					}
					if seen[f.name] {
						t.Fatalf("%s: column %q twice", table, f.name)
					}
					seen[f.name] = true
				}
				for _, l := range r.mapped {
					if l.reason != DropUnnamedKey && l.reason != DropReservedName || l.column == "" && l.reason == DropReservedName {
						t.Fatalf("%s: lost %+v", table, l)
					}
				}
			}
		}
	})
}

// validTableRE is BigQuery's rule for a table name, as the stand-in
// enforces it, with a length of at most 1,024 bytes.
var validTableRE = regexp.MustCompile(`^[\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}]+$`)

func validTable(name string) bool { return len(name) <= 1024 && validTableRE.MatchString(name) }

func reservedPrefix(name string) bool {
	upper := strings.ToUpper(name)
	for _, p := range []string{"_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLON_"} {
		if strings.HasPrefix(upper, p) {
			return true
		}
	}
	return false
}
