package bigquery

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bq "cloud.google.com/go/bigquery"
	snakecase "github.com/segmentio/go-snakecase"

	"github.com/opentrackhq/opentrack/spec"
)

// The standard tables of Segment's warehouse layout.
const (
	tableTracks     = "tracks"
	tableIdentifies = "identifies"
	tableUsers      = "users"
	tablePages      = "pages"
	tableScreens    = "screens"
	tableGroups     = "groups"
	tableAliases    = "aliases"

	// unnamedEventTable receives the properties of track events whose name
	// has no ASCII letter or digit, so that snake_case leaves nothing.
	unnamedEventTable = "_unnamed_event"
)

// standardTables are the names an event table may not take. Segment also
// reserves accounts. A track event whose name comes out as one of these (or
// as one of their dedupe views) gets a leading underscore, which
// go-snakecase never produces, so the guarded name cannot collide with
// another event's.
var standardTables = map[string]bool{
	tableTracks: true, tableIdentifies: true, tableUsers: true, tablePages: true,
	tableScreens: true, tableGroups: true, tableAliases: true, "accounts": true,
}

const (
	// maxColumnName is BigQuery's limit on a column name's length.
	maxColumnName = 300
	// maxTableName is BigQuery's limit on a table name's length, in bytes.
	maxTableName = 1024
	// maxDepth bounds the flattening of nested objects; deeper objects are
	// stored as JSON strings.
	maxDepth = 16
	// maxCachedNames bounds each name cache.
	maxCachedNames = 50000
)

// kind is the type of a flattened value, before it meets a column.
type kind uint8

const (
	kindString kind = iota + 1
	kindInt         // s holds the decimal digits
	kindFloat       // s holds the number as JSON text, or NaN, Infinity, -Infinity
	kindBool        // b
	kindTime        // t, and s the original text
	kindJSON        // s holds JSON text (an array, or an object too deep)
)

// value is one flattened value.
type value struct {
	kind kind
	b    bool
	s    string    // for kindTime, the text it was parsed from, if any
	t    time.Time // kindTime
}

// text is the value as a string: for a time, the text it came as, or else
// the time as BigQuery writes it.
func (v value) text() string {
	if v.kind == kindTime && v.s == "" {
		return formatTime(v.t)
	}
	return v.s
}

// fieldType is the column type a new column gets for its first value.
func (v value) fieldType() bq.FieldType {
	switch v.kind {
	case kindInt:
		return bq.IntegerFieldType
	case kindFloat:
		return bq.FloatFieldType
	case kindBool:
		return bq.BooleanFieldType
	case kindTime:
		return bq.TimestampFieldType
	}
	return bq.StringFieldType
}

// field is one column of a row, named and typed but not yet matched against
// the table's schema.
type field struct {
	name string
	v    value
}

// row is one row bound for one table.
type row struct {
	event    int        // index into the events passed to Batch
	ev       spec.Event // that event, for reports; not kept after Batch
	table    string
	insertID string
	fields   []field

	// mapped holds the values the mapping left out (unnamed keys,
	// reserved names).
	mapped []lost

	// drop names columns to leave out, after BigQuery rejected their
	// values (the last resort before a row is given up); dropErr is that
	// rejection.
	drop    []string
	dropErr error

	// capped holds the columns past the per-event cap, which this row may
	// not add to the table's schema; skip those the table had no room for
	// at the last schema plan.
	capped map[string]bool
	skip   []lost

	// lost holds the values left out of the last write: reported if the
	// row lands.
	lost []lost

	// The outcome of the last write.
	err     error
	invalid bool     // rejected by BigQuery as invalid
	unknown bool     // every rejection was "no such field"
	bad     []string // the columns BigQuery named in the rejection
}

// layout describes the fixed columns of a kind of table.
type layout struct {
	fixed []*bq.FieldSchema
	// byName holds the fixed columns by name.
	byName map[string]*bq.FieldSchema
	// reserved holds the names a property or trait may not take.
	reserved map[string]bool
	// context reports whether the table has context_* columns, which
	// reserves the prefix too.
	context bool
}

func (l *layout) isReserved(name string) bool {
	return l.reserved[name] || l.context && strings.HasPrefix(name, "context_")
}

func newLayout(context bool, cols ...*bq.FieldSchema) *layout {
	l := &layout{fixed: cols, byName: make(map[string]*bq.FieldSchema, len(cols)), reserved: make(map[string]bool, len(cols)), context: context}
	for _, c := range cols {
		l.reserved[c.Name] = true
		l.byName[c.Name] = c
	}
	return l
}

func col(name string, t bq.FieldType) *bq.FieldSchema {
	return &bq.FieldSchema{Name: name, Type: t}
}

func required(name string, t bq.FieldType) *bq.FieldSchema {
	return &bq.FieldSchema{Name: name, Type: t, Required: true}
}

// commonColumns are on every table but users.
func commonColumns(extra ...*bq.FieldSchema) []*bq.FieldSchema {
	return append([]*bq.FieldSchema{
		required("id", bq.StringFieldType),
		required("received_at", bq.TimestampFieldType),
		col("sent_at", bq.TimestampFieldType),
		col("original_timestamp", bq.TimestampFieldType),
		col("timestamp", bq.TimestampFieldType),
		col("uuid_ts", bq.TimestampFieldType),
		col("loaded_at", bq.TimestampFieldType),
		col("user_id", bq.StringFieldType),
		col("anonymous_id", bq.StringFieldType),
	}, extra...)
}

var (
	layoutTrack = newLayout(true, commonColumns(
		col("event", bq.StringFieldType),
		col("event_text", bq.StringFieldType))...)
	layoutIdentify = newLayout(true, commonColumns()...)
	layoutPage     = newLayout(true, commonColumns(
		col("name", bq.StringFieldType),
		col("category", bq.StringFieldType))...)
	layoutGroup = newLayout(true, commonColumns(
		col("group_id", bq.StringFieldType))...)
	layoutAlias = newLayout(true, commonColumns(
		col("previous_id", bq.StringFieldType))...)
	// The users table has fewer columns, but its traits are those of
	// identifies: the same names are discarded from both.
	layoutUser = newLayout(true,
		required("id", bq.StringFieldType),
		required("received_at", bq.TimestampFieldType),
		col("uuid_ts", bq.TimestampFieldType),
		col("loaded_at", bq.TimestampFieldType)).
		reserve(commonColumns()...)
)

// reserve adds the names of cols to the names l reserves, and returns l.
func (l *layout) reserve(cols ...*bq.FieldSchema) *layout {
	for _, c := range cols {
		l.reserved[c.Name] = true
	}
	return l
}

// layoutOf returns the layout of a table.
func layoutOf(table string) *layout {
	switch table {
	case tableIdentifies:
		return layoutIdentify
	case tableUsers:
		return layoutUser
	case tablePages, tableScreens:
		return layoutPage
	case tableGroups:
		return layoutGroup
	case tableAliases:
		return layoutAlias
	}
	return layoutTrack // tracks and the event tables
}

// nameCache remembers snake_case conversions. Keys repeat from event to
// event, so after warm-up naming a column allocates nothing.
type nameCache struct {
	mu sync.RWMutex
	m  map[string]string
}

// get returns the cached value for the key held in buf, if any.
func (c *nameCache) get(buf []byte) (string, bool) {
	c.mu.RLock()
	v, ok := c.m[string(buf)]
	c.mu.RUnlock()
	return v, ok
}

func (c *nameCache) put(key, v string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]string)
	}
	if len(c.m) < maxCachedNames {
		c.m[key] = v
	}
	c.mu.Unlock()
}

// TableName returns the table that receives the properties of track events
// named event: the name in snake_case as Segment's go-snakecase gives it
// ("Order Completed" and "orderCompleted" both give order_completed). A name
// that would be one of the standard tables (tracks, identifies, users, pages,
// screens, groups, aliases, accounts) or one of their _view names gets a
// leading underscore ("Tracks" gives _tracks); a name left empty (no ASCII
// letter or digit, as in "注文") gives _unnamed_event. A name longer than
// BigQuery allows (1,024 bytes) is cut.
func TableName(event string) string {
	n := snakecase.Snakecase(event)
	if len(n) > maxTableName {
		n = n[:maxTableName]
	}
	switch {
	case n == "":
		return unnamedEventTable
	case standardTables[n] || standardTables[strings.TrimSuffix(n, "_view")]:
		return "_" + n
	}
	return n
}

// columnName returns the column for key under prefix ("" at the top level):
// the key in snake_case, joined to the prefix with "_". It returns "" when
// the key has no ASCII letter or digit. A name starting with a digit gets a
// leading underscore, as BigQuery requires; a name longer than BigQuery
// allows is cut.
func columnName(prefix, key string) string {
	n := snakecase.Snakecase(key)
	if n == "" {
		return ""
	}
	if prefix != "" {
		n = prefix + "_" + n
	}
	if n[0] >= '0' && n[0] <= '9' {
		n = "_" + n
	}
	if len(n) > maxColumnName {
		n = n[:maxColumnName]
	}
	return n
}

// mapper turns events into rows. It is safe for concurrent use.
type mapper struct {
	columns nameCache // prefix + "\x00" + key -> column
	tables  nameCache // event name -> table
}

func (m *mapper) tableName(event string) string {
	if t, ok := m.tables.get([]byte(event)); ok {
		return t
	}
	t := TableName(event)
	m.tables.put(event, t)
	return t
}

func (m *mapper) column(buf *[]byte, prefix, key string) string {
	b := append(append(append((*buf)[:0], prefix...), 0), key...)
	*buf = b
	if n, ok := m.columns.get(b); ok {
		return n
	}
	n := columnName(prefix, key)
	m.columns.put(string(b), n)
	return n
}

// builder assembles the fields of one row.
type builder struct {
	m      *mapper
	layout *layout
	fields []field
	index  map[string]int // column -> position in fields
	lost   []lost         // values left out
	keys   []string       // scratch for sorting map keys
	buf    []byte         // scratch for name cache keys
}

var builders = sync.Pool{New: func() any { return &builder{index: make(map[string]int)} }}

func (m *mapper) builder(l *layout, size int) *builder {
	b := builders.Get().(*builder)
	b.m, b.layout = m, l
	b.fields = make([]field, 0, size)
	b.lost = nil
	clear(b.index)
	return b
}

func (b *builder) release() {
	b.fields = nil
	b.lost = nil
	b.m = nil
	builders.Put(b)
}

// set adds a column unless the row already has it; the first value wins.
func (b *builder) set(name string, v value) {
	if _, ok := b.index[name]; ok {
		return
	}
	b.index[name] = len(b.fields)
	b.fields = append(b.fields, field{name: name, v: v})
}

func (b *builder) setString(name, s string) {
	if s != "" {
		b.set(name, value{kind: kindString, s: s})
	}
}

func (b *builder) setTime(name string, t time.Time) {
	if !t.IsZero() {
		b.set(name, value{kind: kindTime, t: t})
	}
}

// flatten adds the entries of obj as columns under prefix. With user set,
// the entries are properties or traits: names reserved by the layout are
// discarded. Keys that give no column name are left out too, and noted in
// b.lost.
func (b *builder) flatten(prefix string, obj map[string]any, user bool, depth int) {
	if len(obj) == 0 {
		return
	}
	start := len(b.keys)
	for k := range obj {
		b.keys = append(b.keys, k)
	}
	keys := b.keys[start:]
	slices.Sort(keys)
	for _, k := range keys {
		v := obj[k]
		if v == nil {
			continue
		}
		name := b.m.column(&b.buf, prefix, k)
		if name == "" {
			if len(k) > maxColumnName {
				k = strings.ToValidUTF8(k[:maxColumnName], "")
			}
			b.lost = append(b.lost, lost{column: k, reason: DropUnnamedKey})
			continue
		}
		if nested, ok := v.(map[string]any); ok && depth < maxDepth {
			b.flatten(name, nested, user, depth+1)
			continue
		}
		val, ok := toValue(v)
		if !ok {
			continue
		}
		if user && b.layout.isReserved(name) {
			// Segment discards a property named like a reserved column; it
			// never overwrites the column. One that repeats the column's
			// own value (analytics.js sends the page name as a property
			// too) is not worth counting.
			if i, ok := b.index[name]; !ok || b.fields[i].v.s != val.s || val.s == "" {
				b.lost = append(b.lost, lost{column: name, reason: DropReservedName})
			}
			continue
		}
		b.set(name, val)
	}
	b.keys = b.keys[:start]
}

// toValue classifies a property, trait or context value. ok is false for
// nil.
func toValue(v any) (value, bool) {
	switch v := v.(type) {
	case nil:
		return value{}, false
	case string:
		if t, ok := parseTimestamp(v); ok {
			return value{kind: kindTime, s: v, t: t}, true
		}
		return value{kind: kindString, s: v}, true
	case bool:
		return value{kind: kindBool, b: v}, true
	case json.Number:
		return numberValue(string(v)), true
	case float64:
		return floatValue(v), true
	case float32:
		return floatValue(float64(v)), true
	case int:
		return value{kind: kindInt, s: strconv.FormatInt(int64(v), 10)}, true
	case int8:
		return value{kind: kindInt, s: strconv.FormatInt(int64(v), 10)}, true
	case int16:
		return value{kind: kindInt, s: strconv.FormatInt(int64(v), 10)}, true
	case int32:
		return value{kind: kindInt, s: strconv.FormatInt(int64(v), 10)}, true
	case int64:
		return value{kind: kindInt, s: strconv.FormatInt(v, 10)}, true
	case uint:
		return uintValue(uint64(v)), true
	case uint8:
		return uintValue(uint64(v)), true
	case uint16:
		return uintValue(uint64(v)), true
	case uint32:
		return uintValue(uint64(v)), true
	case uint64:
		return uintValue(v), true
	case time.Time:
		return value{kind: kindTime, t: v}, true
	case *time.Time:
		if v == nil {
			return value{}, false
		}
		return value{kind: kindTime, t: *v}, true
	}
	// Arrays, objects nested too deep, and any other Go value: JSON text.
	return value{kind: kindJSON, s: jsonText(v)}, true
}

func uintValue(u uint64) value {
	if u > math.MaxInt64 {
		return value{kind: kindFloat, s: strconv.FormatUint(u, 10)}
	}
	return value{kind: kindInt, s: strconv.FormatUint(u, 10)}
}

func floatValue(f float64) value {
	switch {
	case math.IsNaN(f):
		return value{kind: kindFloat, s: "NaN"}
	case math.IsInf(f, 1):
		return value{kind: kindFloat, s: "Infinity"}
	case math.IsInf(f, -1):
		return value{kind: kindFloat, s: "-Infinity"}
	}
	return value{kind: kindFloat, s: strconv.FormatFloat(f, 'g', -1, 64)}
}

// numberValue classifies a JSON number by its text: an integer that fits
// INT64 is an integer, any other valid number a float. Text that is not a
// JSON number (only possible for a json.Number built in Go) is a string.
func numberValue(s string) value {
	if !isJSONNumber(s) {
		return value{kind: kindString, s: s}
	}
	if !strings.ContainsAny(s, ".eE") {
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return value{kind: kindInt, s: s}
		}
	}
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		// Out of FLOAT64's range: keep every digit as text.
		return value{kind: kindString, s: s}
	}
	return value{kind: kindFloat, s: s}
}

// isJSONNumber reports whether s is a number as JSON writes it.
// encoding/json judges the syntax; a JSON number starts with '-' or a digit
// and ends with a digit, which tells it from JSON's other values and from
// surrounding space, which json.Valid allows. Only a json.Number built in Go
// can fail this: the decoder checked the ones it made. json.Valid takes
// about 70 ns a number here against 7 ns for a scanner of our own
// (BenchmarkNumberValue), some 1% of mapping an event: not worth one.
func isJSONNumber(s string) bool {
	n := len(s)
	return n > 0 && (s[0] == '-' || isDigit(s[0])) && isDigit(s[n-1]) && json.Valid([]byte(s))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// finite reports whether the text of a kindInt or kindFloat value is a
// number, rather than NaN, Infinity or -Infinity.
func finite(s string) bool {
	switch s {
	case "NaN", "Infinity", "-Infinity":
		return false
	}
	return true
}

// parseTimestamp reports whether s is an RFC 3339 timestamp that BigQuery can
// hold (years 1 to 9999).
func parseTimestamp(s string) (time.Time, bool) {
	// Cheap shape check first: "2006-01-02T15:04:05" and a zone at least.
	if len(s) < 20 || len(s) > 40 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, false
	}
	return t, true
}

// formatTime writes t as BigQuery stores it: UTC, to the microsecond.
func formatTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format("2006-01-02T15:04:05.999999Z")
}

// jsonText writes v as compact JSON, without HTML escaping.
func jsonText(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// eventID returns the id of e: its messageId, or, for an event built without
// one, a digest of its JSON, so that every attempt to deliver it gets the
// same id and BigQuery can drop the duplicates.
func eventID(e spec.Event) string {
	if id := e.Fields().MessageID; id != "" {
		return id
	}
	data, err := e.MarshalJSON()
	if err != nil {
		data = fmt.Appendf(nil, "%#v", e)
	}
	sum := sha256.Sum256(data)
	return "ot-" + hex.EncodeToString(sum[:16])
}

// mapEvent appends the rows of e to out: two for a track (tracks and the
// event's table), two for an identify with a userId (identifies and users),
// one otherwise.
func (m *mapper) mapEvent(e spec.Event, index int, now time.Time, out map[string][]*row, order *[]string) error {
	c := e.Fields()
	id := eventID(e)
	add := func(table string, fields []field, lost []lost) {
		if _, ok := out[table]; !ok {
			*order = append(*order, table)
		}
		out[table] = append(out[table], &row{event: index, ev: e, table: table, insertID: id, fields: fields, mapped: lost})
	}
	switch ev := e.(type) {
	case *spec.Track:
		table := m.tableName(ev.Event)
		b := m.common(layoutTrack, c, id, now, 2+len(ev.Properties))
		b.setString("event", table)
		b.setString("event_text", ev.Event)
		n, nl := len(b.fields), len(b.lost)
		b.flatten("", ev.Properties, true, 0)
		fields, lost := b.fields, b.lost
		b.release()
		add(tableTracks, fields[:n:n], lost[:nl:nl])
		add(table, fields, lost)
	case *spec.Identify:
		b := m.common(layoutIdentify, c, id, now, len(ev.Traits))
		b.flatten("", ev.Traits, true, 0)
		add(tableIdentifies, b.fields, b.lost)
		b.release()
		if c.UserID != "" {
			b := m.builder(layoutUser, 4+len(ev.Traits))
			b.setString("id", c.UserID)
			b.setTime("received_at", receivedAt(c, now))
			b.setTime("uuid_ts", now)
			b.setTime("loaded_at", now)
			b.flatten("", ev.Traits, true, 0)
			add(tableUsers, b.fields, b.lost)
			b.release()
		}
	case *spec.Page:
		fields, lost := m.view(c, id, now, ev.Name, ev.Category, ev.Properties)
		add(tablePages, fields, lost)
	case *spec.Screen:
		fields, lost := m.view(c, id, now, ev.Name, ev.Category, ev.Properties)
		add(tableScreens, fields, lost)
	case *spec.Group:
		b := m.common(layoutGroup, c, id, now, 1+len(ev.Traits))
		b.setString("group_id", ev.GroupID)
		b.flatten("", ev.Traits, true, 0)
		add(tableGroups, b.fields, b.lost)
		b.release()
	case *spec.Alias:
		b := m.common(layoutAlias, c, id, now, 1)
		b.setString("previous_id", ev.PreviousID)
		add(tableAliases, b.fields, b.lost)
		b.release()
	default:
		return fmt.Errorf("bigquery: unsupported event type %T", e)
	}
	return nil
}

func (m *mapper) view(c *spec.Common, id string, now time.Time, name, category string, props map[string]any) ([]field, []lost) {
	b := m.common(layoutPage, c, id, now, 2+len(props))
	b.setString("name", name)
	b.setString("category", category)
	b.flatten("", props, true, 0)
	fields, lost := b.fields, b.lost
	b.release()
	return fields, lost
}

// common starts a row with the columns every table but users has, and the
// context flattened.
func (m *mapper) common(l *layout, c *spec.Common, id string, now time.Time, extra int) *builder {
	b := m.builder(l, 9+len(c.Context)*2+extra)
	rec := receivedAt(c, now)
	b.setString("id", id)
	b.setTime("received_at", rec)
	b.setTime("sent_at", c.SentAt)
	b.setTime("original_timestamp", c.OriginalTimestamp)
	ts := c.Timestamp
	if ts.IsZero() {
		ts = rec
	}
	b.setTime("timestamp", ts)
	b.setTime("uuid_ts", now)
	b.setTime("loaded_at", now)
	b.setString("user_id", c.UserID)
	b.setString("anonymous_id", c.AnonymousID)
	b.flatten("context", c.Context, false, 0)
	return b
}

// receivedAt is the event's receivedAt, or now for an event built in Go
// without one.
func receivedAt(c *spec.Common, now time.Time) time.Time {
	if c.ReceivedAt.IsZero() {
		return now
	}
	return c.ReceivedAt
}
