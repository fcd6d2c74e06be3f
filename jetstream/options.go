package jetstream

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/opentrackhq/opentrack/queue"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// Defaults of [Options].
const (
	// DefaultStream is the name of the stream.
	DefaultStream = "OPENTRACK"
	// DefaultSubject is the subject records are published to.
	DefaultSubject = "opentrack.events"
	// DefaultReplicas is the number of copies a new stream keeps.
	DefaultReplicas = 1
	// DefaultAckWait is how long a collector may hold a record without a
	// sign of life before JetStream hands it to another collector.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxBytes bounds a new stream's size: 1 GiB, about 1.6
	// million events of 600 bytes.
	DefaultMaxBytes = 1 << 30
	// DefaultDuplicateWindow is how long JetStream remembers a messageId
	// to drop a replay of it (JetStream's own default).
	DefaultDuplicateWindow = 2 * time.Minute
	// DefaultMaxAckPending bounds the records of one integration that all
	// collectors together hold at once (read, not yet settled). It must
	// exceed the sum of the collectors' windows (Delivery.QueueSize,
	// 10,000 by default, per collector and integration).
	DefaultMaxAckPending = 100_000
	// DefaultReadAhead is how many records a reader asks JetStream for at
	// a time, at most.
	DefaultReadAhead = 256
	// DefaultPublishTimeout bounds the wait for JetStream's
	// acknowledgement of an Append.
	DefaultPublishTimeout = 5 * time.Second
	// DefaultStartTimeout bounds how long [Open] waits for JetStream to
	// be ready (a cluster electing its leaders) and [Queue.Open] for the
	// consumers.
	DefaultStartTimeout = 30 * time.Second
)

// Options configure a [Queue]. The zero value (or nil) connects to
// nats://127.0.0.1:4222 and uses the defaults.
//
// Every collector that shares a stream must use the same Stream, Subject
// and Replicas, and run the same integrations: a stream found with other
// settings is an error at start.
type Options struct {
	// Servers are the URLs of the NATS servers, such as
	// "nats://10.0.0.1:4222"; list several members of a cluster so that a
	// collector can start while one is down. Ignored when Conn is set.
	// Default nats.DefaultURL.
	Servers []string
	// Conn is a connection to use instead of dialling Servers. The queue
	// does not close it. It should reconnect forever (nats.MaxReconnects(-1)),
	// as the connections the queue dials do.
	Conn *nats.Conn
	// CredsFile is a NATS credentials file (a user JWT and its NKey seed)
	// for the connection. Ignored when Conn is set.
	CredsFile string

	// Stream is the name of the JetStream stream. It is created when
	// missing. Default DefaultStream ("OPENTRACK").
	Stream string
	// Subject is the subject records are published to, which the stream
	// must capture. Default DefaultSubject ("opentrack.events").
	Subject string
	// Replicas is the number of servers that keep each record (1 to 5).
	// JetStream acknowledges a publish once a majority has it, so with 3 a
	// 2xx survives the loss of one server. Default DefaultReplicas (1).
	Replicas int
	// MaxBytes bounds the stream's size. Once it is reached Append returns
	// queue.ErrFull (the Handler answers 503 with Retry-After) until
	// integrations catch up; -1 leaves the bound to the servers' storage.
	// Default DefaultMaxBytes (1 GiB) for a new stream; an existing
	// stream keeps its own unless this is set.
	MaxBytes int64
	// MaxAge drops records older than this from the stream, delivered or
	// not: a record that waits longer than MaxAge for a destination is
	// lost without a report. Default none; an existing stream keeps its
	// own unless this is set.
	MaxAge time.Duration
	// DuplicateWindow is how long JetStream remembers each messageId, so
	// that a client's resend of an accepted event is stored once whichever
	// collector it reaches. Its cost is server memory for every id within
	// the window. Default DefaultDuplicateWindow (2 minutes) for a new
	// stream; an existing stream keeps its own unless this is set.
	DuplicateWindow time.Duration

	// AckWait is how long JetStream waits for a sign of life from the
	// collector holding a record before handing it to another one. A
	// collector signals every AckWait/4 for the records it holds, however
	// long their retries take. Default DefaultAckWait (30s).
	AckWait time.Duration
	// MaxAckPending bounds the records of one integration held by all
	// collectors together. Default DefaultMaxAckPending.
	MaxAckPending int
	// ReadAhead is how many records a reader asks JetStream for at a time,
	// at most. Default DefaultReadAhead.
	ReadAhead int
	// PublishTimeout bounds the wait for JetStream to acknowledge an
	// Append; past it Append fails with ErrUnavailable. Default
	// DefaultPublishTimeout (5s).
	PublishTimeout time.Duration
	// StartTimeout bounds how long Open waits for JetStream (a cluster
	// electing its leaders, a server restarting). Default
	// DefaultStartTimeout (30s).
	StartTimeout time.Duration
	// Logger receives warnings (acknowledgements that failed, unknown
	// consumers, records that cannot be decoded). Default slog.Default().
	Logger *slog.Logger
}

// withDefaults checks o and returns it with its zero fields set. Limits
// of the stream (MaxBytes, MaxAge, DuplicateWindow) stay zero: zero means
// "the existing stream's, or the default for a new one".
func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	switch {
	case r.Replicas < 0 || r.Replicas > 5:
		return r, configError("Replicas", "must be between 1 and 5")
	case r.MaxBytes < -1:
		return r, configError("MaxBytes", "must be positive, or -1 for no bound")
	case r.MaxAge < 0:
		return r, configError("MaxAge", "must not be negative")
	case r.DuplicateWindow < 0:
		return r, configError("DuplicateWindow", "must not be negative")
	case r.AckWait < 0:
		return r, configError("AckWait", "must not be negative")
	case r.AckWait > 0 && r.AckWait < 100*time.Millisecond:
		return r, configError("AckWait", "must be at least 100ms")
	case r.MaxAckPending < 0:
		return r, configError("MaxAckPending", "must not be negative")
	case r.ReadAhead < 0:
		return r, configError("ReadAhead", "must not be negative")
	case r.PublishTimeout < 0:
		return r, configError("PublishTimeout", "must not be negative")
	case r.StartTimeout < 0:
		return r, configError("StartTimeout", "must not be negative")
	}
	if r.Conn == nil {
		for i, s := range r.Servers {
			if strings.TrimSpace(s) == "" {
				return r, configError(fmt.Sprintf("Servers[%d]", i), "is empty")
			}
		}
		if len(r.Servers) == 0 {
			r.Servers = []string{nats.DefaultURL}
		}
	}
	if r.Stream == "" {
		r.Stream = DefaultStream
	}
	if !validName(r.Stream) {
		return r, configError("Stream", fmt.Sprintf("%q: a stream name may not hold spaces, '.', '*', '>', '/' or '\\'", r.Stream))
	}
	if r.Subject == "" {
		r.Subject = DefaultSubject
	}
	if !validSubject(r.Subject) {
		return r, configError("Subject", fmt.Sprintf("%q: want a subject without wildcards, such as %q", r.Subject, DefaultSubject))
	}
	if r.Replicas == 0 {
		r.Replicas = DefaultReplicas
	}
	if r.AckWait == 0 {
		r.AckWait = DefaultAckWait
	}
	if r.MaxAckPending == 0 {
		r.MaxAckPending = DefaultMaxAckPending
	}
	if r.ReadAhead == 0 {
		r.ReadAhead = DefaultReadAhead
	}
	if r.PublishTimeout == 0 {
		r.PublishTimeout = DefaultPublishTimeout
	}
	if r.StartTimeout == 0 {
		r.StartTimeout = DefaultStartTimeout
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	return r, nil
}

// ConfigError reports an invalid field of [Options], or a stream or consumer
// found with settings that do not match them: a [queue.ConfigError], whose
// Field starts with "jetstream.Options.".
type ConfigError = queue.ConfigError

func configError(field, reason string) error {
	return &ConfigError{Field: "jetstream.Options." + field, Reason: reason}
}

// validName reports whether s may name a stream or a consumer: NATS
// refuses whitespace, '.', '*' and '>' in names, and path separators in
// the names of durable assets.
func validName(s string) bool {
	return s != "" && len(s) <= maxNameLen && !strings.ContainsAny(s, " \t\r\n\f.*>/\\")
}

// maxNameLen is the longest stream or consumer name JetStream accepts.
const maxNameLen = 255

// validSubject reports whether s is a literal subject: dot-separated
// tokens, none empty, no wildcard, no whitespace.
func validSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n\f") {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}

// subjectMatches reports whether the literal subject subj is captured by
// filter, which may hold the wildcards '*' (one token) and '>' (the rest).
func subjectMatches(filter, subj string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subj, ".")
	for i, f := range ft {
		if f == ">" {
			return i < len(st)
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// ConsumerName returns the name of the durable consumer that delivers to
// the integration called name: name itself when NATS accepts it as it is,
// otherwise name with each character NATS refuses (whitespace, '.', '*',
// '>', '/', '\') replaced by '_', followed by '_' and eight hex digits of
// name's SHA-256, so that "Customer.io" and "Customer_io" stay apart.
func ConsumerName(name string) string {
	if validName(name) && utf8.ValidString(name) && !strings.ContainsFunc(name, unicode.IsControl) {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "_" + hex.EncodeToString(sum[:4])
	var b strings.Builder
	for _, r := range name {
		if b.Len() >= maxNameLen-len(suffix)-4 {
			break
		}
		switch {
		case strings.ContainsRune(" .*>/\\\uFFFD", r) || unicode.IsControl(r) || unicode.IsSpace(r):
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	return b.String() + suffix
}
