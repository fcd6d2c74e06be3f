package bigquery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
// rows carry columns it lacks and auto table management is off (someone may
// have added them).
const schemaRefresh = time.Minute

// maxPatchAttempts bounds the refetch-and-retry loop of a schema patch that
// keeps losing the etag race.
const maxPatchAttempts = 5

// column is one top-level column of a table.
type column struct {
	name     string // as the table spells it
	typ      bq.FieldType
	required bool
	repeated bool
}

// schema is an immutable snapshot of a table's schema.
type schema struct {
	etag    string
	fields  bq.Schema
	cols    map[string]column // by lower-case name
	fetched time.Time
	// refused holds columns that a schema patch could not add (BigQuery
	// refused the patch for good); their values are left out.
	refused map[string]bool
}

func newSchema(md *bq.TableMetadata, refused map[string]bool) *schema {
	s := &schema{
		etag:    md.ETag,
		fields:  md.Schema,
		cols:    make(map[string]column, len(md.Schema)),
		fetched: time.Now(),
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
	return s
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

// missing returns the columns that rows need and s lacks, typed by the first
// value seen (or by the layout, for its fixed columns), in order of first
// appearance.
func (s *schema) missing(l *layout, rows []*row) []*bq.FieldSchema {
	var out []*bq.FieldSchema
	var seen map[string]bool
	for _, r := range rows {
		for _, f := range r.fields {
			if _, ok := s.cols[f.name]; ok || s.refused[f.name] || seen[f.name] || slices.Contains(r.drop, f.name) {
				continue
			}
			if seen == nil {
				seen = make(map[string]bool)
			}
			seen[f.name] = true
			out = append(out, newColumn(l, f))
		}
	}
	return out
}

// newColumn is the NULLABLE column that f would create.
func newColumn(l *layout, f field) *bq.FieldSchema {
	if l.reserved[f.name] {
		for _, c := range l.fixed {
			if c.Name == f.name {
				return col(c.Name, c.Type)
			}
		}
	}
	return col(f.name, f.v.fieldType())
}

// table is the cached state of one BigQuery table.
type table struct {
	name   string
	ref    *bq.Table
	layout *layout

	mu    sync.Mutex             // serialises loading, creating and patching
	state atomic.Pointer[schema] // nil until loaded
	stale atomic.Bool            // set when BigQuery disagreed with the cache
	warn  sync.Map               // conflict keys already logged at Warn
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
// auto table management, has every column the rows need. In steady state it
// makes no call.
func (in *Integration) ensure(ctx context.Context, t *table, rows []*row) (*schema, error) {
	if s := t.state.Load(); s != nil && !t.stale.Load() {
		missing := s.missing(t.layout, rows)
		if len(missing) == 0 || !in.auto && time.Since(s.fetched) < schemaRefresh {
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
	missing := s.missing(t.layout, rows)
	if len(missing) == 0 {
		return s, nil
	}
	if !in.auto {
		if time.Since(s.fetched) < schemaRefresh {
			return s, nil
		}
		ns, err := in.fetch(ctx, t, s)
		if isNotFound(err) {
			t.stale.Store(true)
			return nil, fmt.Errorf("bigquery: table %s disappeared: %w", t.name, err)
		}
		return ns, err
	}
	return in.addColumns(ctx, t, s, missing)
}

// load reads the table's schema, creating the table first when it does not
// exist and auto table management is on. t.mu must be held.
func (in *Integration) load(ctx context.Context, t *table, rows []*row, old *schema) (*schema, error) {
	s, err := in.fetch(ctx, t, old)
	if err == nil || !isNotFound(err) {
		return s, err
	}
	if !in.auto {
		return nil, opentrack.Permanent(fmt.Errorf("bigquery: table %s.%s does not exist and auto table management is off", in.datasetID, t.name))
	}
	cols := make(bq.Schema, 0, len(t.layout.fixed)+8)
	for _, c := range t.layout.fixed {
		cp := *c
		cols = append(cols, &cp)
	}
	base := newSchema(&bq.TableMetadata{Schema: cols}, nil)
	cols = append(cols, base.missing(t.layout, rows)...)
	md := &bq.TableMetadata{
		Schema:           cols,
		Description:      "Segment-compatible " + describe(t.name) + " written by OpenTrack.",
		Labels:           map[string]string{"created_by": "opentrack"},
		TimePartitioning: &bq.TimePartitioning{Type: bq.DayPartitioningType, Field: "received_at"},
	}
	in.stats.metadataCalls.Add(1)
	cctx, cancel := context.WithTimeout(ctx, in.opts.RequestTimeout)
	err = t.ref.Create(cctx, md)
	cancel()
	switch {
	case err == nil:
		in.stats.tablesCreated.Add(1)
		in.log.Info("bigquery: table created", slog.String("table", t.name), slog.Int("columns", len(cols)))
	case isAlreadyExists(err):
		// Another writer created it first.
	default:
		return nil, classify("create table "+t.name, err)
	}
	return in.fetch(ctx, t, old)
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

// fetch reads the table's metadata and caches its schema. A 404 is returned
// unclassified so that load can see it. t.mu must be held.
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
	var refused map[string]bool
	if old != nil {
		refused = old.refused
	}
	s := newSchema(md, refused)
	t.state.Store(s)
	t.stale.Store(false)
	return s, nil
}

// addColumns adds missing columns, NULLABLE, with a schema patch guarded by
// the table's etag; on a lost race (412) it rereads the schema and tries
// again. t.mu must be held.
func (in *Integration) addColumns(ctx context.Context, t *table, s *schema, missing []*bq.FieldSchema) (*schema, error) {
	for range maxPatchAttempts {
		fields := append(slices.Clip(s.fields), missing...)
		in.stats.metadataCalls.Add(1)
		cctx, cancel := context.WithTimeout(ctx, in.opts.RequestTimeout)
		md, err := t.ref.Update(cctx, bq.TableMetadataToUpdate{Schema: fields}, s.etag)
		cancel()
		if err == nil {
			in.stats.columnsAdded.Add(uint64(len(missing)))
			names := make([]string, len(missing))
			for i, c := range missing {
				names[i] = c.Name + " " + string(c.Type)
			}
			in.log.Info("bigquery: columns added", slog.String("table", t.name), slog.Any("columns", names))
			ns := newSchema(md, s.refused)
			t.state.Store(ns)
			t.stale.Store(false)
			return ns, nil
		}
		if isPreconditionFailed(err) {
			if s, err = in.fetch(ctx, t, s); err != nil {
				if isNotFound(err) {
					t.stale.Store(true)
					return nil, fmt.Errorf("bigquery: table %s disappeared: %w", t.name, err)
				}
				return nil, err
			}
			if missing = s.missing(t.layout, rowsOf(missing)); len(missing) == 0 {
				return s, nil
			}
			continue
		}
		cerr := classify("add columns to "+t.name, err)
		if !opentrack.IsPermanent(cerr) {
			return nil, cerr
		}
		// BigQuery will not take these columns (too many columns, say).
		// Remember that, and write the rows without them.
		refused := make(map[string]bool, len(s.refused)+len(missing))
		for k := range s.refused {
			refused[k] = true
		}
		for _, c := range missing {
			refused[strings.ToLower(c.Name)] = true
		}
		in.log.Error("bigquery: schema patch refused; the new columns' values are dropped",
			slog.String("table", t.name), slog.Int("columns", len(missing)), slog.Any("error", err))
		ns := &schema{etag: s.etag, fields: s.fields, cols: s.cols, fetched: s.fetched, refused: refused}
		t.state.Store(ns)
		return ns, nil
	}
	return nil, fmt.Errorf("bigquery: schema of %s kept changing during %d patch attempts", t.name, maxPatchAttempts)
}

// rowsOf wraps column definitions as a row so that missing can recheck them
// against a newer schema, keeping their types.
func rowsOf(cols []*bq.FieldSchema) []*row {
	r := &row{fields: make([]field, len(cols))}
	for i, c := range cols {
		var k kind
		switch c.Type {
		case bq.IntegerFieldType:
			k = kindInt
		case bq.FloatFieldType:
			k = kindFloat
		case bq.BooleanFieldType:
			k = kindBool
		case bq.TimestampFieldType:
			k = kindTime
		default:
			k = kindString
		}
		r.fields[i] = field{name: c.Name, v: value{kind: k}}
	}
	return []*row{r}
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
			if !isJSONNumber(v.s) {
				return v.s, fits // NaN, Infinity, -Infinity: BigQuery takes them as strings
			}
			return json.Number(v.s), fits
		case kindInt:
			return json.Number(v.s), coerced
		}
	case bq.NumericFieldType, bq.BigNumericFieldType:
		if (v.kind == kindInt || v.kind == kindFloat) && isJSONNumber(v.s) {
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
			if isJSONNumber(v.s) {
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
// and an upper bound of its size in the insertAll request.
func (in *Integration) finalize(t *table, s *schema, r *row) (*saver, int) {
	vals := make(map[string]bq.Value, len(r.fields))
	size := len(r.insertID) + 32
	for _, f := range r.fields {
		if len(r.drop) > 0 && slices.Contains(r.drop, f.name) {
			continue
		}
		c, ok := s.cols[f.name]
		if !ok {
			in.stats.droppedFields.Add(1)
			in.warnOnce(t, "drop/"+f.name, "bigquery: no column for value; dropped",
				slog.String("table", t.name), slog.String("column", f.name))
			continue
		}
		v, res := convert(f.v, c)
		switch res {
		case conflict:
			in.stats.typeConflicts.Add(1)
			in.warnOnce(t, "conflict/"+f.name+"/"+kindName(f.v.kind), "bigquery: value conflicts with column type; left null",
				slog.String("table", t.name), slog.String("column", c.name),
				slog.String("columnType", string(c.typ)), slog.String("valueType", kindName(f.v.kind)),
				slog.String("id", r.insertID))
			continue
		case coerced:
			in.stats.coerced.Add(1)
		}
		vals[c.name] = v
		size += len(c.name) + 4 + valueSize(v)
	}
	return &saver{insertID: r.insertID, values: vals}, size
}

// warnOnce logs msg at Warn the first time key is seen for t, and at Debug
// after that, so that a steady stream of conflicts does not flood the log.
func (in *Integration) warnOnce(t *table, key, msg string, attrs ...any) {
	level := slog.LevelDebug
	if _, loaded := t.warn.LoadOrStore(key, true); !loaded {
		level = slog.LevelWarn
	}
	in.log.Log(context.Background(), level, msg, attrs...)
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

// classify wraps err with op and marks it [opentrack.Permanent] when
// retrying cannot help: a 4xx answer other than 408 and 429, unless its
// reason is a rate or quota limit. Timeouts, cancellations, network errors
// and 5xx answers stay retryable; a Retry-After header is passed on.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	werr := fmt.Errorf("bigquery: %s: %w", op, err)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return werr
	}
	ge := apiError(err)
	if ge == nil {
		return werr
	}
	transient := ge.Code == http.StatusRequestTimeout || ge.Code == http.StatusTooManyRequests || ge.Code >= 500
	for _, item := range ge.Errors {
		switch item.Reason {
		case "backendError", "internalError", "rateLimitExceeded", "quotaExceeded", "timeout", "tableUnavailable":
			transient = true
		}
	}
	if !transient {
		return opentrack.Permanent(werr)
	}
	if d := httpx.ParseRetryAfter(ge.Header.Get("Retry-After"), time.Now()); d > 0 {
		return opentrack.RetryAfter(werr, d)
	}
	return werr
}
