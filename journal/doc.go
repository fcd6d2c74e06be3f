// Package journal is an embedded, durable [queue.Queue]: an append-only log
// on local disk, in one directory, with nothing to install. A [Journal]'s
// Append returns only once the records are written and fdatasynced, so the
// collector's 2xx means "on disk".
//
// (Figures, format and guarantees follow.)
package journal
