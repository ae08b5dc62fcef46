// @hey-api/openapi-ts: generate a fetch client from the committed document (or the one named by
// PORTCULLIS_OPENAPI, to try a patched copy) into src/generated (not committed).
import { defineConfig } from '@hey-api/openapi-ts';

export default defineConfig({
  input: process.env.PORTCULLIS_OPENAPI ?? '../../openapi.json',
  output: { path: 'src/generated', importFileExtension: '.js' },
  plugins: ['@hey-api/client-fetch', '@hey-api/typescript', '@hey-api/sdk'],
});
