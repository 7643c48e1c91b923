// Every sign-in method of the hosted login page, in a real browser, each starting from a
// protected URL of the demo's whoami upstream. Screenshots and axe-core audits are taken on the
// way, at 1280×800 and 390×844 (see lib.mjs).

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  ALICE,
  BOB,
  TEST_TIMEOUT,
  assertBearerFor,
  audit as axe,
  clickTo,
  here,
  launch,
  newPage,
  passwordSignIn,
  shootAndAudit,
  startDemo,
  userinfo,
} from './lib.mjs'

let demo
let browser

before(async () => {
  demo = await startDemo()
  browser = await launch()
})

after(async () => {
  await browser?.close()
  await demo?.stop()
})

const t = (name, fn) => test(name, { timeout: TEST_TIMEOUT }, fn)

const onLogin = (u) => u.pathname === '/__auth/' || u.pathname === '/__auth'
// A refused form post answers with the form again, at the URL it was posted to.
const formAgain = (u) => u.pathname.startsWith('/__auth/sign_in/') || onLogin(u)
const at = (p) => (u) => u.pathname === p

/** Opens a protected URL signed out and checks that the login page asks for sign-in. */
async function protectedToLogin(page, p) {
  const res = await page.goto(demo.url + p)
  assert.equal(res.status(), 200)
  const u = new URL(page.url())
  assert.ok(onLogin(u), `a protected URL leads to the login page, got ${page.url()}`)
  assert.equal(u.searchParams.get('rd'), p, 'the login page remembers where the user was going')
  return u
}

async function audit(page, name) {
  const problems = await shootAndAudit(page, name)
  assert.deepEqual(problems, [], `accessibility of ${name}`)
}

async function heading(page) {
  return (await page.textContent('h1')).trim()
}

async function uidOf(pred) {
  const u = await demo.user(pred)
  assert.ok(u, 'the emulator knows the user')
  return u.uid
}

t('password sign-in lands back on the protected URL and the upstream gets a bearer token', async () => {
  const { context, page } = await newPage(browser)
  await protectedToLogin(page, '/reports/q3?view=full')
  assert.equal(await heading(page), 'Sign in')
  await audit(page, 'login')

  // A wrong password: the form comes back with a message, the user name kept, no password.
  await page.fill('#username', ALICE.username)
  await page.fill('#password', 'not-the-password')
  await clickTo(page, 'form[action$="/sign_in/password"] button[type=submit]', formAgain)
  assert.match(await page.textContent('[role=alert]'), /password/i)
  assert.equal(await page.inputValue('#username'), ALICE.username)
  assert.equal(await page.inputValue('#password'), '')
  assert.equal(await page.getAttribute('#password', 'aria-invalid'), 'true')
  await audit(page, 'login-error')

  await passwordSignIn(page, ALICE.username, ALICE.password, at('/reports/q3'))
  assert.equal(here(page), '/reports/q3?view=full')
  assert.equal(await heading(page), 'Signed in as alice')
  const saw = await assertBearerFor(assert, page, await uidOf((u) => u.username === 'alice'))
  assert.equal(saw.headers['x-forwarded-email'], ALICE.email)
  await context.close()
})

t('e-mail code sign-up creates the account and signs it in', async () => {
  const { context, page } = await newPage(browser)
  await protectedToLogin(page, '/projects')
  await clickTo(page, 'a[href*="/sign_up"]', at('/__auth/sign_up'))
  assert.equal(new URL(page.url()).searchParams.get('rd'), '/projects')
  await audit(page, 'sign-up')
  await page.fill('#contact', 'carol@example.com')
  await clickTo(page, 'form button[type=submit]', at('/__auth/code'))
  assert.match(await page.textContent('main'), /carol@example\.com/)
  await audit(page, 'sign-up-code')

  const code = await demo.code('carol@example.com')
  await page.fill('#code', code)
  await page.fill('#username', 'carol')
  await page.fill('#name', 'Carol')
  await page.fill('#password', 'carol-pass-1')
  await clickTo(page, 'form[action$="/code"] button[type=submit]', at('/projects'))
  assert.equal(await heading(page), 'Signed in as carol')
  const carol = await demo.user((u) => u.email === 'carol@example.com')
  assert.equal(carol.username, 'carol')
  assert.equal(carol.name, 'Carol')
  assert.equal(carol.has_password, true)
  await assertBearerFor(assert, page, carol.uid)
  await context.close()
})

t('SMS code sign-in', async () => {
  const { context, page } = await newPage(browser)
  await protectedToLogin(page, '/inbox')
  await clickTo(page, 'nav a[href*="method=sms"]', (u) => u.searchParams.get('method') === 'sms')
  assert.match(await page.getAttribute('nav a[aria-current=page]', 'href'), /method=sms/)
  const before = await demo.codesSent(ALICE.phone)
  await page.fill('#phone', ALICE.phone)
  await clickTo(page, 'form[action$="/sign_in/sms"] button[type=submit]', at('/__auth/code'))
  await audit(page, 'code')

  // A wrong code keeps the user on the code page with a message.
  const code = await demo.code(ALICE.phone, before)
  const wrong = code === '000000' ? '111111' : '000000'
  await page.fill('#code', wrong)
  await clickTo(page, 'form[action$="/code"] button[type=submit]', at('/__auth/code'))
  assert.match(await page.textContent('[role=alert]'), /code/i)

  await page.fill('#code', code)
  await clickTo(page, 'form[action$="/code"] button[type=submit]', at('/inbox'))
  assert.equal(await heading(page), 'Signed in as alice')
  await assertBearerFor(assert, page, await uidOf((u) => u.username === 'alice'))
  await context.close()
})

t('forgot password: a code resets it and signs in; the new password works', async () => {
  const { context, page } = await newPage(browser)
  await protectedToLogin(page, '/settings')
  await clickTo(page, 'a[href*="/forgot"]', at('/__auth/forgot'))
  await audit(page, 'reset')
  await page.fill('#contact', BOB.email)
  await clickTo(page, 'form button[type=submit]', at('/__auth/code'))
  await page.fill('#code', await demo.code(BOB.email))
  await page.fill('#password', 'bob-new-pass-2')
  await audit(page, 'reset-code')
  await clickTo(page, 'form[action$="/code"] button[type=submit]', at('/settings'))
  assert.equal(await heading(page), 'Signed in as bob')
  await context.close()

  // A second browser: the old password is refused, the new one works.
  const other = await newPage(browser)
  await protectedToLogin(other.page, '/settings')
  await other.page.fill('#username', BOB.username)
  await other.page.fill('#password', BOB.password)
  await clickTo(other.page, 'form[action$="/sign_in/password"] button[type=submit]', formAgain)
  assert.ok(await other.page.isVisible('[role=alert]'))
  await passwordSignIn(other.page, BOB.username, 'bob-new-pass-2', at('/settings'))
  assert.equal(await heading(other.page), 'Signed in as bob')
  await other.context.close()
})

t('a guest upgrades to an account and keeps the uid', async () => {
  const { context, page } = await newPage(browser)
  await protectedToLogin(page, '/cart')
  await clickTo(page, 'form[action$="/sign_in/anonymous"] button', at('/cart'))
  const guest = await userinfo(page)
  assert.equal(guest.anonymous, true)
  await assertBearerFor(assert, page, guest.sub)

  await page.goto(demo.url + '/__auth/account')
  await audit(page, 'account-guest')
  await clickTo(page, 'a[href*="/sign_up"]', at('/__auth/sign_up'))
  assert.ok(await page.isVisible('p.notice'), 'the sign-up page says the guest data stays')
  await page.fill('#contact', 'dora@example.com')
  await clickTo(page, 'form button[type=submit]', at('/__auth/code'))
  await page.fill('#code', await demo.code('dora@example.com'))
  await page.fill('#username', 'dora')
  await page.fill('#password', 'dora-pass-1')
  await clickTo(page, 'form[action$="/code"] button[type=submit]', (u) => !u.pathname.startsWith('/__auth/code'))

  const upgraded = await userinfo(page)
  assert.equal(upgraded.sub, guest.sub, 'the uid stays the same')
  assert.equal(upgraded.anonymous, false)
  assert.equal(upgraded.email, 'dora@example.com')
  const dora = await demo.user((u) => u.uid === guest.sub)
  assert.equal(dora.anonymous, false)
  assert.equal(dora.username, 'dora')
  await page.goto(demo.url + '/cart')
  await assertBearerFor(assert, page, guest.sub)
  await context.close()
})

t('provider sign-in through the emulator consent page', async () => {
  const { context, page } = await newPage(browser)
  await protectedToLogin(page, '/team?id=7')
  await clickTo(page, 'a.button[href*="provider=github"]', (u) => u.pathname === '/__emulator/oauth/authorize')
  assert.equal(new URL(page.url()).origin, demo.emulator, 'the browser went to the provider')
  await page.fill('#login', 'octocat')
  await clickTo(page, 'button[value=approve]', at('/team'))
  assert.equal(here(page), '/team?id=7')
  const info = await userinfo(page)
  const linked = await demo.user((u) => u.uid === info.sub)
  assert.deepEqual(linked.providers.map((p) => p.id), ['github'])
  await assertBearerFor(assert, page, info.sub)

  // Denying at the provider brings the login page back with a message, signed out.
  const other = await newPage(browser)
  await protectedToLogin(other.page, '/team')
  await clickTo(other.page, 'a.button[href*="provider=github"]', (u) => u.pathname === '/__emulator/oauth/authorize')
  await clickTo(other.page, 'button[value=deny]', (u) => u.pathname === '/__auth/callback')
  assert.match(await other.page.textContent('[role=alert]'), /cancel|refus/i)
  assert.equal((await userinfo(other.page)).status, 401)
  await other.context.close()
  await context.close()
})

t('after sign-out the protected page asks for sign-in again', async () => {
  const { context, page } = await newPage(browser)
  await protectedToLogin(page, '/docs')
  await passwordSignIn(page, ALICE.username, ALICE.password, at('/docs'))
  await page.goto(demo.url + '/__auth/account')
  assert.match(await page.textContent('main'), /alice@example\.com/)
  await audit(page, 'account')

  // Linking a provider from the account page: its consent page, then back with a notice.
  assert.match(await page.locator('li', { hasText: 'GitHub' }).textContent(), /· Not linked/)
  await clickTo(page, 'li:has-text("GitHub") form[action$="/start"] button', (u) => u.pathname === '/__emulator/oauth/authorize')
  await page.fill('#login', 'alice-at-github')
  await clickTo(page, 'button[value=approve]', at('/__auth/account'))
  assert.ok(await page.isVisible('p.notice[role=status]'))
  assert.match(await page.locator('li', { hasText: 'GitHub' }).textContent(), /· Linked/)
  const alice = await demo.user((u) => u.username === 'alice')
  assert.deepEqual(alice.providers.map((p) => p.id), ['github'], 'CloudBase linked the provider')
  await audit(page, 'account-linked')
  await clickTo(page, 'form[action$="/sign_out"] button', at('/__auth/signed_out'))
  await audit(page, 'signed-out')
  assert.equal((await context.cookies()).filter((c) => c.name === 'cbgw_session').length, 0)
  await protectedToLogin(page, '/docs')
  assert.equal((await userinfo(page)).status, 401)
  await context.close()
})

t('two tabs signing in at once both succeed', async () => {
  const { context, page: a } = await newPage(browser)
  const b = await context.newPage()
  // Both tabs hold their login page (and its form token) before either signs in.
  await protectedToLogin(a, '/tab-a')
  await protectedToLogin(b, '/tab-b')
  for (const p of [a, b]) {
    await p.fill('#username', ALICE.username)
    await p.fill('#password', ALICE.password)
  }
  await Promise.all([
    clickTo(a, 'form[action$="/sign_in/password"] button[type=submit]', at('/tab-a')),
    clickTo(b, 'form[action$="/sign_in/password"] button[type=submit]', at('/tab-b')),
  ])
  assert.equal(await heading(a), 'Signed in as alice')
  assert.equal(await heading(b), 'Signed in as alice')
  // The session the browser kept (the later of the two) works in both tabs.
  await a.reload()
  assert.equal(await heading(a), 'Signed in as alice')
  assert.equal((await userinfo(b)).username, 'alice')
  await context.close()

  // Two tabs opened at once in a fresh browser: each got its own CSRF cookie, and the later
  // replaced the earlier under the first tab's form. Played out in order (clearing the
  // cookies between the two loads is what the race leaves behind). The first tab's post is
  // refused (a token is never waived), and its error page leads back to the same form.
  const fresh = await newPage(browser)
  const e = fresh.page
  const f = await fresh.context.newPage()
  await protectedToLogin(e, '/tab-e')
  const tokenE = await e.inputValue('input[name=csrf]')
  await fresh.context.clearCookies()
  await protectedToLogin(f, '/tab-f')
  assert.notEqual(await f.inputValue('input[name=csrf]'), tokenE, 'the tabs hold different tokens')
  await passwordSignIn(e, ALICE.username, ALICE.password, formAgain)
  assert.equal(await heading(e), 'Form expired')
  await audit(e, 'form-expired')
  await clickTo(e, 'main a', onLogin)
  assert.equal(new URL(e.url()).searchParams.get('rd'), '/tab-e', 'back to the same form')
  await passwordSignIn(e, ALICE.username, ALICE.password, at('/tab-e'))
  await passwordSignIn(f, ALICE.username, ALICE.password, at('/tab-f'))
  assert.equal(await heading(e), 'Signed in as alice')
  assert.equal(await heading(f), 'Signed in as alice')
  await fresh.context.close()

  // Two provider sign-ins in flight in two tabs: each tab's state is its own.
  const second = await newPage(browser)
  const c = second.page
  const d = await second.context.newPage()
  const toConsent = (u) => u.pathname === '/__emulator/oauth/authorize'
  await protectedToLogin(c, '/tab-c')
  await protectedToLogin(d, '/tab-d')
  await clickTo(c, 'a.button[href*="provider=github"]', toConsent)
  await clickTo(d, 'a.button[href*="provider=github"]', toConsent)
  await c.fill('#login', 'tabby')
  await d.fill('#login', 'tabby')
  await Promise.all([clickTo(c, 'button[value=approve]', at('/tab-c')), clickTo(d, 'button[value=approve]', at('/tab-d'))])
  const [ic, id] = [await userinfo(c), await userinfo(d)]
  assert.equal(ic.sub, id.sub, 'the same provider account in both tabs')
  assert.ok(ic.sub)
  await second.context.close()
})

t('the session cookie is HttpOnly and not visible to page scripts', async () => {
  const { context, page } = await newPage(browser)
  await protectedToLogin(page, '/')
  await passwordSignIn(page, ALICE.username, ALICE.password, at('/'))
  const session = (await context.cookies()).find((c) => c.name === 'cbgw_session')
  assert.ok(session, 'the browser holds the session cookie')
  assert.equal(session.httpOnly, true)
  assert.equal(session.sameSite, 'Lax')
  assert.equal(session.path, '/')
  const visible = await page.evaluate(() => document.cookie)
  // Never print the cookie jar: it would put a live session in the test log.
  assert.ok(!visible.includes('cbgw_session'), 'document.cookie shows the session cookie')
  assert.ok(!visible.includes(session.value), 'document.cookie shows the session value')
  await context.close()
})

t('switching the language', async () => {
  const { context, page } = await newPage(browser)
  await protectedToLogin(page, '/lang')
  assert.equal(await page.getAttribute('html', 'lang'), 'en')
  await clickTo(page, 'a.lang', (u) => u.searchParams.get('lang') === 'zh-CN')
  assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN')
  assert.equal(await heading(page), '登录')
  await audit(page, 'login-zh')
  // The choice is remembered on the next page, and messages follow it.
  await clickTo(page, 'a[href*="/sign_up"]', at('/__auth/sign_up'))
  assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN')
  await page.goBack()
  await passwordSignIn(page, ALICE.username, 'wrong-password-x', formAgain)
  assert.equal((await page.textContent('[role=alert]')).trim(), '密码错误。', 'the error is in Chinese')
  await clickTo(page, 'a.lang', (u) => u.searchParams.get('lang') === 'en')
  assert.equal(await page.getAttribute('html', 'lang'), 'en')
  assert.equal(await heading(page), 'Sign in')
  await context.close()

  // A browser that prefers Chinese gets Chinese without choosing.
  const zh = await newPage(browser, { locale: 'zh-CN' })
  await protectedToLogin(zh.page, '/lang')
  assert.equal(await zh.page.getAttribute('html', 'lang'), 'zh-CN')
  await zh.context.close()
})

t('with JavaScript disabled, sign-in still works', async () => {
  const { context, page } = await newPage(browser, { javaScriptEnabled: false })
  await protectedToLogin(page, '/no-js')
  await passwordSignIn(page, ALICE.username, ALICE.password, at('/no-js'))
  assert.equal(await heading(page), 'Signed in as alice')
  await context.close()

  // The e-mail code flow too, form posts only.
  const other = await newPage(browser, { javaScriptEnabled: false })
  const p = other.page
  await protectedToLogin(p, '/no-js-code')
  await clickTo(p, 'nav a[href*="method=email"]', (u) => u.searchParams.get('method') === 'email')
  const before = await demo.codesSent(ALICE.email)
  await p.fill('#email', ALICE.email)
  await clickTo(p, 'form[action$="/sign_in/email"] button[type=submit]', at('/__auth/code'))
  await p.fill('#code', await demo.code(ALICE.email, before))
  await clickTo(p, 'form[action$="/code"] button[type=submit]', at('/no-js-code'))
  assert.equal(await heading(p), 'Signed in as alice')
  await other.context.close()
})

t('the accessibility audit does report serious violations', async () => {
  // The audits above pass with zero findings; this shows a page with real faults fails.
  const { context, page } = await newPage(browser)
  await page.setContent(
    '<!doctype html><html><head><title>t</title></head><body><main>' +
      '<p style="color:#bbb;background:#fff">faint text</p><form><input name="q"></form></main></body></html>',
  )
  const problems = await axe(page)
  assert.ok(problems.some((p) => p.startsWith('color-contrast (serious)')), problems.join('\n'))
  assert.ok(problems.some((p) => p.startsWith('label (critical)')), problems.join('\n'))
  assert.ok(problems.some((p) => p.startsWith('html-has-lang (serious)')), problems.join('\n'))
  await context.close()
})

t('a forged or used sign-in link shows the error page', async () => {
  const { context, page } = await newPage(browser)
  const res = await page.goto(demo.url + '/__auth/callback?state=forged&code=x')
  assert.equal(res.status(), 400)
  assert.match(await page.textContent('main'), /expired or was already used/)
  await audit(page, 'error')
  await clickTo(page, 'main a', onLogin)
  await context.close()
})
