// Package bigquery is the OpenTrack integration for Google BigQuery. It
// writes events in the table layout of Segment's warehouses, so that SQL and
// dbt models written against Segment's BigQuery destination keep working,
// with streaming inserts (tabledata.insertAll) through
// cloud.google.com/go/bigquery.
//
// # Setting up
//
// Hand [New] a client of your own, or let [FromEnv] build one from the
// environment (BIGQUERY_PROJECT_ID, BIGQUERY_DATASET, credentials; see
// FromEnv), then give the integration to the Manager:
//
//	client, err := bq.NewClient(ctx, "my-project") // bq "cloud.google.com/go/bigquery"
//	...
//	warehouse, err := bigquery.New(client, "segment", nil)
//	...
//	m, err := opentrack.New(opentrack.Options{
//		Integrations: []opentrack.Integration{warehouse},
//	})
//
// The service account needs the BigQuery Data Editor role (on the project,
// so that it may create the dataset, or on the dataset), and BigQuery Job
// User to query the tables and create the views below.
//
// # Tables
//
// One table per Segment call, as Segment names them:
//
//	tracks       a row per track: the common columns, event and event_text; no properties
//	<event>      a row per track of that event name: the common columns, event,
//	             event_text and the properties ("Order Completed" -> order_completed)
//	identifies   a row per identify: the common columns and the traits
//	users        a row per identify with a userId: id (the userId), received_at,
//	             uuid_ts, loaded_at and the traits
//	pages        a row per page: the common columns, name, category and the properties
//	screens      a row per screen: as pages
//	groups       a row per group: the common columns, group_id and the traits
//	aliases      a row per alias: the common columns and previous_id
//
// An event table is named by [TableName]: the event name in snake_case as
// Segment's github.com/segmentio/go-snakecase gives it, so "Order Completed"
// and "orderCompleted" share order_completed. A name that would be one of the
// tables above (or accounts, or one of their _view names) gets a leading
// underscore ("Tracks" goes to _tracks); a name with no ASCII letter or digit
// goes to _unnamed_event, where event_text tells the events apart.
//
// With auto table management (the default), the dataset is created in
// Options.Location when missing, and each table when first needed,
// partitioned by day on received_at. Table schemas are cached: in steady
// state writing makes no metadata call.
//
// # Columns
//
// Every table but users has these columns:
//
//	id                  the messageId (also the insertId of the row); REQUIRED
//	received_at         when the collector received the event; REQUIRED; the partitioning column
//	sent_at             when the sender sent it, by the sender's clock
//	original_timestamp  the time the sender gave the event
//	timestamp           that time corrected for the sender's clock skew
//	uuid_ts, loaded_at  when the row was written to BigQuery
//	user_id, anonymous_id
//	context_*           the context, flattened: context_ip, context_library_name,
//	                    context_page_url, context_user_agent, ...
//
// Properties and traits become columns of their own, unprefixed: keys in
// snake_case, nested objects joined with "_" ({"address": {"zipCode": 1}}
// gives address_zip_code), arrays as JSON strings, nulls left out. A column
// name starting with a digit gets a leading underscore; a key with no ASCII
// letter or digit has no column, and its value is left out
// ([DropUnnamedKey]). Where two keys give the same column, the first in
// sorted key order wins.
//
// A property or trait named like a reserved column (one of the columns above,
// or any context_* name) is discarded ([DropReservedName]), as Segment does:
// it never overwrites the column. One that repeats the column's own value,
// such as the page name analytics.js also sends as a property, is not
// reported.
//
// # Types and schema evolution
//
// A column's type comes from the first value seen: STRING, INTEGER (a whole
// number that fits INT64), FLOAT, BOOLEAN, or TIMESTAMP (an RFC 3339
// string). New columns are added NULLABLE by a schema patch guarded by the
// table's etag; when another writer changed the table first (412), the
// schema is read again and the patch retried.
//
// A value that does not fit its column is converted when that is lossless:
// an integer into FLOAT, a whole float into INTEGER, anything into STRING
// (a timestamp keeps the text it came as). Otherwise the field is left null
// in that row ([DropTypeConflict]). Columns of existing tables keep their
// types, including NUMERIC, JSON and DATE. No row is lost for a schema
// reason: rows BigQuery rejects as invalid are written again alone, after the
// table's schema is read again, and then, if BigQuery still rejects them,
// without the values it named ([DropValueRejected]). Rows rejected with "no
// such field" for columns the table has (BigQuery's streaming backend learns
// of new columns a while after the patch) are handed back to the Manager to
// retry later.
//
// # Hostile and odd events
//
// Anyone holding the write key, which every web page that loads analytics.js
// carries, can send events with thousands of distinct keys; a table holds at
// most 10,000 columns. So one event never costs the others their columns:
//
//   - Each event may add at most Options.MaxNewColumnsPerEvent columns to a
//     table (default 100), decided before any schema change; the values of
//     the columns past the cap are left out of its row
//     ([DropTooManyNewColumns]).
//   - The room a table has left under 10,000 columns goes first to the rows
//     that need the fewest new columns; a row that needs more than is left
//     gets none of its new columns ([DropColumnLimit]), and its table is
//     read again at most once a minute in case columns were dropped.
//   - A schema change BigQuery refuses as invalid is narrowed down to the
//     rows, then (for a row of at most 100 new columns) the columns, that
//     cause it, in at most 32 calls; every other column is added. The
//     refused columns' values are left out ([DropColumnRefused]), and they
//     are proposed again after a minute, then 2, 4, ... up to an hour:
//     no refusal is permanent, and no restart is needed to recover.
//   - A table that cannot be created with the batch's columns is created
//     with the layout's own, and the columns are added as above.
//
// # Values that are not stored
//
// An event counts as delivered when its rows are stored, even if a row had
// to leave values out for one of the reasons above ([DropReason]). Those
// values are never lost silently: each stored row that left some out is
// reported to Options.OnDropped, with the event, the table, the columns and
// the reason, from which the values can be kept elsewhere (a JSON-lines
// file, say); they are counted per table, column and reason in
// [Stats].DroppedValues; and they are logged, summarised: one line per
// table and reason a minute at most, with the counts and some of the
// columns. A hook rather than a dead-letter table: it reports whether or not
// BigQuery takes anything, and a table of its own would be subject to the
// same limits and refusals, and is one Segment's layout does not have.
//
// # Writes and errors
//
// The Manager batches events: by default at most [BatchMaxEvents] (5,000)
// events or [BatchMaxBytes] (32 MB) a batch, sent at least every second;
// see [Integration.Delivery]. Each batch is split per table and written
// with insertAll requests of at most 500 rows and 9 MB,
// with insertId = messageId, so BigQuery drops the copies that a retry may
// send. Each request is bounded by Options.RequestTimeout, since the BigQuery
// client retries 5xx answers until its context ends; then the Manager's
// retries with backoff take over. Only the failed events of a batch are
// retried (an [*opentrack.BatchError]), and rows of theirs that already
// landed are not sent again. Errors are classified by the rule the HTTP
// destinations share (408, 429 and 5xx are retried, honouring Retry-After;
// other 4xx answers are [opentrack.Permanent]), except that BigQuery's rate
// and quota limits, which it answers with a 403, are retried too.
//
// # Deduplicating
//
// Like Segment's, the tables may hold the same event more than once:
// BigQuery drops rows with a repeated insertId only on a best-effort basis,
// for about a minute. Query through a view that keeps one row per id, as
// Segment's <table>_view views do:
//
//	CREATE OR REPLACE VIEW `my-project.segment.tracks_view` AS
//	SELECT * EXCEPT (_row_number)
//	FROM (
//	  SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY loaded_at DESC) AS _row_number
//	  FROM `my-project.segment.tracks`
//	  WHERE received_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 60 DAY)
//	)
//	WHERE _row_number = 1
//
// The filter on received_at, the partitioning column, limits the scan to the
// last 60 days' partitions.
//
// # The users table
//
// BigQuery has no upsert, so users holds a row per identify rather than one
// per user. The latest row of each user is:
//
//	CREATE OR REPLACE VIEW `my-project.segment.users_view` AS
//	SELECT * EXCEPT (_row_number)
//	FROM (
//	  SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY received_at DESC, loaded_at DESC) AS _row_number
//	  FROM `my-project.segment.users`
//	)
//	WHERE _row_number = 1
//
// That row holds the traits of the latest identify only. To merge traits over
// time, as Segment's users table does, take each trait's latest non-null
// value:
//
//	SELECT id,
//	  ARRAY_AGG(email IGNORE NULLS ORDER BY received_at DESC LIMIT 1)[SAFE_OFFSET(0)] AS email,
//	  ARRAY_AGG(plan IGNORE NULLS ORDER BY received_at DESC LIMIT 1)[SAFE_OFFSET(0)] AS plan,
//	  MAX(received_at) AS received_at
//	FROM `my-project.segment.users`
//	GROUP BY id
package bigquery
