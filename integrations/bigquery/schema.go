package bigquery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	bq "cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/internal/httpx"
)

// schemaRefresh is how often, at most, a table's schema is read again when
// rows carry columns it lacks and no schema change can add them: auto table
// management is off, or the table is full (someone may have added or dropped
// columns).
const schemaRefresh = time.Minute

// maxPatchAttempts bounds the refetch-and-retry loop of a schema patch that
// keeps losing the etag race.
const maxPatchAttempts = 5

// maxTableColumns is BigQuery's limit of columns in a table, nested ones
// included. Columns are not proposed beyond it; should BigQuery's limit be
// lower, its refusal is narrowed down like any other.
const maxTableColumns = 10000

// maxPatchCalls bounds the schema patches one write makes while narrowing
// a refused change down to the columns BigQuery will not take. Columns not
// tried within it are treated as refused, and tried again after the
// backoff.
const maxPatchCalls = 32

// Backoff of a column BigQuery refused: it is proposed again after
// refusalBackoff, then twice as long after each new refusal, up to
// maxRefusalBackoff.
const (
	refusalBackoff    = time.Minute
	maxRefusalBackoff = time.Hour
)

// maxRefusals bounds the refused columns a table remembers; past it, some
// are forgotten, and so proposed again sooner.
const maxRefusals = maxTableColumns

// maxNarrowedGroup is the most columns of one row that a refused change is
// narrowed down within, to find the one BigQuery will not take (a name, say)
// and add the others. A row that brings more (only possible with
// Options.MaxNewColumnsPerEvent raised) has its new columns refused as a
// whole: splitting them would only fill the table with one event's columns.
const maxNarrowedGroup = DefaultMaxNewColumnsPerEvent

// column is one top-level column of a table.
type column struct {
	name     string // as the table spells it
	typ      bq.FieldType
	required bool
	repeated bool
}

// refusal is a column BigQuery refused to add.
type refusal struct {
	until time.Time // when it is proposed again
	times int       // refusals in a row
	err   error
}

// schema is an immutable snapshot of a table's schema.
type schema struct {
	etag    string
	fields  bq.Schema
	cols    map[string]column // by lower-case name
	width   int               // columns, nested ones included, as BigQuery counts them
	fetched time.Time
	// refused holds the columns BigQuery refused to add, by lower-case
	// name; their values are left out until the refusal expires.
	refused map[string]refusal
}

func newSchema(md *bq.TableMetadata, refused map[string]refusal, now time.Time) *schema {
	s := &schema{
		etag:    md.ETag,
		fields:  md.Schema,
		cols:    make(map[string]column, len(md.Schema)),
		width:   width(md.Schema),
		fetched: now,
		refused: refused,
	}
	for _, f := range md.Schema {
		s.cols[strings.ToLower(f.Name)] = column{
			name:     f.Name,
			typ:      normalizeType(f.Type),
			required: f.Required,
			repeated: f.Repeated,
		}
	}
	// A column that exists is no longer refused.
	for name := range refused {
		if _, ok := s.cols[name]; ok {
			s.refused = maps.Clone(refused)
			maps.DeleteFunc(s.refused, func(name string, _ refusal) bool { _, ok := s.cols[name]; return ok })
			break
		}
	}
	return s
}

// width counts columns as BigQuery does toward its limit: nested ones
// included.
func width(fields bq.Schema) int {
	n := 0
	for _, f := range fields {
		n += 1 + width(f.Schema)
	}
	return n
}

// normalizeType maps the standard SQL spellings the API may return to the
// legacy ones.
func normalizeType(t bq.FieldType) bq.FieldType {
	switch strings.ToUpper(string(t)) {
	case "INT64":
		return bq.IntegerFieldType
	case "FLOAT64":
		return bq.FloatFieldType
	case "BOOL":
		return bq.BooleanFieldType
	case "STRUCT":
		return bq.RecordFieldType
	case "DECIMAL":
		return bq.NumericFieldType
	case "BIGDECIMAL":
		return bq.BigNumericFieldType
	}
	return bq.FieldType(strings.ToUpper(string(t)))
}

// isRefused reports whether name is refused at now.
func (s *schema) isRefused(name string, now time.Time) bool {
	r, ok := s.refused[name]
	return ok && now.Before(r.until)
}

// lacks reports whether a row has a value for a column that s lacks and
// that is not refused at now.
func (s *schema) lacks(rows []*row, now time.Time) bool {
	for _, r := range rows {
		for _, f := range r.fields {
			if _, ok := s.cols[f.name]; ok || s.isRefused(f.name, now) || r.capped[f.name] || slices.Contains(r.drop, f.name) {
				continue
			}
			return true
		}
	}
	return false
}

// plan chooses the columns to add to s for rows. Each row may add at most
// Options.MaxNewColumnsPerEvent columns beyond the layout's own, and the
// table at most its room under maxTableColumns, which goes to the rows that
// need the fewest new columns first, so that one event that brings
// thousands cannot crowd out the columns that other events need. The
// columns past a row's cap are noted in its capped, once and for all: the
// cap holds across the schema changes of one write. Those the table has no
// room for are noted in its skip. plan returns the columns
// as groups, one per row that adds any, disjoint, smallest first, and each
// column's rank in the order the rows first bring them, the order a schema
// change lists them in; short reports that the table lacked room for some.
func (in *Integration) plan(t *table, s *schema, rows []*row, now time.Time) (groups [][]*bq.FieldSchema, rank map[string]int, short bool) {
	type want struct {
		r    *row
		cols []*bq.FieldSchema
	}
	var wants []want
	var typed map[string]*bq.FieldSchema // the first value's type
	rank = make(map[string]int)
	for _, r := range rows {
		r.skip = r.skip[:0]
		var cols []*bq.FieldSchema
		n := 0
		for _, f := range r.fields {
			if _, ok := s.cols[f.name]; ok || s.isRefused(f.name, now) || r.capped[f.name] || slices.Contains(r.drop, f.name) {
				continue
			}
			fixed := t.layout.byName[f.name]
			if fixed == nil {
				if n >= in.opts.MaxNewColumnsPerEvent {
					if r.capped == nil {
						r.capped = make(map[string]bool)
					}
					r.capped[f.name] = true
					continue
				}
				n++
			}
			c, ok := typed[f.name]
			if !ok {
				if fixed != nil {
					c = col(fixed.Name, fixed.Type)
				} else {
					c = col(f.name, f.v.fieldType())
				}
				if typed == nil {
					typed = make(map[string]*bq.FieldSchema)
				}
				typed[f.name] = c
				rank[c.Name] = len(rank)
			}
			cols = append(cols, c)
		}
		if len(cols) > 0 {
			wants = append(wants, want{r, cols})
		}
	}
	slices.SortStableFunc(wants, func(a, b want) int { return len(a.cols) - len(b.cols) })
	room := maxTableColumns - s.width
	added := make(map[string]bool)
	for _, w := range wants {
		var extra []*bq.FieldSchema
		for _, c := range w.cols {
			if !added[c.Name] {
				extra = append(extra, c)
			}
		}
		if len(extra) == 0 {
			continue
		}
		if len(extra) > room {
			short = true
			for _, c := range extra {
				w.r.skip = append(w.r.skip, lost{column: c.Name, reason: DropColumnLimit})
			}
			continue
		}
		room -= len(extra)
		for _, c := range extra {
			added[c.Name] = true
		}
		groups = append(groups, extra)
	}
	return groups, rank, short
}

// table is the cached state of one BigQuery table.
type table struct {
	name   string
	ref    *bq.Table
	layout *layout

	mu    sync.Mutex             // serialises loading, creating and patching
	state atomic.Pointer[schema] // nil until loaded
	stale atomic.Bool            // set when BigQuery disagreed with the cache
}

func (in *Integration) table(name string) *table {
	in.mu.Lock()
	defer in.mu.Unlock()
	t, ok := in.tables[name]
	if !ok {
		t = &table{name: name, ref: in.dataset.Table(name), layout: layoutOf(name)}
		in.tables[name] = t
	}
	return t
}

// ensure returns the schema to write rows with: the table exists and, with
// auto table management, has the columns the rows need, as far as the
// per-event cap, the table's room and BigQuery allow. In steady state it
// makes no call.
func (in *Integration) ensure(ctx context.Context, t *table, rows []*row) (*schema, error) {
	now := in.clock()
	if s := t.state.Load(); s != nil && !t.stale.Load() {
		if !s.lacks(rows, now) || !in.auto && now.Sub(s.fetched) < schemaRefresh {
			return s, nil
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.state.Load()
	if s == nil || t.stale.Load() {
		var err error
		if s, err = in.load(ctx, t, rows, s); err != nil {
			return nil, err
		}
	}
	if !s.lacks(rows, now) {
		return s, nil
	}
	if !in.auto {
		if now.Sub(s.fetched) < schemaRefresh {
			return s, nil
		}
		return in.refetch(ctx, t, s)
	}
	groups, rank, short := in.plan(t, s, rows, now)
	if short && now.Sub(s.fetched) >= schemaRefresh {
		// The table looks full: read it again, in case columns were
		// dropped meanwhile.
		var err error
		if s, err = in.refetch(ctx, t, s); err != nil {
			return nil, err
		}
		groups, rank, _ = in.plan(t, s, rows, now)
	}
	if len(groups) == 0 {
		return s, nil
	}
	p := &patcher{in: in, t: t, now: now, rank: rank}
	s, err := p.add(ctx, s, groups)
	p.logRefused()
	return s, err
}

// refetch reads t's schema again. t.mu must be held.
func (in *Integration) refetch(ctx context.Context, t *table, s *schema) (*schema, error) {
	ns, err := in.fetch(ctx, t, s)
	if isNotFound(err) {
		t.stale.Store(true)
		return nil, fmt.Errorf("bigquery: table %s disappeared: %w", t.name, err)
	}
	return ns, err
}

// load reads the table's schema, creating the table first when it does not
// exist and auto table management is on. The table is created with the
// columns that plan chooses for rows; should BigQuery refuse them, with its
// fixed columns only, and the schema patches that follow sort the rest
// out. t.mu must be held.
func (in *Integration) load(ctx context.Context, t *table, rows []*row, old *schema) (*schema, error) {
	s, err := in.fetch(ctx, t, old)
	if err == nil || !isNotFound(err) {
		return s, err
	}
	if !in.auto {
		return nil, opentrack.Permanent(fmt.Errorf("bigquery: table %s.%s does not exist and auto table management is off", in.datasetID, t.name))
	}
	fixed := make(bq.Schema, 0, len(t.layout.fixed))
	for _, c := range t.layout.fixed {
		cp := *c
		fixed = append(fixed, &cp)
	}
	var refused map[string]refusal
	if old != nil {
		refused = old.refused
	}
	groups, rank, _ := in.plan(t, newSchema(&bq.TableMetadata{Schema: fixed}, refused, in.clock()), rows, in.clock())
	cols := slices.Clone(fixed)
	for _, g := range groups {
		cols = append(cols, g...)
	}
	byRank(cols[len(fixed):], rank)
	err = in.create(ctx, t, cols)
	if err != nil && len(cols) > len(fixed) && isInvalid(err) {
		in.log.Warn("bigquery: table creation refused with the events' columns; creating it with the layout's own, and adding the others one change at a time",
			slog.String("table", t.name), slog.Int("columns", len(cols)-len(fixed)), slog.Any("error", apiMessage(err)))
		err = in.create(ctx, t, fixed)
	}
	if err != nil {
		return nil, classify("create table "+t.name, err)
	}
	return in.fetch(ctx, t, old)
}

// create creates t with cols. A table that exists already (another writer
// created it first) is not an error.
func (in *Integration) create(ctx context.Context, t *table, cols bq.Schema) error {
	md := &bq.TableMetadata{
		Schema:           cols,
		Description:      "Segment-compatible " + describe(t.name) + " written by OpenTrack.",
		Labels:           map[string]string{"created_by": "opentrack"},
		TimePartitioning: &bq.TimePartitioning{Type: bq.DayPartitioningType, Field: "received_at"},
	}
	in.stats.metadataCalls.Add(1)
	cctx, cancel := context.WithTimeout(ctx, in.opts.RequestTimeout)
	err := t.ref.Create(cctx, md)
	cancel()
	switch {
	case err == nil:
		in.stats.tablesCreated.Add(1)
		in.log.Info("bigquery: table created", slog.String("table", t.name), slog.Int("columns", len(cols)))
	case isAlreadyExists(err):
		return nil
	}
	return err
}

func describe(table string) string {
	switch table {
	case tableTracks:
		return "table of all track events"
	case tableIdentifies:
		return "table of identify calls"
	case tableUsers:
		return "table of users (one row per identify; see the users_view dedupe view)"
	case tablePages:
		return "table of page calls"
	case tableScreens:
		return "table of screen calls"
	case tableGroups:
		return "table of group calls"
	case tableAliases:
		return "table of alias calls"
	}
	return "table of one track event"
}

// fetch reads the table's metadata and caches its schema, keeping old's
// refusals. A 404 is returned unclassified so that load can see it. t.mu
// must be held.
func (in *Integration) fetch(ctx context.Context, t *table, old *schema) (*schema, error) {
	in.stats.metadataCalls.Add(1)
	cctx, cancel := context.WithTimeout(ctx, in.opts.RequestTimeout)
	md, err := t.ref.Metadata(cctx)
	cancel()
	if err != nil {
		if isNotFound(err) {
			return nil, err
		}
		return nil, classify("get table "+t.name, err)
	}
	var refused map[string]refusal
	if old != nil {
		refused = old.refused
	}
	s := newSchema(md, refused, in.clock())
	t.state.Store(s)
	t.stale.Store(false)
	return s, nil
}

// patcher adds columns to a table. When BigQuery refuses a change as
// invalid, it narrows the change down: it splits the groups of columns (one
// per row) in two and tries each half, then a lone group's columns if they
// are at most maxNarrowedGroup, until the columns BigQuery will not take are
// alone; those are refused, with a backoff, and every other column is
// added. It makes at most maxPatchCalls calls; columns not tried by then
// are refused too, and tried again after the backoff. t.mu must be held
// while it runs.
type patcher struct {
	in      *Integration
	t       *table
	now     time.Time
	rank    map[string]int // the order to list new columns in
	calls   int
	refused []string // columns refused during this run, for the log
	err     error    // the last refusal, classified
	last    error    // the last refusal, as BigQuery answered
}

// add adds the columns of groups that s lacks, and returns the schema after.
// Its error is retryable: a transient answer, the table gone, or a schema
// that kept changing.
func (p *patcher) add(ctx context.Context, s *schema, groups [][]*bq.FieldSchema) (*schema, error) {
	cols := p.lacking(s, groups)
	if len(cols) == 0 {
		return s, nil
	}
	if p.calls >= maxPatchCalls {
		return p.refuse(s, cols, fmt.Errorf("bigquery: add columns to %s: not proposed after %d schema changes, the last refused: %w", p.t.name, p.calls, p.last)), nil
	}
	s, refused, err := p.patch(ctx, s, cols)
	if err != nil || refused == nil {
		return s, err
	}
	cerr := classify("add columns to "+p.t.name, refused)
	p.err, p.last = cerr, refused
	if len(cols) == 1 || !isInvalid(refused) || len(groups) == 1 && len(cols) > maxNarrowedGroup {
		// One column, a refusal that is not about columns (a
		// permission, say), or one row's many columns: no narrowing.
		return p.refuse(s, cols, cerr), nil
	}
	if len(groups) == 1 {
		cols := groups[0]
		groups = [][]*bq.FieldSchema{cols[:len(cols)/2], cols[len(cols)/2:]}
	}
	h := len(groups) / 2
	if s, err = p.add(ctx, s, groups[:h]); err != nil {
		return s, err
	}
	return p.add(ctx, s, groups[h:])
}

// lacking returns the columns of groups that s lacks, by rank.
func (p *patcher) lacking(s *schema, groups [][]*bq.FieldSchema) []*bq.FieldSchema {
	var out []*bq.FieldSchema
	for _, g := range groups {
		for _, c := range g {
			if _, ok := s.cols[strings.ToLower(c.Name)]; !ok {
				out = append(out, c)
			}
		}
	}
	byRank(out, p.rank)
	return out
}

// byRank sorts cols by their rank.
func byRank(cols []*bq.FieldSchema, rank map[string]int) {
	slices.SortFunc(cols, func(a, b *bq.FieldSchema) int { return rank[a.Name] - rank[b.Name] })
}

// patch adds cols with a schema patch guarded by the table's etag; on a
// lost race (412) it rereads the schema and tries again. It returns the
// schema after, and BigQuery's refusal if the change is refused for good.
func (p *patcher) patch(ctx context.Context, s *schema, cols []*bq.FieldSchema) (*schema, error, error) {
	in, t := p.in, p.t
	for range maxPatchAttempts {
		p.calls++
		in.stats.metadataCalls.Add(1)
		cctx, cancel := context.WithTimeout(ctx, in.opts.RequestTimeout)
		md, err := t.ref.Update(cctx, bq.TableMetadataToUpdate{Schema: append(slices.Clip(s.fields), cols...)}, s.etag)
		cancel()
		switch {
		case err == nil:
			in.stats.columnsAdded.Add(uint64(len(cols)))
			var names []string
			for _, c := range cols[:min(len(cols), maxLoggedColumns)] {
				names = append(names, c.Name+" "+string(c.Type))
			}
			in.log.Info("bigquery: columns added", slog.String("table", t.name), slog.Int("count", len(cols)), slog.Any("columns", names))
			ns := newSchema(md, s.refused, p.now)
			t.state.Store(ns)
			t.stale.Store(false)
			return ns, nil, nil
		case isPreconditionFailed(err):
			ns, err := in.refetch(ctx, t, s)
			if err != nil {
				return s, nil, err
			}
			s = ns
			if cols = p.lacking(s, [][]*bq.FieldSchema{cols}); len(cols) == 0 {
				return s, nil, nil
			}
			continue
		case isNotFound(err):
			t.stale.Store(true)
			return s, nil, fmt.Errorf("bigquery: table %s disappeared: %w", t.name, err)
		}
		if cerr := classify("add columns to "+t.name, err); !opentrack.IsPermanent(cerr) {
			return s, nil, cerr
		}
		return s, err, nil
	}
	return s, nil, fmt.Errorf("bigquery: schema of %s kept changing during %d patch attempts", t.name, maxPatchAttempts)
}

// refuse records cols as refused with err, and returns the schema that says
// so.
func (p *patcher) refuse(s *schema, cols []*bq.FieldSchema, err error) *schema {
	refused := maps.Clone(s.refused)
	if refused == nil {
		refused = make(map[string]refusal, len(cols))
	}
	for _, c := range cols {
		name := strings.ToLower(c.Name)
		r := refused[name]
		r.times++
		r.until = p.now.Add(min(refusalBackoff<<min(r.times-1, 10), maxRefusalBackoff))
		r.err = err
		refused[name] = r
		if len(p.refused) < maxLoggedColumns {
			p.refused = append(p.refused, c.Name)
		}
	}
	if len(refused) > maxRefusals {
		maps.DeleteFunc(refused, func(_ string, r refusal) bool { return !r.until.After(p.now) })
		for name := range refused {
			if len(refused) <= maxRefusals {
				break
			}
			delete(refused, name)
		}
	}
	p.in.stats.columnsRefused.Add(uint64(len(cols)))
	ns := &schema{etag: s.etag, fields: s.fields, cols: s.cols, width: s.width, fetched: s.fetched, refused: refused}
	p.t.state.Store(ns)
	return ns
}

// logRefused logs the columns refused during the run, in one line.
func (p *patcher) logRefused() {
	if len(p.refused) == 0 {
		return
	}
	p.in.log.Warn("bigquery: columns refused; their values are left out until they are proposed again",
		slog.String("table", p.t.name), slog.Any("columns", p.refused),
		slog.Duration("retryAfter", refusalBackoff), slog.Any("error", p.err))
}

// outcome of converting a value for its column.
type outcome uint8

const (
	fits outcome = iota
	coerced
	conflict
)

// convert returns v as a JSON value for column c. Lossless coercions are
// made (an integer into FLOAT, anything into STRING); any other mismatch is
// a conflict, and the value is left out.
func convert(v value, c column) (bq.Value, outcome) {
	if c.repeated {
		return nil, conflict
	}
	switch c.typ {
	case bq.StringFieldType:
		switch v.kind {
		case kindString, kindJSON:
			return v.s, fits
		case kindInt, kindFloat, kindTime:
			return v.text(), coerced
		case kindBool:
			return strconv.FormatBool(v.b), coerced
		}
	case bq.IntegerFieldType:
		switch v.kind {
		case kindInt:
			return json.Number(v.s), fits
		case kindFloat:
			// 3.0 is an integer; 2.5 is not.
			f, err := strconv.ParseFloat(v.s, 64)
			if err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
				return json.Number(strconv.FormatInt(int64(f), 10)), coerced
			}
		}
	case bq.FloatFieldType:
		switch v.kind {
		case kindFloat:
			if !finite(v.s) {
				return v.s, fits // NaN, Infinity, -Infinity: BigQuery takes them as strings
			}
			return json.Number(v.s), fits
		case kindInt:
			return json.Number(v.s), coerced
		}
	case bq.NumericFieldType, bq.BigNumericFieldType:
		if (v.kind == kindInt || v.kind == kindFloat) && finite(v.s) {
			return v.s, fits
		}
	case bq.BooleanFieldType:
		if v.kind == kindBool {
			return v.b, fits
		}
	case bq.TimestampFieldType:
		if v.kind == kindTime {
			return formatTime(v.t), fits
		}
	case bq.JSONFieldType:
		switch v.kind {
		case kindJSON:
			return v.s, fits
		case kindInt, kindFloat:
			if finite(v.s) {
				return v.s, fits
			}
			return jsonText(v.s), fits
		case kindBool:
			return strconv.FormatBool(v.b), fits
		case kindString, kindTime:
			return jsonText(v.text()), fits
		}
	case bq.DateFieldType, bq.DateTimeFieldType, bq.TimeFieldType, bq.BytesFieldType, bq.GeographyFieldType:
		// Strings pass through; BigQuery judges them. A rejected value is
		// left out when the row is retried.
		if v.kind == kindString || v.kind == kindTime {
			return v.text(), fits
		}
	}
	return nil, conflict
}

// saver is a finished row, ready for insertAll.
type saver struct {
	insertID string
	values   map[string]bq.Value
}

// Save implements bq.ValueSaver.
func (s *saver) Save() (map[string]bq.Value, string, error) {
	return s.values, s.insertID, nil
}

// finalize matches a row's fields against the schema. It returns the row
// and an upper bound of its size in the insertAll request, and notes in
// r.lost the values it leaves out.
func (in *Integration) finalize(s *schema, r *row) (*saver, int) {
	vals := make(map[string]bq.Value, len(r.fields))
	size := len(r.insertID) + 32
	r.lost = append(r.lost[:0], r.mapped...)
	for _, f := range r.fields {
		if len(r.drop) > 0 && slices.Contains(r.drop, f.name) {
			r.lost = append(r.lost, lost{column: f.name, reason: DropValueRejected, err: r.dropErr})
			continue
		}
		c, ok := s.cols[f.name]
		if !ok {
			r.lost = append(r.lost, in.why(s, r, f.name))
			continue
		}
		v, res := convert(f.v, c)
		switch res {
		case conflict:
			r.lost = append(r.lost, lost{column: f.name, reason: DropTypeConflict,
				err: fmt.Errorf("bigquery: a %s value does not fit column %s of type %s", kindName(f.v.kind), c.name, c.typ)})
			continue
		case coerced:
			in.stats.coerced.Add(1)
		}
		vals[c.name] = v
		size += len(c.name) + 4 + valueSize(v)
	}
	return &saver{insertID: r.insertID, values: vals}, size
}

// why says why the table lacks column name for r.
func (in *Integration) why(s *schema, r *row, name string) lost {
	if r.capped[name] {
		return lost{column: name, reason: DropTooManyNewColumns}
	}
	if ref, ok := s.refused[name]; ok {
		return lost{column: name, reason: DropColumnRefused, err: ref.err}
	}
	for _, l := range r.skip {
		if l.column == name {
			return l
		}
	}
	return lost{column: name, reason: DropNoColumn}
}

func kindName(k kind) string {
	switch k {
	case kindString:
		return "string"
	case kindInt:
		return "integer"
	case kindFloat:
		return "float"
	case kindBool:
		return "boolean"
	case kindTime:
		return "timestamp"
	case kindJSON:
		return "json"
	}
	return "unknown"
}

// valueSize is an upper bound of v's length as JSON.
func valueSize(v bq.Value) int {
	switch v := v.(type) {
	case string:
		return jsonStringSize(v)
	case json.Number:
		return len(v)
	case bool:
		return 5
	}
	return 32
}

// jsonStringSize is the length of s as a JSON string, as encoding/json
// writes it (HTML characters escaped, invalid UTF-8 replaced).
func jsonStringSize(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			n += 6
		} else {
			n += size
		}
		i += size
	}
	return n
}

func apiError(err error) *googleapi.Error {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge
	}
	return nil
}

// apiMessage is BigQuery's message in err, or err's text.
func apiMessage(err error) string {
	if ge := apiError(err); ge != nil && ge.Message != "" {
		return ge.Message
	}
	return err.Error()
}

func isNotFound(err error) bool {
	ge := apiError(err)
	return ge != nil && ge.Code == http.StatusNotFound
}

func isAlreadyExists(err error) bool {
	ge := apiError(err)
	return ge != nil && ge.Code == http.StatusConflict
}

func isPreconditionFailed(err error) bool {
	ge := apiError(err)
	return ge != nil && ge.Code == http.StatusPreconditionFailed
}

// isInvalid reports whether BigQuery refused a request as invalid (a 400):
// the request's content, rather than the caller's rights or a limit, is at
// fault.
func isInvalid(err error) bool {
	ge := apiError(err)
	return ge != nil && ge.Code == http.StatusBadRequest
}

// retryableReasons are BigQuery error reasons worth retrying whatever the
// status: BigQuery answers rate and quota limits with a 403.
var retryableReasons = []string{"backendError", "internalError", "rateLimitExceeded", "quotaExceeded", "timeout", "tableUnavailable"}

// classify wraps err with op and marks it [opentrack.Permanent] when
// retrying cannot help. The status rule is [httpx.Retryable], shared by the
// HTTP destinations (408, 429 and 5xx are retried, other answers are not),
// with one addition of BigQuery's: a rate or quota limit answered with a
// 403 is retried too. Timeouts, cancellations and network errors stay
// retryable; a Retry-After header is passed on.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	werr := &opError{op: op, err: err}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return werr
	}
	ge := apiError(err)
	if ge == nil {
		return werr
	}
	retry := httpx.Retryable(ge.Code)
	for _, item := range ge.Errors {
		retry = retry || slices.Contains(retryableReasons, item.Reason)
	}
	if !retry {
		return opentrack.Permanent(werr)
	}
	if d := httpx.ParseRetryAfter(ge.Header.Get("Retry-After"), time.Now()); d > 0 {
		return opentrack.RetryAfter(werr, d)
	}
	return werr
}

// opError is an error of a call to BigQuery, prefixed once with the
// package's name although the client's own errors may carry it already.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string {
	return "bigquery: " + e.op + ": " + strings.TrimPrefix(e.err.Error(), "bigquery: ")
}

func (e *opError) Unwrap() error { return e.err }
