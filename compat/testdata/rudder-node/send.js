// send.js drives @rudderstack/rudder-sdk-node against a collector for the Go
// test TestRudderStackNode (compat/rudderstack_node_test.go).
//
// Usage: node send.js '<config JSON>'
//   config: {"dataPlaneUrl": "http://127.0.0.1:PORT", "writeKey": "...",
//            "badWriteKey": "...", "gzip": true|false|null,
//            "calls": [{"call", "messageId", "userId", "anonymousId", "event",
//                       "name", "groupId", "previousId", "properties",
//                       "traits", "timestamp"}...],
//            "badCalls": [...the same...]}
//   "gzip": null leaves the SDK's default (gzip on).
//
// It makes every call of "calls" with the good key and flushes, then every
// call of "badCalls" with the bad key and flushes, and prints one JSON object
// on stdout:
//   {"nodeVersion", "good": <phase>, "bad": <phase>}
//   phase: {"calls": [{"call", "error"}...], "flushErrors": [...],
//           "unhandled": [...]}
// A call's "error" is null when the SDK's callback reported it delivered.
// "flushErrors" are the rejections of the flush() calls made here;
// "unhandled" the rejections of the flushes the SDK starts by itself (the
// first event of a client is sent at once), which nothing awaits.
'use strict'

const Analytics = require('@rudderstack/rudder-sdk-node')

const cfg = JSON.parse(process.argv[2])

// The script must never hang; this is the last resort.
setTimeout(() => {
  console.error('send.js: gave up after 30s')
  process.exit(2)
}, 30000).unref()

function errText(err) {
  return err ? String((err && err.message) || err) : null
}

// Rejections nobody awaits are recorded under the running phase instead of
// ending the process.
let phase = null
process.on('unhandledRejection', (reason) => {
  if (phase) {
    phase.unhandled.push(errText(reason))
  } else {
    console.error('send.js: unhandled rejection outside a phase:', reason)
    process.exitCode = 1
  }
})

function client(writeKey) {
  // The SDK's defaults apart from the data plane URL (and gzip when the test
  // turns it off); flushes are made here with flush().
  const options = { dataPlaneUrl: cfg.dataPlaneUrl }
  if (cfg.gzip !== null && cfg.gzip !== undefined) {
    options.gzip = cfg.gzip
  }
  return new Analytics(writeKey, options)
}

// message builds the SDK's argument from a call of the config, with only the
// fields the call sets.
function message(c) {
  const m = {}
  for (const k of ['messageId', 'userId', 'anonymousId', 'event', 'name', 'groupId', 'previousId', 'properties', 'traits']) {
    if (c[k] !== undefined) {
      m[k] = c[k]
    }
  }
  if (c.timestamp) {
    m.timestamp = new Date(c.timestamp)
  }
  return m
}

// send makes every call with analytics and resolves once the SDK has called
// back for each of them.
async function send(analytics, calls) {
  const p = { calls: [], flushErrors: [], unhandled: [] }
  phase = p
  const outcomes = calls.map(
    (c) =>
      new Promise((resolve) => {
        analytics[c.call](message(c), (err) => resolve({ call: c.call, error: errText(err) }))
      }),
  )
  // flush() sends what is queued, but after a failed flush the next one
  // only rejects with that failure and leaves the queue as it is, so flush
  // until every callback has come.
  let settled = false
  const all = Promise.all(outcomes).then((r) => {
    settled = true
    return r
  })
  for (let i = 0; i < 5 && !settled; i++) {
    await analytics.flush().catch((err) => p.flushErrors.push(errText(err)))
    // Callbacks run in setImmediate after the request settles.
    await new Promise((resolve) => setImmediate(resolve))
  }
  p.calls = await all
  // Let a rejection of the SDK's own flush be reported before the phase ends.
  await new Promise((resolve) => setImmediate(resolve))
  phase = null
  return p
}

async function main() {
  const good = await send(client(cfg.writeKey), cfg.calls)
  const bad = await send(client(cfg.badWriteKey), cfg.badCalls)
  process.stdout.write(JSON.stringify({ nodeVersion: process.versions.node, good, bad }) + '\n')
}

main().catch((err) => {
  console.error('send.js:', err && err.stack ? err.stack : err)
  process.exit(1)
})
