package bigquery

import (
	"cmp"
	"context"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/opentrackhq/opentrack/spec"
)

// DropReason says why values of an event were left out of its row.
type DropReason string

// The reasons values are left out of a row that is written.
const (
	// DropTooManyNewColumns: the event brought more new columns to the
	// table than Options.MaxNewColumnsPerEvent; the columns past the cap
	// were not added.
	DropTooManyNewColumns DropReason = "too many new columns"
	// DropColumnLimit: the table has no room for the columns, under
	// BigQuery's limit of 10,000 columns a table.
	DropColumnLimit DropReason = "table column limit"
	// DropColumnRefused: BigQuery refused to add the column. The
	// integration tries again after a backoff (a minute, doubling up to an
	// hour); Dropped.Err holds BigQuery's answer.
	DropColumnRefused DropReason = "column refused"
	// DropTypeConflict: the value does not fit its column's type and no
	// lossless conversion exists.
	DropTypeConflict DropReason = "type conflict"
	// DropValueRejected: BigQuery rejected the value twice on insert (a
	// malformed DATE, say); the row was written without it. Dropped.Err
	// holds BigQuery's answer.
	DropValueRejected DropReason = "value rejected"
	// DropNoColumn: the table lacks the column and auto table management is
	// off.
	DropNoColumn DropReason = "no column"
	// DropReservedName: a property or trait is named like one of the
	// layout's own columns (id, user_id, context_*, ...); Segment discards
	// those too. One that repeats the column's own value is not reported.
	DropReservedName DropReason = "reserved name"
	// DropUnnamedKey: the key has no ASCII letter or digit, so it has no
	// column name. Dropped.Columns holds the keys as sent.
	DropUnnamedKey DropReason = "unnamed key"
)

// Dropped reports values of an event that were left out of a row that
// BigQuery stored: the event counts as delivered, but not all of it is in
// that table. See [Options.OnDropped].
type Dropped struct {
	// Event is the event. It belongs to the caller of Batch: read it during
	// the call only (marshal it to keep it).
	Event spec.Event
	// Table is the table the row went to.
	Table string
	// Reason says why the values were left out.
	Reason DropReason
	// Columns are the columns whose values were left out (for
	// DropUnnamedKey, the keys as sent), in the row's order.
	Columns []string
	// Err is BigQuery's answer, for DropColumnRefused and
	// DropValueRejected; nil otherwise.
	Err error
}

// lost is one value left out of a row.
type lost struct {
	column string
	reason DropReason
	err    error
}

// maxDropKeys bounds the table, column and reason triples counted apart in
// Stats.DroppedValues, and the table and reason pairs the log summarises
// apart: keys come from events, which anyone holding a write key sends.
const maxDropKeys = 1000

// dropLogInterval is how often, at most, one table's drops for one reason
// are logged.
const dropLogInterval = time.Minute

// maxLoggedColumns bounds the column names a log line lists.
const maxLoggedColumns = 10

// DroppedCount counts the values of one column of one table left out of
// stored rows for one reason, in [Stats].DroppedValues.
type DroppedCount struct {
	Table  string
	Column string
	Reason DropReason
	Count  uint64
}

type dropKey struct {
	table, column string
	reason        DropReason
}

// dropCounts counts dropped values per table, column and reason, for at most
// maxDropKeys triples; past those, values are counted with an empty table
// and column.
type dropCounts struct {
	mu sync.Mutex
	m  map[dropKey]uint64
}

func (d *dropCounts) add(table string, l []lost) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = make(map[dropKey]uint64)
	}
	for _, x := range l {
		k := dropKey{table, x.column, x.reason}
		if _, ok := d.m[k]; !ok && len(d.m) >= maxDropKeys {
			k = dropKey{reason: x.reason}
		}
		d.m[k]++
	}
}

func (d *dropCounts) list() []DroppedCount {
	d.mu.Lock()
	out := make([]DroppedCount, 0, len(d.m))
	for k, n := range d.m {
		out = append(out, DroppedCount{Table: k.table, Column: k.column, Reason: k.reason, Count: n})
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b DroppedCount) int {
		return cmp.Or(cmp.Compare(a.Table, b.Table), cmp.Compare(a.Column, b.Column), cmp.Compare(a.Reason, b.Reason))
	})
	return out
}

// dropLog summarises drops in the log: one line per table and reason per
// dropLogInterval, with the counts since the last line and some of the
// columns, instead of a line per value.
type dropLog struct {
	mu sync.Mutex
	m  map[dropKey]*dropTally // column unused
}

type dropTally struct {
	last           time.Time // when the last line was written; zero before the first
	values, events int
	columns        []string // some columns since the last line
	err            error    // the last error, for the reasons that have one
}

// add counts an event's values dropped from a row of table for one reason,
// and logs a summary if the last one is older than dropLogInterval.
func (d *dropLog) add(log *slog.Logger, now time.Time, table string, reason DropReason, columns []string, err error) {
	d.mu.Lock()
	if d.m == nil {
		d.m = make(map[dropKey]*dropTally)
	}
	k := dropKey{table: table, reason: reason}
	t, ok := d.m[k]
	if !ok {
		if len(d.m) >= maxDropKeys {
			k = dropKey{reason: reason}
			t = d.m[k]
		}
		if t == nil {
			t = &dropTally{}
			d.m[k] = t
		}
	}
	t.values += len(columns)
	t.events++
	for _, c := range columns {
		if len(t.columns) >= maxLoggedColumns {
			break
		}
		if !slices.Contains(t.columns, c) {
			t.columns = append(t.columns, c)
		}
	}
	if err != nil {
		t.err = err
	}
	var line []any
	if t.last.IsZero() || now.Sub(t.last) >= dropLogInterval {
		line = t.line(k)
		t.last = now
	}
	d.mu.Unlock()
	if line != nil {
		log.Warn("bigquery: values left out of stored rows", line...)
	}
}

// line returns the attributes of a summary and resets the counts. d.mu must
// be held.
func (t *dropTally) line(k dropKey) []any {
	attrs := []any{
		slog.String("table", k.table), slog.String("reason", string(k.reason)),
		slog.Int("values", t.values), slog.Int("events", t.events), slog.Any("columns", t.columns),
	}
	if t.err != nil {
		attrs = append(attrs, slog.Any("error", t.err))
	}
	if !t.last.IsZero() {
		attrs = append(attrs, slog.Duration("interval", dropLogInterval))
	}
	t.values, t.events, t.columns, t.err = 0, 0, nil, nil
	return attrs
}

// flush logs the counts not yet logged.
func (d *dropLog) flush(log *slog.Logger) {
	d.mu.Lock()
	var lines [][]any
	for k, t := range d.m {
		if t.events > 0 {
			lines = append(lines, t.line(k))
		}
	}
	d.mu.Unlock()
	for _, l := range lines {
		log.Warn("bigquery: values left out of stored rows", l...)
	}
}

// reportLanded counts and reports the values left out of r, which BigQuery
// has just stored in t.
func (in *Integration) reportLanded(t *table, r *row) {
	if len(r.lost) == 0 {
		return
	}
	for _, l := range r.lost {
		switch l.reason {
		case DropTypeConflict:
			in.stats.typeConflicts.Add(1)
		case DropReservedName:
			in.stats.discarded.Add(1)
		default:
			in.stats.droppedFields.Add(1)
		}
	}
	in.drops.add(t.name, r.lost)
	now := in.clock()
	// One report per reason, in the order the reasons first appear.
	for i, l := range r.lost {
		if slices.ContainsFunc(r.lost[:i], func(p lost) bool { return p.reason == l.reason }) {
			continue
		}
		var cols []string
		var err error
		for _, m := range r.lost[i:] {
			if m.reason == l.reason {
				cols = append(cols, m.column)
				if m.err != nil {
					err = m.err
				}
			}
		}
		// Reserved names are Segment's own rule, not a loss to warn of.
		if l.reason != DropReservedName {
			in.dropLog.add(in.log, now, t.name, l.reason, cols, err)
		}
		if in.opts.OnDropped != nil {
			in.onDropped(Dropped{Event: r.ev, Table: t.name, Reason: l.reason, Columns: cols, Err: err})
		}
	}
}

// onDropped calls Options.OnDropped, recovering a panic.
func (in *Integration) onDropped(d Dropped) {
	defer func() {
		if p := recover(); p != nil {
			in.log.LogAttrs(context.Background(), slog.LevelError, "bigquery: OnDropped panicked",
				slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		}
	}()
	in.opts.OnDropped(d)
}
