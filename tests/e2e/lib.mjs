// Shared pieces of the browser end-to-end tests (tests/e2e/*.test.mjs).
//
// Each test file starts its own `cloudbase-gateway demo --listen 127.0.0.1:0` (emulator +
// whoami upstream + gateway in one process) and one Debian chromium, driven by playwright-core.
// Every test opens a fresh browser context, so cookies never leak between tests. Nothing
// sleeps for a fixed time: waits are for a URL, an element or an emulator record.
//
// Needs: the gateway binary ($GATEWAY_TEST_BIN, or target/debug/cloudbase-gateway) and
// /usr/bin/chromium ($E2E_CHROMIUM); scripts/test.sh installs both. Screenshots go to
// $E2E_OUTPUT (default tests/e2e/output).

import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { chromium } from 'playwright-core'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = process.env.GATEWAY_TEST_BIN || path.join(REPO, 'target', 'debug', 'cloudbase-gateway')
export const OUTPUT = process.env.E2E_OUTPUT || path.join(REPO, 'tests', 'e2e', 'output')
const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium'
// The launch flags the team uses for Debian's chromium (headless, no sandbox as root, nothing
// fetched from the network).
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

export const TEST_TIMEOUT = 60_000
const START_TIMEOUT = 20_000
/// How long a wait for a page, an element or an emulator record may take.
export const WAIT = 15_000

export const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  mobile: { width: 390, height: 844 },
}

// The demo's built-in users (`cloudbase-gateway demo` prints them).
export const ALICE = { username: 'alice', password: 'alice-password-1', email: 'alice@example.com', phone: '+86 13800000001' }
export const BOB = { username: 'bob', password: 'bob-password-1', email: 'bob@example.com' }

/**
 * Starts `cloudbase-gateway demo` on free ports with extra flags; resolves once its stable
 * stdout lines have named the gateway and the emulator.
 */
export async function startDemo(extra = []) {
  const child = spawn(BIN, ['demo', '--listen', '127.0.0.1:0', '--log-level', 'warn', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  // A demo must never outlive the test process, whatever ends it.
  const reap = () => child.kill('SIGKILL')
  process.once('exit', reap)
  let stderr = ''
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-8000)
  })
  const lines = readline.createInterface({ input: child.stdout })
  const seen = {}
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`demo did not start:\n${stderr}`))
    }, START_TIMEOUT)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`demo exited with ${code}:\n${stderr}`))
    })
    lines.on('line', (line) => {
      let m
      if ((m = /^listening on (http:\/\/\S+)$/.exec(line))) seen.url = m[1]
      if ((m = /^emulator on (http:\/\/\S+)$/.exec(line))) seen.emulator = m[1]
      if (line.startsWith('open ') && seen.url && seen.emulator) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  child.removeAllListeners('exit')
  const emu = async (method, p, body) => {
    const res = await fetch(seen.emulator + p, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    })
    if (!res.ok) throw new Error(`${method} ${p} answered ${res.status}`)
    return res.json()
  }
  return {
    url: seen.url,
    emulator: seen.emulator,
    emu,
    stderr: () => stderr,
    async stop() {
      process.removeListener('exit', reap)
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGTERM')
      // A graceful stop takes milliseconds; a stuck one is killed.
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    },
    /** The newest code sent to `to`, waiting until one newer than `after` codes arrives. */
    async code(to, after = 0) {
      return waitFor(async () => {
        const sent = (await emu('GET', '/__emulator/outbox')).filter((m) => m.to === to)
        return sent.length > after ? sent[sent.length - 1].code : null
      }, `a code sent to ${to}`)
    },
    async codesSent(to) {
      return (await emu('GET', '/__emulator/outbox')).filter((m) => m.to === to).length
    },
    async user(pred) {
      return (await emu('GET', '/__emulator/users')).find(pred)
    },
  }
}

/** Polls `fn` until it returns something other than null/undefined/false, or fails after WAIT. */
export async function waitFor(fn, what) {
  const deadline = Date.now() + WAIT
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    const v = await fn()
    if (v !== null && v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, delay))
  }
}

/** Debian's chromium, headless, with the project's flags. */
export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, timeout: START_TIMEOUT })
}

/** A fresh context (its own cookies) and page, English unless `locale` says otherwise. */
export async function newPage(browser, opts = {}) {
  const context = await browser.newContext({ viewport: VIEWPORTS.desktop, locale: 'en-US', ...opts })
  context.setDefaultTimeout(WAIT)
  context.setDefaultNavigationTimeout(WAIT)
  const page = await context.newPage()
  return { context, page }
}

/**
 * Clicks `selector`, waits for the navigation it starts to commit (redirects followed), then
 * checks it ended at a URL matching `url` and waits for that page to load. Waiting for the
 * commit first matters when the page stays at the same URL (a form posted back with an error).
 */
export async function clickTo(page, selector, url) {
  const committed = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() })
  await page.click(selector)
  await committed
  await page.waitForURL(url)
}

/** The path and query of the page's URL. */
export function here(page) {
  const u = new URL(page.url())
  return u.pathname + u.search
}

/**
 * What the whoami upstream saw for a request with the browser's cookies (the context's own
 * request client, so the page's Content-Security-Policy does not matter):
 * `{method, path, query, headers}`.
 */
export async function upstreamSaw(page, p = '/whoami.json') {
  const r = await page.context().request.get(new URL(p, page.url()).href, {
    headers: { accept: 'application/json' },
    maxRedirects: 0,
  })
  // The status only: a page body may hold a form token.
  if (r.status() !== 200) throw new Error(`the upstream fetch answered ${r.status()}`)
  return r.json()
}

/** The claims of a JWT (not verified: the emulator signed it, the test only reads it). */
export function claims(jwt) {
  const part = jwt.split('.')[1]
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
}

/**
 * Asserts the upstream received `Authorization: Bearer <access token>` for the user with
 * `uid`, and returns what it saw.
 */
export async function assertBearerFor(assert, page, uid) {
  const saw = await upstreamSaw(page)
  const auth = saw.headers.authorization || ''
  assert.match(auth, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/, 'the upstream saw a bearer token')
  assert.equal(claims(auth.slice(7)).sub, uid, 'the bearer token is the signed-in user’s')
  assert.equal(saw.headers['x-forwarded-user'], uid)
  assert.ok(!(saw.headers.cookie || '').includes('cbgw_session'), 'the session cookie is not forwarded')
  return saw
}

/** The signed-in user as the gateway reports it (`/__auth/userinfo`), or `{status}`. */
export async function userinfo(page) {
  const r = await page.context().request.get(new URL('/__auth/userinfo', page.url()).href, {
    headers: { accept: 'application/json' },
    maxRedirects: 0,
  })
  return r.status() === 200 ? r.json() : { status: r.status() }
}

/** Fills the password form of the login page and submits it. */
export async function passwordSignIn(page, who, password, landing) {
  await page.fill('#username', who)
  await page.fill('#password', password)
  await clickTo(page, 'form[action$="/sign_in/password"] button[type=submit]', landing)
}

// --- screenshots and accessibility ---------------------------------------------------------

const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

/**
 * Runs axe-core on the page as it is now; returns the serious and critical violations as
 * `"rule (impact): target — help"` strings.
 */
export async function audit(page) {
  // Evaluated through the DevTools protocol, so the gateway's Content-Security-Policy (no
  // scripts at all) stays on for the page itself.
  await page.evaluate(AXE_SOURCE)
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }))
  const problems = []
  for (const v of result.violations) {
    if (v.impact === 'serious' || v.impact === 'critical') {
      for (const n of v.nodes) problems.push(`${v.id} (${v.impact}): ${n.target.join(' ')} — ${v.help}`)
    }
  }
  return problems
}

/**
 * Screenshots the page at both viewports into OUTPUT (`<name>-desktop.png`,
 * `<name>-mobile.png`) and runs axe-core at each; returns the serious and critical
 * violations found at either size.
 */
export async function shootAndAudit(page, name) {
  fs.mkdirSync(OUTPUT, { recursive: true })
  const problems = []
  const before = page.viewportSize()
  for (const [label, size] of Object.entries(VIEWPORTS)) {
    await page.setViewportSize(size)
    await page.screenshot({ path: path.join(OUTPUT, `${name}-${label}.png`), fullPage: true })
    for (const p of await audit(page)) problems.push(`${label} ${p}`)
  }
  await page.setViewportSize(before)
  return problems
}
