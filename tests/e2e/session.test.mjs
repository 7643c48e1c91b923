// A session that ends while the page is open: script calls (fetch/XHR) to a protected API
// path get 401 JSON, not a redirect to the login page; a navigation gets the login page.
//
// The demo runs with a 60 s access token, under the gateway's 300 s refresh margin, so every
// request refreshes through the emulator; moving the emulator's clock past the refresh
// token's 30 days makes the next refresh fail, which ends the session for real.

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { ALICE, TEST_TIMEOUT, clickTo, launch, newPage, passwordSignIn, startDemo } from './lib.mjs'

let demo
let browser

before(async () => {
  demo = await startDemo(['--access-token-ttl', '60'])
  browser = await launch()
})

after(async () => {
  await browser?.close()
  await demo?.stop()
})

/** Calls `p` from the page as an application's script would. */
function xhr(page, p) {
  return page.evaluate(
    (p) =>
      new Promise((resolve) => {
        const r = new XMLHttpRequest()
        r.open('GET', p)
        r.setRequestHeader('Accept', 'application/json')
        r.setRequestHeader('X-Requested-With', 'XMLHttpRequest')
        r.onload = () =>
          resolve({
            status: r.status,
            type: r.getResponseHeader('content-type') || '',
            url: r.responseURL,
            body: r.responseText,
          })
        r.onerror = () => resolve({ status: 0 })
        r.send()
      }),
    p,
  )
}

test('with an expired session, an XHR to a protected API path gets 401 JSON', { timeout: TEST_TIMEOUT }, async () => {
  const { context, page } = await newPage(browser)
  await page.goto(demo.url + '/app')
  await passwordSignIn(page, ALICE.username, ALICE.password, (u) => u.pathname === '/app')

  const live = await xhr(page, '/api/items?limit=5')
  assert.equal(live.status, 200)
  assert.equal(JSON.parse(live.body).path, '/api/items', 'the upstream answered')
  const refreshes = (await demo.emu('GET', '/__emulator/requests')).filter((r) => r.path === '/auth/v1/token').length
  assert.ok(refreshes >= 1, 'the short-lived access token was refreshed')

  await demo.emu('POST', '/__emulator/clock', { advance_secs: 30 * 24 * 3600 + 60 })
  const ended = await xhr(page, '/api/items?limit=5')
  assert.equal(ended.status, 401)
  assert.match(ended.type, /^application\/json/)
  assert.equal(new URL(ended.url).pathname, '/api/items', 'no redirect was followed')
  assert.ok(JSON.parse(ended.body).error, 'a JSON error')
  assert.equal(
    (await context.cookies()).filter((c) => c.name === 'cbgw_session').length,
    0,
    'the ended session’s cookie is cleared',
  )

  // A plain fetch() (no X-Requested-With) is no navigation either.
  const fetched = await page.evaluate(async () => {
    const r = await fetch('/api/items', { headers: { accept: 'application/json' } })
    return { status: r.status, redirected: r.redirected }
  })
  assert.deepEqual(fetched, { status: 401, redirected: false })

  // Reloading the page (a navigation) asks for sign-in again.
  await page.reload()
  const u = new URL(page.url())
  assert.equal(u.pathname, '/__auth/')
  assert.equal(u.searchParams.get('rd'), '/app')
  await passwordSignIn(page, ALICE.username, ALICE.password, (u) => u.pathname === '/app')
  await clickTo(page, 'a[href="/__auth/account"]', (u) => u.pathname === '/__auth/account')
  await context.close()
})
