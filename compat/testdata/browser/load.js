// load.js drives headless Chromium, through playwright-core, for the Go
// tests of the collector's browser routes (compat/load_test.go):
//
//   "settings": analytics.js (@segment/analytics-next) loaded with nothing
//   but a write key and the collector as its CDN, so that it fetches its
//   settings from the collector: first with a write key the collector does
//   not know (loading must fail and nothing be sent), then with a known
//   one, making page, alias, identify, track, group and screen calls.
//
//   "pixel": a page that shows the collector's tracking pixel as <img>
//   elements, one per URL given.
//
// Usage: node load.js '<config JSON>', or node load.js '"<path of a file
// holding the config JSON>"' when it is too long for an argument.
//   config: {
//     "scenario": "settings" | "pixel",
//     "chromium": "/usr/bin/chromium", "userDataDir": "<fresh dir>",
//     "collector": "http://127.0.0.1:P",   the collector, API at /v1
//     "page": "http://127.0.0.1:Q/",       the page, on another origin
//     "writeKey": "...", "unknownWriteKey": "...", "expectOK": 6,   (settings)
//     "images": [{"name": "...", "src": "..."}],                    (pixel)
//     "timeoutMs": 25000
//   }
//
// It prints one JSON report on stdout and exits 0, or 1 when a wait timed
// out or the browser failed (the report then says why).
'use strict'

const fs = require('node:fs')
const { withChromium } = require('./launch.js')

let cfg = JSON.parse(process.argv[2])
if (typeof cfg === 'string') cfg = JSON.parse(fs.readFileSync(cfg, 'utf8'))
const collectorOrigin = new URL(cfg.collector).origin

const report = {
  unknown: null, // how loading with the unknown write key ended
  loaded: null, // what the known write key's calls returned
  images: null, // how each pixel <img> loaded
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

// Loads analytics.js as the README says, with the write key and the
// collector as the CDN only, and resolves once loading failed. The track
// call is buffered until loading ends, so it must never be sent.
async function loadUnknown({ writeKey, cdnURL }) {
  const { AnalyticsBrowser } = window.AnalyticsNext
  const analytics = AnalyticsBrowser.load({ writeKey, cdnURL })
  analytics.track('Never Sent', { from: 'unknown key' })
  try {
    await analytics
    return { loaded: true }
  } catch (err) {
    return { loaded: false, error: String(err && err.message ? err.message : err) }
  }
}

// Loads analytics.js the same way with a known write key and makes the
// calls named in `calls`, each [method, ...args].
async function loadKnown({ writeKey, cdnURL, calls }) {
  const { AnalyticsBrowser } = window.AnalyticsNext
  const analytics = AnalyticsBrowser.load({ writeKey, cdnURL })
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
    apiHost: instance.settings.apiHost,
    cdnSettings: instance.settings.cdnSettings,
  }
}

// Adds one <img> per image to the page and resolves once each has loaded
// or failed.
function showImages(images) {
  return Promise.all(
    images.map(
      ({ name, src }) =>
        new Promise((resolve) => {
          const img = document.createElement('img')
          img.alt = name
          img.onload = () => resolve({ name, loaded: true, width: img.naturalWidth, height: img.naturalHeight })
          img.onerror = () => resolve({ name, loaded: false })
          img.src = src
          document.body.appendChild(img)
        })
    )
  )
}

const main = () => withChromium(cfg, drive)

async function drive(context) {
  let ok = 0
  let waiting = null
  const poke = () => {
    if (waiting && ok >= cfg.expectOK) waiting()
  }
  context.on('request', (req) => {
    const u = new URL(req.url())
    if (u.protocol !== 'data:' && u.hostname !== '127.0.0.1') {
      report.external.push(req.url())
    }
  })
  context.on('response', (res) => {
    const req = res.request()
    if (new URL(req.url()).origin !== collectorOrigin) return
    report.responses.push({
      page: req.frame().url(),
      method: req.method(),
      path: new URL(req.url()).pathname,
      status: res.status(),
      contentType: res.headers()['content-type'] || null,
    })
    if (req.method() === 'POST' && res.status() === 200) ok++
    poke()
  })
  context.on('requestfailed', (req) => {
    if (new URL(req.url()).origin !== collectorOrigin) return
    report.failures.push({ method: req.method(), path: new URL(req.url()).pathname, error: req.failure().errorText })
  })

  const newPage = async (label) => {
    const page = await context.newPage()
    page.on('console', (m) => report.console.push(`${label} ${m.type()}: ${m.text()}`))
    page.on('pageerror', (e) => report.console.push(`${label} pageerror: ${e.message}`))
    await page.goto(cfg.page)
    return page
  }

  if (cfg.scenario === 'pixel') {
    const page = await newPage('pixel')
    report.images = await page.evaluate(showImages, cfg.images)
    return
  }

  // The unknown key first, so that anything it might still send would
  // arrive while the known key's calls are made.
  const unknown = await newPage('unknown')
  report.unknown = await unknown.evaluate(loadUnknown, { writeKey: cfg.unknownWriteKey, cdnURL: cfg.collector })

  const allDone = new Promise((resolve) => (waiting = resolve))
  const page = await newPage('known')
  report.loaded = await page.evaluate(loadKnown, {
    writeKey: cfg.writeKey,
    cdnURL: cfg.collector,
    calls: [
      ['page', 'Docs', 'Getting Started', { section: 'intro' }],
      ['alias', 'browser-user'],
      ['identify', 'browser-user', { email: 'ada@example.com', plan: 'pro' }],
      ['track', 'Signed Up', { plan: 'pro', seats: 3 }],
      ['group', 'acme', { name: 'Acme', employees: 12 }],
      ['screen', 'App', 'Home', { tab: 'feed' }],
    ],
  })
  poke()
  await allDone
}

main().then(
  () => finish(0),
  (err) => {
    report.error = String(err && err.stack ? err.stack : err)
    finish(1)
  }
)
