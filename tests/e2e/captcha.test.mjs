// A captcha demanded during sign-in, in both of the gateway's modes: `redirect` (CloudBase's
// captcha page, here the emulator's) and `image` (the picture in the gateway's own page).
// Each mode runs its own demo, since `--captcha-mode` is a start-up setting.

import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  ALICE,
  TEST_TIMEOUT,
  assertBearerFor,
  clickTo,
  here,
  launch,
  newPage,
  passwordSignIn,
  shootAndAudit,
  startDemo,
  waitFor,
} from './lib.mjs'

const demos = []
let browser

after(async () => {
  await browser?.close()
  for (const d of demos) await d.stop()
})

async function setUp(mode) {
  const demo = await startDemo(['--captcha-mode', mode])
  demos.push(demo)
  browser ??= await launch()
  await demo.emu('POST', '/__emulator/settings', { captcha_required: true })
  return demo
}

const at = (p) => (u) => u.pathname === p
const signinsWithToken = async (demo) =>
  (await demo.emu('GET', '/__emulator/requests')).filter(
    (r) => r.path.endsWith('/auth/v1/signin') && /captcha_token=/.test(r.query ?? r.path),
  ).length

test('captcha in redirect mode: the emulator’s captcha page, then signed in', { timeout: TEST_TIMEOUT }, async () => {
  const demo = await setUp('redirect')
  const { context, page } = await newPage(browser)
  await page.goto(demo.url + '/orders?page=2')
  await passwordSignIn(page, ALICE.username, ALICE.password, (u) => u.pathname === '/__emulator/captcha')
  assert.equal(new URL(page.url()).origin, demo.emulator, 'the browser is at CloudBase’s captcha page')

  // Cancelling brings the form back, the user name kept, and a message.
  await clickTo(page, 'button[value=cancel]', (u) => u.pathname.startsWith('/__auth'))
  assert.match(await page.textContent('[role=alert]'), /security check/i)
  assert.equal(await page.inputValue('#username'), ALICE.username)
  assert.equal(await page.inputValue('#password'), '')

  await passwordSignIn(page, ALICE.username, ALICE.password, (u) => u.pathname === '/__emulator/captcha')
  await clickTo(page, 'button[value=pass]', at('/orders'))
  assert.equal(here(page), '/orders?page=2')
  assert.equal((await page.textContent('h1')).trim(), 'Signed in as alice')
  const alice = (await demo.emu('GET', '/__emulator/users')).find((u) => u.username === 'alice')
  await assertBearerFor(assert, page, alice.uid)
  assert.ok((await signinsWithToken(demo)) >= 1, 'the sign-in was retried with the captcha token')
  await context.close()
})

test('captcha in image mode: the picture in the gateway’s page, a wrong reading, then signed in', { timeout: TEST_TIMEOUT }, async () => {
  const demo = await setUp('image')
  const { context, page } = await newPage(browser)
  await page.goto(demo.url + '/orders')
  await passwordSignIn(page, ALICE.username, ALICE.password, at('/__auth/captcha'))
  const loaded = await page.$eval('p.captcha img', (img) => img.complete && img.naturalWidth > 0)
  assert.ok(loaded, 'the captcha picture is shown')
  const problems = await shootAndAudit(page, 'captcha-image')
  assert.deepEqual(problems, [], 'accessibility of the captcha page')

  // A wrong reading: a message and a new picture.
  const first = await waitFor(async () => (await demo.emu('GET', '/__emulator/captchas'))[0], 'a captcha')
  const src = await page.getAttribute('p.captcha img', 'src')
  await page.fill('#answer', first.answer === 'zzzz' ? 'yyyy' : 'zzzz')
  await clickTo(page, 'form button[type=submit]:not([name=cancel])', at('/__auth/captcha'))
  assert.match(await page.textContent('[role=alert]'), /do not match the picture/)
  assert.notEqual(await page.getAttribute('p.captcha img', 'src'), src, 'a new picture')

  const current = await waitFor(async () => {
    const open = await demo.emu('GET', '/__emulator/captchas')
    return open.find((c) => c.token !== first.token)
  }, 'the new captcha')
  await page.fill('#answer', current.answer)
  await clickTo(page, 'form button[type=submit]:not([name=cancel])', at('/orders'))
  assert.equal((await page.textContent('h1')).trim(), 'Signed in as alice')
  const alice = (await demo.emu('GET', '/__emulator/users')).find((u) => u.username === 'alice')
  await assertBearerFor(assert, page, alice.uid)
  await context.close()
})
