// launch.js holds what the browser scripts here share: headless Chromium,
// opened the way every browser test of the collector runs it (the
// machine's chromium, a fresh profile, no background traffic).
const { chromium } = require('playwright-core')

// withChromium opens a persistent context in cfg.userDataDir with the
// browser at cfg.chromium, runs drive with it, and closes it.
async function withChromium(cfg, drive) {
  const context = await chromium.launchPersistentContext(cfg.userDataDir, {
    executablePath: cfg.chromium,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  })
  try {
    await drive(context)
  } finally {
    await context.close()
  }
}

module.exports = { withChromium }
