package bigquery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bq "cloud.google.com/go/bigquery"
	"google.golang.org/api/option"

	"github.com/opentrackhq/opentrack"
	"github.com/opentrackhq/opentrack/spec"
)

// Defaults for the zero fields of [Options].
const (
	// DefaultLocation is where a missing dataset is created.
	DefaultLocation = "US"
	// DefaultRequestTimeout bounds each call to BigQuery, including the
	// client's own retries of 5xx answers; after it the Manager's retry
	// with backoff takes over.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultMaxRowsPerRequest is BigQuery's recommended maximum of rows in
	// one insertAll request.
	DefaultMaxRowsPerRequest = 500
	// DefaultMaxRequestBytes keeps an insertAll request under BigQuery's
	// 10 MB limit.
	DefaultMaxRequestBytes = 9 << 20
	// DefaultMaxParallelRequests is how many insertAll requests one batch
	// may have in flight, for different tables.
	DefaultMaxParallelRequests = 4
	// DefaultBatchMaxEvents, DefaultBatchMaxBytes and DefaultBatchInterval
	// are the batch settings the integration asks the Manager for. Batches
	// are large so that a busy collector sends full insertAll requests
	// (500 rows) per table even when events spread over many tables; a
	// quiet one still writes every second.
	DefaultBatchMaxEvents = 5000
	DefaultBatchMaxBytes  = 32 << 20
	DefaultBatchInterval  = time.Second
)

// maxRowsPerRequest is BigQuery's hard limit of rows in an insertAll request.
const maxRowsPerRequest = 50000

// ErrClosed is returned (marked [opentrack.Permanent]) by calls made after
// [Integration.Close].
var ErrClosed = errors.New("bigquery: integration closed")

// Options configures an [Integration]. The zero value of every field means
// its default.
type Options struct {
	// Location is the location a missing dataset is created in. Default
	// DefaultLocation ("US").
	Location string

	// DisableAutoTableManagement turns off the creation of the dataset and
	// tables and the addition of columns. The integration then writes only
	// to tables that exist, only the columns they have: values without a
	// column are dropped and counted in [Stats].DroppedFields, and events
	// bound for a missing table fail permanently.
	DisableAutoTableManagement bool

	// RequestTimeout bounds each call to BigQuery (an insertAll request, a
	// metadata read or change). The BigQuery client retries 5xx answers
	// until its context ends, so this is what hands a failing request back
	// to the Manager's retries. Default DefaultRequestTimeout.
	RequestTimeout time.Duration

	// MaxRowsPerRequest caps the rows of one insertAll request. Default
	// DefaultMaxRowsPerRequest; at most 50,000.
	MaxRowsPerRequest int

	// MaxRequestBytes caps the size of one insertAll request, as estimated
	// from its rows' JSON. Default DefaultMaxRequestBytes.
	MaxRequestBytes int

	// MaxParallelRequests is how many tables one batch writes to at once.
	// Default DefaultMaxParallelRequests.
	MaxParallelRequests int

	// Delivery overrides the Manager's delivery settings for this
	// integration; its non-zero fields win. The integration asks for
	// batches of up to DefaultBatchMaxEvents events or DefaultBatchMaxBytes,
	// sent at least every DefaultBatchInterval.
	Delivery opentrack.Delivery

	// Logger receives schema changes, type conflicts and dropped values.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Integration writes events to BigQuery in Segment's warehouse layout. See
// the package documentation for the tables and columns.
//
// It implements [opentrack.Batcher]: the Manager hands it batches, which it
// splits per table and writes with streaming inserts. Its methods are safe
// for concurrent use. Create it with [New] or [FromEnv].
type Integration struct {
	client     *bq.Client
	dataset    *bq.Dataset
	datasetID  string
	opts       Options
	auto       bool
	ownsClient bool
	log        *slog.Logger
	now        func() time.Time
	lagWait    time.Duration // schemaLagWait; shorter in tests
	mapper     mapper

	mu     sync.Mutex
	tables map[string]*table
	landed landedSet

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	stats counters
}

var (
	_ opentrack.Integration   = (*Integration)(nil)
	_ opentrack.Batcher       = (*Integration)(nil)
	_ opentrack.Initializer   = (*Integration)(nil)
	_ opentrack.Closer        = (*Integration)(nil)
	_ opentrack.DeliveryTuner = (*Integration)(nil)
)

// New returns an Integration that writes to dataset through client, in the
// client's project. opts may be nil. The client must not be nil; it stays
// the caller's: Close does not close it.
func New(client *bq.Client, dataset string, opts *Options) *Integration {
	if client == nil {
		panic("bigquery: New called with a nil client")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Location == "" {
		o.Location = DefaultLocation
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxRowsPerRequest <= 0 {
		o.MaxRowsPerRequest = DefaultMaxRowsPerRequest
	}
	o.MaxRowsPerRequest = min(o.MaxRowsPerRequest, maxRowsPerRequest)
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.MaxParallelRequests <= 0 {
		o.MaxParallelRequests = DefaultMaxParallelRequests
	}
	in := &Integration{
		client:    client,
		dataset:   client.Dataset(dataset),
		datasetID: dataset,
		opts:      o,
		auto:      !o.DisableAutoTableManagement,
		log:       o.Logger,
		now:       time.Now,
		lagWait:   schemaLagWait,
		tables:    make(map[string]*table),
	}
	if in.log == nil {
		in.log = slog.Default()
	}
	in.mapper.stats = &in.stats
	return in
}

// FromEnv returns an Integration configured from the environment, read
// through getenv (os.Getenv, usually). It returns nil and no error when
// BIGQUERY_PROJECT_ID or BIGQUERY_DATASET is unset: the integration is not
// configured. The variables are:
//
//	BIGQUERY_PROJECT_ID               the Google Cloud project (required)
//	BIGQUERY_DATASET                  the dataset (required)
//	GOOGLE_APPLICATION_CREDENTIALS_JSON  a credentials JSON document, inline
//	GOOGLE_APPLICATION_CREDENTIALS    the path of a credentials JSON file
//	BIGQUERY_LOCATION                 where a missing dataset is created; default US
//	BIGQUERY_AUTO_TABLE_MANAGEMENT    create the dataset, tables and columns; default true
//	BIGQUERY_EMULATOR_HOST            REST root of a local BigQuery stand-in, such as
//	                                  http://127.0.0.1:9050; no credentials are used
//
// Without credential variables the default credential chain is used. The
// client FromEnv creates is closed by [Integration.Close].
func FromEnv(ctx context.Context, getenv func(string) string) (*Integration, error) {
	project := strings.TrimSpace(getenv("BIGQUERY_PROJECT_ID"))
	dataset := strings.TrimSpace(getenv("BIGQUERY_DATASET"))
	if project == "" || dataset == "" {
		return nil, nil
	}
	if !validDataset(dataset) {
		return nil, fmt.Errorf("bigquery: BIGQUERY_DATASET %q: a dataset name has only letters, digits and underscores, at most 1024", dataset)
	}
	opts := &Options{Location: strings.TrimSpace(getenv("BIGQUERY_LOCATION"))}
	if v := strings.TrimSpace(getenv("BIGQUERY_AUTO_TABLE_MANAGEMENT")); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("bigquery: BIGQUERY_AUTO_TABLE_MANAGEMENT %q: want true or false", v)
		}
		opts.DisableAutoTableManagement = !on
	}
	var copts []option.ClientOption
	if host := strings.TrimSpace(getenv("BIGQUERY_EMULATOR_HOST")); host != "" {
		if !strings.Contains(host, "://") {
			host = "http://" + host
		}
		copts = append(copts,
			option.WithEndpoint(strings.TrimRight(host, "/")+"/bigquery/v2/"),
			option.WithoutAuthentication())
	} else {
		creds, err := credentialsFromEnv(getenv)
		if err != nil {
			return nil, err
		}
		copts = append(copts, creds...)
	}
	client, err := bq.NewClient(ctx, project, copts...)
	if err != nil {
		return nil, fmt.Errorf("bigquery: %w", err)
	}
	if opts.Location != "" {
		client.Location = opts.Location
	}
	in := New(client, dataset, opts)
	in.ownsClient = true
	return in, nil
}

var validDatasetRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// validDataset reports whether name is a valid dataset ID: letters, digits
// and underscores, at most 1024.
func validDataset(name string) bool {
	return len(name) <= 1024 && validDatasetRE.MatchString(name)
}

// credentialsFromEnv reads GOOGLE_APPLICATION_CREDENTIALS_JSON or the file
// named by GOOGLE_APPLICATION_CREDENTIALS. The operator supplies them, so
// they are trusted; their "type" field picks the credential type.
func credentialsFromEnv(getenv func(string) string) ([]option.ClientOption, error) {
	var data []byte
	var source string
	if v := strings.TrimSpace(getenv("GOOGLE_APPLICATION_CREDENTIALS_JSON")); v != "" {
		data, source = []byte(v), "GOOGLE_APPLICATION_CREDENTIALS_JSON"
	} else if path := strings.TrimSpace(getenv("GOOGLE_APPLICATION_CREDENTIALS")); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("bigquery: GOOGLE_APPLICATION_CREDENTIALS: %w", err)
		}
		data, source = b, "GOOGLE_APPLICATION_CREDENTIALS"
	} else {
		return nil, nil // the default chain
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("bigquery: %s: not a credentials JSON document: %w", source, err)
	}
	switch t := option.CredentialsType(head.Type); t {
	case option.ServiceAccount, option.AuthorizedUser, option.ImpersonatedServiceAccount, option.ExternalAccount:
		return []option.ClientOption{option.WithAuthCredentialsJSON(t, data)}, nil
	default:
		return nil, fmt.Errorf("bigquery: %s: unsupported credentials type %q", source, head.Type)
	}
}

// Name returns "BigQuery", the integration's key in Segment's "integrations"
// object.
func (in *Integration) Name() string { return "BigQuery" }

// Delivery asks the Manager for batches of up to DefaultBatchMaxEvents events,
// sent at least every DefaultBatchInterval, with the non-zero fields of
// Options.Delivery on top.
func (in *Integration) Delivery() opentrack.Delivery {
	d := in.opts.Delivery
	if d.Batch.MaxEvents == 0 {
		d.Batch.MaxEvents = DefaultBatchMaxEvents
	}
	if d.Batch.MaxBytes == 0 {
		d.Batch.MaxBytes = DefaultBatchMaxBytes
	}
	if d.Batch.Interval == 0 {
		d.Batch.Interval = DefaultBatchInterval
	}
	return d
}

// Init checks that the dataset exists and, with auto table management,
// creates it in Options.Location when it does not. Tables are created later,
// when first needed.
func (in *Integration) Init(ctx context.Context) error {
	if !validDataset(in.datasetID) {
		return opentrack.Permanent(fmt.Errorf("bigquery: invalid dataset name %q", in.datasetID))
	}
	in.stats.metadataCalls.Add(1)
	cctx, cancel := context.WithTimeout(ctx, in.opts.RequestTimeout)
	md, err := in.dataset.Metadata(cctx)
	cancel()
	switch {
	case err == nil:
		if !strings.EqualFold(md.Location, in.opts.Location) {
			in.log.Info("bigquery: dataset exists in another location than configured",
				slog.String("dataset", in.datasetID), slog.String("location", md.Location),
				slog.String("configured", in.opts.Location))
		}
		return nil
	case !isNotFound(err):
		return classify("get dataset "+in.datasetID, err)
	case !in.auto:
		return opentrack.Permanent(fmt.Errorf("bigquery: dataset %s does not exist and auto table management is off", in.datasetID))
	}
	in.stats.metadataCalls.Add(1)
	cctx, cancel = context.WithTimeout(ctx, in.opts.RequestTimeout)
	err = in.dataset.Create(cctx, &bq.DatasetMetadata{
		Location:    in.opts.Location,
		Description: "Segment-compatible event tables written by OpenTrack.",
		Labels:      map[string]string{"created_by": "opentrack"},
	})
	cancel()
	if err != nil && !isAlreadyExists(err) {
		return classify("create dataset "+in.datasetID, err)
	}
	if err == nil {
		in.log.Info("bigquery: dataset created", slog.String("dataset", in.datasetID), slog.String("location", in.opts.Location))
	}
	return nil
}

// Close stops the integration: later calls return [ErrClosed]. It closes the
// BigQuery client only if [FromEnv] created it. Calls in progress are not
// waited for; the Manager calls Close after its last batch.
func (in *Integration) Close(ctx context.Context) error {
	in.closeOnce.Do(func() {
		in.closed.Store(true)
		if in.ownsClient {
			in.closeErr = in.client.Close()
		}
	})
	return in.closeErr
}

// Track writes e to the tracks table and to its event's table.
func (in *Integration) Track(ctx context.Context, e *spec.Track) error { return in.one(ctx, e) }

// Identify writes e to the identifies table and, when it has a userId, to
// the users table.
func (in *Integration) Identify(ctx context.Context, e *spec.Identify) error { return in.one(ctx, e) }

// Page writes e to the pages table.
func (in *Integration) Page(ctx context.Context, e *spec.Page) error { return in.one(ctx, e) }

// Screen writes e to the screens table.
func (in *Integration) Screen(ctx context.Context, e *spec.Screen) error { return in.one(ctx, e) }

// Group writes e to the groups table.
func (in *Integration) Group(ctx context.Context, e *spec.Group) error { return in.one(ctx, e) }

// Alias writes e to the aliases table.
func (in *Integration) Alias(ctx context.Context, e *spec.Alias) error { return in.one(ctx, e) }

// one writes a single event as a batch of one.
func (in *Integration) one(ctx context.Context, e spec.Event) error {
	err := in.Batch(ctx, []spec.Event{e})
	var be *opentrack.BatchError
	if errors.As(err, &be) {
		return be.Failed[0]
	}
	return err
}

// Stats are the integration's counters, from [Integration.Stats].
type Stats struct {
	// RowsInserted counts rows BigQuery accepted. A track writes two rows
	// (tracks and its event's table), an identify with a userId two
	// (identifies and users), other calls one.
	RowsInserted uint64
	// InsertAllCalls counts insertAll requests made; the BigQuery client's
	// own retries of a request are not counted.
	InsertAllCalls uint64
	// MetadataCalls counts dataset and table reads, creations and schema
	// patches. In steady state no event makes one.
	MetadataCalls uint64
	// TablesCreated counts tables created.
	TablesCreated uint64
	// ColumnsAdded counts columns added by schema patches.
	ColumnsAdded uint64
	// DiscardedProperties counts properties and traits discarded because
	// they are named like a reserved column (id, user_id, context_*, ...),
	// once per row. One that repeats the column's own value is not counted.
	DiscardedProperties uint64
	// TypeConflicts counts values left null because they did not fit their
	// column's type.
	TypeConflicts uint64
	// Coerced counts values converted losslessly to their column's type (an
	// integer into FLOAT, a number into STRING, ...).
	Coerced uint64
	// DroppedFields counts values left out for want of a column: keys with
	// no ASCII letter or digit, columns BigQuery refused to add, columns a
	// table lacks when auto table management is off, and values BigQuery
	// rejected twice.
	DroppedFields uint64
	// RowErrors counts rows BigQuery rejected in an insertAll answer.
	RowErrors uint64
	// SchemaRetries counts rows written again after BigQuery rejected them
	// for a schema reason.
	SchemaRetries uint64
}

type counters struct {
	rowsInserted, insertAllCalls, metadataCalls, tablesCreated, columnsAdded,
	discarded, typeConflicts, coerced, droppedFields, rowErrors, schemaRetries atomic.Uint64
}

// Stats returns the integration's counters. It is safe to call at any time.
func (in *Integration) Stats() Stats {
	s := &in.stats
	return Stats{
		RowsInserted:        s.rowsInserted.Load(),
		InsertAllCalls:      s.insertAllCalls.Load(),
		MetadataCalls:       s.metadataCalls.Load(),
		TablesCreated:       s.tablesCreated.Load(),
		ColumnsAdded:        s.columnsAdded.Load(),
		DiscardedProperties: s.discarded.Load(),
		TypeConflicts:       s.typeConflicts.Load(),
		Coerced:             s.coerced.Load(),
		DroppedFields:       s.droppedFields.Load(),
		RowErrors:           s.rowErrors.Load(),
		SchemaRetries:       s.schemaRetries.Load(),
	}
}
