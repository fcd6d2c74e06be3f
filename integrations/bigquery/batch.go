package bigquery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	bq "cloud.google.com/go/bigquery"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// schemaRounds is how many times rows rejected for a schema reason are
// written: as mapped, again after the table's schema is reread, and once
// more without the values BigQuery named. After that they fail permanently.
const schemaRounds = 3

// schemaLagWait is how long the Manager is asked to wait before retrying
// rows that BigQuery rejected with "no such field" for columns the table
// has: its streaming backend learns of new columns a while after the schema
// patch.
const schemaLagWait = 30 * time.Second

// requestOverhead is an upper bound of the insertAll request's envelope.
const requestOverhead = 128

// Batch writes events to their tables: each event is mapped to its rows, the
// rows are grouped per table, and each table gets insertAll requests of at
// most Options.MaxRowsPerRequest rows and Options.MaxRequestBytes bytes, with
// insertId = messageId so that BigQuery drops the copies a retry may send.
//
// An event is delivered when all its rows are. When only some events fail,
// Batch returns an [*opentrack.BatchError] naming them; errors that retrying
// cannot fix are marked [opentrack.Permanent]. Rows BigQuery rejects for a
// schema reason are retried alone after the schema is reread, so no row is
// lost for a schema reason; other failures go back to the Manager's retries.
// Values a stored row could not hold are counted in [Stats] and reported to
// Options.OnDropped before Batch returns. Batch does not keep events after
// it returns.
func (in *Integration) Batch(ctx context.Context, events []spec.Event) error {
	if in.closed.Load() {
		return opentrack.Permanent(fmt.Errorf("bigquery: %w", opentrack.ErrClosed))
	}
	now := in.now()
	byTable := make(map[string][]*row)
	var order []string
	be := &opentrack.BatchError{}
	for i, e := range events {
		if err := in.mapper.mapEvent(e, i, now, byTable, &order); err != nil {
			be.Fail(i, opentrack.Permanent(err))
		}
	}

	// Rows that landed while another row of their event failed are not
	// sent again when the Manager retries the event.
	var skipped []*row
	if in.landed.Len() > 0 {
		kept := order[:0]
		for _, name := range order {
			rows := byTable[name][:0]
			for _, r := range byTable[name] {
				if in.landed.Has(landedKey(name, r.insertID)) {
					skipped = append(skipped, r)
					continue
				}
				rows = append(rows, r)
			}
			if len(rows) > 0 {
				byTable[name] = rows
				kept = append(kept, name)
			}
		}
		order = kept
	}

	if len(order) == 1 {
		in.write(ctx, in.table(order[0]), byTable[order[0]])
	} else {
		sem := make(chan struct{}, in.opts.MaxParallelRequests)
		var wg sync.WaitGroup
		for _, name := range order {
			t, rows := in.table(name), byTable[name]
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				in.write(ctx, t, rows)
			})
		}
		wg.Wait()
	}

	for _, name := range order {
		for _, r := range byTable[name] {
			if r.err == nil {
				continue
			}
			// A retryable failure of one of an event's rows wins over a
			// permanent one of another, so that the event is retried.
			if prev, ok := be.Failed[r.event]; ok && !opentrack.IsPermanent(prev) {
				continue
			}
			be.Fail(r.event, r.err)
		}
	}
	for _, name := range order {
		for _, r := range byTable[name] {
			if r.err == nil && be.Failed[r.event] != nil && !opentrack.IsPermanent(be.Failed[r.event]) {
				in.landed.Add(landedKey(name, r.insertID))
			}
		}
	}
	for _, r := range skipped {
		if be.Failed[r.event] == nil {
			in.landed.Remove(landedKey(r.table, r.insertID))
		}
	}
	return be.Err()
}

// maxLanded bounds the rows remembered in Integration.landed.
const maxLanded = 100000

// landedKey is a row's key in Integration.landed: the rows BigQuery took for
// events that failed on another row (a track's event table, say, while its
// tracks row landed), so that the Manager's retry of the event sends only
// what is missing. insertId dedupe would drop the copies too, but BigQuery
// promises it only for about a minute, and retries may come later. Entries
// leave when their event is delivered, or, beyond maxLanded, oldest first.
func landedKey(table, id string) string { return table + "\x00" + id }

// write inserts rows into t, retrying alone the rows BigQuery rejects for a
// schema reason: first after rereading the table's schema (another writer,
// a table recreated), then without the values BigQuery named. Failures are
// left in each row's err.
func (in *Integration) write(ctx context.Context, t *table, rows []*row) {
	for round := 0; ; round++ {
		switch round {
		case 0:
		case 1:
			s, err := in.reload(ctx, t)
			if err != nil {
				for _, r := range rows {
					r.err = err
				}
				return
			}
			if s != nil {
				rows = in.deferLagging(s, rows)
			}
		default:
			for _, r := range rows {
				for _, loc := range r.bad {
					if !slices.Contains(r.drop, loc) {
						r.drop = append(r.drop, loc)
						r.dropErr = r.err
					}
				}
			}
		}
		if len(rows) == 0 {
			return
		}
		if round > 0 {
			in.stats.schemaRetries.Add(uint64(len(rows)))
		}
		s, err := in.ensure(ctx, t, rows)
		if err != nil {
			for _, r := range rows {
				r.err = err
			}
			return
		}
		rows = in.insert(ctx, t, s, rows)
		if len(rows) == 0 {
			return
		}
		if round == schemaRounds-1 {
			for _, r := range rows {
				switch {
				case !r.invalid:
					// The table keeps disappearing: retryable.
				case lagging(s, r):
					r.err = opentrack.RetryAfter(r.err, in.lagWait)
				default:
					r.err = opentrack.Permanent(r.err)
				}
			}
			return
		}
	}
}

// reload rereads t's schema after BigQuery rejected rows. It returns nil
// and no error when the table is gone; ensure then recreates it.
func (in *Integration) reload(ctx context.Context, t *table) (*schema, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := in.fetch(ctx, t, t.state.Load())
	if isNotFound(err) {
		t.stale.Store(true)
		return nil, nil
	}
	return s, err
}

// lagging reports whether r was rejected only for columns that the table's
// schema s has: BigQuery's streaming backend learns of new columns some
// time after the schema patch, and answers "no such field" meanwhile.
func lagging(s *schema, r *row) bool {
	if !r.invalid || !r.unknown || len(r.bad) == 0 {
		return false
	}
	for _, c := range r.bad {
		if _, ok := s.cols[c]; !ok {
			return false
		}
	}
	return true
}

// deferLagging fails the rows that only wait for BigQuery to learn of new
// columns with a retryable error that asks the Manager to wait, and returns
// the others.
func (in *Integration) deferLagging(s *schema, rows []*row) []*row {
	out := rows[:0]
	for _, r := range rows {
		if lagging(s, r) {
			r.err = opentrack.RetryAfter(r.err, in.lagWait)
			continue
		}
		out = append(out, r)
	}
	return out
}

// insert writes rows in requests of bounded rows and bytes. It returns the
// rows to write again after a schema fix: those BigQuery rejected as invalid
// and those of a request that found no table. Other failures are left in
// the rows' err.
func (in *Integration) insert(ctx context.Context, t *table, s *schema, rows []*row) []*row {
	savers := make([]bq.ValueSaver, len(rows))
	sizes := make([]int, len(rows))
	for i, r := range rows {
		r.err, r.invalid, r.unknown, r.bad = nil, false, false, nil
		var sv *saver
		sv, sizes[i] = in.finalize(s, r)
		savers[i] = sv
	}
	ins := t.ref.Inserter()
	ins.SkipInvalidRows = true
	var retry []*row
	for start := 0; start < len(rows); {
		end, size := start, requestOverhead
		for end < len(rows) && end-start < in.opts.MaxRowsPerRequest {
			if end > start && size+sizes[end] > in.opts.MaxRequestBytes {
				break
			}
			size += sizes[end]
			end++
		}
		retry = in.put(ctx, t, ins, rows[start:end], savers[start:end], retry)
		start = end
	}
	return retry
}

// put sends one insertAll request.
func (in *Integration) put(ctx context.Context, t *table, ins *bq.Inserter, rows []*row, savers []bq.ValueSaver, retry []*row) []*row {
	in.stats.insertAllCalls.Add(1)
	rctx, cancel := context.WithTimeout(ctx, in.opts.RequestTimeout)
	err := ins.Put(rctx, savers)
	cancel()
	if err == nil {
		in.stats.rowsInserted.Add(uint64(len(rows)))
		for _, r := range rows {
			in.reportLanded(t, r)
		}
		return retry
	}
	var pme bq.PutMultiError
	if errors.As(err, &pme) {
		failed := 0
		for _, rie := range pme {
			if rie.RowIndex < 0 || rie.RowIndex >= len(rows) {
				continue
			}
			r := rows[rie.RowIndex]
			if r.err != nil {
				continue
			}
			failed++
			in.stats.rowErrors.Add(1)
			r.err = fmt.Errorf("bigquery: insert into %s: row %q rejected: %w", t.name, r.insertID, rie.Errors)
			r.unknown = true
			for _, e := range rie.Errors {
				var re *bq.Error
				if errors.As(e, &re) && re.Reason == "invalid" {
					r.invalid = true
					if re.Location != "" {
						r.bad = append(r.bad, strings.ToLower(re.Location))
					}
					if !strings.HasPrefix(re.Message, "no such field") {
						r.unknown = false
					}
				}
			}
			if r.invalid {
				retry = append(retry, r)
			}
		}
		in.stats.rowsInserted.Add(uint64(len(rows) - failed))
		for _, r := range rows {
			if r.err == nil {
				in.reportLanded(t, r)
			}
		}
		return retry
	}
	if isNotFound(err) {
		// The table is gone (deleted, or recreated and not yet visible to
		// streaming): reload it and try again; retryable if it persists.
		t.stale.Store(true)
		for _, r := range rows {
			r.err = fmt.Errorf("bigquery: insert into %s: %w", t.name, err)
			retry = append(retry, r)
		}
		return retry
	}
	cerr := classify("insert into "+t.name, err)
	for _, r := range rows {
		r.err = cerr
	}
	return retry
}
