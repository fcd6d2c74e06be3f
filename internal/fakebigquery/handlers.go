package fakebigquery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	bqv2 "google.golang.org/api/bigquery/v2"
)

var (
	validDatasetID = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	validTableID   = regexp.MustCompile(`^[\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}]+$`)
	validColumn    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,299}$`)
	reservedPrefix = []string{"_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLON_"}
	knownTypes     = map[string]bool{
		"STRING": true, "BYTES": true, "INTEGER": true, "FLOAT": true, "NUMERIC": true, "BIGNUMERIC": true,
		"BOOLEAN": true, "TIMESTAMP": true, "DATE": true, "TIME": true, "DATETIME": true,
		"GEOGRAPHY": true, "JSON": true, "RECORD": true,
	}
)

func (s *Server) insertDataset(w http.ResponseWriter, r *http.Request) {
	w, done, ok := s.begin(w, r, DatasetsInsert)
	if !ok {
		return
	}
	defer done()
	var body bqv2.Dataset
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.DatasetReference == nil {
		writeError(w, http.StatusBadRequest, "invalid", "Invalid dataset body")
		return
	}
	project := r.PathValue("project")
	id := body.DatasetReference.DatasetId
	if !validDatasetID.MatchString(id) || len(id) > 1024 {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("Invalid dataset ID %q", id))
		return
	}
	loc := body.Location
	if loc == "" {
		loc = "US"
	}
	s.mu.Lock()
	key := project + ":" + id
	if _, ok := s.datasets[key]; ok {
		s.mu.Unlock()
		writeError(w, http.StatusConflict, "duplicate", "Already Exists: Dataset "+key)
		return
	}
	d := &dataset{project: project, id: id, location: loc, created: time.Now(), tables: make(map[string]*table)}
	s.datasets[key] = d
	out := d.toAPI()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (d *dataset) toAPI() *bqv2.Dataset {
	return &bqv2.Dataset{
		Kind:             "bigquery#dataset",
		Id:               d.project + ":" + d.id,
		DatasetReference: &bqv2.DatasetReference{ProjectId: d.project, DatasetId: d.id},
		Location:         d.location,
		CreationTime:     d.created.UnixMilli(),
		LastModifiedTime: d.created.UnixMilli(),
		Etag:             "dataset-etag",
	}
}

func (s *Server) getDataset(w http.ResponseWriter, r *http.Request) {
	w, done, ok := s.begin(w, r, DatasetsGet)
	if !ok {
		return
	}
	defer done()
	key := r.PathValue("project") + ":" + r.PathValue("dataset")
	s.mu.Lock()
	d, ok := s.datasets[key]
	var out *bqv2.Dataset
	if ok {
		out = d.toAPI()
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "notFound", "Not found: Dataset "+key)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) insertTable(w http.ResponseWriter, r *http.Request) {
	w, done, ok := s.begin(w, r, TablesInsert)
	if !ok {
		return
	}
	defer done()
	var body bqv2.Table
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.TableReference == nil {
		writeError(w, http.StatusBadRequest, "invalid", "Invalid table body")
		return
	}
	project, datasetID, tableID := r.PathValue("project"), r.PathValue("dataset"), body.TableReference.TableId
	if !validTableID.MatchString(tableID) || len(tableID) > 1024 {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("Invalid table ID %q", tableID))
		return
	}
	var fields []Field
	if body.Schema != nil {
		fields = fromAPI(body.Schema.Fields)
	}
	if msg := checkSchema(fields, s.maxColumns()); msg != "" {
		writeError(w, http.StatusBadRequest, "invalid", msg)
		return
	}
	var part *partitioning
	if tp := body.TimePartitioning; tp != nil {
		part = &partitioning{Type: strings.ToUpper(tp.Type), Field: tp.Field}
		if msg := checkPartitioning(fields, part); msg != "" {
			writeError(w, http.StatusBadRequest, "invalid", msg)
			return
		}
	}
	s.mu.Lock()
	d, ok := s.datasets[project+":"+datasetID]
	if !ok {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "notFound", "Not found: Dataset "+project+":"+datasetID)
		return
	}
	if _, ok := d.tables[tableID]; ok {
		s.mu.Unlock()
		writeError(w, http.StatusConflict, "duplicate", "Already Exists: Table "+tableName(project, datasetID, tableID))
		return
	}
	now := time.Now()
	t := &table{
		id: tableID, fields: fields, etag: s.nextEtag(), partitioning: part,
		description: body.Description, labels: body.Labels,
		created: now, modified: now, ids: make(map[string]bool),
	}
	d.tables[tableID] = t
	out := t.toAPI(d)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func checkPartitioning(fields []Field, p *partitioning) string {
	switch p.Type {
	case "DAY", "HOUR", "MONTH", "YEAR":
	default:
		return fmt.Sprintf("Invalid time partitioning type %q", p.Type)
	}
	if p.Field == "" {
		return "" // ingestion-time partitioning
	}
	for _, f := range fields {
		if strings.EqualFold(f.Name, p.Field) {
			switch normalizeType(f.Type) {
			case "TIMESTAMP", "DATE", "DATETIME":
				if normalizeMode(f.Mode) == "REPEATED" {
					return fmt.Sprintf("The field specified for time partitioning can not be repeated: %s", p.Field)
				}
				return ""
			}
			return fmt.Sprintf("The field specified for time partitioning can only be of type TIMESTAMP, DATE or DATETIME. The type found is: %s.", f.Type)
		}
	}
	return fmt.Sprintf("The field specified for time partitioning can not be found in the schema: %s", p.Field)
}

// checkSchema validates a table's columns: at most limit of them, nested
// ones included.
func checkSchema(fields []Field, limit int) string {
	if n := countColumns(fields); n > limit {
		return fmt.Sprintf("Too many columns: %d, the limit is %d", n, limit)
	}
	return checkFields(fields)
}

// checkFields validates columns: their names, types and modes, and no
// duplicate.
func checkFields(fields []Field) string {
	seen := make(map[string]bool, len(fields))
	for _, f := range fields {
		if msg := checkField(f); msg != "" {
			return msg
		}
		lower := strings.ToLower(f.Name)
		if seen[lower] {
			return fmt.Sprintf("Field %s already exists in schema", f.Name)
		}
		seen[lower] = true
	}
	return ""
}

func countColumns(fields []Field) int {
	n := 0
	for _, f := range fields {
		n += 1 + countColumns(f.Fields)
	}
	return n
}

func checkField(f Field) string {
	if !validColumn.MatchString(f.Name) {
		return fmt.Sprintf("Invalid field name %q. Fields must contain only letters, numbers, and underscores, start with a letter or underscore, and be at most 300 characters long.", f.Name)
	}
	upper := strings.ToUpper(f.Name)
	for _, p := range reservedPrefix {
		if strings.HasPrefix(upper, p) {
			return fmt.Sprintf("Invalid field name %q. Field names starting with %s are reserved.", f.Name, p)
		}
	}
	typ := normalizeType(f.Type)
	if !knownTypes[typ] {
		return fmt.Sprintf("Invalid value for type: %s is not a valid value", f.Type)
	}
	switch normalizeMode(f.Mode) {
	case "NULLABLE", "REQUIRED", "REPEATED":
	default:
		return fmt.Sprintf("Invalid value for mode: %s is not a valid value", f.Mode)
	}
	if typ == "RECORD" {
		if len(f.Fields) == 0 {
			return fmt.Sprintf("Field %s is type RECORD but has no schema", f.Name)
		}
		return checkFields(f.Fields)
	}
	if len(f.Fields) > 0 {
		return fmt.Sprintf("Field %s has subfields but is not a RECORD", f.Name)
	}
	return ""
}

func fromAPI(in []*bqv2.TableFieldSchema) []Field {
	out := make([]Field, 0, len(in))
	for _, f := range in {
		out = append(out, Field{Name: f.Name, Type: f.Type, Mode: f.Mode, Fields: fromAPI(f.Fields)})
	}
	return out
}

func toAPI(in []Field) []*bqv2.TableFieldSchema {
	out := make([]*bqv2.TableFieldSchema, 0, len(in))
	for _, f := range in {
		out = append(out, &bqv2.TableFieldSchema{Name: f.Name, Type: f.Type, Mode: normalizeMode(f.Mode), Fields: toAPI(f.Fields)})
	}
	return out
}

func (t *table) toAPI(d *dataset) *bqv2.Table {
	out := &bqv2.Table{
		Kind:             "bigquery#table",
		Id:               tableName(d.project, d.id, t.id),
		TableReference:   &bqv2.TableReference{ProjectId: d.project, DatasetId: d.id, TableId: t.id},
		Schema:           &bqv2.TableSchema{Fields: toAPI(t.fields)},
		Etag:             t.etag,
		Type:             "TABLE",
		Location:         d.location,
		Description:      t.description,
		Labels:           t.labels,
		CreationTime:     t.created.UnixMilli(),
		LastModifiedTime: uint64(t.modified.UnixMilli()),
		NumRows:          uint64(len(t.rows)),
	}
	if t.partitioning != nil {
		out.TimePartitioning = &bqv2.TimePartitioning{Type: t.partitioning.Type, Field: t.partitioning.Field}
	}
	return out
}

func (s *Server) getTable(w http.ResponseWriter, r *http.Request) {
	w, done, ok := s.begin(w, r, TablesGet)
	if !ok {
		return
	}
	defer done()
	project, datasetID, tableID := r.PathValue("project"), r.PathValue("dataset"), r.PathValue("table")
	s.mu.Lock()
	var out *bqv2.Table
	if t := s.lookup(project, datasetID, tableID); t != nil {
		out = t.toAPI(s.datasets[project+":"+datasetID])
	}
	s.mu.Unlock()
	if out == nil {
		writeError(w, http.StatusNotFound, "notFound", "Not found: Table "+tableName(project, datasetID, tableID))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteTable(w http.ResponseWriter, r *http.Request) {
	w, done, ok := s.begin(w, r, TablesDelete)
	if !ok {
		return
	}
	defer done()
	project, datasetID, tableID := r.PathValue("project"), r.PathValue("dataset"), r.PathValue("table")
	s.mu.Lock()
	t := s.lookup(project, datasetID, tableID)
	if t != nil {
		delete(s.datasets[project+":"+datasetID].tables, tableID)
	}
	s.mu.Unlock()
	if t == nil {
		writeError(w, http.StatusNotFound, "notFound", "Not found: Table "+tableName(project, datasetID, tableID))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) patchTable(w http.ResponseWriter, r *http.Request) {
	w, done, ok := s.begin(w, r, TablesPatch)
	if !ok {
		return
	}
	defer done()
	project, datasetID, tableID := r.PathValue("project"), r.PathValue("dataset"), r.PathValue("table")
	var body bqv2.Table
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "Invalid table body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.lookup(project, datasetID, tableID)
	name := tableName(project, datasetID, tableID)
	if t == nil {
		writeError(w, http.StatusNotFound, "notFound", "Not found: Table "+name)
		return
	}
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != t.etag {
		writeError(w, http.StatusPreconditionFailed, "conditionNotMet", "Precondition check failed.")
		return
	}
	if body.Schema != nil {
		next := fromAPI(body.Schema.Fields)
		if msg := checkSchemaChange(name, t.fields, next, s.maxColumns()); msg != "" {
			writeError(w, http.StatusBadRequest, "invalid", msg)
			return
		}
		old := make(map[string]bool, len(t.fields))
		for _, f := range t.fields {
			old[strings.ToLower(f.Name)] = true
		}
		for _, f := range next {
			if !old[strings.ToLower(f.Name)] {
				if t.added == nil {
					t.added = make(map[string]time.Time)
				}
				t.added[strings.ToLower(f.Name)] = time.Now()
			}
		}
		t.fields = next
	}
	if body.Description != "" {
		t.description = body.Description
	}
	if body.Labels != nil {
		t.labels = body.Labels
	}
	t.etag = s.nextEtag()
	t.modified = time.Now()
	writeJSON(w, http.StatusOK, t.toAPI(s.datasets[project+":"+datasetID]))
}

// checkSchemaChange enforces BigQuery's rules for a schema patch: every
// column stays, with its type; REQUIRED may become NULLABLE but not the
// reverse; new columns are NULLABLE or REPEATED.
func checkSchemaChange(table string, old, next []Field, limit int) string {
	if msg := checkSchema(next, limit); msg != "" {
		return msg
	}
	byName := make(map[string]Field, len(next))
	for _, f := range next {
		byName[strings.ToLower(f.Name)] = f
	}
	for _, o := range old {
		n, ok := byName[strings.ToLower(o.Name)]
		if !ok {
			return fmt.Sprintf("Provided Schema does not match Table %s. Field %s is missing in new schema", table, o.Name)
		}
		if normalizeType(o.Type) != normalizeType(n.Type) {
			return fmt.Sprintf("Provided Schema does not match Table %s. Field %s has changed type from %s to %s", table, o.Name, normalizeType(o.Type), normalizeType(n.Type))
		}
		om, nm := normalizeMode(o.Mode), normalizeMode(n.Mode)
		if om != nm && !(om == "REQUIRED" && nm == "NULLABLE") {
			return fmt.Sprintf("Provided Schema does not match Table %s. Field %s has changed mode from %s to %s", table, o.Name, om, nm)
		}
		if normalizeType(o.Type) == "RECORD" {
			if msg := checkSchemaChange(table, o.Fields, n.Fields, limit); msg != "" {
				return msg
			}
		}
		delete(byName, strings.ToLower(o.Name))
	}
	for _, f := range next {
		if _, added := byName[strings.ToLower(f.Name)]; added && normalizeMode(f.Mode) == "REQUIRED" {
			return fmt.Sprintf("Provided Schema does not match Table %s. Cannot add required fields to an existing schema. (field: %s)", table, f.Name)
		}
	}
	return ""
}

// insertAllRequest is tabledata.insertAll's body, with numbers kept as
// json.Number.
type insertAllRequest struct {
	Rows []struct {
		InsertID string         `json:"insertId"`
		JSON     map[string]any `json:"json"`
	} `json:"rows"`
	SkipInvalidRows     bool   `json:"skipInvalidRows"`
	IgnoreUnknownValues bool   `json:"ignoreUnknownValues"`
	TemplateSuffix      string `json:"templateSuffix"`
}

type insertError struct {
	Index  int         `json:"index"`
	Errors []errorItem `json:"errors"`
}

func (s *Server) insertAll(w http.ResponseWriter, r *http.Request) {
	w, done, ok := s.begin(w, r, InsertAll)
	if !ok {
		return
	}
	defer done()
	project, datasetID, tableID := r.PathValue("project"), r.PathValue("dataset"), r.PathValue("table")
	data, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "Cannot read request body")
		return
	}
	if len(data) > MaxRequestBytes {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("Request payload size exceeds the limit: %d bytes.", MaxRequestBytes))
		return
	}
	var req insertAllRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "Invalid JSON payload: "+err.Error())
		return
	}
	if req.TemplateSuffix != "" {
		writeError(w, http.StatusBadRequest, "invalid", "templateSuffix is not supported by the stand-in")
		return
	}
	if len(req.Rows) > MaxRequestRows {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("too many rows present in the request, limit: %d row count: %d.", MaxRequestRows, len(req.Rows)))
		return
	}
	if len(req.Rows) == 0 {
		writeError(w, http.StatusBadRequest, "invalid", "No rows present in the request.")
		return
	}
	if r.Context().Err() != nil {
		// The caller gave up before the request was processed (a slow
		// machine): it is not applied. Fault.Apply scripts the answer lost
		// after applying.
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.ReceivedRows += len(req.Rows)
	s.stats.MaxRequestRows = max(s.stats.MaxRequestRows, len(req.Rows))
	s.stats.MaxRequestBytes = max(s.stats.MaxRequestBytes, len(data))
	t := s.lookup(project, datasetID, tableID)
	if t == nil {
		writeError(w, http.StatusNotFound, "notFound", "Not found: Table "+tableName(project, datasetID, tableID))
		return
	}
	fields := t.fields
	if s.opts.SchemaLag > 0 && len(t.added) > 0 {
		// Columns added recently are not yet known to streaming.
		fields = make([]Field, 0, len(t.fields))
		for _, f := range t.fields {
			if at, ok := t.added[strings.ToLower(f.Name)]; !ok || time.Since(at) >= s.opts.SchemaLag {
				fields = append(fields, f)
			}
		}
	}
	var errs []insertError
	valid := make([]map[string]any, len(req.Rows))
	for i, row := range req.Rows {
		clean, items := checkRow(fields, row.JSON, req.IgnoreUnknownValues)
		if len(items) > 0 {
			errs = append(errs, insertError{Index: i, Errors: items})
			continue
		}
		valid[i] = clean
	}
	s.stats.RejectedRows += len(errs)
	if len(errs) > 0 && !req.SkipInvalidRows {
		// One invalid row stops the whole request.
		bad := make(map[int]bool, len(errs))
		for _, e := range errs {
			bad[e.Index] = true
		}
		for i := range req.Rows {
			if !bad[i] {
				errs = append(errs, insertError{Index: i, Errors: []errorItem{{Reason: "stopped"}}})
				s.stats.RejectedRows++
			}
		}
		slices.SortFunc(errs, func(a, b insertError) int { return a.Index - b.Index })
		writeJSON(w, http.StatusOK, map[string]any{"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": errs})
		return
	}
	for i, row := range req.Rows {
		if valid[i] == nil {
			continue
		}
		if s.opts.DiscardRows {
			s.stats.StoredRows++
			continue
		}
		if row.InsertID != "" {
			if t.ids[row.InsertID] {
				s.stats.DuplicateRows++
				continue
			}
			t.ids[row.InsertID] = true
		}
		t.rows = append(t.rows, Row{InsertID: row.InsertID, Values: valid[i]})
		s.stats.StoredRows++
	}
	out := map[string]any{"kind": "bigquery#tableDataInsertAllResponse"}
	if len(errs) > 0 {
		out["insertErrors"] = errs
	}
	writeJSON(w, http.StatusOK, out)
}

// checkRow validates a row against the columns. It returns the row with
// column names spelt as the schema spells them, or the row's errors.
func checkRow(fields []Field, vals map[string]any, ignoreUnknown bool) (map[string]any, []errorItem) {
	byName := make(map[string]Field, len(fields))
	for _, f := range fields {
		byName[strings.ToLower(f.Name)] = f
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	clean := make(map[string]any, len(vals))
	var errs []errorItem
	for _, k := range keys {
		v := vals[k]
		f, ok := byName[strings.ToLower(k)]
		if !ok {
			if !ignoreUnknown {
				errs = append(errs, errorItem{Reason: "invalid", Location: k, Message: "no such field: " + k + "."})
			}
			continue
		}
		if v == nil {
			continue
		}
		if msg := checkValue(f, v, ignoreUnknown); msg != "" {
			errs = append(errs, errorItem{Reason: "invalid", Location: f.Name, Message: msg})
			continue
		}
		clean[f.Name] = stored(f, v)
	}
	for _, f := range fields {
		if normalizeMode(f.Mode) == "REQUIRED" && clean[f.Name] == nil && !hasError(errs, f.Name) {
			errs = append(errs, errorItem{Reason: "invalid", Location: f.Name, Message: "Missing required field: " + f.Name + "."})
		}
	}
	return clean, errs
}

func hasError(errs []errorItem, loc string) bool {
	for _, e := range errs {
		if e.Location == loc {
			return true
		}
	}
	return false
}

// checkValue reports why v does not fit f, or "" if it does. It follows
// BigQuery's JSON mapping: numbers and numeric strings for INTEGER and
// FLOAT, true/false (or their strings) for BOOLEAN, canonical strings or
// epoch seconds for TIMESTAMP, strings for STRING.
func checkValue(f Field, v any, ignoreUnknown bool) string {
	if normalizeMode(f.Mode) == "REPEATED" {
		arr, ok := v.([]any)
		if !ok {
			return fmt.Sprintf("Array specified for non-repeated field %s.", f.Name)
		}
		for _, e := range arr {
			if e == nil {
				return fmt.Sprintf("Null value in repeated field %s.", f.Name)
			}
			if msg := checkScalar(f, e, ignoreUnknown); msg != "" {
				return msg
			}
		}
		return ""
	}
	if _, ok := v.([]any); ok {
		return fmt.Sprintf("Array specified for non-repeated field: %s.", f.Name)
	}
	return checkScalar(f, v, ignoreUnknown)
}

func checkScalar(f Field, v any, ignoreUnknown bool) string {
	typ := normalizeType(f.Type)
	bad := func(what string) string {
		return fmt.Sprintf("Cannot convert value to %s (bad value): %v", what, v)
	}
	switch typ {
	case "STRING", "GEOGRAPHY":
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("This field: %s is not a string.", f.Name)
		}
	case "BYTES":
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("This field: %s is not a base64 string.", f.Name)
		}
	case "INTEGER":
		var text string
		switch v := v.(type) {
		case json.Number:
			text = string(v)
		case string:
			text = v
		default:
			return bad("integer")
		}
		if _, err := strconv.ParseInt(text, 10, 64); err != nil {
			return bad("integer")
		}
	case "FLOAT":
		switch v := v.(type) {
		case json.Number:
			if _, err := strconv.ParseFloat(string(v), 64); err != nil {
				return bad("float")
			}
		case string:
			switch v {
			case "NaN", "Infinity", "-Infinity", "inf", "-inf", "+inf":
			default:
				if _, err := strconv.ParseFloat(v, 64); err != nil {
					return bad("float")
				}
			}
		default:
			return bad("float")
		}
	case "NUMERIC", "BIGNUMERIC":
		var text string
		switch v := v.(type) {
		case json.Number:
			text = string(v)
		case string:
			text = v
		default:
			return bad("numeric")
		}
		if _, err := strconv.ParseFloat(text, 64); err != nil {
			return bad("numeric")
		}
	case "BOOLEAN":
		switch v := v.(type) {
		case bool:
		case string:
			if l := strings.ToLower(v); l != "true" && l != "false" {
				return bad("boolean")
			}
		default:
			return bad("boolean")
		}
	case "TIMESTAMP":
		switch v := v.(type) {
		case json.Number:
			if _, err := strconv.ParseFloat(string(v), 64); err != nil {
				return bad("timestamp")
			}
		case string:
			if !parseTimestamp(v) {
				return fmt.Sprintf("Could not parse '%s' as a timestamp. Required format is YYYY-MM-DD HH:MM[:SS[.SSSSSS]]", v)
			}
		default:
			return bad("timestamp")
		}
	case "DATE":
		str, ok := v.(string)
		if _, err := time.Parse("2006-01-02", str); !ok || err != nil {
			return fmt.Sprintf("Could not parse '%v' as a date.", v)
		}
	case "DATETIME":
		str, ok := v.(string)
		if !ok || !parseDateTime(str) {
			return fmt.Sprintf("Could not parse '%v' as a datetime.", v)
		}
	case "TIME":
		str, ok := v.(string)
		if !ok || !timeOfDay.MatchString(str) {
			return fmt.Sprintf("Could not parse '%v' as a time.", v)
		}
	case "JSON":
		str, ok := v.(string)
		if !ok || !json.Valid([]byte(str)) {
			return fmt.Sprintf("Could not parse '%v' as JSON.", v)
		}
	case "RECORD":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Sprintf("This field: %s is not a record.", f.Name)
		}
		if _, errs := checkRow(f.Fields, obj, ignoreUnknown); len(errs) > 0 {
			return f.Name + "." + errs[0].Location + ": " + errs[0].Message
		}
	}
	return ""
}

// stored is v as the column holds it: numeric strings become numbers and
// "true"/"false" booleans, as BigQuery converts them on insert. Other values
// are kept as sent.
func stored(f Field, v any) any {
	str, ok := v.(string)
	if !ok || normalizeMode(f.Mode) == "REPEATED" {
		return v
	}
	switch normalizeType(f.Type) {
	case "INTEGER":
		n, _ := strconv.ParseInt(str, 10, 64)
		return json.Number(strconv.FormatInt(n, 10))
	case "FLOAT":
		if _, err := strconv.ParseFloat(str, 64); err == nil {
			return json.Number(str)
		}
	case "BOOLEAN":
		return strings.EqualFold(str, "true")
	}
	return v
}

var (
	timestampRE = regexp.MustCompile(`^(\d{4})-(\d{1,2})-(\d{1,2})(?:[Tt ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?\s*(Z|z|UTC|[+-]\d{1,2}(?::?\d{2})?)?$`)
	dateTimeRE  = regexp.MustCompile(`^(\d{4})-(\d{1,2})-(\d{1,2})(?:[Tt ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?$`)
	timeOfDay   = regexp.MustCompile(`^([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$`)
)

// parseTimestamp accepts BigQuery's canonical timestamp format: a date, an
// optional time (T or space) with up to six fractional digits, and an
// optional zone (Z, UTC or an offset); years 1 to 9999.
func parseTimestamp(s string) bool {
	m := timestampRE.FindStringSubmatch(s)
	return m != nil && validDateTime(m)
}

func parseDateTime(s string) bool {
	m := dateTimeRE.FindStringSubmatch(s)
	return m != nil && validDateTime(m)
}

func validDateTime(m []string) bool {
	num := func(s string) int {
		n, _ := strconv.Atoi(s)
		return n
	}
	y, mo, d := num(m[1]), num(m[2]), num(m[3])
	h, mi, sec := num(m[4]), num(m[5]), num(m[6])
	if y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59 {
		return false
	}
	t := time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
	return t.Day() == d // rejects 2023-02-30
}
