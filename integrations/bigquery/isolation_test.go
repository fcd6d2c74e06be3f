package bigquery

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/fakebigquery"
	"github.com/opentrackhq/opentrack/spec"
)

// maxEventBytes is the collector's limit of one event, as Segment's.
const maxEventBytes = 32 << 10

// wideEvents returns n track events of name, each with keys distinct context
// keys (distinct across the events too), each under the collector's 32 KB
// limit: what anyone holding the public write key can send.
func wideEvents(t testing.TB, prefix, name string, n, keys int) []spec.Event {
	t.Helper()
	out := make([]spec.Event, n)
	for i := range out {
		var b strings.Builder
		fmt.Fprintf(&b, `{"type":"track","messageId":"%s-%d","anonymousId":"x","event":%q,"context":{`, prefix, i, name)
		for k := range keys {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%c%03x":1`, 'a'+i, k)
		}
		b.WriteString(`}}`)
		if b.Len() > maxEventBytes {
			t.Fatalf("a wide event of %d bytes is over the collector's limit", b.Len())
		}
		out[i] = event(t, b.String())
	}
	return out
}

// seatEvents returns n ordinary track events of name with a seats property.
func seatEvents(t testing.TB, prefix, name string, n int) []spec.Event {
	out := make([]spec.Event, n)
	for i := range out {
		out[i] = event(t, fmt.Sprintf(`{"type":"track","messageId":"%s-%d","userId":"u%d","event":%q,"context":{"ip":"10.0.0.1"},"properties":{"plan":"pro","seats":%d}}`,
			prefix, i, i, name, 10+i))
	}
	return out
}

// report is what OnDropped reported, with the event's id.
type report struct {
	id string
	Dropped
}

// reports collects what OnDropped reports; the events are the caller's, so
// it keeps their ids only.
type reports struct {
	mu   sync.Mutex
	list []report
}

func (r *reports) add(x Dropped) {
	id := x.Event.Fields().MessageID
	x.Event = nil
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, report{id, x})
}

func (r *reports) all() []report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

// seatsOf returns the seats of each row of table, by id.
func seatsOf(e *env, table string) map[string]any {
	out := map[string]any{}
	for _, r := range e.rows(table) {
		out[r.InsertID] = r.Values["seats"]
	}
	return out
}

// checkSeats checks that each ordinary event's row holds its seats.
func checkSeats(t *testing.T, e *env, table string, evs []spec.Event) {
	t.Helper()
	got := seatsOf(e, table)
	for _, ev := range evs {
		id := ev.Fields().MessageID
		want := ev.(*spec.Track).Properties["seats"]
		if fmt.Sprint(got[id]) != fmt.Sprint(want) {
			t.Errorf("%s row %s: seats = %v, want %v", table, id, got[id], want)
		}
	}
}

// countLines counts the log lines that mention msg.
func countLines(logs string, msg string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, msg) {
			n++
		}
	}
	return n
}

// TestWideEventsBesideOrdinaryOnes replays the attack of issue 15: after
// the tables exist, one batch carries five events of 2,800 distinct context
// keys each (14,000 new columns, past BigQuery's 10,000) beside five
// ordinary events with a new property. The per-event cap keeps the wide
// events to 100 new columns each; the ordinary events' column is added and
// their values land; the wide events are stored and what they lost is
// counted, reported and logged in a few lines.
func TestWideEventsBesideOrdinaryOnes(t *testing.T) {
	var logs logBuffer
	var got reports
	e := newEnv(t, &Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), OnDropped: got.add}, nil)
	if err := e.in.Batch(e.ctx, tracks(t, "warm", 1, "Signed Up")); err != nil {
		t.Fatal(err)
	}
	wide := wideEvents(t, "wide", "Signed Up", 5, 2800)
	seats := seatEvents(t, "seats", "Signed Up", 5)
	batch := append(slices.Clone(wide[:2]), seats[:3]...)
	batch = append(batch, wide[2:]...)
	batch = append(batch, seats[3:]...)
	if err := e.in.Batch(e.ctx, batch); err != nil {
		t.Fatalf("Batch: %v", err)
	}

	schema := e.schema(t, "signed_up")
	if schema["seats"] != "INTEGER" {
		t.Fatalf("seats was not added: %v", schema["seats"])
	}
	checkSeats(t, e, "signed_up", seats)
	for _, table := range []string{"tracks", "signed_up"} {
		n := 0
		for name := range e.schema(t, table) {
			if strings.HasPrefix(name, "context_") && name != "context_ip" {
				n++
			}
		}
		if n != 5*DefaultMaxNewColumnsPerEvent {
			t.Errorf("%s has %d context columns from the wide events, want %d", table, n, 5*DefaultMaxNewColumnsPerEvent)
		}
		if rows := len(e.rows(table)); rows != 11 {
			t.Errorf("%s holds %d rows, want 11", table, rows)
		}
	}
	if n := e.srv.Calls(fakebigquery.TablesPatch); n != 2 {
		t.Errorf("tables.patch calls = %d, want 2 (one per table)", n)
	}

	// Each wide event lost 2,700 values in each table, reported once per
	// table; the ordinary events lost nothing.
	const lostPer = 2800 - DefaultMaxNewColumnsPerEvent
	reps := got.all()
	if len(reps) != 10 {
		t.Fatalf("%d reports, want 10 (5 wide events x 2 tables): %+v", len(reps), reps)
	}
	for _, r := range reps {
		if !strings.HasPrefix(r.id, "wide-") || r.Reason != DropTooManyNewColumns || len(r.Columns) != lostPer || r.Err != nil {
			t.Errorf("report %s %s %s with %d columns", r.id, r.Table, r.Reason, len(r.Columns))
		}
	}
	st := e.in.Stats()
	if st.DroppedFields != 10*lostPer {
		t.Errorf("DroppedFields = %d, want %d", st.DroppedFields, 10*lostPer)
	}
	var sum uint64
	for _, d := range st.DroppedValues {
		if d.Reason != DropTooManyNewColumns || d.Table != "tracks" && d.Table != "signed_up" && d.Table != "" {
			t.Errorf("DroppedValues entry %+v", d)
		}
		sum += d.Count
	}
	if sum != 10*lostPer || len(st.DroppedValues) > maxDropKeys+1 {
		t.Errorf("DroppedValues: %d entries summing to %d, want at most %d entries summing to %d", len(st.DroppedValues), sum, maxDropKeys+1, 10*lostPer)
	}
	// One summary line per table and reason, not one per column.
	if n := countLines(logs.String(), "values left out"); n != 2 {
		t.Errorf("%d summary lines, want 2:\n%s", n, logs.String())
	}
	if n := countLines(logs.String(), "\n"); n > 20 {
		t.Errorf("%d log lines", n)
	}

	// A later event with seats keeps its value: the column is not refused.
	later := seatEvents(t, "later", "Signed Up", 1)
	later[0].(*spec.Track).Properties["seats"] = 42
	if err := e.in.Batch(e.ctx, later); err != nil {
		t.Fatal(err)
	}
	checkSeats(t, e, "signed_up", later)
}

// TestRefusedChangeIsNarrowed: with the cap raised, BigQuery itself refuses
// the batch's schema change (its column limit, lowered in the stand-in). The
// change is narrowed down: the ordinary events' column is added and their
// values land; every event is delivered; only the wide events' values are
// reported lost.
func TestRefusedChangeIsNarrowed(t *testing.T) {
	var got reports
	e := newEnv(t, &Options{MaxNewColumnsPerEvent: 5000, OnDropped: got.add}, &fakebigquery.Options{MaxColumns: 200})
	if err := e.in.Batch(e.ctx, tracks(t, "warm", 1, "Signed Up")); err != nil {
		t.Fatal(err)
	}
	wide := wideEvents(t, "wide", "Signed Up", 5, 300)
	seats := seatEvents(t, "seats", "Signed Up", 5)
	if err := e.in.Batch(e.ctx, append(slices.Clone(wide), seats...)); err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if s := e.schema(t, "signed_up"); s["seats"] != "INTEGER" {
		t.Fatalf("seats was not added")
	}
	checkSeats(t, e, "signed_up", seats)
	if n := len(e.rows("signed_up")); n != 11 {
		t.Errorf("signed_up holds %d rows, want 11", n)
	}
	// Each wide event is stored without its 300 columns, refused as a
	// whole, with BigQuery's answer.
	reps := got.all()
	if len(reps) != 10 {
		t.Fatalf("%d reports, want 10 (5 wide events x 2 tables)", len(reps))
	}
	for _, r := range reps {
		if !strings.HasPrefix(r.id, "wide-") || r.Reason != DropColumnRefused || len(r.Columns) != 300 ||
			r.Err == nil || !strings.Contains(r.Err.Error(), "Too many columns") {
			t.Errorf("report %s %s %s, %d columns (%v)", r.id, r.Table, r.Reason, len(r.Columns), r.Err)
		}
	}
	// Narrowing six groups down takes a few calls per table, not one per
	// column.
	if n := e.srv.Calls(fakebigquery.TablesPatch); n > 2*12 {
		t.Errorf("tables.patch calls = %d, want at most 24", n)
	}
	if st := e.in.Stats(); st.ColumnsRefused != 10*300 || st.DroppedFields != 10*300 {
		t.Errorf("stats = %+v", st)
	}
	// The refusals hold for the backoff: the same wide event again makes no
	// call.
	before := e.srv.Calls(fakebigquery.TablesPatch)
	again := wideEvents(t, "again", "Signed Up", 1, 300)
	if err := e.in.Batch(e.ctx, again); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Calls(fakebigquery.TablesPatch); n != before {
		t.Errorf("tables.patch calls %d -> %d for refused columns", before, n)
	}
}

func dropsOf(reps []report, table string) (events, values int) {
	for _, r := range reps {
		if r.Table == table {
			events++
			values += len(r.Columns)
		}
	}
	return events, values
}

// TestFreshDatasetWithWideEvents is the second case: on a fresh
// dataset the table is created from a batch with wide events. Creating it
// with every column is refused ("Too many columns"); it is created with the
// layout's own, and the ordinary events' columns are added: no event fails.
func TestFreshDatasetWithWideEvents(t *testing.T) {
	t.Run("default cap", func(t *testing.T) {
		var got reports
		e := newEnv(t, &Options{OnDropped: got.add}, nil)
		seats := seatEvents(t, "seats", "Signed Up", 5)
		if err := e.in.Batch(e.ctx, append(wideEvents(t, "wide", "Signed Up", 5, 2800), seats...)); err != nil {
			t.Fatalf("Batch: %v", err)
		}
		checkSeats(t, e, "signed_up", seats)
		if n := e.srv.Calls(fakebigquery.TablesPatch); n != 0 {
			t.Errorf("tables.patch calls = %d: the tables should be created with their columns", n)
		}
		if ev, _ := dropsOf(got.all(), "tracks"); ev != 5 {
			t.Errorf("%d reports for tracks, want 5", ev)
		}
	})
	t.Run("creation refused", func(t *testing.T) {
		var got reports
		var logs logBuffer
		e := newEnv(t, &Options{MaxNewColumnsPerEvent: 5000, OnDropped: got.add, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
			&fakebigquery.Options{MaxColumns: 200})
		seats := seatEvents(t, "seats", "Signed Up", 5)
		err := e.in.Batch(e.ctx, append(wideEvents(t, "wide", "Signed Up", 3, 300), seats...))
		if err != nil {
			t.Fatalf("Batch: %v", err)
		}
		checkSeats(t, e, "signed_up", seats)
		if n := len(e.rows("tracks")); n != 8 {
			t.Errorf("tracks holds %d rows, want 8", n)
		}
		if n := e.srv.Calls(fakebigquery.TablesInsert); n != 4 {
			t.Errorf("tables.insert calls = %d, want 4 (two tables, each refused once)", n)
		}
		if !strings.Contains(logs.String(), "table creation refused") {
			t.Errorf("the refused creation was not logged:\n%s", logs.String())
		}
		for _, r := range got.all() {
			if !strings.HasPrefix(r.id, "wide-") {
				t.Errorf("ordinary event %s lost %v", r.id, r.Columns)
			}
		}
	})
}

// TestRefusedColumnIsRetried: BigQuery refuses one column (a name it does
// not take, say) for a while. The other columns of the same change are
// added; the refused one's values are left out and reported with BigQuery's
// answer; it is not proposed again until its backoff has passed; then it is,
// and it lands, without a restart.
func TestRefusedColumnIsRetried(t *testing.T) {
	var got reports
	e := newEnv(t, &Options{OnDropped: got.add}, nil)
	clock := fixedNow
	e.in.clock = func() time.Time { return clock }
	if err := e.in.Batch(e.ctx, pages(t, "warm", 1, `{"a":"x"}`)); err != nil {
		t.Fatal(err)
	}
	// Refused in the whole change, with one other column, and alone.
	e.srv.AddFault(fakebigquery.Fault{Op: fakebigquery.TablesPatch, Column: "bad_name", Status: http.StatusBadRequest, Times: 3})
	evs := append(pages(t, "p1", 3, `{"seats":3}`), pages(t, "p2", 1, `{"bad_name":"v","other":1}`)...)
	if err := e.in.Batch(e.ctx, evs); err != nil {
		t.Fatal(err)
	}
	schema := e.schema(t, "pages")
	if schema["seats"] != "INTEGER" || schema["other"] != "INTEGER" || schema["bad_name"] != "" {
		t.Fatalf("schema = %v", schema)
	}
	if n := e.srv.Calls(fakebigquery.TablesPatch); n != 5 {
		t.Errorf("tables.patch calls = %d, want 5 (all, seats, bad_name+other, bad_name, other)", n)
	}
	reps := got.all()
	if len(reps) != 1 || reps[0].id != "p2-0" || reps[0].Table != "pages" || reps[0].Reason != DropColumnRefused ||
		!slices.Equal(reps[0].Columns, []string{"bad_name"}) || reps[0].Err == nil || !strings.Contains(reps[0].Err.Error(), "injected 400") {
		t.Fatalf("reports = %+v", reps)
	}
	if !opentrack.IsPermanent(reps[0].Err) {
		t.Errorf("the refusal is not marked permanent: %v", reps[0].Err)
	}

	// Within the backoff: no new proposal, the value is left out again.
	clock = clock.Add(refusalBackoff / 2)
	if err := e.in.Batch(e.ctx, pages(t, "p3", 1, `{"bad_name":"w"}`)); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Calls(fakebigquery.TablesPatch); n != 5 {
		t.Errorf("tables.patch calls = %d: the refused column was proposed again within its backoff", n)
	}
	// After it, the column is proposed again, added, and its value lands.
	clock = clock.Add(refusalBackoff)
	if err := e.in.Batch(e.ctx, pages(t, "p4", 1, `{"bad_name":"z"}`)); err != nil {
		t.Fatal(err)
	}
	rows := e.rows("pages")
	if last := rows[len(rows)-1]; last.InsertID != "p4-0" || last.Values["bad_name"] != "z" {
		t.Fatalf("last row = %+v", last)
	}
	st := e.in.Stats()
	want := []DroppedCount{{Table: "pages", Column: "bad_name", Reason: DropColumnRefused, Count: 2}}
	if !slices.Equal(st.DroppedValues, want) || st.ColumnsRefused != 1 || st.DroppedFields != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestRefusalBackoffGrows(t *testing.T) {
	e := newEnv(t, nil, nil)
	clock := fixedNow
	e.in.clock = func() time.Time { return clock }
	if err := e.in.Batch(e.ctx, pages(t, "warm", 1, `{"a":"x"}`)); err != nil {
		t.Fatal(err)
	}
	e.srv.AddFault(fakebigquery.Fault{Op: fakebigquery.TablesPatch, Column: "bad", Status: http.StatusBadRequest, Times: 100})
	var proposed []time.Duration
	start := clock
	for i := range 40 {
		before := e.srv.Calls(fakebigquery.TablesPatch)
		if err := e.in.Batch(e.ctx, pages(t, fmt.Sprint("p", i), 1, `{"bad":1}`)); err != nil {
			t.Fatal(err)
		}
		if e.srv.Calls(fakebigquery.TablesPatch) > before {
			proposed = append(proposed, clock.Sub(start))
		}
		clock = clock.Add(30 * time.Second)
	}
	// Proposed at 0, then 1, 2, 4 and 8 minutes after each refusal.
	want := []time.Duration{0, time.Minute, 3 * time.Minute, 7 * time.Minute, 15 * time.Minute}
	if !slices.Equal(proposed, want) {
		t.Fatalf("proposed at %v, want %v", proposed, want)
	}
}

// TestFullTableKeepsRoomForSmallChanges: a table a few columns short of
// BigQuery's limit gets the columns of the events that need few; an event
// that needs more than the room left gets none, without a refused call.
func TestFullTableKeepsRoomForSmallChanges(t *testing.T) {
	var got reports
	e := newEnv(t, &Options{OnDropped: got.add}, nil)
	clock := fixedNow
	e.in.clock = func() time.Time { return clock }
	fields := []fakebigquery.Field{
		{Name: "id", Type: "STRING", Mode: "REQUIRED"}, {Name: "received_at", Type: "TIMESTAMP", Mode: "REQUIRED"},
		{Name: "timestamp", Type: "TIMESTAMP"}, {Name: "uuid_ts", Type: "TIMESTAMP"}, {Name: "loaded_at", Type: "TIMESTAMP"},
		{Name: "anonymous_id", Type: "STRING"}, {Name: "name", Type: "STRING"},
	}
	for i := len(fields); i < fakebigquery.MaxColumns-10; i++ {
		fields = append(fields, fakebigquery.Field{Name: fmt.Sprint("filler_", i), Type: "STRING"})
	}
	if err := e.srv.CreateTable(testProject, testDataset, "pages", fields); err != nil {
		t.Fatal(err)
	}
	var props strings.Builder
	props.WriteString("{")
	for i := range 20 {
		fmt.Fprintf(&props, `"w%d":1,`, i)
	}
	props.WriteString(`"seats":1}`)
	evs := append(pages(t, "wide", 1, props.String()), pages(t, "small", 3, `{"seats":2}`)...)
	if err := e.in.Batch(e.ctx, evs); err != nil {
		t.Fatal(err)
	}
	if s := e.schema(t, "pages"); s["seats"] != "INTEGER" || s["w0"] != "" {
		t.Fatalf("seats %q, w0 %q", s["seats"], s["w0"])
	}
	if n := e.srv.Calls(fakebigquery.TablesPatch); n != 1 {
		t.Errorf("tables.patch calls = %d, want 1", n)
	}
	for _, r := range e.rows("pages") {
		if r.Values["seats"] == nil {
			t.Errorf("row %s lost seats", r.InsertID)
		}
	}
	reps := got.all()
	if len(reps) != 1 || reps[0].id != "wide-0" || reps[0].Reason != DropColumnLimit || len(reps[0].Columns) != 20 {
		t.Fatalf("reports = %+v", reps)
	}
	// While full, the table is read again at most once a minute, in case
	// columns were dropped.
	gets := e.srv.Calls(fakebigquery.TablesGet)
	for i := range 3 {
		if err := e.in.Batch(e.ctx, pages(t, fmt.Sprint("again", i), 1, props.String())); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.srv.Calls(fakebigquery.TablesGet); n != gets {
		t.Errorf("tables.get calls %d -> %d within a minute", gets, n)
	}
	clock = clock.Add(schemaRefresh)
	if err := e.in.Batch(e.ctx, pages(t, "later", 1, props.String())); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Calls(fakebigquery.TablesGet); n != gets+1 {
		t.Errorf("tables.get calls %d -> %d a minute later, want one more", gets, n)
	}
}

func TestOnDroppedPanicIsRecovered(t *testing.T) {
	var logs logBuffer
	e := newEnv(t, &Options{
		OnDropped: func(Dropped) { panic("boom") },
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
	}, nil)
	if err := e.in.Batch(e.ctx, pages(t, "p", 1, `{"id":"mine","ok":"yes"}`)); err != nil {
		t.Fatal(err)
	}
	if rows := e.rows("pages"); len(rows) != 1 || rows[0].Values["ok"] != "yes" {
		t.Fatalf("rows = %+v", rows)
	}
	if !strings.Contains(logs.String(), "OnDropped panicked") {
		t.Fatalf("the panic was not logged:\n%s", logs.String())
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	e := newEnv(t, nil, nil)
	for field, o := range map[string]Options{
		"RequestTimeout":        {RequestTimeout: -time.Second},
		"MaxRowsPerRequest":     {MaxRowsPerRequest: 50001},
		"MaxRequestBytes":       {MaxRequestBytes: 11 << 20},
		"MaxParallelRequests":   {MaxParallelRequests: -1},
		"MaxNewColumnsPerEvent": {MaxNewColumnsPerEvent: 10001},
		"Delivery.Workers":      {Delivery: opentrack.Delivery{Workers: -1}},
		"Delivery.Batch":        {Delivery: opentrack.Delivery{Batch: opentrack.BatchOptions{MaxEvents: -1}}},
	} {
		in, err := New(e.in.client, testDataset, &o)
		var ce *opentrack.ConfigError
		if in != nil || !errors.As(err, &ce) || ce.Field != "bigquery.Options."+field {
			t.Errorf("%s: want a ConfigError on bigquery.Options.%s, got %v, %v", field, field, in, err)
		}
	}
	if in, err := New(nil, testDataset, nil); in != nil || err == nil {
		t.Errorf("nil client: got %v, %v", in, err)
	}
	// The limits themselves are fine, and zero means the default.
	in, err := New(e.in.client, testDataset, &Options{MaxRowsPerRequest: 50000, MaxRequestBytes: 10 << 20, MaxNewColumnsPerEvent: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if in.opts.MaxRowsPerRequest != 50000 {
		t.Errorf("MaxRowsPerRequest = %d", in.opts.MaxRowsPerRequest)
	}
	in, err = New(e.in.client, testDataset, &Options{})
	if err != nil || in.opts.MaxNewColumnsPerEvent != DefaultMaxNewColumnsPerEvent || in.opts.MaxRowsPerRequest != DefaultMaxRowsPerRequest {
		t.Errorf("defaults: %+v, %v", in.opts, err)
	}
}

// TestDroppedReportsEveryReason checks a report, with the event, for each
// way a stored row can lose values that the mapping or the table decides.
func TestDroppedReportsEveryReason(t *testing.T) {
	var mu sync.Mutex
	type rec struct {
		id     string
		table  string
		reason DropReason
		cols   string
	}
	var got []rec
	e := newEnv(t, &Options{OnDropped: func(d Dropped) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, rec{d.Event.Fields().MessageID, d.Table, d.Reason, strings.Join(d.Columns, ",")})
	}}, nil)
	if err := e.in.Batch(e.ctx, pages(t, "a", 1, `{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	evs := []spec.Event{
		event(t, `{"type":"page","messageId":"conflict","anonymousId":"x","properties":{"n":"text"}}`),
		event(t, `{"type":"page","messageId":"reserved","anonymousId":"x","properties":{"user_id":"evil","ok":1}}`),
		event(t, `{"type":"page","messageId":"unnamed","anonymousId":"x","properties":{"!!":1,"ok":2}}`),
		event(t, `{"type":"page","messageId":"clean","anonymousId":"x","properties":{"n":2}}`),
	}
	if err := e.in.Batch(e.ctx, evs); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b rec) int { return strings.Compare(a.id, b.id) })
	want := []rec{
		{"conflict", "pages", DropTypeConflict, "n"},
		{"reserved", "pages", DropReservedName, "user_id"},
		{"unnamed", "pages", DropUnnamedKey, "!!"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("reports = %+v, want %+v", got, want)
	}
	st := e.in.Stats()
	if st.TypeConflicts != 1 || st.DiscardedProperties != 1 || st.DroppedFields != 1 {
		t.Fatalf("stats = %+v", st)
	}
	if b, err := json.Marshal(st.DroppedValues); err != nil || !strings.Contains(string(b), `"Column":"!!"`) {
		t.Fatalf("DroppedValues = %s", b)
	}
}
