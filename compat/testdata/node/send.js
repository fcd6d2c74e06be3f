// send.js drives @segment/analytics-node against a collector for the Go
// test TestAnalyticsNode (compat/analyticsnode_test.go).
//
// Usage: node send.js '<config JSON>'
//   config: {"host": "http://127.0.0.1:PORT", "writeKey": "...",
//            "badWriteKey": "...", "past": "<RFC 3339 time>"}
//
// It sends all six calls with the good key, then one track with the bad key,
// and prints one JSON object on stdout:
//   {"calls": [{"call", "messageId", "error"}...], "bad": {"call", "messageId", "error"}}
// "error" is null when the SDK reported the event delivered.
'use strict'

const { Analytics } = require('@segment/analytics-node')

const cfg = JSON.parse(process.argv[2])

// The script must never hang: closeAndFlush has its own timeout, and this is
// the last resort.
setTimeout(() => {
  console.error('send.js: gave up after 20s')
  process.exit(2)
}, 20000).unref()

function client(writeKey, flushAt) {
  return new Analytics({
    writeKey,
    host: cfg.host,
    path: '/v1/batch',
    flushAt,
    flushInterval: 200,
    maxRetries: 2,
    httpRequestTimeout: 5000,
  })
}

// call runs one SDK method and returns a promise of its outcome, settled by
// the SDK's callback once the event is delivered or given up on.
function call(analytics, method, params) {
  return new Promise((resolve) => {
    analytics[method](params, (err, ctx) => {
      resolve({
        call: method,
        messageId: ctx && ctx.event ? ctx.event.messageId : null,
        error: err ? String((err && err.message) || err) : null,
      })
    })
  })
}

async function main() {
  const good = client(cfg.writeKey, 6)
  const calls = Promise.all([
    call(good, 'track', {
      userId: 'node-user',
      event: 'Order Completed',
      messageId: 'node-track-1',
      timestamp: new Date(cfg.past),
      properties: { orderId: 'o-1', revenue: 42.5, products: [{ sku: 's-1', quantity: 2 }] },
      context: { locale: 'de-DE' },
    }),
    call(good, 'identify', {
      userId: 'node-user',
      traits: { email: 'ada@example.com', name: 'Ada Lovelace' },
    }),
    call(good, 'page', {
      anonymousId: 'node-anon',
      category: 'Docs',
      name: 'Pricing',
      properties: { path: '/pricing' },
    }),
    call(good, 'screen', {
      userId: 'node-user',
      name: 'Home',
      properties: { tab: 'feed' },
    }),
    call(good, 'group', {
      userId: 'node-user',
      groupId: 'acme',
      traits: { name: 'Acme', employees: 12 },
    }),
    call(good, 'alias', {
      userId: 'node-user',
      previousId: 'node-anon',
    }),
  ])
  await good.closeAndFlush({ timeout: 10000 })
  const results = await calls

  const bad = client(cfg.badWriteKey, 1)
  const badResult = call(bad, 'track', { userId: 'node-user', event: 'Wrong Key' })
  await bad.closeAndFlush({ timeout: 10000 })

  process.stdout.write(JSON.stringify({ calls: results, bad: await badResult }) + '\n')
}

main().catch((err) => {
  console.error('send.js:', err && err.stack ? err.stack : err)
  process.exit(1)
})
