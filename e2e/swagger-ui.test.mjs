// Swagger UI at /docs, driven in a real browser (Debian's Chromium through playwright-core)
// against a running `portcullis serve --demo`. Started by `bash e2e/run`, which passes the
// server's address in PORTCULLIS_E2E_BASE_URL.
//
// Each test opens a fresh browser context (no cookies, no storage, no Swagger UI state), logs in
// through the Authorize dialog exactly as a person would (with a username and password, or by
// pasting a personal API key), and checks what the page shows.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE_URL = (process.env.PORTCULLIS_E2E_BASE_URL || '').replace(/\/+$/, '');
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
// Generous: a debug build hashing Argon2id on a busy 2-core machine, and a 1.5 MB page to parse.
const STEP_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = 120_000;

const USERS_ME = '#operations-Users-read_current_user';
const LIST_ITEMS = '#operations-Items-list_items';
const CREATE_API_KEY = '#operations-API_keys-create_api_key';
const LIST_API_KEYS = '#operations-API_keys-list_api_keys';
const DELETE_API_KEY = '#operations-API_keys-delete_api_key';
const LIST_SESSIONS = '#operations-Sessions-list_sessions';
const LIST_USERS = '#operations-Admin-list_users';
const LIST_AUDIT_EVENTS = '#operations-Admin-list_audit_events';
/** The token-lifecycle operations, each shown as a block of its tag. */
const LIFECYCLE_OPERATIONS = [
  '#operations-Auth-revoke_token',
  '#operations-Sessions-logout',
  LIST_SESSIONS,
  '#operations-Sessions-end_session',
  '#operations-Discovery-jwks',
  '#operations-Discovery-authorization_server_metadata',
];

let browser;

before(async () => {
  assert.ok(BASE_URL, 'PORTCULLIS_E2E_BASE_URL must name the running server, e.g. http://127.0.0.1:8000');
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: STEP_TIMEOUT_MS,
  });
});

after(async () => {
  await browser?.close();
});

/**
 * A fresh context and page on /docs, with the operations rendered. The test calls `page.passed()`
 * at its end; a test that did not get there leaves artifacts/failed-<test>.png.
 */
async function openDocs(t) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = await context.newPage();
  // Anything the page tries to load from outside this server is a finding, not noise.
  const foreign = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(BASE_URL) && !r.url().startsWith('data:')) foreign.push(r.url());
  });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  let passed = false;
  page.passed = () => { passed = true; };
  t.after(async () => {
    if (!passed) {
      const slug = t.name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
      await page.screenshot({ path: join(ARTIFACTS, `failed-${slug}.png`), fullPage: true }).catch(() => {});
    }
    await context.close();
    assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
    assert.deepEqual(foreign, [], 'requests to other hosts');
  });
  await page.goto(`${BASE_URL}/docs`, { waitUntil: 'domcontentloaded' });
  await page.locator(USERS_ME).waitFor();
  return page;
}

/**
 * Opens the Authorize dialog and checks it offers the two security schemes, each in a section of
 * its own with its own Authorize and Close buttons: `APIKey` (http, Bearer: a value to paste)
 * first, then `OAuth2` (the password flow).
 */
async function openAuthorize(page) {
  await page.locator('.scheme-container .btn.authorize').click();
  const dialog = page.locator('.dialog-ux .modal-ux');
  await dialog.waitFor();
  const headings = await dialog.locator('.auth-container h4').allInnerTexts();
  assert.deepEqual(
    headings.map((h) => h.replace(/\s+/g, ' ').trim()),
    ['APIKey (http, Bearer)', 'OAuth2 (OAuth2, password)'],
    'the Authorize dialog offers both schemes',
  );
  const section = (heading) => dialog.locator('.auth-container', { has: page.locator('h4', { hasText: heading }) });
  return { dialog, apiKey: section(/^APIKey\s+\(http, Bearer\)\s*$/), oauth2: section(/^OAuth2 \(OAuth2, password\)\s*$/) };
}

/**
 * Opens the Authorize dialog and submits the password flow. Returns the /token request Swagger UI
 * sent and the response the server gave, with the dialog still open.
 */
async function submitLogin(page, { username, password, scopes = [] }) {
  const { dialog, oauth2 } = await openAuthorize(page);
  await oauth2.locator('#oauth_username').fill(username);
  await oauth2.locator('#oauth_password').fill(password);
  for (const scope of ['me', 'items', 'admin']) {
    const box = oauth2.locator(`.scopes input[type=checkbox][data-value="${scope}"]`);
    assert.equal(await box.isChecked(), false, `scope ${scope} starts unticked`);
    if (scopes.includes(scope)) {
      // The input itself is hidden behind Swagger UI's styled box: click its label, as a person would.
      await oauth2.locator(`label[for="${await box.getAttribute('id')}"]`).click();
      assert.equal(await box.isChecked(), true, `scope ${scope} is ticked`);
    }
  }
  const tokenResponse = page.waitForResponse(
    (r) => r.url() === `${BASE_URL}/token` && r.request().method() === 'POST',
  );
  await oauth2.locator('.auth-btn-wrapper .btn.modal-btn.auth.authorize').click();
  const response = await tokenResponse;
  return { dialog, oauth2, request: response.request(), response };
}

/** Logs in through the Authorize dialog, checks it says so, and closes it. */
async function logIn(page, credentials) {
  const { dialog, oauth2, request, response } = await submitLogin(page, credentials);
  assert.equal(response.status(), 200, `/token answered ${response.status()}: ${await response.text()}`);
  // Swagger UI shows "Authorized" and swaps the Authorize button for Logout.
  await oauth2.getByRole('heading', { name: 'Authorized' }).first().waitFor();
  await oauth2.locator('.auth-btn-wrapper button', { hasText: 'Logout' }).waitFor();
  await oauth2.locator('.auth-btn-wrapper .btn-done').click();
  await dialog.waitFor({ state: 'detached' });
  // The page-level button now shows the locked state.
  await page.locator('.scheme-container .btn.authorize.locked').waitFor();
  return { request, response };
}

/**
 * Pastes `key` into the Authorize dialog's APIKey section and presses its Authorize button,
 * checks the section says so (and the OAuth2 one still offers its login form), and closes it.
 */
async function authorizeWithApiKey(page, key) {
  const { dialog, apiKey, oauth2 } = await openAuthorize(page);
  // The field labelled "Value:" (its aria-label, auth-bearer-value, hides the label from getByLabel).
  await apiKey.locator('label', { hasText: 'Value:' }).waitFor();
  await apiKey.locator('input#auth-bearer-value').fill(key);
  await apiKey.locator('.auth-btn-wrapper .btn.modal-btn.auth.authorize').click();
  // Swagger UI shows "Authorized", masks the value and swaps the Authorize button for Logout.
  await apiKey.getByRole('heading', { name: 'Authorized' }).waitFor();
  await apiKey.locator('code', { hasText: '******' }).waitFor();
  assert.equal(await apiKey.locator('#auth-bearer-value').count(), 0, 'the key is no longer shown');
  await apiKey.locator('.auth-btn-wrapper button', { hasText: 'Logout' }).waitFor();
  // Not logged in with OAuth2: its section still asks for a username and password.
  assert.equal(await oauth2.getByRole('heading', { name: 'Authorized' }).count(), 0, 'OAuth2 not authorized');
  await oauth2.locator('#oauth_username').waitFor();
  await page.screenshot({ path: join(ARTIFACTS, 'authorize-api-key.png') });
  await apiKey.locator('.auth-btn-wrapper .btn-done').click();
  await dialog.waitFor({ state: 'detached' });
  await page.locator('.scheme-container .btn.authorize.locked').waitFor();
}

/** Expands an operation, presses Try it out then Execute; returns the request sent and the live response shown. */
async function tryItOut(page, operation, path) {
  const block = page.locator(operation);
  await block.locator('.opblock-summary-control').click();
  await block.locator('.try-out__btn').click();
  return execute(page, block, path);
}

/** Presses Clear on an operation already tried out, then Execute again. */
async function tryAgain(page, { block }, path) {
  await block.locator('.btn-clear').click();
  await block.locator('.live-responses-table').waitFor({ state: 'detached' });
  return execute(page, block, path);
}

async function execute(page, block, path) {
  const apiResponse = page.waitForResponse(
    (r) => new URL(r.url()).pathname === path && r.request().method() === 'GET',
  );
  await block.locator('.execute').click();
  const response = await apiResponse;
  const live = block.locator('.live-responses-table');
  // The table's header row also has a .response-col_status cell ("Code"): take the response row's.
  const row = live.locator('tbody tr.response');
  const status = row.locator('.response-col_status');
  await status.waitFor();
  // The first code block of the row is the response body (then come the response headers).
  const body = row.locator('.response-col_description .highlight-code').first();
  await body.waitFor();
  return {
    block,
    request: response.request(),
    status: (await status.innerText()).trim(),
    body: await body.innerText(),
  };
}

function formOf(request) {
  return new URLSearchParams(request.postData() || '');
}

/** A request to the server from outside the browser; returns the status and the JSON body, if any. */
async function call(method, path, { token, form, json } = {}) {
  const headers = {};
  let body;
  if (token) headers.authorization = `Bearer ${token}`;
  if (form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  if (json) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const response = await fetch(`${BASE_URL}${path}`, { method, headers, body });
  const text = await response.text();
  return { status: response.status, text, body: text ? JSON.parse(text) : null };
}

test('no scope ticked: log in as johndoe, Try it out GET /users/me shows 200 and the account', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const page = await openDocs(t);
  const login = await logIn(page, { username: 'johndoe', password: 'secret' });
  const sent = formOf(login.request);
  assert.equal(sent.get('username'), 'johndoe');
  assert.equal(sent.get('grant_type'), 'password');
  assert.ok(!sent.get('scope'), `no scope requested, got ${JSON.stringify(sent.get('scope'))}`);
  const token = await login.response.json();
  assert.equal(token.token_type, 'bearer');
  assert.equal(token.scope, 'me items', 'no scope asked: every scope johndoe holds except admin');

  const call = await tryItOut(page, USERS_ME, '/users/me');
  assert.equal(call.request.headers()['authorization'], `Bearer ${token.access_token}`);
  assert.equal(call.status, '200', `live response: ${call.status} ${call.body}`);
  assert.match(call.body, /"username": "johndoe"/);
  assert.doesNotMatch(call.body, /argon2|password/i);

  await call.block.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, 'users-me-200.png') });
  page.passed();
});

test('only `me` ticked: GET /users/me is 200, GET /users/me/items is 401 Not enough permissions', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const page = await openDocs(t);
  const login = await logIn(page, { username: 'johndoe', password: 'secret', scopes: ['me'] });
  assert.equal(formOf(login.request).get('scope'), 'me');
  assert.equal((await login.response.json()).scope, 'me');

  const me = await tryItOut(page, USERS_ME, '/users/me');
  assert.equal(me.status, '200', `live response: ${me.status} ${me.body}`);
  assert.match(me.body, /"username": "johndoe"/);

  const items = await tryItOut(page, LIST_ITEMS, '/users/me/items');
  assert.match(items.request.headers()['authorization'] || '', /^Bearer \S+$/);
  assert.equal(items.status, '401', `live response: ${items.status} ${items.body}`);
  assert.match(items.body, /Not enough permissions/);
  await page.screenshot({ path: join(ARTIFACTS, 'users-me-items-401.png') });
  page.passed();
});

test('API key pasted into the Authorize dialog (no OAuth2 login): Try it out GET /users/me is 200, /users/me/items 401, and 401 once the key is deleted', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  // A key for johndoe with the `me` scope only, made outside the browser as a script would.
  const login = await call('POST', '/token', { form: { grant_type: 'password', username: 'johndoe', password: 'secret' } });
  assert.equal(login.status, 200, `/token answered ${login.status}: ${login.text}`);
  const token = login.body.access_token;
  const created = await call('POST', '/users/me/api-keys', { token, json: { name: 'e2e Swagger UI', scopes: ['me'] } });
  assert.equal(created.status, 201, `POST /users/me/api-keys answered ${created.status}: ${created.text}`);
  const { id, key, scopes } = created.body;
  assert.match(key, /^pcl_[0-9A-Za-z]{71}$/, 'a 75-character pcl_ key');
  assert.deepEqual(scopes, ['me']);

  const page = await openDocs(t);
  for (const operation of [CREATE_API_KEY, LIST_API_KEYS, DELETE_API_KEY]) {
    assert.equal(await page.locator(operation).count(), 1, `${operation} is shown`);
  }
  const sent = [];
  page.on('request', (r) => sent.push(`${r.method()} ${new URL(r.url()).pathname}`));
  await authorizeWithApiKey(page, key);

  const me = await tryItOut(page, USERS_ME, '/users/me');
  assert.equal(me.request.headers()['authorization'], `Bearer ${key}`, 'the key, sent as a bearer credential');
  assert.equal(me.status, '200', `live response: ${me.status} ${me.body}`);
  assert.match(me.body, /"username": "johndoe"/);
  assert.doesNotMatch(me.body, /argon2|password|pcl_/i);
  await me.block.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, 'api-key-users-me-200.png') });

  // The key has `me` only: the items need `items`.
  const items = await tryItOut(page, LIST_ITEMS, '/users/me/items');
  assert.equal(items.request.headers()['authorization'], `Bearer ${key}`);
  assert.equal(items.status, '401', `live response: ${items.status} ${items.body}`);
  assert.match(items.body, /Not enough permissions/);

  // Deleted by its owner: refused from the next request on, though Swagger UI still sends it.
  const deleted = await call('DELETE', `/users/me/api-keys/${id}`, { token });
  assert.equal(deleted.status, 204, `DELETE /users/me/api-keys/${id} answered ${deleted.status}: ${deleted.text}`);
  const again = await tryAgain(page, me, '/users/me');
  assert.equal(again.request.headers()['authorization'], `Bearer ${key}`);
  assert.equal(again.status, '401', `live response: ${again.status} ${again.body}`);
  assert.match(again.body, /Could not validate credentials/);
  assert.doesNotMatch(again.body, /johndoe/);
  await again.block.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, 'api-key-deleted-401.png') });

  assert.deepEqual(sent.filter((r) => r.endsWith(' /token')), [], 'Swagger UI never logged in with OAuth2');
  page.passed();
});

test('wrong password: the Authorize dialog shows the error and no Logout button', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const page = await openDocs(t);
  const { dialog, oauth2, response } = await submitLogin(page, { username: 'johndoe', password: 'not-the-password' });
  assert.equal(response.status(), 401);
  const errors = dialog.locator('.errors');
  await errors.waitFor();
  await page.screenshot({ path: join(ARTIFACTS, 'authorize-wrong-password.png') });
  const shown = await errors.innerText();
  assert.match(shown, /Auth Error/);
  assert.match(shown, /Incorrect username or password/);
  assert.equal(await dialog.locator('button', { hasText: 'Logout' }).count(), 0, 'no Logout button');
  assert.equal(await dialog.getByRole('heading', { name: 'Authorized' }).count(), 0, 'not shown as authorized');
  // Still a login form to try again, and the page-level button is not locked.
  await dialog.locator('#oauth_password').waitFor();
  await oauth2.locator('.auth-btn-wrapper .btn.modal-btn.auth.authorize').waitFor();
  assert.equal(await page.locator('.scheme-container .btn.authorize.locked').count(), 0);
  page.passed();
});

test('the session operations are shown, and Try it out GET /users/me/sessions marks the current one', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const page = await openDocs(t);
  for (const operation of LIFECYCLE_OPERATIONS) {
    assert.equal(await page.locator(operation).count(), 1, `${operation} is shown`);
  }
  const token = await (await logIn(page, { username: 'johndoe', password: 'secret' })).response.json();
  assert.ok(token.refresh_token, 'the login returns a refresh token');

  const call = await tryItOut(page, LIST_SESSIONS, '/users/me/sessions');
  assert.equal(call.request.headers()['authorization'], `Bearer ${token.access_token}`);
  assert.equal(call.status, '200', `live response: ${call.status} ${call.body}`);
  assert.match(call.body, /"current": true/);
  assert.doesNotMatch(call.body, /refresh_token|access_token|hash/i);
  page.passed();
});

test('`admin` ticked: log in as admin, Try it out GET /admin/users and GET /admin/audit-events show 200, the demo users and this login', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const page = await openDocs(t);
  const login = await logIn(page, { username: 'admin', password: 'secret3', scopes: ['me', 'items', 'admin'] });
  const sent = formOf(login.request);
  assert.equal(sent.get('username'), 'admin');
  assert.deepEqual((sent.get('scope') || '').split(' ').sort(), ['admin', 'items', 'me']);
  const token = await login.response.json();
  assert.deepEqual(token.scope.split(' ').sort(), ['admin', 'items', 'me'], 'admin granted when asked for by name');

  const call = await tryItOut(page, LIST_USERS, '/admin/users');
  assert.equal(call.request.headers()['authorization'], `Bearer ${token.access_token}`);
  assert.equal(call.status, '200', `live response: ${call.status} ${call.body}`);
  for (const username of ['admin', 'alice', 'johndoe']) {
    assert.match(call.body, new RegExp(`"username": "${username}"`), `${username} listed`);
  }
  assert.match(call.body, /"next_cursor": null/);
  assert.doesNotMatch(call.body, /argon2|password/i);

  await call.block.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, 'admin-users-200.png') });

  // The audit log shows this login (written just after its answer, long before this call).
  const audit = await tryItOut(page, LIST_AUDIT_EVENTS, '/admin/audit-events');
  assert.equal(audit.request.headers()['authorization'], `Bearer ${token.access_token}`);
  assert.equal(audit.status, '200', `live response: ${audit.status} ${audit.body}`);
  assert.match(audit.body, /"type": "login.succeeded"/);
  assert.match(audit.body, /"scopes": \[\s*"me",\s*"items",\s*"admin"\s*\]/);
  assert.doesNotMatch(audit.body, /secret3|access_token|refresh_token|argon2/i);
  await audit.block.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(ARTIFACTS, 'admin-audit-events-200.png') });
  page.passed();
});
