// Package fakebigquery is an in-memory stand-in for the BigQuery REST API,
// for tests. It serves the calls a streaming writer makes (datasets.get and
// insert; tables.get, insert, patch and delete; tabledata.insertAll) at
// /bigquery/v2/, and enforces what BigQuery enforces on them:
//
//   - insertAll: an unknown column rejects the row ("no such field"); values
//     must fit their column's type; REQUIRED columns must have a value;
//     skipInvalidRows and ignoreUnknownValues behave as documented (without
//     skipInvalidRows one invalid row stops the whole request, the others
//     answering "stopped"); rows with an insertId already seen in the table
//     are dropped (BigQuery promises this for about a minute; the stand-in
//     remembers for good); at most 50,000 rows and 10 MB a request; with
//     [Options.SchemaLag], columns just added are unknown for a while, as
//     BigQuery's streaming backend lags behind schema changes;
//   - tables.patch: a schema may only gain NULLABLE (or REPEATED) columns and
//     relax REQUIRED to NULLABLE; a column may not be removed or change type;
//     an If-Match header must carry the table's current etag (412 otherwise);
//   - tables.insert: valid column names and types, no duplicate columns, a
//     partitioning column that exists and holds time; 409 if the table exists;
//   - tables.insert and tables.patch: at most [MaxColumns] columns in a table,
//     nested ones included ([Options.MaxColumns] lowers the limit for a test).
//
// Errors are answered in the JSON form that googleapi parses, so the real
// client (cloud.google.com/go/bigquery) can be pointed at the stand-in with
// [Server.NewClient], or with option.WithEndpoint([Server.Endpoint]) and
// option.WithoutAuthentication().
//
// A tabledata.insertAll call whose caller has given up before it is
// processed is not applied, so that a slow test machine does not lose
// answers at random; Fault.Apply scripts that case.
//
// Faults are scripted with [Server.AddFault]: an error status for the next n
// calls of an operation (or of the schema changes that add one column),
// optionally after applying the call (the answer is lost, as on a network
// failure), or a delay.
package fakebigquery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	bq "cloud.google.com/go/bigquery"
	bqv2 "google.golang.org/api/bigquery/v2"
	"google.golang.org/api/option"
)

// Op names a REST call of the BigQuery API.
type Op string

// The calls the stand-in serves.
const (
	DatasetsGet    Op = "datasets.get"
	DatasetsInsert Op = "datasets.insert"
	TablesGet      Op = "tables.get"
	TablesInsert   Op = "tables.insert"
	TablesPatch    Op = "tables.patch"
	TablesDelete   Op = "tables.delete"
	InsertAll      Op = "tabledata.insertAll"
)

// Limits of an insertAll request, as BigQuery documents them.
const (
	MaxRequestRows  = 50000
	MaxRequestBytes = 10 << 20
	// MaxColumns is the most columns a table may have, nested ones
	// included, as BigQuery documents it.
	MaxColumns = 10000
)

// Field is a column of a table's schema.
type Field struct {
	Name string `json:"name"`
	// Type is STRING, BYTES, INTEGER, FLOAT, NUMERIC, BIGNUMERIC, BOOLEAN,
	// TIMESTAMP, DATE, TIME, DATETIME, GEOGRAPHY, JSON or RECORD (or a
	// standard SQL alias: INT64, FLOAT64, BOOL, STRUCT).
	Type string `json:"type"`
	// Mode is NULLABLE (or empty), REQUIRED or REPEATED.
	Mode string `json:"mode,omitempty"`
	// Fields are a RECORD's columns.
	Fields []Field `json:"fields,omitempty"`
}

// Row is a row stored in a table.
type Row struct {
	// InsertID is the insertId the row was sent with, if any.
	InsertID string
	// Values holds the row as sent, numbers as json.Number.
	Values map[string]any
}

// Fault scripts a failure of the next calls of an operation.
type Fault struct {
	// Op is the operation to fail.
	Op Op
	// Table limits the fault to calls on this table; empty means any.
	Table string
	// Status is the HTTP status to answer. Zero answers normally (after
	// Delay).
	Status int
	// Reason is the error reason; by default backendError for 5xx,
	// rateLimitExceeded for 429, and invalid otherwise.
	Reason string
	// Times is how many calls fail; zero means one.
	Times int
	// Apply processes the call before answering with the error, so the
	// change is made but the caller does not learn it. With Delay, the
	// answer comes after the delay, or never if the caller gives up first.
	Apply bool
	// Delay waits before answering, or until the caller gives up (then
	// nothing is answered, and without Apply nothing is changed).
	Delay time.Duration
	// Column limits a tables.insert or tables.patch fault to calls whose
	// schema adds this column (case-insensitively), as BigQuery refuses a
	// schema change for one column's sake: a name it does not take, a
	// policy. Calls that do not add it pass, and do not count against
	// Times.
	Column string
}

// Options configures a [Server].
type Options struct {
	// DiscardRows makes insertAll validate and count rows without storing
	// them or remembering their insertIds, for benchmarks.
	DiscardRows bool
	// SchemaLag is how long a column added by tables.patch stays unknown
	// to insertAll ("no such field"), as BigQuery's streaming backend
	// lags behind schema changes. Zero means no lag.
	SchemaLag time.Duration
	// MaxColumns is the most columns a table may have; zero means
	// [MaxColumns], BigQuery's limit. A test lowers it to reach the limit
	// without ten thousand columns.
	MaxColumns int
}

// Stats are the stand-in's insertAll counters.
type Stats struct {
	// ReceivedRows counts rows in insertAll requests, valid or not.
	ReceivedRows int
	// StoredRows counts rows stored.
	StoredRows int
	// DuplicateRows counts rows dropped because their insertId was seen.
	DuplicateRows int
	// RejectedRows counts rows answered with an insertError.
	RejectedRows int
	// MaxRequestRows and MaxRequestBytes are the largest insertAll request
	// seen, in rows and in body bytes.
	MaxRequestRows  int
	MaxRequestBytes int
}

// Server is the stand-in. Its methods are safe for concurrent use.
type Server struct {
	opts Options
	srv  *httptest.Server
	mux  *http.ServeMux

	mu       sync.Mutex
	datasets map[string]*dataset // by project + ":" + dataset
	faults   []*Fault
	calls    map[Op]int
	stats    Stats
	etag     int
}

type dataset struct {
	project, id string
	location    string
	created     time.Time
	tables      map[string]*table
}

type table struct {
	id           string
	fields       []Field
	etag         string
	partitioning *partitioning
	description  string
	labels       map[string]string
	created      time.Time
	modified     time.Time
	rows         []Row
	ids          map[string]bool
	added        map[string]time.Time // columns added by patch, by lower-case name
}

type partitioning struct {
	Type  string `json:"type"`
	Field string `json:"field,omitempty"`
}

// New starts a stand-in on a local port. Close it when done. opts may be
// nil.
func New(opts *Options) *Server {
	s := NewHandler(opts)
	s.srv = httptest.NewServer(s)
	return s
}

// NewHandler returns a stand-in that is not listening, to be served by the
// caller (it is an http.Handler). [Server.URL] and [Server.NewClient] need a
// server started by [New].
func NewHandler(opts *Options) *Server {
	s := &Server{
		datasets: make(map[string]*dataset),
		calls:    make(map[Op]int),
		mux:      http.NewServeMux(),
	}
	if opts != nil {
		s.opts = *opts
	}
	const base = "/bigquery/v2/projects/{project}/datasets"
	s.mux.HandleFunc("POST "+base, s.insertDataset)
	s.mux.HandleFunc("GET "+base+"/{dataset}", s.getDataset)
	s.mux.HandleFunc("POST "+base+"/{dataset}/tables", s.insertTable)
	s.mux.HandleFunc("GET "+base+"/{dataset}/tables/{table}", s.getTable)
	s.mux.HandleFunc("PATCH "+base+"/{dataset}/tables/{table}", s.patchTable)
	s.mux.HandleFunc("DELETE "+base+"/{dataset}/tables/{table}", s.deleteTable)
	s.mux.HandleFunc("POST "+base+"/{dataset}/tables/{table}/insertAll", s.insertAll)
	s.mux.HandleFunc("GET /fakebigquery/dump", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Dump())
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "notFound", fmt.Sprintf("Not found: %s %s", r.Method, r.URL.Path))
	})
	return s
}

// ServeHTTP serves the BigQuery REST API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// URL is the REST root of a server started by [New], such as
// http://127.0.0.1:41234: the value for BIGQUERY_EMULATOR_HOST.
func (s *Server) URL() string {
	if s.srv == nil {
		return ""
	}
	return s.srv.URL
}

// Endpoint is the base path for option.WithEndpoint: URL + "/bigquery/v2/".
// The trailing slash matters.
func (s *Server) Endpoint() string { return s.URL() + "/bigquery/v2/" }

// NewClient returns a BigQuery client for project that talks to the
// stand-in without credentials.
func (s *Server) NewClient(ctx context.Context, project string) (*bq.Client, error) {
	return bq.NewClient(ctx, project, option.WithEndpoint(s.Endpoint()), option.WithoutAuthentication())
}

// Close shuts down a server started by [New].
func (s *Server) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
}

// AddFault scripts a failure; faults for the same call apply in the order
// added.
func (s *Server) AddFault(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	if f.Reason == "" {
		switch {
		case f.Status >= 500:
			f.Reason = "backendError"
		case f.Status == http.StatusTooManyRequests:
			f.Reason = "rateLimitExceeded"
		default:
			f.Reason = "invalid"
		}
	}
	s.mu.Lock()
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
}

// Calls returns how many calls of op the stand-in received, faulted ones
// included.
func (s *Server) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// MetadataCalls returns how many dataset and table calls (everything but
// insertAll) the stand-in received.
func (s *Server) MetadataCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for op, c := range s.calls {
		if op != InsertAll {
			n += c
		}
	}
	return n
}

// Stats returns the insertAll counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// CreateDataset creates a dataset, as a test's setup. An empty location
// means US.
func (s *Server) CreateDataset(project, id, location string) {
	if location == "" {
		location = "US"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := project + ":" + id
	if _, ok := s.datasets[key]; !ok {
		s.datasets[key] = &dataset{project: project, id: id, location: location, created: time.Now(), tables: make(map[string]*table)}
	}
}

// DatasetLocation returns a dataset's location and whether it exists.
func (s *Server) DatasetLocation(project, id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.datasets[project+":"+id]
	if !ok {
		return "", false
	}
	return d.location, true
}

// CreateTable creates a table with the given schema, as a test's setup,
// creating its dataset if needed. It fails if the schema is invalid or the
// table exists.
func (s *Server) CreateTable(project, datasetID, tableID string, fields []Field) error {
	s.CreateDataset(project, datasetID, "")
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.datasets[project+":"+datasetID]
	if _, ok := d.tables[tableID]; ok {
		return fmt.Errorf("fakebigquery: table %s exists", tableID)
	}
	if msg := checkSchema(fields, s.maxColumns()); msg != "" {
		return fmt.Errorf("fakebigquery: %s", msg)
	}
	now := time.Now()
	d.tables[tableID] = &table{id: tableID, fields: fields, etag: s.nextEtag(), created: now, modified: now, ids: make(map[string]bool)}
	return nil
}

// DeleteTable deletes a table and its rows, as if someone else did.
func (s *Server) DeleteTable(project, datasetID, tableID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.datasets[project+":"+datasetID]; ok {
		delete(d.tables, tableID)
	}
}

// Tables returns the names of a dataset's tables, sorted.
func (s *Server) Tables(project, datasetID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.datasets[project+":"+datasetID]
	if !ok {
		return nil
	}
	var out []string
	for name := range d.tables {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Schema returns a table's columns and whether the table exists.
func (s *Server) Schema(project, datasetID, tableID string) ([]Field, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.lookup(project, datasetID, tableID)
	if t == nil {
		return nil, false
	}
	return slices.Clone(t.fields), true
}

// Partitioning returns the type and column of a table's time partitioning,
// empty when it has none.
func (s *Server) Partitioning(project, datasetID, tableID string) (typ, field string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.lookup(project, datasetID, tableID)
	if t == nil || t.partitioning == nil {
		return "", ""
	}
	return t.partitioning.Type, t.partitioning.Field
}

// Rows returns the rows stored in a table, in the order they arrived.
func (s *Server) Rows(project, datasetID, tableID string) []Row {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.lookup(project, datasetID, tableID)
	if t == nil {
		return nil
	}
	return slices.Clone(t.rows)
}

// DumpTable is a table in [Server.Dump].
type DumpTable struct {
	Schema []Field          `json:"schema"`
	Rows   []map[string]any `json:"rows"`
}

// Dump returns every table the stand-in holds, keyed by
// "project:dataset.table". It is also served, as JSON, at
// GET /fakebigquery/dump.
func (s *Server) Dump() map[string]DumpTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]DumpTable)
	for _, d := range s.datasets {
		for _, t := range d.tables {
			dt := DumpTable{Schema: slices.Clone(t.fields), Rows: make([]map[string]any, 0, len(t.rows))}
			for _, r := range t.rows {
				dt.Rows = append(dt.Rows, r.Values)
			}
			out[tableName(d.project, d.id, t.id)] = dt
		}
	}
	return out
}

func (s *Server) lookup(project, datasetID, tableID string) *table {
	d, ok := s.datasets[project+":"+datasetID]
	if !ok {
		return nil
	}
	return d.tables[tableID]
}

func (s *Server) nextEtag() string {
	s.etag++
	return fmt.Sprintf("etag-%d", s.etag)
}

// begin counts a call and applies any fault scripted for it. It returns
// false when the fault has answered already; otherwise the handler goes on,
// and finish must be called with the recorder it returns.
func (s *Server) begin(w http.ResponseWriter, r *http.Request, op Op) (http.ResponseWriter, func(), bool) {
	table := r.PathValue("table")
	var schema *bqv2.Table // the body of a schema change, for faults limited to a column
	if op == TablesInsert || op == TablesPatch {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var t bqv2.Table
		if json.Unmarshal(body, &t) == nil {
			schema = &t
			if op == TablesInsert && t.TableReference != nil {
				table = t.TableReference.TableId
			}
		}
	}
	s.mu.Lock()
	s.calls[op]++
	var f *Fault
	for i, c := range s.faults {
		if c.Op == op && (c.Table == "" || c.Table == table) && (c.Column == "" || s.adds(r, schema, c.Column)) {
			f = c
			c.Times--
			if c.Times == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			break
		}
	}
	s.mu.Unlock()
	if f == nil {
		return w, func() {}, true
	}
	// Read the body first: the server notices a caller that gives up only
	// once the body is consumed.
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	wait := func() bool {
		if f.Delay <= 0 {
			return true
		}
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-r.Context().Done():
			return false
		}
	}
	if f.Apply {
		// Make the change, then lose the answer: wait, then fail.
		return httptest.NewRecorder(), func() {
			if wait() && f.Status != 0 {
				writeError(w, f.Status, f.Reason, fmt.Sprintf("injected %d after applying %s", f.Status, op))
			}
		}, true
	}
	if !wait() {
		return w, nil, false
	}
	if f.Status == 0 {
		return w, func() {}, true
	}
	writeError(w, f.Status, f.Reason, fmt.Sprintf("injected %d for %s", f.Status, op))
	return w, nil, false
}

// adds reports whether the schema of a tables.insert or tables.patch body
// adds column to the table's. s.mu must be held.
func (s *Server) adds(r *http.Request, body *bqv2.Table, column string) bool {
	if body == nil || body.Schema == nil {
		return false
	}
	if cur := s.lookup(r.PathValue("project"), r.PathValue("dataset"), r.PathValue("table")); cur != nil {
		for _, f := range cur.fields {
			if strings.EqualFold(f.Name, column) {
				return false
			}
		}
	}
	for _, f := range body.Schema.Fields {
		if strings.EqualFold(f.Name, column) {
			return true
		}
	}
	return false
}

func (s *Server) maxColumns() int {
	if s.opts.MaxColumns > 0 {
		return s.opts.MaxColumns
	}
	return MaxColumns
}

// apiError is the error body googleapi parses.
type apiError struct {
	Error struct {
		Code    int         `json:"code"`
		Message string      `json:"message"`
		Errors  []errorItem `json:"errors"`
		Status  string      `json:"status,omitempty"`
	} `json:"error"`
}

type errorItem struct {
	Reason   string `json:"reason"`
	Location string `json:"location,omitempty"`
	Message  string `json:"message"`
	Domain   string `json:"domain,omitempty"`
}

func writeError(w http.ResponseWriter, code int, reason, msg string) {
	var e apiError
	e.Error.Code = code
	e.Error.Message = msg
	e.Error.Errors = []errorItem{{Reason: reason, Message: msg, Domain: "global"}}
	e.Error.Status = statusName(code)
	writeJSON(w, code, e)
}

func statusName(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusConflict:
		return "ALREADY_EXISTS"
	case http.StatusPreconditionFailed:
		return "FAILED_PRECONDITION"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	}
	if code >= 500 {
		return "INTERNAL"
	}
	return ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func tableName(project, datasetID, tableID string) string {
	return project + ":" + datasetID + "." + tableID
}

// normalizeType maps standard SQL aliases to the legacy type names.
func normalizeType(t string) string {
	switch t = strings.ToUpper(t); t {
	case "INT64":
		return "INTEGER"
	case "FLOAT64":
		return "FLOAT"
	case "BOOL":
		return "BOOLEAN"
	case "STRUCT":
		return "RECORD"
	}
	return t
}

func normalizeMode(m string) string {
	if m == "" {
		return "NULLABLE"
	}
	return strings.ToUpper(m)
}
