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
	"github.com/opentrackhq/opentrack/internal/recent"
	"github.com/opentrackhq/opentrack/spec"
)

// Name is the integration's name, and its key in Segment's "integrations"
// object.
const Name = "BigQuery"

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
	// DefaultMaxNewColumnsPerEvent is how many columns one event may add to
	// a table: well below BigQuery's 10,000 columns a table, and well above
	// what the context, properties or traits of an ordinary event bring
	// (some 20 context columns from analytics.js, 40 from a mobile SDK).
	DefaultMaxNewColumnsPerEvent = 100
)

// The integration's own batch defaults, which [Integration.Delivery] gives
// the Manager (an [opentrack.DeliveryTuner]): up to BatchMaxEvents events or
// BatchMaxBytes, sent at least every BatchInterval. They are larger than the
// Manager's defaults (opentrack.DefaultBatchMaxEvents, 500, and the like)
// so that a busy collector sends full insertAll requests (500 rows) per
// table even when events spread over many tables; a quiet one still writes
// every second. The host's non-zero Delivery fields override them: this
// package's Options.Delivery, and the Manager's opentrack.Options.Delivery.
const (
	BatchMaxEvents = 5000
	BatchMaxBytes  = 32 << 20
	BatchInterval  = time.Second
)

// Limits of BigQuery's that bound the options.
const (
	// maxRowsPerRequest is BigQuery's limit of rows in an insertAll request.
	maxRowsPerRequest = 50000
	// maxRequestBytes is BigQuery's limit of an insertAll request's size.
	maxRequestBytes = 10 << 20
)

// Options configures an [Integration]. The zero value of every field means
// its default.
type Options struct {
	// Location is the location a missing dataset is created in. Default
	// DefaultLocation ("US").
	Location string

	// DisableAutoTableManagement turns off the creation of the dataset and
	// tables and the addition of columns. The integration then writes only
	// to tables that exist, only the columns they have: values without a
	// column are left out and reported (see OnDropped), and events bound
	// for a missing table fail permanently.
	DisableAutoTableManagement bool

	// RequestTimeout bounds each call to BigQuery (an insertAll request, a
	// metadata read or change). The BigQuery client retries 5xx answers
	// until its context ends, so this is what hands a failing request back
	// to the Manager's retries. Default DefaultRequestTimeout.
	RequestTimeout time.Duration

	// MaxRowsPerRequest caps the rows of one insertAll request. Default
	// DefaultMaxRowsPerRequest; at most 50,000, BigQuery's limit.
	MaxRowsPerRequest int

	// MaxRequestBytes caps the size of one insertAll request, as estimated
	// from its rows' JSON. Default DefaultMaxRequestBytes; at most 10 MB,
	// BigQuery's limit.
	MaxRequestBytes int

	// MaxParallelRequests is how many tables one batch writes to at once.
	// Default DefaultMaxParallelRequests.
	MaxParallelRequests int

	// MaxNewColumnsPerEvent caps the columns one event may add to a table
	// (to each table it writes to: a track writes to tracks and to its
	// event's table), so that one event cannot spend a table's budget of
	// 10,000 columns. The layout's own columns (id, received_at, ...) do
	// not count. The cap applies in the row's column order (context
	// first, then properties or traits, each in key order), before any
	// schema change: the values of the columns past it are left out of
	// that row and reported as [DropTooManyNewColumns]; a later event that
	// brings fewer new columns adds them. Default
	// DefaultMaxNewColumnsPerEvent; at most 10,000.
	MaxNewColumnsPerEvent int

	// OnDropped, if set, is called for every row that BigQuery stored
	// without some of its event's values, once per reason, with the event,
	// the table and the columns (see [Dropped] and [DropReason]): the
	// event counts as delivered, and this is where the values it lost can
	// be found. It is called from Batch, before Batch returns, possibly
	// from several goroutines at once (one per table being written); it
	// should return quickly. A panic in it is recovered and logged. The
	// same values are counted in [Stats].DroppedValues whether it is set
	// or not.
	OnDropped func(Dropped)

	// Delivery overrides the Manager's delivery settings for this
	// integration; its non-zero fields win. The integration asks for
	// batches of up to BatchMaxEvents events or BatchMaxBytes, sent at
	// least every BatchInterval.
	Delivery opentrack.Delivery

	// Logger receives table creations, schema changes and summaries of
	// the values left out of stored rows (one line per table and reason a
	// minute at most). Nil means slog.Default().
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
	now        func() time.Time // the rows' uuid_ts and loaded_at
	clock      func() time.Time // backoffs and intervals
	lagWait    time.Duration    // schemaLagWait; shorter in tests
	mapper     mapper

	mu     sync.Mutex
	tables map[string]*table
	landed *recent.Set // see landedKey

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	stats   counters
	drops   dropCounts
	dropLog dropLog
}

var (
	_ opentrack.Integration   = (*Integration)(nil)
	_ opentrack.Batcher       = (*Integration)(nil)
	_ opentrack.Initializer   = (*Integration)(nil)
	_ opentrack.Closer        = (*Integration)(nil)
	_ opentrack.DeliveryTuner = (*Integration)(nil)
)

// New returns an Integration that writes to dataset through client, in the
// client's project. opts may be nil: nil or zero fields mean their
// defaults. The client stays the caller's: Close does not close it.
//
// It returns a [*opentrack.ConfigError] for a nil client, an invalid dataset
// name or an invalid option (Field "bigquery.Options.MaxRowsPerRequest",
// say).
func New(client *bq.Client, dataset string, opts *Options) (*Integration, error) {
	if client == nil {
		return nil, &opentrack.ConfigError{Field: "bigquery.New client", Reason: "must not be nil"}
	}
	if !validDataset(dataset) {
		return nil, &opentrack.ConfigError{Field: "bigquery.New dataset",
			Reason: fmt.Sprintf("%q: a dataset name has only letters, digits and underscores, at most 1024", dataset)}
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Location == "" {
		o.Location = DefaultLocation
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxRowsPerRequest == 0 {
		o.MaxRowsPerRequest = DefaultMaxRowsPerRequest
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.MaxParallelRequests == 0 {
		o.MaxParallelRequests = DefaultMaxParallelRequests
	}
	if o.MaxNewColumnsPerEvent == 0 {
		o.MaxNewColumnsPerEvent = DefaultMaxNewColumnsPerEvent
	}
	in := &Integration{
		client:    client,
		dataset:   client.Dataset(dataset),
		datasetID: dataset,
		opts:      o,
		auto:      !o.DisableAutoTableManagement,
		log:       o.Logger,
		now:       time.Now,
		clock:     time.Now,
		lagWait:   schemaLagWait,
		tables:    make(map[string]*table),
	}
	in.landed = recent.New(maxLanded)
	if in.log == nil {
		in.log = slog.Default()
	}
	return in, nil
}

// validate checks the options against their ranges.
func (o *Options) validate() error {
	bad := func(field, reason string) error {
		return &opentrack.ConfigError{Field: "bigquery.Options." + field, Reason: reason}
	}
	d := o.Delivery
	switch {
	case o.RequestTimeout < 0:
		return bad("RequestTimeout", "must not be negative")
	case o.MaxRowsPerRequest < 0 || o.MaxRowsPerRequest > maxRowsPerRequest:
		return bad("MaxRowsPerRequest", fmt.Sprintf("must be between 0 (the default, %d) and %d, BigQuery's limit", DefaultMaxRowsPerRequest, maxRowsPerRequest))
	case o.MaxRequestBytes < 0 || o.MaxRequestBytes > maxRequestBytes:
		return bad("MaxRequestBytes", fmt.Sprintf("must be between 0 (the default, %d) and %d, BigQuery's limit", DefaultMaxRequestBytes, maxRequestBytes))
	case o.MaxParallelRequests < 0:
		return bad("MaxParallelRequests", "must not be negative")
	case o.MaxNewColumnsPerEvent < 0 || o.MaxNewColumnsPerEvent > maxTableColumns:
		return bad("MaxNewColumnsPerEvent", fmt.Sprintf("must be between 0 (the default, %d) and %d, BigQuery's limit of columns a table", DefaultMaxNewColumnsPerEvent, maxTableColumns))
	case d.QueueSize < 0:
		return bad("Delivery.QueueSize", "must not be negative")
	case d.Workers < 0:
		return bad("Delivery.Workers", "must not be negative")
	case d.CallTimeout < 0:
		return bad("Delivery.CallTimeout", "must not be negative")
	case d.Retry.MaxAttempts < 0:
		return bad("Delivery.Retry.MaxAttempts", "must not be negative")
	case d.Retry.InitialBackoff < 0 || d.Retry.MaxBackoff < 0 || d.Retry.MaxElapsedTime < 0:
		return bad("Delivery.Retry", "durations must not be negative")
	case d.Batch.MaxEvents < 0 || d.Batch.MaxBytes < 0 || d.Batch.Interval < 0:
		return bad("Delivery.Batch", "must not be negative")
	}
	return nil
}

// The variables [FromEnv] reads that configure this integration. The
// credential variables are Google's, shared with other Google libraries:
// they alone do not turn the integration on.
var envVars = []string{"BIGQUERY_PROJECT_ID", "BIGQUERY_DATASET", "BIGQUERY_LOCATION", "BIGQUERY_AUTO_TABLE_MANAGEMENT", "BIGQUERY_EMULATOR_HOST"}

// FromEnv returns an Integration configured from the environment, read
// through getenv (os.Getenv, usually). The variables are:
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
// It returns [opentrack.ErrNotConfigured] when none of the BIGQUERY_*
// variables is set, and a [*opentrack.ConfigError] naming the variable for a
// half configuration (BIGQUERY_PROJECT_ID without BIGQUERY_DATASET, or the
// reverse, or another BIGQUERY_* variable without both) or an invalid value.
// Without credential variables the default credential chain is used. The
// client FromEnv creates is closed by [Integration.Close].
func FromEnv(ctx context.Context, getenv func(string) string) (*Integration, error) {
	var set []string
	for _, k := range envVars {
		if strings.TrimSpace(getenv(k)) != "" {
			set = append(set, k)
		}
	}
	if len(set) == 0 {
		return nil, opentrack.ErrNotConfigured
	}
	project := strings.TrimSpace(getenv("BIGQUERY_PROJECT_ID"))
	dataset := strings.TrimSpace(getenv("BIGQUERY_DATASET"))
	switch {
	case project == "":
		return nil, &opentrack.ConfigError{Field: "BIGQUERY_PROJECT_ID", Reason: "must be set when " + set[0] + " is"}
	case dataset == "":
		return nil, &opentrack.ConfigError{Field: "BIGQUERY_DATASET", Reason: "must be set when " + set[0] + " is"}
	case !validDataset(dataset):
		return nil, &opentrack.ConfigError{Field: "BIGQUERY_DATASET", Reason: fmt.Sprintf("%q: a dataset name has only letters, digits and underscores, at most 1024", dataset)}
	}
	opts := &Options{Location: strings.TrimSpace(getenv("BIGQUERY_LOCATION"))}
	if v := strings.TrimSpace(getenv("BIGQUERY_AUTO_TABLE_MANAGEMENT")); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, &opentrack.ConfigError{Field: "BIGQUERY_AUTO_TABLE_MANAGEMENT", Reason: fmt.Sprintf("%q: want true or false", v)}
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
		return nil, &opError{op: "create client", err: err}
	}
	if opts.Location != "" {
		client.Location = opts.Location
	}
	in, err := New(client, dataset, opts)
	if err != nil {
		client.Close()
		return nil, err
	}
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
			return nil, &opentrack.ConfigError{Field: "GOOGLE_APPLICATION_CREDENTIALS", Reason: err.Error()}
		}
		data, source = b, "GOOGLE_APPLICATION_CREDENTIALS"
	} else {
		return nil, nil // the default chain
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, &opentrack.ConfigError{Field: source, Reason: "not a credentials JSON document: " + err.Error()}
	}
	switch t := option.CredentialsType(head.Type); t {
	case option.ServiceAccount, option.AuthorizedUser, option.ImpersonatedServiceAccount, option.ExternalAccount:
		return []option.ClientOption{option.WithAuthCredentialsJSON(t, data)}, nil
	default:
		return nil, &opentrack.ConfigError{Field: source, Reason: fmt.Sprintf("unsupported credentials type %q", head.Type)}
	}
}

// Name returns [Name], "BigQuery".
func (in *Integration) Name() string { return Name }

// Delivery gives the Manager the integration's own defaults: batches of up
// to BatchMaxEvents events or BatchMaxBytes, sent at least every
// BatchInterval, with the non-zero fields of Options.Delivery on top. The
// host's non-zero opentrack.Options.Delivery fields win over them.
func (in *Integration) Delivery() opentrack.Delivery {
	d := in.opts.Delivery
	if d.Batch.MaxEvents == 0 {
		d.Batch.MaxEvents = BatchMaxEvents
	}
	if d.Batch.MaxBytes == 0 {
		d.Batch.MaxBytes = BatchMaxBytes
	}
	if d.Batch.Interval == 0 {
		d.Batch.Interval = BatchInterval
	}
	return d
}

// Init checks that the dataset exists and, with auto table management,
// creates it in Options.Location when it does not. Tables are created later,
// when first needed.
func (in *Integration) Init(ctx context.Context) error {
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

// Close stops the integration: later calls return [opentrack.ErrClosed],
// marked [opentrack.Permanent]. It logs the summaries of dropped values not
// yet logged, and closes the BigQuery client only if [FromEnv] created it.
// Calls in progress are not waited for; the Manager calls Close after its
// last batch.
func (in *Integration) Close(ctx context.Context) error {
	in.closeOnce.Do(func() {
		in.closed.Store(true)
		in.dropLog.flush(in.log)
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
	// ColumnsRefused counts columns BigQuery refused to add (each time it
	// refused them); they are proposed again after a backoff.
	ColumnsRefused uint64
	// Coerced counts values converted losslessly to their column's type (an
	// integer into FLOAT, a number into STRING, ...).
	Coerced uint64
	// RowErrors counts rows BigQuery rejected in an insertAll answer.
	RowErrors uint64
	// SchemaRetries counts rows written again after BigQuery rejected them
	// for a schema reason.
	SchemaRetries uint64

	// The values left out of rows that BigQuery stored, counted once per
	// stored row (see DropReason): DiscardedProperties for reserved names,
	// TypeConflicts for values that do not fit their column, and
	// DroppedFields for every other reason.
	DiscardedProperties uint64
	TypeConflicts       uint64
	DroppedFields       uint64
	// DroppedValues breaks those counts down by table, column and reason,
	// sorted. Past 1,000 distinct triples, values are counted under an
	// empty Table and Column.
	DroppedValues []DroppedCount
}

type counters struct {
	rowsInserted, insertAllCalls, metadataCalls, tablesCreated, columnsAdded, columnsRefused,
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
		ColumnsRefused:      s.columnsRefused.Load(),
		Coerced:             s.coerced.Load(),
		RowErrors:           s.rowErrors.Load(),
		SchemaRetries:       s.schemaRetries.Load(),
		DiscardedProperties: s.discarded.Load(),
		TypeConflicts:       s.typeConflicts.Load(),
		DroppedFields:       s.droppedFields.Load(),
		DroppedValues:       in.drops.list(),
	}
}
