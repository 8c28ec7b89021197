// HS256 JWTs minted inside k6 (k6/crypto HMAC + base64url), the same shape as
// `switchboard token`: sub, iat, exp, channels, publish.
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { JWT_SECRET, TOKEN_TTL_S } from './config.js';

const HEADER = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');

export function mintToken(sub, { channels = [], publish = [], ttlS = TOKEN_TTL_S, secret = JWT_SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub, iat: now, exp: now + ttlS, channels, publish };
  const body = encoding.b64encode(JSON.stringify(claims), 'rawurl');
  const input = `${HEADER}.${body}`;
  return `${input}.${crypto.hmac('sha256', secret, input, 'base64rawurl')}`;
}
