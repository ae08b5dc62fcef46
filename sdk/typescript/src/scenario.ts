// The scenario, through the client @hey-api/openapi-ts generated from ../../openapi.json into
// ./generated (by ../run, not committed). PORTCULLIS_URL names a running `portcullis serve --demo`.
import assert from 'node:assert/strict';

import { createClient, createConfig } from './generated/client/index.js';
import type { Client } from './generated/client/index.js';
import {
  createItem,
  listItems,
  loginForAccessToken,
  readCurrentUser,
} from './generated/sdk.gen.js';
import type {
  ClientOptions,
  LoginForAccessTokenError,
  LoginForAccessTokenErrors,
  OAuthErrorCode,
  Scope,
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

  console.log('typescript scenario: 5 checks passed');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
