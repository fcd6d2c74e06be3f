// Package journal is an embedded, durable [queue.Queue]: an append-only log
// on local disk, in one directory, with nothing to install. A [Journal]'s
// Append returns only once the records are written and fdatasynced, so a
// collector that answers after Append answers "on disk".
//
//	j, err := journal.Open("/var/lib/opentrack/journal", nil)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer j.Close()
//	// Hand j to the Manager as its queue; after a restart, rebuild the
//	// messageId deduplication window from j.RecentMessageIDs(n).
//
// # Guarantees
//
// Append stores its records all or none and returns nil only after one
// fdatasync that covers them. Given a disk that honours fdatasync (a flush
// of its write cache), what an acknowledged Append stored survives:
//
//   - a crash of the process (panic, OOM kill, SIGKILL): nothing
//     acknowledged is lost; written data is in the kernel's page cache even
//     before it is synced;
//   - a crash of the operating system, or a power loss: nothing
//     acknowledged is lost. An Append that had not returned may be lost,
//     or, if the disk kept some of its pages and not others, kept in part:
//     its sender retries it, and the Manager's deduplication window, rebuilt
//     from RecentMessageIDs, recognises what survived.
//
// Readers' progress is saved less often: the cursors file is rewritten at
// most every Options.CursorInterval (100 ms) while records are settled, and
// on Sync and Close. After a crash a reader resumes at its saved cursor and
// reads again what follows it, marked Redelivered: delivery is at least
// once, and destinations deduplicate by messageId.
//
// Open never refuses to start because of what a crash or a bad disk left:
// a torn or unfinished last write is cut off; a corrupt record elsewhere is
// skipped (Open scans forward to the next frame that checks out), logged
// with its file and offset, and counted in [Stats].Corrupt. It refuses only
// a directory it cannot use (not a directory, not writable, locked by
// another Journal: [ErrLocked]) and a segment of a newer format version.
//
// Disk is bounded, memory is not spent on the backlog. Records take at most
// Options.MaxBytes (1 GiB by default; space written ahead, the active
// segment's and a spare's, adds at most 2*SegmentBytes); an Append that
// would pass it gets
// queue.ErrFull (the Handler answers 503 with Retry-After) and one larger
// than MaxBytes queue.ErrTooLarge. A segment is deleted once every reader's
// cursor has passed it. A reader that keeps up takes records from an
// in-memory tail of at most the newest Options.TailRecords, which lets go
// of a record once every reader has read it; one that is behind (a
// destination down for hours) reads the segments from disk,
// Options.ReadAhead records at a time. A backlog of a million records of
// 600 bytes costs 643 MB of disk and 21 to 22 MB of live heap, with the
// process's RSS at 72 MB, whether the reader waits or reads
// (BenchmarkBacklog).
//
// # On disk
//
// The directory holds:
//
//	LOCK                   flock(2)ed while a Journal has the directory open
//	00000000000000000001.seg
//	00000000000000004097.seg  segments, named after the first Seq they may hold
//	cursors                the readers' cursors
//	spare                  a segment-sized file, ready to become the next segment
//
// A segment begins with a 24-byte header: the magic "OTJOURNL", a format
// version (1, little endian uint16), two zero bytes, the segment's base Seq
// (uint64) and a CRC-32C of those 20 bytes. Frames follow, one per record:
//
//	[0:4]   CRC-32C (Castagnoli) of the payload, then of bytes [4:17]
//	[4:8]   payload length, uint32
//	[8:16]  Seq, uint64
//	[16]    flags: 1 marks the last record of an Append
//	[17:]   payload: queue.EncodeRecord (version, targets, appended time,
//	        receivedAt, messageId, the event as Segment JSON)
//
// All integers are little endian. A segment is closed when the next Append
// would take it past Options.SegmentBytes (64 MiB by default). Seqs rise
// through the log and are never reused for an acknowledged record.
//
// The cursors file holds the magic "OTCURSOR", a format version, the next
// Seq, and each reader's name and cursor, with a CRC-32C; it is replaced
// atomically (written to cursors.tmp, fsynced, renamed, directory fsynced).
// A name it does not know starts at the end of the log (a new integration);
// a name it knows that is not opened is dropped, with a log line, and stops
// holding segments; without a cursors file, every reader starts at the
// oldest record on disk.
//
// Recovery checks every frame of every segment. In the last segment, what
// follows the last whole Append (the flagged frame ending it) is cut: a
// write the crash tore, or records of an Append that never returned. A
// frame that does not check out elsewhere is skipped, and the frames after
// it are read. Open also rebuilds each reader's backlog from the records at
// or after its cursor.
//
// # Why a hand-written log
//
// pebble (github.com/cockroachdb/pebble/v2) with Sync writes was the
// ready-made alternative: a checksummed WAL with grouped syncs, recovery
// and an ordered key space. BenchmarkAppend measures both on the same
// payloads (events of about 600 bytes, one per Append, each producer waiting
// for durability); the journal runs warmed up with a reader settling
// everything, pebble only takes writes. Measured while the journal still
// synced with fdatasync(2) (see Concurrency for what AIO changed). Medians
// of 3 runs of 3 s, on a
// 2-vCPU VM with a virtio disk (write cache: write back) shared with other
// work (go test -run '^$' -bench Append -benchtime 3s -count 3):
//
//	producers  store    events/s  events/sync  p50 ms  p99 ms  CPU µs/event
//	        1  journal     6,656          1.0    0.14    0.30          95
//	        1  pebble      4,879          1.0    0.20    0.34         117
//	       16  journal    53,400          7.5    0.25    1.15          19
//	       16  pebble     46,877          7.1    0.27    1.33          22
//	       64  journal   106,089         20.3    0.47    2.25          12
//	       64  pebble    100,799         17.9    0.48    2.91          13
//	      256  journal   126,116         42.6    1.68    5.87          11
//	      256  pebble    101,840         38.7    1.99    8.90          14
//
// The journal's medians are ahead at every concurrency, on throughput (1.05
// to 1.4 times), on the wait and on CPU, with no background compaction;
// an earlier series on a busier day had it ahead by 1.3 to 3.7 times. Single
// runs swing by up to 2x on this shared machine. It is also
// what the queue needs and no more: an append-only log with per-reader
// cursors, where pebble would add keys, deletes and compactions of data
// that is read once.
//
// Most of the journal's lead comes from writing into files that already
// have their full size: an fdatasync after overwriting written blocks
// flushes data only, while one after an append must also commit the file's
// new size to the filesystem's journal. Measured interleaved on the same
// machine, appending to growing files gave 15,000 to 19,000 events/s at 64
// producers (p50 1.2 to 1.5 ms), writing into a file written ahead 33,000
// to 36,500 (p50 0.66 ms). So the journal writes into a spare: a segment
// every reader has passed, recycled instead of deleted, or, when there is
// none, a file of zeros written in the background. Old records left in a
// recycled file have Seqs below its new base, which recovery tells apart.
//
// # Platforms
//
// The journal is built for and tested on Linux (ext4). Other Unix systems
// lock the directory the same way and sync with fsync; elsewhere (Windows)
// the directory is not locked, and only one Journal may use it.
//
// # Concurrency
//
// Appends are group-committed: producers hand their encoded records to one
// writer goroutine, which takes everything waiting, writes it with one
// write, issues one fdatasync and releases them all; while it syncs, the
// next group gathers.
//
// On Linux (4.18 and later) the writer asks for that fdatasync through
// AIO (IOCB_CMD_FDSYNC: the same vfs_fsync with datasync set, on the same
// open file, run by a kernel worker) and waits for it in the runtime's
// netpoller. A blocking fdatasync(2) would keep one of the GOMAXPROCS Ps
// for the duration, and with it the handlers the writer had just
// released; on a 2-core machine the cores then idled while requests
// waited. The example server on the journal under wrk -t2 -c64 -d6s -s
// loadtest/track.lua, five alternated pairs of runs: 17,994–21,946
// requests/s with fdatasync(2), 20,428–25,757 with AIO, a median gain of
// 17 %. BenchmarkAppend, whose producers do
// nothing else, medians of 3 runs (not alternated with the table above,
// which was measured on another day): 6,252, 46,587, 126,292 and 187,880
// events/s at 1, 16, 64 and 256 producers; p50 0.16, 0.32, 0.45 and
// 1.20 ms; p99 0.26, 0.91, 1.51 and 3.53 ms; 1, 7.9, 31 and 121 events per
// sync. That is slower than the table at 1 and 16 producers (likely
// because waking through the netpoller takes longer than returning from a
// system call; not measured apart) and faster at 64 and 256. Its cpu-µs/event (73, 16.5, 9.0 and 8.6) no
// longer counts the sync, which the kernel worker does. Because a kernel
// worker syncs, the process's I/O priority (ionice) does not apply to the
// sync, and a stuck disk shows as a worker in D state while the writer
// waits in the netpoller. Where AIO is missing or refused (tried at Open,
// on a sync of the active segment), the writer calls fdatasync(2).
//
// Each reader's Next is meant for one goroutine at a
// time (concurrent calls are safe, and serialised); Settle and Stats may be
// called from any goroutine.
package journal
