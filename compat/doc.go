// Package compat holds tests that drive real Segment SDKs against the collector.
//
// Each test starts an [opentrack.Handler] on 127.0.0.1 with an in-memory
// integration that records what it is handed, points an unmodified Segment
// SDK at it, and checks what arrived: call types, ids, names, properties,
// traits, context, messageIds and timestamps, with nothing lost and nothing
// twice.
//
//   - analytics-go (github.com/segmentio/analytics-go/v3) runs in process.
//   - @segment/analytics-node runs under node (testdata/node).
//   - analytics.js (@segment/analytics-next) runs in headless Chromium driven
//     by playwright-core (testdata/browser), from a page on another origin,
//     so CORS is exercised as in production.
//
// The node and browser tests install their npm packages with `npm ci` when
// testdata/*/node_modules is missing, and skip, saying why, when node, npm or
// Chromium is absent or the install fails. .ci/run installs all of them.
package compat
