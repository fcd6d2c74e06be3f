// drive.js runs analytics.js (@segment/analytics-next) in headless Chromium,
// driven by playwright-core, for the Go test TestAnalyticsJS
// (compat/browser_test.go).
//
// Usage: node drive.js '<config JSON>'
//   config: {
//     "chromium": "/usr/bin/chromium", "userDataDir": "<fresh dir>",
//     "collector": "http://127.0.0.1:P",     the collector, API at /v1
//     "writeKey": "...",
//     "allowedPage": "http://127.0.0.1:Q/",  an origin the collector allows
//     "blockedPage": "http://127.0.0.1:R/",  an origin it does not
//     "expectOK": 7,                         200 answers to wait for on the allowed page
//     "timeoutMs": 25000
//   }
//
// On the allowed page it loads analytics.js with its settings given inline
// (no CDN), makes page, alias, identify, track, group and screen calls, then
// one more track that the test's collector fails once, so analytics.js
// retries it. On the blocked page it makes one track call, which CORS must
// stop. It prints one JSON report on stdout and exits 0, or 1 when a wait
// timed out or the browser failed (the report then says why).
'use strict'

const { withChromium } = require('./launch.js')

const cfg = JSON.parse(process.argv[2])
const collectorOrigin = new URL(cfg.collector).origin

const report = {
  allowed: null, // what the allowed page's calls returned
  blocked: null, // what the blocked page's call returned
  responses: [], // answers from the collector, as the browser saw them
  failures: [], // requests to the collector that failed in the browser
  external: [], // requests to anything outside 127.0.0.1: there must be none
  console: [], // the pages' console messages and errors
  error: null,
}

let finished = false
function finish(code) {
  if (finished) return
  finished = true
  // Exit only once the report is written: a pipe takes large writes
  // asynchronously, and process.exit would cut them short.
  process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(code))
}

setTimeout(() => {
  report.error = `gave up after ${cfg.timeoutMs}ms`
  finish(1)
}, cfg.timeoutMs).unref()

// waiter resolves wait() once check() holds; poke() re-checks after each
// browser event.
function waiter(check) {
  let resolve
  const done = new Promise((r) => (resolve = r))
  return {
    poke() {
      if (check()) resolve()
    },
    wait() {
      this.poke()
      return done
    },
  }
}

// The function run inside each page: load analytics.js with inline settings
// and make the calls named in `calls`, each [method, ...args].
async function runInPage({ writeKey, apiHost, calls }) {
  const { AnalyticsBrowser } = window.AnalyticsNext
  const analytics = AnalyticsBrowser.load({
    writeKey,
    // Settings inline, so nothing is fetched from Segment's CDN; cdnURL
    // points at this page's own origin should anything try.
    cdnURL: location.origin,
    cdnSettings: {
      integrations: {
        'Segment.io': { apiKey: writeKey, apiHost, protocol: 'http' },
      },
      // No remote metrics (they would post to apiHost + /m).
      metrics: { sampleRate: 0 },
      remotePlugins: [],
    },
  })
  const out = []
  for (const [method, ...args] of calls) {
    const ctx = await analytics[method](...args)
    out.push({ call: method, messageId: ctx.event.messageId })
  }
  const [instance] = await analytics
  return {
    calls: out,
    anonymousId: instance.user().anonymousId(),
    userId: instance.user().id(),
  }
}

const main = () => withChromium(cfg, drive)

async function drive(context) {
  let ok = 0
  let retried = false
  let blockedFailed = false
  const progress = []
  const poke = () => progress.forEach((w) => w.poke())

  context.on('request', (req) => {
    const u = new URL(req.url())
    if (u.protocol !== 'data:' && u.hostname !== '127.0.0.1') {
      report.external.push(req.url())
    }
  })
  context.on('response', async (res) => {
    const req = res.request()
    if (new URL(req.url()).origin !== collectorOrigin) return
    const headers = await req.allHeaders()
    report.responses.push({
      page: req.frame().url(),
      method: req.method(),
      url: req.url(),
      status: res.status(),
      retryCount: headers['x-retry-count'] || null,
    })
    if (res.status() === 200) ok++
    if (res.status() === 200 && headers['x-retry-count']) retried = true
    poke()
  })
  context.on('requestfailed', (req) => {
    if (new URL(req.url()).origin !== collectorOrigin) return
    const page = req.frame().url()
    report.failures.push({ page, method: req.method(), url: req.url(), error: req.failure().errorText })
    if (page.startsWith(cfg.blockedPage)) blockedFailed = true
    poke()
  })

  const apiHost = collectorOrigin.replace(/^http:\/\//, '') + '/v1'

  // The allowed origin.
  const allowedDone = waiter(() => ok >= cfg.expectOK && retried)
  progress.push(allowedDone)
  const page = await context.newPage()
  page.on('console', (m) => report.console.push(`allowed ${m.type()}: ${m.text()}`))
  page.on('pageerror', (e) => report.console.push(`allowed pageerror: ${e.message}`))
  await page.goto(cfg.allowedPage)
  report.allowed = await page.evaluate(runInPage, {
    writeKey: cfg.writeKey,
    apiHost,
    calls: [
      ['page', 'Docs', 'Getting Started', { section: 'intro' }],
      // Before identify, as Segment documents it: previousId is then the
      // anonymousId. (After identify, analytics.js overwrites an alias's
      // userId with the identified user's id.)
      ['alias', 'browser-user'],
      ['identify', 'browser-user', { email: 'ada@example.com', plan: 'pro' }],
      ['track', 'Signed Up', { plan: 'pro', seats: 3 }],
      ['group', 'acme', { name: 'Acme', employees: 12 }],
      ['screen', 'App', 'Home', { tab: 'feed' }],
      // The collector fails this one once; analytics.js retries it.
      ['track', 'Retried Event', { attempt: 'any' }],
    ],
  })
  await allowedDone.wait()

  // An origin the collector does not allow.
  const blockedDone = waiter(() => blockedFailed)
  progress.push(blockedDone)
  const other = await context.newPage()
  other.on('console', (m) => report.console.push(`blocked ${m.type()}: ${m.text()}`))
  other.on('pageerror', (e) => report.console.push(`blocked pageerror: ${e.message}`))
  await other.goto(cfg.blockedPage)
  report.blocked = await other.evaluate(runInPage, {
    writeKey: cfg.writeKey,
    apiHost,
    calls: [['track', 'Blocked Event', { from: 'elsewhere' }]],
  })
  await blockedDone.wait()
}

main().then(
  () => finish(0),
  (err) => {
    report.error = String(err && err.stack ? err.stack : err)
    finish(1)
  }
)
