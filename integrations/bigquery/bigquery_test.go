package bigquery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bq "cloud.google.com/go/bigquery"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/fakebigquery"
	"github.com/opentrackhq/opentrack/spec"
)

// pages returns n page events with ids prefix-0 ... and the given
// properties JSON.
func pages(t testing.TB, prefix string, n int, props string) []spec.Event {
	out := make([]spec.Event, n)
	for i := range out {
		out[i] = event(t, fmt.Sprintf(`{"type":"page","messageId":"%s-%d","anonymousId":"a%d","name":"Home","properties":%s}`, prefix, i, i, props))
	}
	return out
}

func tracks(t testing.TB, prefix string, n int, names ...string) []spec.Event {
	out := make([]spec.Event, n)
	for i := range out {
		out[i] = event(t, fmt.Sprintf(`{"type":"track","messageId":"%s-%d","userId":"u%d","event":%q,"properties":{"n":%d,"plan":"pro"}}`,
			prefix, i, i, names[i%len(names)], i))
	}
	return out
}

func TestDelivery(t *testing.T) {
	e := newEnv(t, nil, nil)
	if d := e.in.Delivery(); d.Batch.MaxEvents != BatchMaxEvents || d.Batch.MaxBytes != BatchMaxBytes || d.Batch.Interval != BatchInterval {
		t.Fatalf("Delivery() = %+v", d)
	}
	e = newEnv(t, &Options{Delivery: opentrack.Delivery{Workers: 2, Batch: opentrack.BatchOptions{MaxEvents: 100}}}, nil)
	if d := e.in.Delivery(); d.Batch.MaxEvents != 100 || d.Batch.Interval != BatchInterval || d.Workers != 2 {
		t.Fatalf("Delivery() = %+v", d)
	}
	if e.in.Name() != "BigQuery" || Name != "BigQuery" {
		t.Fatalf("Name() = %q", e.in.Name())
	}
}

func TestInitCreatesDataset(t *testing.T) {
	srv := fakebigquery.New(nil)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client, err := srv.NewClient(ctx, testProject)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	off := mustNew(t, client, testDataset, &Options{DisableAutoTableManagement: true})
	if err := off.Init(ctx); !opentrack.IsPermanent(err) {
		t.Fatalf("missing dataset without auto management: want a permanent error, got %v", err)
	}
	if _, ok := srv.DatasetLocation(testProject, testDataset); ok {
		t.Fatal("dataset created with auto management off")
	}

	in := mustNew(t, client, testDataset, &Options{Location: "EU"})
	if err := in.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if loc, ok := srv.DatasetLocation(testProject, testDataset); !ok || loc != "EU" {
		t.Fatalf("dataset location = %q, %v; want EU", loc, ok)
	}
	// Existing: read, not created again.
	if err := mustNew(t, client, testDataset, nil).Init(ctx); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls(fakebigquery.DatasetsInsert); n != 1 {
		t.Fatalf("datasets.insert calls = %d, want 1", n)
	}
	var ce *opentrack.ConfigError
	if in, err := New(client, "bad-name", nil); in != nil || !errors.As(err, &ce) {
		t.Fatalf("invalid dataset name: want a ConfigError, got %v, %v", in, err)
	}
}

func TestSteadyStateMakesNoMetadataCalls(t *testing.T) {
	e := newEnv(t, nil, nil)
	batch := func(prefix string) []spec.Event {
		evs := tracks(t, prefix, 40, "Order Completed", "Signed Up")
		evs = append(evs, pages(t, prefix+"p", 10, `{"url":"https://x","n":1}`)...)
		return append(evs, event(t, `{"type":"identify","messageId":"`+prefix+`i","userId":"u1","traits":{"email":"a@b.co"}}`))
	}
	if err := e.in.Batch(e.ctx, batch("warm")); err != nil {
		t.Fatal(err)
	}
	before, srvBefore := e.in.Stats(), e.srv.MetadataCalls()
	for i := range 5 {
		if err := e.in.Batch(e.ctx, batch(fmt.Sprint("steady", i))); err != nil {
			t.Fatal(err)
		}
	}
	after := e.in.Stats()
	if after.MetadataCalls != before.MetadataCalls || e.srv.MetadataCalls() != srvBefore {
		t.Fatalf("steady state made metadata calls: integration %d -> %d, stand-in %d -> %d",
			before.MetadataCalls, after.MetadataCalls, srvBefore, e.srv.MetadataCalls())
	}
	// Six tables (tracks, two event tables, pages, identifies, users), one
	// request each per batch.
	if got := after.InsertAllCalls - before.InsertAllCalls; got != 5*6 {
		t.Fatalf("insertAll calls = %d, want 30", got)
	}
	if n := len(e.rows("tracks")); n != 6*40 {
		t.Fatalf("tracks rows = %d", n)
	}
}

func TestRequestLimits(t *testing.T) {
	t.Run("rows", func(t *testing.T) {
		e := newEnv(t, nil, nil)
		if err := e.in.Batch(e.ctx, pages(t, "p", 1200, `{"k":"v"}`)); err != nil {
			t.Fatal(err)
		}
		if got := e.srv.Calls(fakebigquery.InsertAll); got != 3 {
			t.Fatalf("insertAll calls = %d, want 3 (500 + 500 + 200)", got)
		}
		if st := e.srv.Stats(); st.MaxRequestRows != DefaultMaxRowsPerRequest || st.StoredRows != 1200 {
			t.Fatalf("stand-in stats = %+v", st)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		const limit = 16 << 10
		e := newEnv(t, &Options{MaxRequestBytes: limit}, nil)
		big := fmt.Sprintf(`{"text":%q,"html":%q}`, strings.Repeat("x", 1500), strings.Repeat("<&>\n", 100))
		if err := e.in.Batch(e.ctx, pages(t, "p", 60, big)); err != nil {
			t.Fatal(err)
		}
		st := e.srv.Stats()
		if st.MaxRequestBytes > limit {
			t.Fatalf("a request of %d bytes exceeds the %d limit", st.MaxRequestBytes, limit)
		}
		if st.StoredRows != 60 || e.srv.Calls(fakebigquery.InsertAll) < 6 {
			t.Fatalf("stored %d rows in %d calls", st.StoredRows, e.srv.Calls(fakebigquery.InsertAll))
		}
		if st.MaxRequestBytes < limit/2 {
			t.Fatalf("requests of at most %d bytes: the size estimate is too loose", st.MaxRequestBytes)
		}
	})
}

func TestSchemaPatchLosesEtagRace(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := e.in.Batch(e.ctx, pages(t, "p1", 1, `{"url":"https://x"}`)); err != nil {
		t.Fatal(err)
	}
	// Another writer adds a column after our schema was cached.
	other, err := e.srv.NewClient(e.ctx, testProject)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tbl := other.Dataset(testDataset).Table("pages")
	md, err := tbl.Metadata(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tbl.Update(e.ctx, bq.TableMetadataToUpdate{Schema: append(md.Schema, &bq.FieldSchema{Name: "plan", Type: bq.IntegerFieldType})}, md.ETag); err != nil {
		t.Fatal(err)
	}

	if err := e.in.Batch(e.ctx, pages(t, "p2", 1, `{"plan":"pro","other":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Calls(fakebigquery.TablesPatch); n != 3 {
		t.Fatalf("tables.patch calls = %d, want 3 (theirs, ours refused with 412, ours again)", n)
	}
	schema := e.schema(t, "pages")
	if schema["plan"] != "INTEGER" || schema["other"] != "STRING" {
		t.Fatalf("schema = %v", schema)
	}
	rows := e.rows("pages")
	if len(rows) != 2 || rows[1].Values["other"] != "x" || rows[1].Values["plan"] != nil {
		t.Fatalf("rows = %+v", rows)
	}
	if st := e.in.Stats(); st.TypeConflicts != 1 || st.ColumnsAdded != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestRowsRejectedForSchemaAreRetriedAlone(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := e.in.Batch(e.ctx, pages(t, "p1", 2, `{"plan":"pro","note":"n"}`)); err != nil {
		t.Fatal(err)
	}
	// The table is recreated behind our back: plan is now an INTEGER and
	// note is gone. The cached schema is wrong.
	e.srv.DeleteTable(testProject, testDataset, "pages")
	fields := []fakebigquery.Field{
		{Name: "id", Type: "STRING", Mode: "REQUIRED"}, {Name: "received_at", Type: "TIMESTAMP"},
		{Name: "timestamp", Type: "TIMESTAMP"}, {Name: "uuid_ts", Type: "TIMESTAMP"}, {Name: "loaded_at", Type: "TIMESTAMP"},
		{Name: "anonymous_id", Type: "STRING"}, {Name: "name", Type: "STRING"}, {Name: "plan", Type: "INTEGER"},
	}
	if err := e.srv.CreateTable(testProject, testDataset, "pages", fields); err != nil {
		t.Fatal(err)
	}
	evs := pages(t, "p2", 3, `{"plan":"pro","note":"n"}`)
	evs = append(evs, pages(t, "p3", 2, `{"plan":7}`)...)
	if err := e.in.Batch(e.ctx, evs); err != nil {
		t.Fatal(err)
	}
	rows := e.rows("pages")
	if len(rows) != 5 {
		t.Fatalf("%d rows, want 5", len(rows))
	}
	for _, r := range rows {
		if strings.HasPrefix(r.InsertID, "p2-") && (r.Values["plan"] != nil || r.Values["note"] != "n") {
			t.Errorf("row %s = %v; want plan null and note n", r.InsertID, r.Values)
		}
		if strings.HasPrefix(r.InsertID, "p3-") && r.Values["plan"] != json.Number("7") {
			t.Errorf("row %s = %v; want plan 7", r.InsertID, r.Values)
		}
	}
	st := e.in.Stats()
	// The two p3 rows were fine; the three p2 rows were rejected once,
	// then written again alone after the schema was reread.
	if st.RowErrors != 3 || st.SchemaRetries != 3 || e.srv.Stats().DuplicateRows != 0 {
		t.Fatalf("stats = %+v, stand-in %+v", st, e.srv.Stats())
	}
	if schema := e.schema(t, "pages"); schema["note"] != "STRING" || schema["plan"] != "INTEGER" {
		t.Fatalf("schema = %v", schema)
	}
}

func TestRefusedSchemaPatchDropsNewValues(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := e.in.Batch(e.ctx, pages(t, "p1", 1, `{"a":"x"}`)); err != nil {
		t.Fatal(err)
	}
	// BigQuery refuses the patch (a 400: invalid).
	e.srv.AddFault(fakebigquery.Fault{Op: fakebigquery.TablesPatch, Status: http.StatusBadRequest})
	if err := e.in.Batch(e.ctx, pages(t, "p2", 2, `{"a":"y","b":"z"}`)); err != nil {
		t.Fatal(err)
	}
	// The refusal is remembered for its backoff: no new patch for the
	// same column meanwhile.
	if err := e.in.Batch(e.ctx, pages(t, "p3", 1, `{"b":"z"}`)); err != nil {
		t.Fatal(err)
	}
	rows := e.rows("pages")
	if len(rows) != 4 || rows[1].Values["a"] != "y" || rows[1].Values["b"] != nil {
		t.Fatalf("rows = %+v", rows)
	}
	if n := e.srv.Calls(fakebigquery.TablesPatch); n != 1 {
		t.Fatalf("tables.patch calls = %d, want 1", n)
	}
	if st := e.in.Stats(); st.DroppedFields != 3 {
		t.Fatalf("dropped = %d, want 3", st.DroppedFields)
	}
}

func TestDeletedTableIsRecreated(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := e.in.Batch(e.ctx, pages(t, "p1", 1, `{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	e.srv.DeleteTable(testProject, testDataset, "pages")
	if err := e.in.Batch(e.ctx, pages(t, "p2", 2, `{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if n := len(e.rows("pages")); n != 2 {
		t.Fatalf("%d rows in the recreated table, want 2", n)
	}
	if st := e.in.Stats(); st.TablesCreated != 2 {
		t.Fatalf("tables created = %d, want 2", st.TablesCreated)
	}
}

func TestValueRejectedTwiceIsDropped(t *testing.T) {
	e := newEnv(t, nil, nil)
	// A DATE column: strings pass through to BigQuery, which rejects this
	// one. The row lands without it.
	fields := []fakebigquery.Field{{Name: "id", Type: "STRING", Mode: "REQUIRED"}, {Name: "received_at", Type: "TIMESTAMP"}, {Name: "day", Type: "DATE"}}
	if err := e.srv.CreateTable(testProject, testDataset, "pages", fields); err != nil {
		t.Fatal(err)
	}
	if err := e.in.Batch(e.ctx, pages(t, "p", 1, `{"day":"someday","ok":"yes"}`)); err != nil {
		t.Fatal(err)
	}
	rows := e.rows("pages")
	if len(rows) != 1 || rows[0].Values["day"] != nil || rows[0].Values["ok"] != "yes" {
		t.Fatalf("rows = %+v", rows)
	}
	if st := e.in.Stats(); st.SchemaRetries != 2 || st.DroppedFields != 1 || st.RowErrors != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestUnfillableRequiredColumnFailsPermanently(t *testing.T) {
	e := newEnv(t, nil, nil)
	fields := []fakebigquery.Field{{Name: "id", Type: "STRING", Mode: "REQUIRED"}, {Name: "tenant", Type: "STRING", Mode: "REQUIRED"}}
	if err := e.srv.CreateTable(testProject, testDataset, "aliases", fields); err != nil {
		t.Fatal(err)
	}
	evs := []spec.Event{
		event(t, `{"type":"page","messageId":"p1","anonymousId":"a"}`),
		event(t, `{"type":"alias","messageId":"al1","userId":"u","previousId":"a"}`),
	}
	err := e.in.Batch(e.ctx, evs)
	var be *opentrack.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !opentrack.IsPermanent(be.Failed[1]) {
		t.Fatalf("want event 1 failed permanently, got %v", err)
	}
	if len(e.rows("pages")) != 1 {
		t.Fatal("the page was not delivered")
	}
}

func TestPartialFailureNamesEvents(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := e.in.Batch(e.ctx, append(pages(t, "w", 1, `{}`), tracks(t, "w", 1, "x")...)); err != nil {
		t.Fatal(err)
	}
	e.srv.AddFault(fakebigquery.Fault{Op: fakebigquery.InsertAll, Table: "pages", Status: http.StatusForbidden, Reason: "accessDenied"})
	evs := []spec.Event{tracks(t, "t", 1, "x")[0], pages(t, "p", 1, `{}`)[0], tracks(t, "t2", 1, "x")[0]}
	err := e.in.Batch(e.ctx, evs)
	var be *opentrack.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[1] == nil || !opentrack.IsPermanent(be.Failed[1]) {
		t.Fatalf("want only event 1 failed permanently, got %v", err)
	}
	if n := len(e.rows("tracks")); n != 3 {
		t.Fatalf("tracks rows = %d, want 3", n)
	}
}

func TestRequestTimeoutBoundsClientRetries(t *testing.T) {
	e := newEnv(t, &Options{RequestTimeout: 300 * time.Millisecond}, nil)
	if err := e.in.Batch(e.ctx, pages(t, "w", 1, `{}`)); err != nil {
		t.Fatal(err)
	}
	// insertAll answers 503 for good; the client would retry it until its
	// context ends.
	e.srv.AddFault(fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: http.StatusServiceUnavailable, Times: 1000})
	start := time.Now()
	err := e.in.Batch(e.ctx, pages(t, "p", 2, `{}`))
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("Batch took %v", elapsed)
	}
	var be *opentrack.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 || opentrack.IsPermanent(be.Failed[0]) {
		t.Fatalf("want both events failed and retryable, got %v", err)
	}
}

func TestAutoManagementOff(t *testing.T) {
	srv := fakebigquery.New(nil)
	defer srv.Close()
	fields := []fakebigquery.Field{
		{Name: "id", Type: "STRING", Mode: "REQUIRED"}, {Name: "received_at", Type: "TIMESTAMP"},
		{Name: "anonymous_id", Type: "STRING"}, {Name: "url", Type: "STRING"},
	}
	if err := srv.CreateTable(testProject, testDataset, "pages", fields); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client, err := srv.NewClient(ctx, testProject)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	in := mustNew(t, client, testDataset, &Options{DisableAutoTableManagement: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := in.Init(ctx); err != nil {
		t.Fatal(err)
	}
	evs := append(pages(t, "p", 2, `{"url":"https://x","extra":1}`), tracks(t, "t", 1, "x")...)
	err = in.Batch(ctx, evs)
	var be *opentrack.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !opentrack.IsPermanent(be.Failed[2]) {
		t.Fatalf("want the track failed permanently (no table), got %v", err)
	}
	rows := srv.Rows(testProject, testDataset, "pages")
	if len(rows) != 2 || rows[0].Values["url"] != "https://x" {
		t.Fatalf("rows = %+v", rows)
	}
	for _, op := range []fakebigquery.Op{fakebigquery.TablesInsert, fakebigquery.TablesPatch, fakebigquery.DatasetsInsert} {
		if n := srv.Calls(op); n != 0 {
			t.Errorf("%s called %d times with auto management off", op, n)
		}
	}
	// extra, name, timestamp, uuid_ts, loaded_at have no column: 5 per row.
	if st := in.Stats(); st.DroppedFields != 10 {
		t.Fatalf("dropped = %d, want 10", st.DroppedFields)
	}
}

func TestConflictIsLoggedOnce(t *testing.T) {
	var logs logBuffer
	e := newEnv(t, &Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil)
	clock := fixedNow
	e.in.clock = func() time.Time { return clock }
	if err := e.in.Batch(e.ctx, pages(t, "a", 1, `{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := e.in.Batch(e.ctx, pages(t, fmt.Sprint("b", i), 2, `{"n":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Count(logs.String(), "values left out of stored rows"); got != 1 {
		t.Fatalf("conflicts logged %d times within a minute, want 1:\n%s", got, logs.String())
	}
	if st := e.in.Stats(); st.TypeConflicts != 6 {
		t.Fatalf("conflicts = %d, want 6", st.TypeConflicts)
	}
	if n := len(e.rows("pages")); n != 7 {
		t.Fatalf("%d rows, want 7", n)
	}
	// A minute on, the next conflict logs the count since the first line.
	clock = clock.Add(dropLogInterval)
	if err := e.in.Batch(e.ctx, pages(t, "c", 1, `{"n":"x"}`)); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "values left out") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 || !strings.Contains(lines[1], "values=6") || !strings.Contains(lines[1], "events=6") || !strings.Contains(lines[1], `reason="type conflict"`) {
		t.Fatalf("second summary: %s", lines[len(lines)-1])
	}
	// Close logs what is left: nothing here.
	if err := e.in.Close(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(logs.String(), "values left out of stored rows"); got != 2 {
		t.Fatalf("Close logged an empty summary:\n%s", logs.String())
	}
}

func TestConcurrentBatchesEvolveOneTable(t *testing.T) {
	e := newEnv(t, nil, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			props := fmt.Sprintf(`{"common":1,"col_%d":"x","other_%d":%d}`, w, w, w)
			errs <- e.in.Batch(e.ctx, pages(t, fmt.Sprint("w", w), 20, props))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.rows("pages")); n != 160 {
		t.Fatalf("%d rows, want 160", n)
	}
	schema := e.schema(t, "pages")
	for w := range 8 {
		if schema[fmt.Sprint("col_", w)] != "STRING" || schema[fmt.Sprint("other_", w)] != "INTEGER" {
			t.Fatalf("schema lacks worker %d's columns: %v", w, schema)
		}
	}
	for _, r := range e.rows("pages") {
		var w int
		fmt.Sscanf(r.InsertID, "w%d-", &w)
		if r.Values[fmt.Sprint("col_", w)] != "x" || r.Values["common"] != json.Number("1") {
			t.Fatalf("row %s = %v", r.InsertID, r.Values)
		}
	}
}

func TestPerCallMethods(t *testing.T) {
	e := newEnv(t, nil, nil)
	calls := []struct {
		table string
		call  func() error
	}{
		{"tracks", func() error {
			return e.in.Track(e.ctx, event(t, `{"type":"track","messageId":"t","userId":"u","event":"Clicked"}`).(*spec.Track))
		}},
		{"users", func() error {
			return e.in.Identify(e.ctx, event(t, `{"type":"identify","messageId":"i","userId":"u","traits":{"a":1}}`).(*spec.Identify))
		}},
		{"pages", func() error {
			return e.in.Page(e.ctx, event(t, `{"type":"page","messageId":"p","userId":"u"}`).(*spec.Page))
		}},
		{"screens", func() error {
			return e.in.Screen(e.ctx, event(t, `{"type":"screen","messageId":"s","userId":"u"}`).(*spec.Screen))
		}},
		{"groups", func() error {
			return e.in.Group(e.ctx, event(t, `{"type":"group","messageId":"g","userId":"u","groupId":"g"}`).(*spec.Group))
		}},
		{"aliases", func() error {
			return e.in.Alias(e.ctx, event(t, `{"type":"alias","messageId":"al","userId":"u","previousId":"a"}`).(*spec.Alias))
		}},
	}
	for _, c := range calls {
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.table, err)
		}
		if n := len(e.rows(c.table)); n != 1 {
			t.Fatalf("%s holds %d rows, want 1", c.table, n)
		}
	}
	// A single failed event comes back as its own error, not a BatchError.
	e.srv.AddFault(fakebigquery.Fault{Op: fakebigquery.InsertAll, Status: http.StatusBadRequest})
	err := e.in.Page(e.ctx, event(t, `{"type":"page","messageId":"p2","userId":"u"}`).(*spec.Page))
	var be *opentrack.BatchError
	if err == nil || errors.As(err, &be) || !opentrack.IsPermanent(err) {
		t.Fatalf("want a plain permanent error, got %v", err)
	}
}

func TestEventWithoutMessageIDIsDeduped(t *testing.T) {
	e := newEnv(t, nil, nil)
	ev := &spec.Track{Common: spec.Common{Type: spec.TypeTrack, UserID: "u"}, Event: "Built In Go",
		Properties: map[string]any{"price": 9.5, "n": 3, "at": time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}}
	for range 2 {
		if err := e.in.Track(e.ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	rows := e.rows("built_in_go")
	if len(rows) != 1 || !strings.HasPrefix(rows[0].Values["id"].(string), "ot-") {
		t.Fatalf("rows = %+v", rows)
	}
	if schema := e.schema(t, "built_in_go"); schema["price"] != "FLOAT" || schema["n"] != "INTEGER" || schema["at"] != "TIMESTAMP" {
		t.Fatalf("schema = %v", schema)
	}
}

func TestClose(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := e.in.Close(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.in.Close(e.ctx); err != nil {
		t.Fatal(err)
	}
	err := e.in.Batch(e.ctx, pages(t, "p", 1, `{}`))
	if !errors.Is(err, opentrack.ErrClosed) || !opentrack.IsPermanent(err) || err.Error() != "bigquery: opentrack: closed" {
		t.Fatalf("after Close: want a permanent ErrClosed, got %v", err)
	}
	// The caller's client is still usable.
	if _, err := e.in.client.Dataset(testDataset).Metadata(e.ctx); err != nil {
		t.Fatalf("Close closed the caller's client: %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	srv := fakebigquery.New(nil)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	badFile := filepath.Join(dir, "creds.json")
	if err := os.WriteFile(badFile, []byte(`{"type":"mystery"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	envOf := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	emu := []string{"BIGQUERY_PROJECT_ID", testProject, "BIGQUERY_DATASET", testDataset, "BIGQUERY_EMULATOR_HOST", srv.URL()}

	for _, tc := range []struct {
		name  string
		env   []string
		field string // the ConfigError's Field; "" means ErrNotConfigured
		err   string
	}{
		{"unset", nil, "", ""},
		{"credentials only", []string{"GOOGLE_APPLICATION_CREDENTIALS", badFile}, "", ""},
		{"blank", []string{"BIGQUERY_PROJECT_ID", "  ", "BIGQUERY_DATASET", ""}, "", ""},
		{"no dataset", []string{"BIGQUERY_PROJECT_ID", "p"}, "BIGQUERY_DATASET", "must be set when BIGQUERY_PROJECT_ID is"},
		{"no project", []string{"BIGQUERY_DATASET", "d"}, "BIGQUERY_PROJECT_ID", "must be set when BIGQUERY_DATASET is"},
		{"location alone", []string{"BIGQUERY_LOCATION", "EU"}, "BIGQUERY_PROJECT_ID", "must be set when BIGQUERY_LOCATION is"},
		{"emulator without dataset", []string{"BIGQUERY_EMULATOR_HOST", srv.URL(), "BIGQUERY_PROJECT_ID", "p"}, "BIGQUERY_DATASET", "must be set when BIGQUERY_PROJECT_ID is"},
		{"invalid dataset", []string{"BIGQUERY_PROJECT_ID", "p", "BIGQUERY_DATASET", "a-b"}, "BIGQUERY_DATASET", "letters, digits and underscores"},
		{"invalid auto management", append(emu, "BIGQUERY_AUTO_TABLE_MANAGEMENT", "sometimes"), "BIGQUERY_AUTO_TABLE_MANAGEMENT", "want true or false"},
		{"inline credentials not JSON", []string{"BIGQUERY_PROJECT_ID", "p", "BIGQUERY_DATASET", "d", "GOOGLE_APPLICATION_CREDENTIALS_JSON", "nope"}, "GOOGLE_APPLICATION_CREDENTIALS_JSON", "not a credentials JSON"},
		{"credentials file missing", []string{"BIGQUERY_PROJECT_ID", "p", "BIGQUERY_DATASET", "d", "GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(dir, "none.json")}, "GOOGLE_APPLICATION_CREDENTIALS", "no such file"},
		{"credentials type unknown", []string{"BIGQUERY_PROJECT_ID", "p", "BIGQUERY_DATASET", "d", "GOOGLE_APPLICATION_CREDENTIALS", badFile}, "GOOGLE_APPLICATION_CREDENTIALS", `unsupported credentials type "mystery"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := FromEnv(ctx, envOf(tc.env...))
			if in != nil {
				t.Fatalf("want no integration, got one (err %v)", err)
			}
			if tc.field == "" {
				if err != opentrack.ErrNotConfigured {
					t.Fatalf("want ErrNotConfigured, got %v", err)
				}
				return
			}
			var ce *opentrack.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(ce.Reason, tc.err) {
				t.Fatalf("want a ConfigError on %s about %q, got %v", tc.field, tc.err, err)
			}
		})
	}

	t.Run("emulator", func(t *testing.T) {
		in, err := FromEnv(ctx, envOf(append(emu, "BIGQUERY_LOCATION", "EU", "BIGQUERY_AUTO_TABLE_MANAGEMENT", "true")...))
		if err != nil || in == nil {
			t.Fatalf("FromEnv = %v, %v", in, err)
		}
		in.log = slog.New(slog.NewTextHandler(io.Discard, nil))
		if err := in.Init(ctx); err != nil {
			t.Fatal(err)
		}
		if loc, _ := srv.DatasetLocation(testProject, testDataset); loc != "EU" {
			t.Fatalf("dataset location = %q, want EU", loc)
		}
		if err := in.Batch(ctx, pages(t, "p", 1, `{}`)); err != nil {
			t.Fatal(err)
		}
		if n := len(srv.Rows(testProject, testDataset, "pages")); n != 1 {
			t.Fatalf("%d rows, want 1", n)
		}
		if err := in.Close(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("emulator without scheme, auto management off", func(t *testing.T) {
		host := strings.TrimPrefix(srv.URL(), "http://")
		in, err := FromEnv(ctx, envOf("BIGQUERY_PROJECT_ID", testProject, "BIGQUERY_DATASET", "other", "BIGQUERY_EMULATOR_HOST", host, "BIGQUERY_AUTO_TABLE_MANAGEMENT", "false"))
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close(ctx)
		in.log = slog.New(slog.NewTextHandler(io.Discard, nil))
		if err := in.Init(ctx); !opentrack.IsPermanent(err) {
			t.Fatalf("Init of a missing dataset with auto management off: want a permanent error, got %v", err)
		}
	})
}
