// The scenario, through the client @hey-api/openapi-ts generated from ../../openapi.json into
// ./generated (by ../run, not committed). PORTCULLIS_URL names a running `portcullis serve --demo`.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { createClient, createConfig } from './generated/client/index.js';
import type { Client } from './generated/client/index.js';
import {
  authorizationServerMetadata,
  changePassword,
  createApiKey,
  createItem,
  deleteApiKey,
  endSession,
  jwks,
  listApiKeys,
  listAuditEvents,
  listItems,
  listSessions,
  listUsers,
  loginForAccessToken,
  logout,
  readCurrentUser,
  revokeToken,
  signUp,
} from './generated/sdk.gen.js';
import type {
  AccessToken,
  AdminUser,
  ApiKey,
  ApiKeyCreated,
  AuditEvent,
  AuditEventList,
  AuthorizationServerMetadata,
  ClientOptions,
  Error as ApiError,
  JwkSet,
  ListUsersData,
  LoginForAccessTokenError,
  LoginForAccessTokenErrors,
  LogoutResult,
  OAuthErrorCode,
  Scope,
  Session,
  TokenErrorBody,
  User,
  UserList,
} from './generated/types.gen.js';

const baseUrl = process.env.PORTCULLIS_URL;
if (!baseUrl) throw new Error('PORTCULLIS_URL is not set');

const anonymous: Client = createClient(createConfig<ClientOptions>({ baseUrl }));

/** The generated error union, narrowed by status to the type the document gives a 401. */
function isUnauthorized(
  status: number,
  _error: LoginForAccessTokenError,
): _error is LoginForAccessTokenErrors[401] {
  return status === 401;
}

/** The same, for a 400 (a refresh token that is spent, revoked or of an ended session). */
function isBadRequest(
  status: number,
  _error: LoginForAccessTokenError,
): _error is LoginForAccessTokenErrors[400] {
  return status === 400;
}

function bearer(token: AccessToken): Client {
  return createClient(createConfig<ClientOptions>({ baseUrl, auth: token.access_token }));
}

/** A token response of the demo user: the checks every login and refresh must pass. */
function checkToken(token: AccessToken | undefined, what: string): AccessToken {
  assert.ok(token, `no token from ${what}`);
  assert.equal(token.token_type, 'bearer');
  assert.ok(token.expires_in > 0);
  assert.deepEqual(token.scope.split(' ').sort(), ['items', 'me']);
  assert.equal(token.refresh_token.length, 75);
  return token;
}

async function passwordLogin(): Promise<AccessToken> {
  const login = await loginForAccessToken({
    client: anonymous,
    body: { username: 'johndoe', password: 'secret' },
  });
  assert.equal(login.response.status, 200, JSON.stringify(login.error));
  return checkToken(login.data, 'login');
}

async function refresh(refreshToken: string) {
  return loginForAccessToken({
    client: anonymous,
    body: { grant_type: 'refresh_token', refresh_token: refreshToken },
  });
}

/** The session of the client's token, and every live session listed. */
async function currentSession(client: Client): Promise<[Session, Session[]]> {
  const listed = await listSessions({ client });
  assert.equal(listed.response.status, 200, JSON.stringify(listed.error));
  assert.ok(listed.data);
  const sessions: Session[] = listed.data;
  const current = sessions.filter((session) => session.current);
  assert.equal(current.length, 1, JSON.stringify(sessions));
  assert.ok(current[0]);
  return [current[0], sessions];
}

/** A token of an ended session or a deleted API key: the typed 401 of a protected operation. */
async function assertSessionEnded(client: Client): Promise<void> {
  const me = await readCurrentUser({ client });
  assert.equal(me.data, undefined);
  assert.equal(me.response.status, 401);
  assert.ok(me.error !== undefined);
  const error: ApiError = me.error;
  assert.equal(error.detail, 'Could not validate credentials');
  assert.equal(me.response.headers.get('www-authenticate'), 'Bearer');
}

/** A password login of any user, optionally asking for scopes by name. */
async function logInAs(username: string, password: string, scope?: string): Promise<AccessToken> {
  const login = await loginForAccessToken({
    client: anonymous,
    body: scope === undefined ? { username, password } : { username, password, scope },
  });
  assert.equal(login.response.status, 200, JSON.stringify(login.error));
  assert.ok(login.data, `no token for ${username}`);
  return login.data;
}

/** One page of GET /admin/users. */
async function usersPage(client: Client, query: ListUsersData['query']): Promise<UserList> {
  const page = await listUsers({ client, query });
  assert.equal(page.response.status, 200, JSON.stringify(page.error));
  assert.ok(page.data);
  return page.data;
}

/**
 * Accounts: sign up, log in, change the password (another session ends, this one stays), then
 * as the demo admin page through every user one at a time.
 */
async function accounts(): Promise<void> {
  const username = `ts-${randomBytes(6).toString('hex')}`;
  const password = 'Vx7#qL2!kT9@';
  const created = await signUp({
    client: anonymous,
    body: { username, password, full_name: 'TypeScript SDK' },
  });
  assert.equal(created.response.status, 201, JSON.stringify(created.error));
  assert.ok(created.data);
  const user: User = created.data;
  assert.equal(user.username, username);
  assert.equal(user.email, null);
  assert.equal(user.full_name, 'TypeScript SDK');
  assert.equal(user.disabled, false);
  assert.deepEqual([...user.scopes].sort(), ['items', 'me']);

  // Two sessions of the new user.
  const mine = bearer(checkToken(await logInAs(username, password), 'signup login'));
  const other = bearer(checkToken(await logInAs(username, password), 'second login'));
  const before = await readCurrentUser({ client: other });
  assert.equal(before.data?.id, user.id, JSON.stringify(before.error));

  // Change the password from the first: 204; the other session is refused at once.
  const newPassword = 'Rb4$wN8&zP1%';
  const changed = await changePassword({
    client: mine,
    body: { current_password: password, new_password: newPassword },
  });
  assert.equal(changed.response.status, 204, JSON.stringify(changed.error));
  await assertSessionEnded(other);
  const still = await readCurrentUser({ client: mine });
  assert.equal(still.response.status, 200, JSON.stringify(still.error));
  assert.equal(still.data?.id, user.id);
  const old = await loginForAccessToken({ client: anonymous, body: { username, password } });
  assert.equal(old.response.status, 401);
  checkToken(await logInAs(username, newPassword), 'login with the new password');

  // The demo admin, with `admin` asked for by name.
  const adminToken = await logInAs('admin', 'secret3', 'me items admin');
  assert.deepEqual(adminToken.scope.split(' ').sort(), ['admin', 'items', 'me']);
  const admin = bearer(adminToken);
  const seen: AdminUser[] = [];
  let cursor: string | null = null;
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 1000, 'next_cursor never became null');
    const list: UserList = await usersPage(admin, { limit: 1, ...(cursor === null ? {} : { cursor }) });
    assert.ok(list.users.length <= 1, JSON.stringify(list));
    seen.push(...list.users);
    cursor = list.next_cursor;
    if (cursor === null) break;
  }
  const names = seen.map((u) => u.username);
  assert.equal(new Set(names).size, names.length, `a user was listed twice: ${names.join(' ')}`);
  assert.equal(new Set(seen.map((u) => u.id)).size, seen.length);
  for (const expected of ['johndoe', 'alice', 'admin', username]) {
    assert.equal(names.filter((n) => n === expected).length, 1, `${expected} in ${names.join(' ')}`);
  }
  assert.equal(seen.find((u) => u.username === 'alice')?.disabled, true);
  assert.ok(seen.find((u) => u.username === 'admin')?.scopes.includes('admin'));
  const listedNew = seen.find((u) => u.username === username);
  assert.equal(listedNew?.id, user.id);
  assert.notEqual(listedNew?.last_login_at, null);

  // The audit log, as the admin: the new account's signup and password change, by filters.
  const cases: [AuditEvent['type'], Record<string, unknown>][] = [
    ['user.signed_up', { username, scopes: ['me', 'items'] }],
    ['password.changed', { sessions_ended: 1 }],
  ];
  for (const [type, detail] of cases) {
    const page = await listAuditEvents({ client: admin, query: { user_id: user.id, type } });
    assert.equal(page.response.status, 200, JSON.stringify(page.error));
    const list: AuditEventList | undefined = page.data;
    assert.ok(list);
    assert.equal(list.next_cursor, null);
    assert.equal(list.events.length, 1, JSON.stringify(list));
    const event: AuditEvent | undefined = list.events[0];
    assert.ok(event);
    assert.equal(event.type, type);
    assert.equal(event.user_id, user.id);
    assert.equal(event.actor, user.id);
    assert.deepEqual(event.detail, detail);
  }
  const refused = await listAuditEvents({ client: admin, query: { limit: 0 } });
  assert.equal(refused.response.status, 422);
}

/**
 * An API key: create one from a login, then a new client with the key as its token reads your
 * account and items, lists the keys (without the key) and deletes the key; then it is refused.
 */
async function apiKeys(): Promise<void> {
  const client = bearer(await passwordLogin());
  const created = await createApiKey({
    client,
    body: { name: 'sdk-typescript', scopes: ['me', 'items'] },
  });
  assert.equal(created.response.status, 201, JSON.stringify(created.error));
  assert.ok(created.data);
  const key: ApiKeyCreated = created.data;
  assert.equal(key.name, 'sdk-typescript');
  assert.deepEqual([...key.scopes].sort(), ['items', 'me']);
  assert.ok(Date.parse(key.created_at) <= Date.now(), key.created_at);
  assert.equal(key.expires_at, null);
  assert.equal(key.last_used_at, null);
  assert.ok(key.key.startsWith('pcl_'), key.key);
  assert.equal(key.key.length, 75);

  // A new client with the key as its token: it goes wherever an access token goes.
  const keyed: Client = createClient(createConfig<ClientOptions>({ baseUrl, auth: key.key }));
  const me = await readCurrentUser({ client: keyed });
  assert.equal(me.response.status, 200, JSON.stringify(me.error));
  assert.equal(me.data?.username, 'johndoe');
  const items = await listItems({ client: keyed });
  assert.equal(items.response.status, 200, JSON.stringify(items.error));
  assert.ok(items.data);
  assert.ok(items.data.every((item) => item.owner === 'johndoe'), JSON.stringify(items.data));

  // Listed, without the key.
  const listed = await listApiKeys({ client: keyed });
  assert.equal(listed.response.status, 200, JSON.stringify(listed.error));
  assert.ok(listed.data);
  const keys: ApiKey[] = listed.data;
  const mine = keys.filter((k) => k.id === key.id);
  assert.equal(mine.length, 1, JSON.stringify(keys));
  assert.ok(mine[0]);
  assert.equal(mine[0].name, 'sdk-typescript');
  assert.deepEqual([...mine[0].scopes].sort(), ['items', 'me']);
  assert.equal(mine[0].created_at, key.created_at);
  assert.equal(mine[0].expires_at, null);
  assert.ok(keys.every((k) => !('key' in k)), JSON.stringify(keys));

  // The key deletes itself: 204; from then on it gets the typed 401.
  const deleted = await deleteApiKey({ client: keyed, path: { id: key.id } });
  assert.equal(deleted.response.status, 204, JSON.stringify(deleted.error));
  await assertSessionEnded(keyed);

  // No longer listed; deleted already: the typed 404.
  const after = await listApiKeys({ client });
  assert.equal(after.response.status, 200, JSON.stringify(after.error));
  assert.ok(after.data);
  assert.ok(!after.data.some((k) => k.id === key.id), 'deleted key still listed');
  const again = await deleteApiKey({ client, path: { id: key.id } });
  assert.equal(again.response.status, 404);
  assert.ok(again.error !== undefined);
  const notFound: ApiError = again.error;
  assert.equal(notFound.detail, 'API key not found');
}

async function main(): Promise<void> {
  // Log in: form body, no JSON.
  const login = await loginForAccessToken({
    client: anonymous,
    body: { username: 'johndoe', password: 'secret' },
  });
  assert.equal(login.response.status, 200, JSON.stringify(login.error));
  assert.ok(login.data, 'no token');
  const token = login.data;
  assert.equal(token.token_type, 'bearer');
  assert.ok(token.expires_in > 0);
  assert.deepEqual(token.scope.split(' ').sort(), ['items', 'me']);
  assert.equal(token.refresh_token.length, 75);

  const client: Client = createClient(createConfig<ClientOptions>({ baseUrl, auth: token.access_token }));

  // Read your account.
  const me = await readCurrentUser({ client });
  assert.equal(me.response.status, 200, JSON.stringify(me.error));
  assert.ok(me.data);
  assert.equal(me.data.username, 'johndoe');
  const email: string | null = me.data.email;
  assert.equal(email, 'johndoe@example.com');
  assert.equal(me.data.disabled, false);
  const scopes: Scope[] = me.data.scopes;
  assert.deepEqual([...scopes].sort(), ['items', 'me']);

  // Create an item, then list.
  const created = await createItem({
    client,
    body: { title: 'typescript sdk', description: 'from @hey-api/openapi-ts' },
  });
  assert.equal(created.response.status, 201, JSON.stringify(created.error));
  assert.ok(created.data);
  assert.equal(created.data.owner, 'johndoe');
  const untitled = await createItem({ client, body: { title: 'no description' } });
  assert.equal(untitled.response.status, 201, JSON.stringify(untitled.error));
  assert.ok(untitled.data);
  const description: string | null = untitled.data.description;
  assert.equal(description, null);

  const list = await listItems({ client });
  assert.equal(list.response.status, 200, JSON.stringify(list.error));
  assert.ok(list.data);
  const listed = list.data.find((item) => item.id === created.data?.id);
  assert.ok(listed, 'created item not listed');
  assert.equal(listed.owner, 'johndoe');
  assert.equal(listed.description, 'from @hey-api/openapi-ts');

  // An empty title: the typed validation error (422).
  const invalid = await createItem({ client, body: { title: '' } });
  assert.equal(invalid.response.status, 422);
  assert.ok(invalid.error !== undefined);
  const issues = invalid.error.detail;
  assert.ok(Array.isArray(issues), JSON.stringify(invalid.error));
  assert.deepEqual(
    issues.map((issue) => issue.loc),
    [['body', 'title']],
  );

  // A wrong password: a typed error.
  const bad = await loginForAccessToken({
    client: anonymous,
    body: { username: 'johndoe', password: 'not-the-password' },
  });
  assert.equal(bad.data, undefined);
  assert.equal(bad.response.status, 401);
  assert.ok(bad.error !== undefined);
  assert.ok(isUnauthorized(bad.response.status, bad.error));
  const code: OAuthErrorCode = bad.error.error;
  assert.equal(bad.error.detail, 'Incorrect username or password');
  assert.equal(code, 'invalid_grant');
  assert.equal(bad.error.error_description, 'Incorrect username or password');

  // Refresh: a new access token and a new refresh token, in the same session. The spent refresh
  // token is not presented again here: within the reuse grace it would still be accepted.
  // Revoking it (below) ends the session, which the later checks rely on.
  const refreshedResult = await refresh(token.refresh_token);
  assert.equal(refreshedResult.response.status, 200, JSON.stringify(refreshedResult.error));
  const refreshed = checkToken(refreshedResult.data, 'refresh');
  assert.notEqual(refreshed.refresh_token, token.refresh_token);
  assert.notEqual(refreshed.access_token, token.access_token);
  const session = bearer(refreshed);
  const meAgain = await readCurrentUser({ client: session });
  assert.equal(meAgain.response.status, 200, JSON.stringify(meAgain.error));
  assert.equal(meAgain.data?.username, 'johndoe');

  // List the sessions: this one is marked current, for the login's token and the refreshed one.
  const [mine] = await currentSession(session);
  const now = Date.now();
  assert.ok(Date.parse(mine.created_at) <= now, mine.created_at);
  assert.ok(Date.parse(mine.last_used_at) <= now, mine.last_used_at);
  assert.ok(Date.parse(mine.expires_at) > now, mine.expires_at);
  assert.equal(mine.client_address, '127.0.0.1');
  const userAgent: string | null = mine.user_agent;
  assert.equal(typeof userAgent, 'string', JSON.stringify(mine));
  const [mineFromLogin] = await currentSession(client);
  assert.equal(mineFromLogin.id, mine.id);

  // A second login is a second session; end it from the first.
  const second = bearer(await passwordLogin());
  const [theirs] = await currentSession(second);
  assert.notEqual(theirs.id, mine.id);
  const [mineAgain, sessions] = await currentSession(session);
  assert.equal(mineAgain.id, mine.id);
  assert.equal(sessions.find((s) => s.id === theirs.id)?.current, false);
  const ended = await endSession({ client: session, path: { id: theirs.id } });
  assert.equal(ended.response.status, 204, JSON.stringify(ended.error));
  await assertSessionEnded(second);
  const [, afterEnd] = await currentSession(session);
  assert.ok(!afterEnd.some((s) => s.id === theirs.id), 'ended session still listed');
  // Ended already: the typed 404.
  const again = await endSession({ client: session, path: { id: theirs.id } });
  assert.equal(again.response.status, 404);
  assert.ok(again.error !== undefined);
  assert.equal(again.error.detail, 'Session not found');

  // Revoke the spent refresh token of the first session: 200, no body, and the whole session
  // ends — its current refresh token gets the typed 400, its access tokens 401.
  const revoked = await revokeToken({
    client: anonymous,
    body: { token: token.refresh_token, token_type_hint: 'refresh_token' },
  });
  assert.equal(revoked.response.status, 200, JSON.stringify(revoked.error));
  const spent = await refresh(refreshed.refresh_token);
  assert.equal(spent.data, undefined);
  assert.equal(spent.response.status, 400);
  assert.ok(spent.error !== undefined);
  assert.ok(isBadRequest(spent.response.status, spent.error));
  const invalidGrant: TokenErrorBody = spent.error;
  const grantCode: OAuthErrorCode = invalidGrant.error;
  assert.equal(grantCode, 'invalid_grant');
  assert.deepEqual(invalidGrant, {
    detail: 'Invalid refresh token',
    error: 'invalid_grant',
    error_description: 'Invalid refresh token',
  });
  await assertSessionEnded(session);
  await assertSessionEnded(client);

  // Log out everywhere: at least this session ends, and its token is refused.
  const last = bearer(await passwordLogin());
  const out = await logout({ client: last, query: { scope: 'global' } });
  assert.equal(out.response.status, 200, JSON.stringify(out.error));
  assert.ok(out.data);
  const result: LogoutResult = out.data;
  assert.ok(result.sessions_ended >= 1, JSON.stringify(result));
  await assertSessionEnded(last);
  const twice = await logout({ client: last, query: { scope: 'global' } });
  assert.equal(twice.response.status, 401);
  assert.ok(twice.error !== undefined);
  assert.equal(twice.error.detail, 'Could not validate credentials');

  // Discovery: no published keys (the demo server signs with HS256), and the endpoints.
  const keys = await jwks({ client: anonymous });
  assert.equal(keys.response.status, 200, JSON.stringify(keys.error));
  assert.ok(keys.data);
  const keySet: JwkSet = keys.data;
  assert.deepEqual(keySet.keys, []);
  const discovery = await authorizationServerMetadata({ client: anonymous });
  assert.equal(discovery.response.status, 200, JSON.stringify(discovery.error));
  assert.ok(discovery.data);
  const metadata: AuthorizationServerMetadata = discovery.data;
  assert.ok(metadata.grant_types_supported.includes('refresh_token'));
  assert.ok(metadata.grant_types_supported.includes('password'));
  assert.equal(metadata.token_endpoint, `${baseUrl}/token`);
  assert.equal(metadata.revocation_endpoint, `${baseUrl}/token/revoke`);
  assert.equal(metadata.jwks_uri, `${baseUrl}/.well-known/jwks.json`);
  assert.deepEqual(metadata.response_types_supported, []);
  assert.deepEqual([...metadata.scopes_supported].sort(), ['admin', 'items', 'me']);

  // Accounts: signup, password change, admin listing.
  await accounts();

  // API keys: create, use from a new client, list, delete.
  await apiKeys();

  console.log('typescript scenario: 13 checks passed');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
