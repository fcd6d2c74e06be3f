package fakebigquery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	bq "cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/opentrackhq/opentrack/internal/fakebigquery"
)

const project = "proj"

// mapRow is a row with an insertId, as the streaming writer sends.
type mapRow struct {
	id   string
	vals map[string]bq.Value
}

func (r mapRow) Save() (map[string]bq.Value, string, error) { return r.vals, r.id, nil }

func setup(t *testing.T) (*fakebigquery.Server, *bq.Client, context.Context) {
	t.Helper()
	srv := fakebigquery.New(nil)
	t.Cleanup(srv.Close)
	// The client retries 5xx until its context ends: always bound it.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	c, err := srv.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c, ctx
}

func apiCode(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func rowErrors(t *testing.T, err error) bq.PutMultiError {
	t.Helper()
	var pme bq.PutMultiError
	if !errors.As(err, &pme) {
		t.Fatalf("want a PutMultiError, got %v", err)
	}
	return pme
}

func TestDatasets(t *testing.T) {
	srv, c, ctx := setup(t)
	ds := c.Dataset("events")
	if _, err := ds.Metadata(ctx); apiCode(err) != http.StatusNotFound {
		t.Fatalf("missing dataset: want 404, got %v", err)
	}
	if err := ds.Create(ctx, &bq.DatasetMetadata{Location: "EU"}); err != nil {
		t.Fatal(err)
	}
	if err := ds.Create(ctx, &bq.DatasetMetadata{Location: "EU"}); apiCode(err) != http.StatusConflict {
		t.Fatalf("second create: want 409, got %v", err)
	}
	md, err := ds.Metadata(ctx)
	if err != nil || md.Location != "EU" {
		t.Fatalf("metadata = %+v, %v", md, err)
	}
	if loc, ok := srv.DatasetLocation(project, "events"); !ok || loc != "EU" {
		t.Fatalf("DatasetLocation = %q, %v", loc, ok)
	}
	if err := c.Dataset("bad-name").Create(ctx, nil); apiCode(err) != http.StatusBadRequest {
		t.Fatalf("invalid dataset name: want 400, got %v", err)
	}
}

func TestTableCreate(t *testing.T) {
	srv, c, ctx := setup(t)
	srv.CreateDataset(project, "ds", "")
	tbl := c.Dataset("ds").Table("tracks")
	schema := bq.Schema{
		{Name: "id", Type: bq.StringFieldType, Required: true},
		{Name: "received_at", Type: bq.TimestampFieldType, Required: true},
	}
	part := &bq.TimePartitioning{Type: bq.DayPartitioningType, Field: "received_at"}
	if err := tbl.Create(ctx, &bq.TableMetadata{Schema: schema, TimePartitioning: part}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Create(ctx, &bq.TableMetadata{Schema: schema}); apiCode(err) != http.StatusConflict {
		t.Fatalf("second create: want 409, got %v", err)
	}
	md, err := tbl.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Schema) != 2 || !md.Schema[0].Required || md.ETag == "" || md.TimePartitioning == nil || md.TimePartitioning.Field != "received_at" {
		t.Fatalf("metadata = %+v", md)
	}
	if typ, field := srv.Partitioning(project, "ds", "tracks"); typ != "DAY" || field != "received_at" {
		t.Fatalf("partitioning = %s %s", typ, field)
	}

	bad := []struct {
		name string
		md   *bq.TableMetadata
	}{
		{"invalid column name", &bq.TableMetadata{Schema: bq.Schema{{Name: "a-b", Type: bq.StringFieldType}}}},
		{"column starts with a digit", &bq.TableMetadata{Schema: bq.Schema{{Name: "1a", Type: bq.StringFieldType}}}},
		{"reserved prefix", &bq.TableMetadata{Schema: bq.Schema{{Name: "_PARTITIONTIME", Type: bq.TimestampFieldType}}}},
		{"duplicate column", &bq.TableMetadata{Schema: bq.Schema{{Name: "a", Type: bq.StringFieldType}, {Name: "A", Type: bq.StringFieldType}}}},
		{"partition column missing", &bq.TableMetadata{Schema: bq.Schema{{Name: "a", Type: bq.StringFieldType}}, TimePartitioning: part}},
		{"partition column not a time", &bq.TableMetadata{Schema: bq.Schema{{Name: "received_at", Type: bq.StringFieldType}}, TimePartitioning: part}},
	}
	for i, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Dataset("ds").Table("t"+string(rune('a'+i))).Create(ctx, tc.md)
			if apiCode(err) != http.StatusBadRequest {
				t.Fatalf("want 400, got %v", err)
			}
		})
	}
	if err := c.Dataset("nope").Table("t").Create(ctx, &bq.TableMetadata{Schema: schema}); apiCode(err) != http.StatusNotFound {
		t.Fatalf("missing dataset: want 404, got %v", err)
	}
}

func TestInsertAllEnforcesSchema(t *testing.T) {
	srv, c, ctx := setup(t)
	err := srv.CreateTable(project, "ds", "t", []fakebigquery.Field{
		{Name: "id", Type: "STRING", Mode: "REQUIRED"},
		{Name: "n", Type: "INTEGER"},
		{Name: "f", Type: "FLOAT"},
		{Name: "b", Type: "BOOLEAN"},
		{Name: "ts", Type: "TIMESTAMP"},
		{Name: "s", Type: "STRING"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ins := c.Dataset("ds").Table("t").Inserter()
	ins.SkipInvalidRows = true

	cases := []struct {
		name     string
		vals     map[string]bq.Value
		location string
		message  string
	}{
		{"unknown column", map[string]bq.Value{"id": "1", "bogus": "x"}, "bogus", "no such field: bogus."},
		{"string into INTEGER", map[string]bq.Value{"id": "1", "n": "abc"}, "n", "Cannot convert value to integer"},
		{"float into INTEGER", map[string]bq.Value{"id": "1", "n": 2.5}, "n", "Cannot convert value to integer"},
		{"string into FLOAT", map[string]bq.Value{"id": "1", "f": "x"}, "f", "Cannot convert value to float"},
		{"number into BOOLEAN", map[string]bq.Value{"id": "1", "b": 1}, "b", "Cannot convert value to boolean"},
		{"bad TIMESTAMP", map[string]bq.Value{"id": "1", "ts": "yesterday"}, "ts", "Could not parse 'yesterday' as a timestamp"},
		{"too many fraction digits", map[string]bq.Value{"id": "1", "ts": "2024-01-02T03:04:05.1234567Z"}, "ts", "as a timestamp"},
		{"number into STRING", map[string]bq.Value{"id": "1", "s": 3}, "s", "is not a string"},
		{"REQUIRED missing", map[string]bq.Value{"s": "x"}, "id", "Missing required field: id."},
		{"REQUIRED null", map[string]bq.Value{"id": nil}, "id", "Missing required field: id."},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ins.Put(ctx, mapRow{id: "bad" + string(rune('a'+i)), vals: tc.vals})
			pme := rowErrors(t, err)
			if len(pme) != 1 || len(pme[0].Errors) == 0 {
				t.Fatalf("errors = %v", pme)
			}
			var re *bq.Error
			if !errors.As(pme[0].Errors[0], &re) || re.Reason != "invalid" || re.Location != tc.location || !strings.Contains(re.Message, tc.message) {
				t.Fatalf("error = %v; want invalid at %s with %q", pme[0].Errors[0], tc.location, tc.message)
			}
		})
	}
	if n := len(srv.Rows(project, "ds", "t")); n != 0 {
		t.Fatalf("%d invalid rows stored", n)
	}

	good := map[string]bq.Value{
		"id": "ok", "n": json.Number("9007199254740993"), "f": "NaN", "b": true,
		"ts": "2024-01-02T03:04:05.123456+01:00", "s": "x", "S": nil,
	}
	if err := ins.Put(ctx, mapRow{id: "ok", vals: good}); err != nil {
		t.Fatal(err)
	}
	rows := srv.Rows(project, "ds", "t")
	if len(rows) != 1 || rows[0].Values["n"] != json.Number("9007199254740993") || rows[0].InsertID != "ok" {
		t.Fatalf("rows = %+v", rows)
	}
	for _, ts := range []any{"2024-01-02 03:04:05", "2024-01-02T03:04:05Z", "2024-01-02", json.Number("1704164645.5")} {
		if err := ins.Put(ctx, mapRow{id: "", vals: map[string]bq.Value{"id": "t", "ts": ts}}); err != nil {
			t.Errorf("timestamp %v rejected: %v", ts, err)
		}
	}
}

func TestInsertAllSkipInvalidRows(t *testing.T) {
	srv, c, ctx := setup(t)
	if err := srv.CreateTable(project, "ds", "t", []fakebigquery.Field{{Name: "a", Type: "STRING"}}); err != nil {
		t.Fatal(err)
	}
	rows := []mapRow{
		{id: "1", vals: map[string]bq.Value{"a": "x"}},
		{id: "2", vals: map[string]bq.Value{"bogus": "x"}},
		{id: "3", vals: map[string]bq.Value{"a": "y"}},
	}
	ins := c.Dataset("ds").Table("t").Inserter()

	// Without skipInvalidRows, one invalid row stops the request.
	pme := rowErrors(t, ins.Put(ctx, rows))
	if len(pme) != 3 {
		t.Fatalf("want every row reported, got %v", pme)
	}
	for _, rie := range pme {
		var re *bq.Error
		errors.As(rie.Errors[0], &re)
		want := "stopped"
		if rie.RowIndex == 1 {
			want = "invalid"
		}
		if re.Reason != want {
			t.Errorf("row %d: reason %q, want %q", rie.RowIndex, re.Reason, want)
		}
	}
	if n := len(srv.Rows(project, "ds", "t")); n != 0 {
		t.Fatalf("stopped request stored %d rows", n)
	}

	ins.SkipInvalidRows = true
	pme = rowErrors(t, ins.Put(ctx, rows))
	if len(pme) != 1 || pme[0].RowIndex != 1 || pme[0].InsertID != "2" {
		t.Fatalf("errors = %v", pme)
	}
	if n := len(srv.Rows(project, "ds", "t")); n != 2 {
		t.Fatalf("stored %d rows, want 2", n)
	}

	ins.IgnoreUnknownValues = true
	if err := ins.Put(ctx, rows); err != nil {
		t.Fatal(err)
	}
	// Rows 1 and 3 were deduplicated by insertId; row 2 lands without its
	// unknown value.
	got := srv.Rows(project, "ds", "t")
	if len(got) != 3 || len(got[2].Values) != 0 || got[2].InsertID != "2" {
		t.Fatalf("rows = %+v", got)
	}
	if st := srv.Stats(); st.DuplicateRows != 2 || st.StoredRows != 3 || st.ReceivedRows != 9 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestInsertAllDedupesInsertID(t *testing.T) {
	srv, c, ctx := setup(t)
	if err := srv.CreateTable(project, "ds", "t", []fakebigquery.Field{{Name: "a", Type: "STRING"}}); err != nil {
		t.Fatal(err)
	}
	ins := c.Dataset("ds").Table("t").Inserter()
	for range 3 {
		if err := ins.Put(ctx, []mapRow{{id: "m1", vals: map[string]bq.Value{"a": "x"}}, {id: "m2", vals: map[string]bq.Value{"a": "y"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(srv.Rows(project, "ds", "t")); n != 2 {
		t.Fatalf("stored %d rows, want 2", n)
	}
	if st := srv.Stats(); st.DuplicateRows != 4 {
		t.Fatalf("duplicates = %d, want 4", st.DuplicateRows)
	}
	resp, err := http.Get(srv.URL() + "/fakebigquery/dump")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var dump map[string]fakebigquery.DumpTable
	if err := json.NewDecoder(resp.Body).Decode(&dump); err != nil {
		t.Fatal(err)
	}
	if d := dump["proj:ds.t"]; len(d.Rows) != 2 || d.Rows[1]["a"] != "y" || len(d.Schema) != 1 {
		t.Fatalf("dump = %+v", dump)
	}
}

func TestInsertAllMissingTable(t *testing.T) {
	srv, c, ctx := setup(t)
	srv.CreateDataset(project, "ds", "")
	err := c.Dataset("ds").Table("nope").Inserter().Put(ctx, mapRow{id: "1", vals: map[string]bq.Value{"a": "x"}})
	if apiCode(err) != http.StatusNotFound {
		t.Fatalf("want 404, got %v", err)
	}
}

func TestSchemaPatch(t *testing.T) {
	srv, c, ctx := setup(t)
	err := srv.CreateTable(project, "ds", "t", []fakebigquery.Field{
		{Name: "id", Type: "STRING", Mode: "REQUIRED"},
		{Name: "n", Type: "INTEGER"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.Dataset("ds").Table("t")
	md, err := tbl.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	base := md.Schema
	with := func(extra ...*bq.FieldSchema) bq.Schema {
		var s bq.Schema
		for _, f := range base {
			cp := *f
			s = append(s, &cp)
		}
		return append(s, extra...)
	}

	refused := []struct {
		name   string
		schema bq.Schema
		msg    string
	}{
		{"add REQUIRED", with(&bq.FieldSchema{Name: "x", Type: bq.StringFieldType, Required: true}), "Cannot add required fields"},
		{"change type", bq.Schema{base[0], {Name: "n", Type: bq.StringFieldType}}, "changed type from INTEGER to STRING"},
		{"remove column", bq.Schema{base[0]}, "Field n is missing in new schema"},
		{"NULLABLE to REQUIRED", bq.Schema{base[0], {Name: "n", Type: bq.IntegerFieldType, Required: true}}, "changed mode from NULLABLE to REQUIRED"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tbl.Update(ctx, bq.TableMetadataToUpdate{Schema: tc.schema}, md.ETag)
			var ge *googleapi.Error
			if !errors.As(err, &ge) || ge.Code != http.StatusBadRequest || !strings.Contains(ge.Message, tc.msg) {
				t.Fatalf("want 400 %q, got %v", tc.msg, err)
			}
		})
	}

	// Adding a NULLABLE column and relaxing REQUIRED are allowed.
	relaxed := with(&bq.FieldSchema{Name: "plan", Type: bq.StringFieldType})
	relaxed[0].Required = false
	md2, err := tbl.Update(ctx, bq.TableMetadataToUpdate{Schema: relaxed}, md.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if md2.ETag == md.ETag || len(md2.Schema) != 3 || md2.Schema[0].Required {
		t.Fatalf("after patch: %+v", md2)
	}
	// The old etag no longer matches.
	_, err = tbl.Update(ctx, bq.TableMetadataToUpdate{Schema: with(&bq.FieldSchema{Name: "other", Type: bq.StringFieldType})}, md.ETag)
	if apiCode(err) != http.StatusPreconditionFailed {
		t.Fatalf("stale etag: want 412, got %v", err)
	}
	fields, _ := srv.Schema(project, "ds", "t")
	if len(fields) != 3 || fields[2].Name != "plan" || fields[2].Mode != "" && fields[2].Mode != "NULLABLE" {
		t.Fatalf("schema = %+v", fields)
	}
}

func TestFaults(t *testing.T) {
	srv, c, ctx := setup(t)
	if err := srv.CreateTable(project, "ds", "t", []fakebigquery.Field{{Name: "a", Type: "STRING"}}); err != nil {
		t.Fatal(err)
	}
	ins := c.Dataset("ds").Table("t").Inserter()
	row := mapRow{id: "m1", vals: map[string]bq.Value{"a": "x"}}

	// A 400 is not retried by the client.
	srv.AddFault(fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: http.StatusBadRequest})
	if err := ins.Put(ctx, row); apiCode(err) != http.StatusBadRequest {
		t.Fatalf("want 400, got %v", err)
	}
	// A 503 is retried by the client until the call succeeds or ctx ends.
	srv.AddFault(fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: http.StatusServiceUnavailable})
	if err := ins.Put(ctx, row); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls(fakebigquery.InsertAll); n != 3 {
		t.Fatalf("insertAll calls = %d, want 3", n)
	}
	// Applied, then answered 503: the retry's row is a duplicate.
	srv.AddFault(fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: http.StatusServiceUnavailable, Apply: true})
	row2 := mapRow{id: "m2", vals: map[string]bq.Value{"a": "y"}}
	if err := ins.Put(ctx, row2); err != nil {
		t.Fatal(err)
	}
	if n, d := len(srv.Rows(project, "ds", "t")), srv.Stats().DuplicateRows; n != 2 || d != 1 {
		t.Fatalf("rows = %d, duplicates = %d; want 2, 1", n, d)
	}
	// A call that hangs ends with the caller's context.
	srv.AddFault(fakebigquery.Fault{Op: fakebigquery.TablesGet, Delay: time.Minute, Status: http.StatusServiceUnavailable})
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := c.Dataset("ds").Table("t").Metadata(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if srv.MetadataCalls() != 1 {
		t.Fatalf("metadata calls = %d, want 1", srv.MetadataCalls())
	}
}

func TestSchemaLag(t *testing.T) {
	const lag = 200 * time.Millisecond
	srv := fakebigquery.New(&fakebigquery.Options{SchemaLag: lag})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := srv.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := srv.CreateTable(project, "ds", "t", []fakebigquery.Field{{Name: "a", Type: "STRING"}}); err != nil {
		t.Fatal(err)
	}
	tbl := c.Dataset("ds").Table("t")
	md, err := tbl.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if _, err := tbl.Update(ctx, bq.TableMetadataToUpdate{Schema: append(md.Schema, &bq.FieldSchema{Name: "b", Type: bq.StringFieldType})}, md.ETag); err != nil {
		t.Fatal(err)
	}
	after := time.Now() // the column was added between before and after
	ins := tbl.Inserter()
	err = ins.Put(ctx, mapRow{id: "1", vals: map[string]bq.Value{"a": "x", "b": "y"}})
	if time.Since(before) < lag {
		pme := rowErrors(t, err)
		if !strings.Contains(pme[0].Errors[0].Error(), "no such field: b.") {
			t.Fatalf("during the lag: %v", err)
		}
	}
	// Old columns are usable meanwhile.
	if err := ins.Put(ctx, mapRow{id: "2", vals: map[string]bq.Value{"a": "x"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(after.Add(lag)))
	if err := ins.Put(ctx, mapRow{id: "3", vals: map[string]bq.Value{"a": "x", "b": "y"}}); err != nil {
		t.Fatalf("after the lag: %v", err)
	}
}

// columns returns n STRING columns named prefix0, prefix1, ...
func columns(prefix string, n int) bq.Schema {
	s := make(bq.Schema, n)
	for i := range s {
		s[i] = &bq.FieldSchema{Name: fmt.Sprint(prefix, i), Type: bq.StringFieldType}
	}
	return s
}

func TestColumnLimit(t *testing.T) {
	for _, limit := range []int{0, 50} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			srv := fakebigquery.New(&fakebigquery.Options{MaxColumns: limit})
			defer srv.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			c, err := srv.NewClient(ctx, project)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			srv.CreateDataset(project, "ds", "")
			want := limit
			if want == 0 {
				want = fakebigquery.MaxColumns
			}
			// One column too many is refused at creation, as BigQuery
			// counts them: nested ones included.
			nested := append(columns("a", want-2), &bq.FieldSchema{Name: "r", Type: bq.RecordFieldType, Schema: columns("b", 2)})
			err = c.Dataset("ds").Table("wide").Create(ctx, &bq.TableMetadata{Schema: nested})
			var ge *googleapi.Error
			if !errors.As(err, &ge) || ge.Code != http.StatusBadRequest || !strings.Contains(ge.Message, "Too many columns") {
				t.Fatalf("create with %d columns: want 400 Too many columns, got %v", want+1, err)
			}
			// The limit itself is fine; one more by patch is refused.
			tbl := c.Dataset("ds").Table("t")
			if err := tbl.Create(ctx, &bq.TableMetadata{Schema: columns("a", want-1)}); err != nil {
				t.Fatal(err)
			}
			md, err := tbl.Metadata(ctx)
			if err != nil {
				t.Fatal(err)
			}
			md, err = tbl.Update(ctx, bq.TableMetadataToUpdate{Schema: append(md.Schema, columns("b", 1)...)}, md.ETag)
			if err != nil {
				t.Fatalf("patch to exactly the limit: %v", err)
			}
			_, err = tbl.Update(ctx, bq.TableMetadataToUpdate{Schema: append(md.Schema, columns("c", 1)...)}, md.ETag)
			if apiCode(err) != http.StatusBadRequest {
				t.Fatalf("patch past the limit: want 400, got %v", err)
			}
		})
	}
}

func TestColumnFault(t *testing.T) {
	srv, c, ctx := setup(t)
	srv.CreateDataset(project, "ds", "")
	srv.AddFault(fakebigquery.Fault{Op: fakebigquery.TablesPatch, Column: "Bad", Status: http.StatusBadRequest, Times: 2})
	srv.AddFault(fakebigquery.Fault{Op: fakebigquery.TablesInsert, Table: "other", Column: "bad", Status: http.StatusBadRequest})
	tbl := c.Dataset("ds").Table("t")
	if err := tbl.Create(ctx, &bq.TableMetadata{Schema: append(columns("a", 1), columns("bad", 1)...)}); err != nil {
		t.Fatalf("create of another table: %v", err)
	}
	md, err := tbl.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A patch that keeps bad0 but does not add "bad" passes.
	if md, err = tbl.Update(ctx, bq.TableMetadataToUpdate{Schema: append(md.Schema, columns("good", 1)...)}, md.ETag); err != nil {
		t.Fatalf("patch without the column: %v", err)
	}
	for i := range 2 {
		_, err = tbl.Update(ctx, bq.TableMetadataToUpdate{Schema: append(md.Schema, columns(fmt.Sprint("x", i, "_"), 1)...)}, md.ETag)
		if err != nil {
			t.Fatalf("patch %d without the column: %v", i, err)
		}
		md, _ = tbl.Metadata(ctx)
		_, err := tbl.Update(ctx, bq.TableMetadataToUpdate{Schema: append(md.Schema, &bq.FieldSchema{Name: "bad", Type: bq.StringFieldType})}, md.ETag)
		if apiCode(err) != http.StatusBadRequest {
			t.Fatalf("patch %d adding the column: want 400, got %v", i, err)
		}
	}
	// Times is spent: the column is taken now.
	if _, err = tbl.Update(ctx, bq.TableMetadataToUpdate{Schema: append(md.Schema, &bq.FieldSchema{Name: "bad", Type: bq.StringFieldType})}, md.ETag); err != nil {
		t.Fatalf("patch after the fault: %v", err)
	}
	// The insert fault is for another table and its column.
	if err := c.Dataset("ds").Table("other").Create(ctx, &bq.TableMetadata{Schema: columns("a", 1)}); err != nil {
		t.Fatalf("create other without the column: %v", err)
	}
	if err := c.Dataset("ds").Table("other2").Create(ctx, &bq.TableMetadata{Schema: bq.Schema{{Name: "bad", Type: bq.StringFieldType}}}); err != nil {
		t.Fatalf("create other2 with the column: %v", err)
	}
	srv.DeleteTable(project, "ds", "other")
	if err := c.Dataset("ds").Table("other").Create(ctx, &bq.TableMetadata{Schema: bq.Schema{{Name: "bad", Type: bq.StringFieldType}}}); apiCode(err) != http.StatusBadRequest {
		t.Fatalf("create other with the column: want 400, got %v", err)
	}
}

func TestInsertAllOfAGoneCallerIsNotApplied(t *testing.T) {
	srv := fakebigquery.NewHandler(nil)
	if err := srv.CreateTable(project, "ds", "t", []fakebigquery.Field{{Name: "a", Type: "STRING"}}); err != nil {
		t.Fatal(err)
	}
	body := `{"rows":[{"insertId":"1","json":{"a":"x"}}]}`
	send := func(ctx context.Context) {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/bigquery/v2/projects/proj/datasets/ds/tables/t/insertAll", strings.NewReader(body))
		srv.ServeHTTP(httptest.NewRecorder(), req)
	}
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	send(gone)
	if n := len(srv.Rows(project, "ds", "t")); n != 0 {
		t.Fatalf("a gone caller's row was stored")
	}
	send(t.Context())
	if n := len(srv.Rows(project, "ds", "t")); n != 1 {
		t.Fatalf("%d rows stored, want 1", n)
	}
}
