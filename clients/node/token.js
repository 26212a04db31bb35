'use strict';
/**
 * The Tessera risk token, format v2, written from docs/token.md alone (not a port of
 * the Python code): the canonical order body, canonical decimals, and HMAC-SHA256
 * tokens, with node:crypto only.
 *
 *   const token = require('./token');
 *   const body = token.canonicalOrderBody(order);            // Buffer
 *   const t = token.signToken({ keyId, secret, body, issuedAt, nonce });
 *   token.verifyToken({ keyRing, token: t, body, now });     // { ok, reason, ... }
 */

const crypto = require('node:crypto');

const ORDER_MAGIC = 'tessera.order.v2';
const VERSION = 'v2';
const MAX_DECIMAL_DIGITS = 40;
const MAX_TOKEN_LENGTH = 256;
const DEFAULT_TTL_SECONDS = 300;
const DEFAULT_SKEW_SECONDS = 5;

/** The 21 signed fields, in body order, with their kind (docs/token.md §1). */
const ORDER_FIELDS = [
  ['order_id', 'text'],
  ['client_order_id', 'text'],
  ['account', 'text'],
  ['venue', 'text'],
  ['market_type', 'text'],
  ['symbol', 'text'],
  ['side', 'text'],
  ['order_type', 'text'],
  ['quantity', 'decimal'],
  ['price', 'decimal'],
  ['stop_price', 'decimal'],
  ['time_in_force', 'text'],
  ['reduce_only', 'bool'],
  ['post_only', 'bool'],
  ['leverage', 'decimal'],
  ['close_position', 'bool'],
  ['working_type', 'text'],
  ['price_protect', 'bool'],
  ['activation_price', 'decimal'],
  ['callback_rate', 'decimal'],
  ['quote_order_qty', 'decimal'],
];
/** The only fields that may be missing from the order (they then encode as empty). */
const OPTIONAL_FIELDS = new Set(['price', 'stop_price', 'activation_price', 'callback_rate', 'quote_order_qty']);

const REASONS = Object.freeze({
  OK: 'OK',
  MISSING: 'TOKEN_MISSING',
  MALFORMED: 'TOKEN_MALFORMED',
  UNKNOWN_KEY: 'TOKEN_UNKNOWN_KEY',
  BAD_SIGNATURE: 'TOKEN_BAD_SIGNATURE',
  NOT_YET_VALID: 'TOKEN_NOT_YET_VALID',
  EXPIRED: 'TOKEN_EXPIRED',
  FIELDS_CHANGED: 'TOKEN_FIELDS_CHANGED',
});

const DECIMAL_SYNTAX = /^([+-]?)(?:([0-9]+)(?:\.([0-9]*))?|\.([0-9]+))$/;
const KEY_ID_SYNTAX = /^[A-Za-z0-9_-]{1,32}$/;
const ISSUED_AT_SYNTAX = /^(?:0|[1-9][0-9]{0,11})$/;
const NONCE_SYNTAX = /^[0-9a-f]{32}$/;
// 32 bytes in unpadded base64url: 43 characters, the last one carrying 4 bits with the
// two unused low bits zero, so each value has exactly one spelling.
const DIGEST_SYNTAX = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;
// C0 controls and DEL have no encoding.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;
// A UTF-16 surrogate that is not part of a pair.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** A value that has no canonical encoding (the message names the field or the value). */
class CanonicalEncodingError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CanonicalEncodingError';
  }
}

// -- canonical decimals (§2) ---------------------------------------------------------

/**
 * The canonical form of a decimal: a string in the grammar of §2, or a BigInt. Numbers
 * (binary floating point) are refused, as is anything outside the grammar.
 */
function canonicalDecimal(value) {
  if (typeof value === 'bigint') value = value.toString();
  if (typeof value !== 'string') {
    throw new CanonicalEncodingError(`a decimal must be a string or a BigInt, not ${typeof value}`);
  }
  const match = DECIMAL_SYNTAX.exec(value);
  if (match === null) throw new CanonicalEncodingError(`not a plain decimal: ${JSON.stringify(value)}`);
  const negative = match[1] === '-';
  const integerDigits = (match[2] ?? '').replace(/^0+/, '');
  const fractionDigits = (match[3] ?? match[4] ?? '').replace(/0+$/, '');
  if (integerDigits.length + fractionDigits.length > MAX_DECIMAL_DIGITS) {
    throw new CanonicalEncodingError(`more than ${MAX_DECIMAL_DIGITS} significant digits: ${value}`);
  }
  if (integerDigits === '' && fractionDigits === '') return '0';
  return (negative ? '-' : '') + (integerDigits || '0') + (fractionDigits ? '.' + fractionDigits : '');
}

// -- canonical order body (§1) -------------------------------------------------------

function netstring(bytes) {
  return Buffer.concat([Buffer.from(`${bytes.length}:`, 'ascii'), bytes, Buffer.from(',', 'ascii')]);
}

function encodeText(name, value) {
  if (typeof value !== 'string') throw new CanonicalEncodingError(`${name}: must be a string, got ${value === null ? 'null' : typeof value}`);
  if (CONTROL_CHARACTER.test(value)) throw new CanonicalEncodingError(`${name}: contains a control character`);
  if (LONE_SURROGATE.test(value)) throw new CanonicalEncodingError(`${name}: not valid Unicode (lone surrogate)`);
  return Buffer.from(value, 'utf8');
}

function encodeDecimal(name, value) {
  if (value === null || value === undefined || value === '') return Buffer.alloc(0);
  try {
    return Buffer.from(canonicalDecimal(value), 'ascii');
  } catch (error) {
    if (error instanceof CanonicalEncodingError) throw new CanonicalEncodingError(`${name}: ${error.message}`);
    throw error;
  }
}

function encodeBool(name, value) {
  if (value === true || value === 'true') return Buffer.from('true', 'ascii');
  if (value === false || value === 'false') return Buffer.from('false', 'ascii');
  throw new CanonicalEncodingError(`${name}: must be true or false, got ${JSON.stringify(value)}`);
}

/**
 * The canonical body of an order: a plain object keyed by the field names of §1
 * (snake_case). Keys not in the table are ignored. Returns a Buffer.
 */
function canonicalOrderBody(order) {
  if (order === null || typeof order !== 'object') throw new TypeError('order must be an object');
  const parts = [Buffer.from(ORDER_MAGIC, 'ascii')];
  for (const [name, kind] of ORDER_FIELDS) {
    const present = Object.prototype.hasOwnProperty.call(order, name) && order[name] !== undefined;
    if (!present && !OPTIONAL_FIELDS.has(name)) throw new CanonicalEncodingError(`${name}: missing`);
    const value = present ? order[name] : null;
    const encoded = kind === 'text' ? encodeText(name, value)
      : kind === 'decimal' ? encodeDecimal(name, value)
        : encodeBool(name, value);
    parts.push(netstring(encoded));
  }
  return Buffer.concat(parts);
}

// -- header and signature (§3) -------------------------------------------------------

function base64url(bytes) {
  return Buffer.from(bytes).toString('base64url'); // RFC 4648 §5, no padding
}

/** base64url(SHA-256(body)), 43 characters. */
function bodyDigest(body) {
  return base64url(crypto.createHash('sha256').update(body).digest());
}

function signingInput(keyId, issuedAt, nonce, digest) {
  return `${VERSION}.${keyId}.${issuedAt}.${nonce}.${digest}`;
}

function hmac(secret, text) {
  return base64url(crypto.createHmac('sha256', secret).update(Buffer.from(text, 'ascii')).digest());
}

function asSecret(secret) {
  if (typeof secret === 'string') return Buffer.from(secret, 'utf8');
  if (Buffer.isBuffer(secret) || secret instanceof Uint8Array) return Buffer.from(secret);
  throw new TypeError('a secret must be a Buffer, a Uint8Array or a string');
}

/** The default key id of a secret: "k" + the first 8 hex characters of SHA-256(secret) (§5). */
function deriveKeyId(secret) {
  return 'k' + crypto.createHash('sha256').update(asSecret(secret)).digest('hex').slice(0, 8);
}

/** A fresh nonce: 16 random bytes from the CSPRNG, as 32 lowercase hex characters. */
function newNonce() {
  return crypto.randomBytes(16).toString('hex');
}

/**
 * Sign a body. `issuedAt` defaults to now (whole seconds), `nonce` to a fresh one; both
 * are given explicitly to reproduce a test vector.
 */
function signToken({ keyId, secret, body, issuedAt = Math.floor(Date.now() / 1000), nonce = newNonce() }) {
  if (typeof keyId !== 'string' || !KEY_ID_SYNTAX.test(keyId)) throw new TypeError(`invalid key id ${JSON.stringify(keyId)}`);
  const iat = String(issuedAt);
  if (!ISSUED_AT_SYNTAX.test(iat)) throw new TypeError(`invalid issued-at ${JSON.stringify(issuedAt)}`);
  if (typeof nonce !== 'string' || !NONCE_SYNTAX.test(nonce)) throw new TypeError('the nonce must be 32 lowercase hex characters');
  const input = signingInput(keyId, iat, nonce, bodyDigest(body));
  return `${input}.${hmac(asSecret(secret), input)}`;
}

/**
 * Split a token into its parts without checking the signature: null when it does not
 * match §3 exactly (or is longer than 256 characters, or not ASCII).
 */
function parseToken(token) {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH || /[^\x00-\x7f]/.test(token)) return null;
  const parts = token.split('.');
  if (parts.length !== 6) return null;
  const [version, keyId, issuedAt, nonce, digest, signature] = parts;
  if (version !== VERSION || !KEY_ID_SYNTAX.test(keyId) || !ISSUED_AT_SYNTAX.test(issuedAt) ||
      !NONCE_SYNTAX.test(nonce) || !DIGEST_SYNTAX.test(digest) || !DIGEST_SYNTAX.test(signature)) {
    return null;
  }
  return { version, keyId, issuedAt: Number(issuedAt), nonce, digest, signature, signingInput: parts.slice(0, 5).join('.') };
}

function constantTimeEqual(a, b) {
  const left = Buffer.from(a, 'ascii');
  const right = Buffer.from(b, 'ascii');
  return left.length === right.length && crypto.timingSafeEqual(left, right);
}

/**
 * Verify a token (§4). `keyRing` maps key id to secret (a Map or a plain object);
 * `body` is the canonical body the verifier computed from the order it received; `now`
 * is Unix seconds (may be fractional). Never throws on a token value; returns
 * `{ ok, reason, keyId, issuedAt, nonce }` (the last three once the token parsed).
 */
function verifyToken({ keyRing, token, body, now = Date.now() / 1000, ttl = DEFAULT_TTL_SECONDS, skew = DEFAULT_SKEW_SECONDS }) {
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new TypeError('now must be a finite number');
  if (typeof ttl !== 'number' || !(ttl >= 0) || typeof skew !== 'number' || !(skew >= 0)) {
    throw new TypeError('ttl and skew must be non-negative numbers');
  }
  if (!Buffer.isBuffer(body) && !(body instanceof Uint8Array)) throw new TypeError('body must be a Buffer');
  const ring = keyRing instanceof Map ? keyRing : new Map(Object.entries(keyRing));
  const result = (reason, parsed) => ({
    ok: reason === REASONS.OK,
    reason,
    ...(parsed ? { keyId: parsed.keyId, issuedAt: parsed.issuedAt, nonce: parsed.nonce } : {}),
  });

  if (token === null || token === undefined || token === '') return result(REASONS.MISSING);
  const parsed = parseToken(token);
  if (parsed === null) return result(REASONS.MALFORMED);
  if (!ring.has(parsed.keyId)) return result(REASONS.UNKNOWN_KEY, parsed);
  const expected = hmac(asSecret(ring.get(parsed.keyId)), parsed.signingInput);
  if (!constantTimeEqual(expected, parsed.signature)) return result(REASONS.BAD_SIGNATURE, parsed);
  if (parsed.issuedAt > now + skew) return result(REASONS.NOT_YET_VALID, parsed);
  if (now >= parsed.issuedAt + ttl + skew) return result(REASONS.EXPIRED, parsed);
  if (!constantTimeEqual(bodyDigest(body), parsed.digest)) return result(REASONS.FIELDS_CHANGED, parsed);
  return result(REASONS.OK, parsed);
}

module.exports = {
  ORDER_FIELDS,
  REASONS,
  DEFAULT_TTL_SECONDS,
  DEFAULT_SKEW_SECONDS,
  CanonicalEncodingError,
  canonicalDecimal,
  canonicalOrderBody,
  bodyDigest,
  signingInput,
  signToken,
  parseToken,
  verifyToken,
  deriveKeyId,
  newNonce,
};
