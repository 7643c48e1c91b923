// End-to-end check that the official @cloudbase/js-sdk (Node build, from npm)
// works against the in-process emulator of the CloudBase auth v1 HTTP API
// (`cloudbase-gateway emulator`).
//
// Run:  npm run test:sdk          (= node --test tests/sdk/*.test.mjs)
// Needs: the gateway binary, `$GATEWAY_TEST_BIN` or
//        <repo>/target/debug/cloudbase-gateway (cargo build first).
//
// The SDK is used the way an application uses it:
//   cloudbase.init({ env, region }) + app.registerHost('127.0.0.1:PORT', 'http')
// with TENCENTCLOUD=true (skips the SDK's metadata-server probe) and without
// TENCENTCLOUD_SECRETID/SECRETKEY/SESSIONTOKEN or CLOUDBASE_APIKEY (which
// would make the SDK install an admin pseudo-session).
//
// Notes on the SDK (3.7.0) that shape these tests:
// - The Node build keeps ALL storage (credentials, device id, cached user) in
//   one process-wide Map, and endpoints per env id. So the second emulator
//   (short token lifetime) is registered under its own env id
//   (`test-env-ttl`) to keep the two sessions apart.
// - `app.auth.getUserInfo()` is replaced in the Node build by a helper that
//   sends nothing; getCurrentUser()/getUser() are the calls that hit
//   GET /auth/v1/user/me.
// - getCurrentUser() swallows errors of its own user/me refresh and falls
//   back to cached user info, so the refresh test also checks the requests
//   the emulator received.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

// --- environment, before the SDK is loaded ---------------------------------
process.env.TENCENTCLOUD = 'true'
for (const k of [
  'TENCENTCLOUD_SECRETID',
  'TENCENTCLOUD_SECRETKEY',
  'TENCENTCLOUD_SESSIONTOKEN',
  'CLOUDBASE_APIKEY',
]) {
  delete process.env[k]
}

// The SDK prints long help texts with console.log/info. Under `node --test`
// the child's stdout carries the runner's serialized messages, and foreign
// writes there intermittently break it ("Unable to deserialize cloned data",
// nodejs/node#48103-style). Send that chatter to stderr instead.
for (const m of ['log', 'info', 'debug']) {
  console[m] = (...args) => console.error(...args)
}

const { default: cloudbase } = await import('@cloudbase/js-sdk')

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = process.env.GATEWAY_TEST_BIN || path.join(REPO, 'target', 'debug', 'cloudbase-gateway')

const TEST_TIMEOUT = 20_000
const START_TIMEOUT = 15_000

const ALICE = {
  username: 'alice',
  password: 'secret123',
  email: 'alice@example.com',
  phone_number: '+86 13800000001',
  name: 'Alice',
  groups: ['staff'],
}

const USERS_TOML = `
[[users]]
username = "${ALICE.username}"
email = "${ALICE.email}"
phone_number = "${ALICE.phone_number}"
password = "${ALICE.password}"
name = "${ALICE.name}"
groups = ["staff"]
`

// --- emulator process management --------------------------------------------

const children = new Set()
function killChildren() {
  for (const c of children) {
    try { c.kill('SIGKILL') } catch { /* already gone */ }
  }
}
process.on('exit', killChildren)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killChildren()
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1))
  })
}

/** Start `cloudbase-gateway emulator ...`; resolves once it printed its URL. */
async function startEmulator({ env, extraArgs = [] }) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`emulator binary not found at ${BIN} (build it with \`cargo build\`, or set GATEWAY_TEST_BIN)`)
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbgw-sdk-test-'))
  const usersFile = path.join(dir, 'users.toml')
  fs.writeFileSync(usersFile, USERS_TOML)

  const args = ['emulator', '--listen', '127.0.0.1:0', '--env', env, '--users', usersFile, ...extraArgs]
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  const stderr = []
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (d) => {
    stderr.push(d)
    if (stderr.length > 200) stderr.shift()
  })

  const url = await new Promise((resolve, reject) => {
    let buf = ''
    let done = false
    const finish = (err, value) => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (err) reject(err)
      else resolve(value)
    }
    const timer = setTimeout(() => {
      finish(new Error(`emulator did not print its URL within ${START_TIMEOUT} ms\nargs: ${args.join(' ')}\nstdout so far: ${JSON.stringify(buf)}\nstderr: ${stderr.join('')}`))
    }, START_TIMEOUT)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (d) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl === -1) return
      const first = buf.slice(0, nl).trim()
      const m = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/.exec(first)
      if (m) finish(null, m[1])
      else finish(new Error(`unexpected first stdout line from emulator: ${JSON.stringify(first)} (expected "listening on http://127.0.0.1:PORT")\nstderr: ${stderr.join('')}`))
    })
    child.on('error', (e) => finish(new Error(`cannot start ${BIN}: ${e.message}`)))
    child.on('exit', (code, sig) => finish(new Error(`emulator exited early (code ${code}, signal ${sig})\nargs: ${args.join(' ')}\nstderr: ${stderr.join('')}`)))
  })
  // Keep draining stdout so the child never blocks on a full pipe.
  child.stdout.resume()

  const host = new URL(url).host
  return {
    url,
    host,
    child,
    dir,
    stderr: () => stderr.join(''),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 3000)
        await exited
        clearTimeout(t)
      }
      children.delete(child)
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

// --- emulator side channels --------------------------------------------------

async function emu(em, method, p, body) {
  const res = await fetch(em.url + p, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  })
  const text = await res.text()
  assert.ok(res.ok, `${method} ${p} -> HTTP ${res.status}: ${text}`)
  return text ? JSON.parse(text) : null
}

const clearRequests = (em) => emu(em, 'DELETE', '/__emulator/requests')
const getRequests = (em) => emu(em, 'GET', '/__emulator/requests')
const getOutbox = (em) => emu(em, 'GET', '/__emulator/outbox')

/** Requests to the auth API only (not to /__emulator). */
const authRequests = (reqs) => reqs.filter((r) => r.path.startsWith('/auth/'))

function fmtRequests(reqs) {
  return reqs
    .map((r) => `  ${r.method} ${r.path}${r.query ? '?' + r.query : ''}  auth=${r.headers?.authorization ?? '-'} device=${r.headers?.['x-device-id'] ? 'yes' : 'no'}`)
    .join('\n') || '  (none)'
}

/** Index of the first request matching method+path (and pred), or fail listing all. */
function findRequest(reqs, method, p, pred = () => true, what = '') {
  const i = reqs.findIndex((r) => r.method === method && r.path === p && pred(r))
  assert.ok(i !== -1, `emulator did not see ${method} ${p}${what ? ' ' + what : ''}; it saw:\n${fmtRequests(reqs)}`)
  return i
}

const queryParams = (r) => new URLSearchParams(r.query || '')

/** Latest outbox message to `to` (optionally for a verification id); polls with a deadline. */
async function codeFor(em, to, verificationId) {
  const deadline = Date.now() + 5000
  for (;;) {
    const box = await getOutbox(em)
    assert.ok(Array.isArray(box), `outbox is not an array: ${JSON.stringify(box)}`)
    const hits = box.filter((m) => m.to === to && (!verificationId || !m.verification_id || m.verification_id === verificationId))
    if (hits.length) {
      const msg = hits[hits.length - 1]
      assert.match(String(msg.code), /^\d{6}$/, `outbox code is not 6 digits: ${JSON.stringify(msg)}`)
      return String(msg.code)
    }
    if (Date.now() > deadline) assert.fail(`no outbox message to ${to}; outbox: ${JSON.stringify(box)}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function decodeJwtPayload(token) {
  assert.equal(typeof token, 'string', 'access token is not a string')
  const parts = token.split('.')
  assert.equal(parts.length, 3, `access token is not a JWT (3 dot-separated parts): ${token.slice(0, 60)}…`)
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'))
}

// --- SDK setup ---------------------------------------------------------------

function makeApp(env, em) {
  const app = cloudbase.init({ env, region: 'ap-shanghai' })
  app.registerHost(em.host, 'http')
  return app
}

/** Sign out if the SDK holds a session, and check it is gone. */
async function ensureSignedOut(auth) {
  if (auth.hasLoginState()) {
    const res = await auth.signOut()
    if (res.error) {
      // Drop the local session anyway so one failure does not cascade into later tests.
      await auth.setCredentials(null)
      assert.fail(`signOut failed: status=${res.error.status} code=${res.error.code} message=${res.error.message}`)
    }
  }
  assert.equal(auth.hasLoginState(), null, 'SDK still has a login state after signOut')
}

/** Assert the SDK's {data, error} result carries no error. */
function assertOk(res, what) {
  assert.ok(res && typeof res === 'object', `${what}: no result object`)
  if (res.error) {
    const e = res.error
    assert.fail(`${what} failed: status=${e.status} code=${e.code} errorCode=${e.errorCode} message=${e.message}`)
  }
}

// --- shared fixtures ---------------------------------------------------------

const ENV = 'test-env'
let em // main emulator
let app
let auth

before(async () => {
  em = await startEmulator({ env: ENV })
  app = makeApp(ENV, em)
  auth = app.auth
}, { timeout: START_TIMEOUT + 5000 })

after(async () => {
  if (em) await em.stop()
})

// --- tests -------------------------------------------------------------------

test('a. signInAnonymously: user with uid, scope anonymous, request shape', { timeout: TEST_TIMEOUT }, async () => {
  await ensureSignedOut(auth)
  await clearRequests(em)

  const res = await auth.signInAnonymously()
  assertOk(res, 'signInAnonymously')
  assert.ok(res.data.session?.access_token, 'signInAnonymously returned no session.access_token')

  const user = await auth.getCurrentUser()
  assert.ok(user, 'getCurrentUser() returned null after anonymous sign-in')
  assert.equal(typeof user.uid, 'string')
  assert.ok(user.uid.length > 0, 'anonymous user has an empty uid')
  assert.equal(await auth.loginScope(), 'anonymous')

  const reqs = authRequests(await getRequests(em))
  const i = findRequest(reqs, 'POST', '/auth/v1/signin/anonymously')
  const r = reqs[i]
  assert.equal(queryParams(r).get('client_id'), ENV, `anonymous sign-in query was ${JSON.stringify(r.query)}`)
  assert.ok(r.headers['x-device-id'], `anonymous sign-in carried no x-device-id header; headers: ${JSON.stringify(r.headers)}`)
  assert.equal(r.headers.authorization, undefined, 'anonymous sign-in should carry no Authorization header')
  // createLoginState/getCurrentUser then read the profile with the new token.
  findRequest(reqs.slice(i + 1), 'GET', '/auth/v1/user/me', (x) => x.headers.authorization === 'Bearer', 'with Bearer after sign-in')
})

test('a2. anonymous identity is stable for the same device id', { timeout: TEST_TIMEOUT }, async () => {
  await ensureSignedOut(auth)
  const first = await auth.signInAnonymously()
  assertOk(first, 'signInAnonymously #1')
  const uid1 = (await auth.getCurrentUser())?.uid
  await ensureSignedOut(auth)
  const second = await auth.signInAnonymously()
  assertOk(second, 'signInAnonymously #2')
  const uid2 = (await auth.getCurrentUser())?.uid
  assert.ok(uid1, 'no uid after first anonymous sign-in')
  assert.equal(uid2, uid1, 'same x-device-id should give the same anonymous user')
  await ensureSignedOut(auth)
})

test('b. signInWithPassword: profile and JWT access token', { timeout: TEST_TIMEOUT }, async () => {
  await ensureSignedOut(auth)
  await clearRequests(em)

  const res = await auth.signInWithPassword({ username: ALICE.username, password: ALICE.password })
  assertOk(res, 'signInWithPassword')
  assert.equal(res.data.session?.token_type, 'Bearer')

  const { data, error } = await auth.getUser()
  assert.equal(error, null, `getUser error: ${error && error.message}`)
  const user = data.user
  assert.ok(user, 'getUser() returned no user')
  assert.equal(user.email, ALICE.email)
  assert.equal(user.phone, ALICE.phone_number)
  assert.equal(user.user_metadata.name, ALICE.name)
  assert.equal(user.user_metadata.username, ALICE.username)
  assert.deepEqual(user.role, ALICE.groups, 'user/me groups (as SDK user.role)')

  const current = await auth.getCurrentUser()
  assert.ok(current?.uid, 'getCurrentUser() has no uid')
  assert.equal(current.uid, user.id)
  assert.equal(current.name, ALICE.name)
  assert.equal(current.email, ALICE.email)
  assert.equal(current.username, ALICE.username)

  assert.notEqual(await auth.loginScope(), 'anonymous')
  assert.deepEqual(await auth.loginGroups(), ALICE.groups, 'token response groups (loginGroups())')

  const { accessToken, env } = await auth.getAccessToken()
  assert.equal(env, ENV)
  assert.equal(accessToken, res.data.session.access_token, 'getAccessToken() differs from the sign-in session token')
  const claims = decodeJwtPayload(accessToken)
  assert.equal(claims.sub, current.uid, `JWT sub ${claims.sub} != uid ${current.uid}`)
  assert.equal(typeof claims.exp, 'number', 'JWT has no numeric exp')
  assert.equal(typeof claims.iat, 'number', 'JWT has no numeric iat')

  const reqs = authRequests(await getRequests(em))
  const i = findRequest(reqs, 'POST', '/auth/v1/signin')
  assert.equal(queryParams(reqs[i]).get('client_id'), ENV)
  assert.equal(reqs[i].headers.authorization, undefined)
  findRequest(reqs.slice(i + 1), 'GET', '/auth/v1/user/me', (x) => x.headers.authorization === 'Bearer' && !queryParams(x).has('client_id'), 'with Bearer and no client_id')
})

test('c. expired access token is refreshed automatically (--access-token-ttl 30)', { timeout: TEST_TIMEOUT + 10_000 }, async () => {
  const ENV2 = 'test-env-ttl'
  const em2 = await startEmulator({ env: ENV2, extraArgs: ['--access-token-ttl', '30'] })
  try {
    const app2 = makeApp(ENV2, em2)
    const auth2 = app2.auth

    const res = await auth2.signInWithPassword({ username: ALICE.username, password: ALICE.password })
    assertOk(res, 'signInWithPassword (ttl 30)')
    assert.equal(res.data.session.expires_in, 30, 'emulator did not honour --access-token-ttl 30')
    const signInRefreshToken = res.data.session.refresh_token
    assert.ok(signInRefreshToken, 'sign-in returned no refresh_token')

    // The SDK sets expires_at = receive time + expires_in - 30 s = receive time;
    // make sure the clock has moved past it (no fixed sleep: wait for the next ms).
    const mark = Date.now()
    while (Date.now() <= mark + 1) await new Promise((r) => setImmediate(r))

    await clearRequests(em2)
    const user = await auth2.getCurrentUser()
    assert.ok(user?.uid, 'getCurrentUser() returned no user after token expiry')
    assert.equal(user.email, ALICE.email)

    let reqs = authRequests(await getRequests(em2))
    const iTok = findRequest(reqs, 'POST', '/auth/v1/token', () => true, '(refresh) during getCurrentUser()')
    const tok = reqs[iTok]
    assert.equal(queryParams(tok).get('client_id'), ENV2)
    assert.equal(tok.headers.authorization, undefined, 'refresh must not carry Authorization')
    findRequest(reqs.slice(iTok + 1), 'GET', '/auth/v1/user/me', (x) => x.headers.authorization === 'Bearer', 'with Bearer after the refresh')
    assert.equal(reqs.filter((r) => r.path === '/auth/v1/signin/anonymously').length, 0, 'SDK fell back to anonymous sign-in')

    await clearRequests(em2)
    const { data, error } = await auth2.getUser()
    assert.equal(error, null, `getUser error after refresh: ${error && error.message}`)
    assert.equal(data.user?.email, ALICE.email)
    assert.equal(data.user?.id, user.uid)
    reqs = authRequests(await getRequests(em2))
    findRequest(reqs, 'POST', '/auth/v1/token', () => true, '(refresh) during getUser()')

    // Refresh tokens rotate: the stored one is no longer the sign-in one.
    const creds = await auth2.getCredentials()
    assert.ok(creds?.refresh_token, 'no refresh_token stored after refresh')
    assert.notEqual(creds.refresh_token, signInRefreshToken, 'refresh_token was not rotated')
    assert.equal(decodeJwtPayload(creds.access_token).sub, user.uid)
    assert.notEqual(await auth2.loginScope(), 'anonymous')

    await ensureSignedOut(auth2)
  } finally {
    await em2.stop()
  }
})

test('d. signOut revokes and clears the login state', { timeout: TEST_TIMEOUT }, async () => {
  await ensureSignedOut(auth)
  const signIn = await auth.signInWithPassword({ username: ALICE.username, password: ALICE.password })
  assertOk(signIn, 'signInWithPassword')
  assert.ok(auth.hasLoginState(), 'no login state after sign-in')
  assert.ok(await auth.getLoginState(), 'getLoginState() null after sign-in')

  await clearRequests(em)
  const out = await auth.signOut()
  assert.equal(out.error, null, `signOut error: ${out.error && out.error.message}`)

  const reqs = authRequests(await getRequests(em))
  const i = findRequest(reqs, 'POST', '/auth/v1/revoke')
  assert.equal(queryParams(reqs[i]).get('client_id'), ENV)
  assert.equal(reqs[i].headers.authorization, undefined, 'revoke should carry the token in the body, not Authorization')

  assert.equal(auth.hasLoginState(), null, 'hasLoginState() not null after signOut')
  assert.equal(await auth.getLoginState(), null, 'getLoginState() not null after signOut')
  assert.equal(await auth.getCurrentUser(), null, 'getCurrentUser() not null after signOut')
  const { data } = await auth.getUser()
  assert.equal(data.user, null, 'getUser() still returns a user after signOut')
})

test('e. e-mail code sign-up: getVerification -> outbox -> verify -> signUp', { timeout: TEST_TIMEOUT }, async () => {
  const email = 'new@example.com'
  await ensureSignedOut(auth)
  await clearRequests(em)

  const verification = await auth.getVerification({ email })
  assert.ok(verification?.verification_id, `getVerification returned no verification_id: ${JSON.stringify(verification)}`)
  assert.ok(!verification.is_user, 'new@example.com should not be an existing user (is_user)')

  const code = await codeFor(em, email, verification.verification_id)
  const verified = await auth.verify({ verification_id: verification.verification_id, verification_code: code })
  assert.ok(verified?.verification_token, `verify returned no verification_token: ${JSON.stringify(verified)}`)

  // signUp() posts directly to /auth/v1/signup when verification_token is given,
  // then loads the profile (it throws on error in this branch).
  await auth.signUp({
    email,
    verification_token: verified.verification_token,
    password: 'newpass123',
    username: 'newuser',
  })

  const { data, error } = await auth.getUser()
  assert.equal(error, null, `getUser error: ${error && error.message}`)
  assert.equal(data.user?.email, email)
  assert.equal(data.user.user_metadata.username, 'newuser')
  const current = await auth.getCurrentUser()
  assert.ok(current?.uid, 'no uid after sign-up')
  assert.notEqual(await auth.loginScope(), 'anonymous')
  assert.equal(decodeJwtPayload((await auth.getAccessToken()).accessToken).sub, current.uid)

  const reqs = authRequests(await getRequests(em))
  const iv = findRequest(reqs, 'POST', '/auth/v1/verification')
  assert.equal(reqs[iv].headers.authorization, undefined, 'verification while signed out should carry no Authorization')
  const iverify = findRequest(reqs, 'POST', '/auth/v1/verification/verify')
  const isu = findRequest(reqs, 'POST', '/auth/v1/signup')
  assert.ok(iv < iverify && iverify < isu, `unexpected order:\n${fmtRequests(reqs)}`)

  // The new account works with its password.
  await ensureSignedOut(auth)
  const again = await auth.signInWithPassword({ username: 'newuser', password: 'newpass123' })
  assertOk(again, 'signInWithPassword as the new user')
  assert.equal(again.data.user?.email, email)
  assert.equal(again.data.user?.id, current.uid)
  await ensureSignedOut(auth)
})

test('e2. SDK OTP sign-up flow: signUp({email,password,username}) -> data.verifyOtp({token})', { timeout: TEST_TIMEOUT }, async () => {
  const email = 'otp@example.com'
  await ensureSignedOut(auth)

  const started = await auth.signUp({ email, password: 'otppass123', username: 'otpuser' })
  assertOk(started, 'signUp (OTP step 1)')
  assert.equal(typeof started.data?.verifyOtp, 'function', 'signUp did not return data.verifyOtp')

  const code = await codeFor(em, email)
  const done = await started.data.verifyOtp({ token: code })
  assertOk(done, 'verifyOtp (sign-up)')
  assert.equal(done.data.user?.email, email)
  assert.equal(done.data.user.user_metadata.username, 'otpuser')
  assert.ok(done.data.session?.access_token)
  await ensureSignedOut(auth)
})

test('e3. SDK OTP sign-in of an existing user: signInWithOtp({email}) -> verifyOtp', { timeout: TEST_TIMEOUT }, async () => {
  await ensureSignedOut(auth)
  await clearRequests(em)

  const started = await auth.signInWithOtp({ email: ALICE.email })
  assertOk(started, 'signInWithOtp (step 1)')
  const code = await codeFor(em, ALICE.email)
  const done = await started.data.verifyOtp({ token: code })
  assertOk(done, 'verifyOtp (sign-in)')
  assert.equal(done.data.user?.email, ALICE.email)
  assert.equal(done.data.user.user_metadata.username, ALICE.username)

  // is_user=true: the SDK signs in with {username: email, verification_token}.
  const reqs = authRequests(await getRequests(em))
  findRequest(reqs, 'POST', '/auth/v1/signin')
  assert.equal(reqs.filter((r) => r.path === '/auth/v1/signup').length, 0, 'existing user was signed up again')
  await ensureSignedOut(auth)
})

test('f. wrong password -> AuthError invalid_password', { timeout: TEST_TIMEOUT }, async () => {
  await ensureSignedOut(auth)
  const res = await auth.signInWithPassword({ username: ALICE.username, password: 'wrong-password' })
  assert.ok(res.error, 'signInWithPassword with a wrong password returned no error')
  assert.equal(res.error.status, 'invalid_password')
  assert.equal(res.error.code, 'invalid_password')
  assert.equal(typeof res.error.errorCode, 'number', 'error_code (numeric) missing from the error body')
  assert.equal(res.data.user, null)
  assert.equal(res.data.session, null)
  assert.equal(auth.hasLoginState(), null, 'failed sign-in left a login state')
})

test('g. anonymous sign-in disabled -> AuthError unimplemented', { timeout: TEST_TIMEOUT }, async () => {
  await ensureSignedOut(auth)
  await emu(em, 'POST', '/__emulator/settings', { anonymous_enabled: false })
  try {
    const res = await auth.signInAnonymously()
    assert.ok(res.error, 'signInAnonymously succeeded although anonymous login is disabled')
    assert.equal(res.error.status, 'unimplemented')
    assert.equal(auth.hasLoginState(), null)
  } finally {
    await emu(em, 'POST', '/__emulator/settings', { anonymous_enabled: true })
  }
  const ok = await auth.signInAnonymously()
  assertOk(ok, 'signInAnonymously after re-enabling')
  await ensureSignedOut(auth)
})
