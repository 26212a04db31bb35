#!/usr/bin/env node
'use strict';
/**
 * Check token.js against the risk-token test vectors (docs/token-vectors.json):
 *
 *   node check-vectors.js [path/to/token-vectors.json]
 *
 * - every decimal vector: the canonical form, or an error where one is expected;
 * - every signing vector: the canonical body (byte for byte, against both its text and
 *   its hex), the body digest, the signing input and the token; the token verifies with
 *   its own key; a key id of the form k + 8 hex is the one derived from the secret;
 * - every verification vector: the reason computed for the token, body and clock.
 *
 * Prints one line per failure and "N passed, 0 failed"; exits 1 on any failure.
 */

const fs = require('node:fs');
const path = require('node:path');
const token = require('./token');

const DEFAULT_VECTORS = path.resolve(__dirname, '..', '..', 'docs', 'token-vectors.json');

function main(argv) {
  const file = argv[0] || DEFAULT_VECTORS;
  const vectors = JSON.parse(fs.readFileSync(file, 'utf8'));
  let passed = 0;
  const failures = [];
  const check = (condition, label, detail) => {
    if (condition) {
      passed += 1;
    } else {
      failures.push(detail ? `${label}: ${detail}` : label);
    }
  };
  const attempt = (fn) => {
    try {
      return { value: fn() };
    } catch (error) {
      return { error };
    }
  };

  // The field table of the vectors must be the one token.js encodes.
  const fields = token.ORDER_FIELDS.map(([name]) => name);
  check(JSON.stringify(vectors.order_fields) === JSON.stringify(fields), 'order_fields',
    `vectors list ${JSON.stringify(vectors.order_fields)}`);

  let counts = { decimal: 0, signing: 0, verification: 0 };

  for (const vector of vectors.decimal_vectors) {
    counts.decimal += 1;
    const label = `decimal ${JSON.stringify(vector.input)}`;
    const outcome = attempt(() => token.canonicalDecimal(vector.input));
    if (vector.error) {
      check(outcome.error instanceof token.CanonicalEncodingError, label,
        `expected an error, got ${JSON.stringify(outcome.value)}`);
    } else {
      check(outcome.value === vector.canonical, label,
        outcome.error ? `error ${outcome.error.message}` : `got ${JSON.stringify(outcome.value)}, expected ${JSON.stringify(vector.canonical)}`);
    }
  }

  for (const vector of vectors.signing_vectors) {
    counts.signing += 1;
    const label = `signing ${vector.name}`;
    const secret = Buffer.from(vector.secret_hex, 'hex');
    const outcome = attempt(() => token.canonicalOrderBody(vector.order));
    if (outcome.error) {
      check(false, `${label} body`, `error ${outcome.error.message}`);
      continue;
    }
    const body = outcome.value;
    check(body.equals(Buffer.from(vector.canonical_body_hex, 'hex')), `${label} body (hex)`,
      `got ${body.toString('hex')}`);
    check(body.equals(Buffer.from(vector.canonical_body, 'utf8')), `${label} body (text)`,
      `got ${JSON.stringify(body.toString('utf8'))}`);
    const digest = token.bodyDigest(body);
    check(digest === vector.body_digest, `${label} digest`, `got ${digest}`);
    const input = token.signingInput(vector.key_id, vector.issued_at, vector.nonce, digest);
    check(input === vector.signing_input, `${label} signing input`, `got ${input}`);
    const signed = attempt(() => token.signToken({
      keyId: vector.key_id, secret, body, issuedAt: vector.issued_at, nonce: vector.nonce,
    }));
    check(signed.value === vector.token, `${label} token`,
      signed.error ? `error ${signed.error.message}` : `got ${signed.value}`);
    const verified = token.verifyToken({
      keyRing: new Map([[vector.key_id, secret]]), token: vector.token, body, now: vector.issued_at,
    });
    check(verified.ok && verified.keyId === vector.key_id && verified.nonce === vector.nonce &&
      verified.issuedAt === vector.issued_at, `${label} verifies`, `reason ${verified.reason}`);
    if (/^k[0-9a-f]{8}$/.test(vector.key_id)) {
      check(token.deriveKeyId(secret) === vector.key_id, `${label} derived key id`, `got ${token.deriveKeyId(secret)}`);
    }
  }

  const ring = vectors.verification_key_ring;
  const keyRing = new Map(
    [ring.current, ...(ring.previous || [])].map((key) => [key.key_id, Buffer.from(key.secret_hex, 'hex')]),
  );
  for (const vector of vectors.verification_vectors) {
    counts.verification += 1;
    const outcome = attempt(() => token.verifyToken({
      keyRing,
      token: vector.token,
      body: Buffer.from(vector.canonical_body_hex, 'hex'),
      now: vector.now,
      ttl: vector.ttl_seconds,
      skew: vector.skew_seconds,
    }));
    const reason = outcome.error ? `error ${outcome.error.message}` : outcome.value.reason;
    check(reason === vector.expected_reason, `verification ${vector.name}`,
      `got ${reason}, expected ${vector.expected_reason}`);
  }

  for (const failure of failures) console.log(`FAIL ${failure}`);
  console.log(`vectors: ${counts.decimal} decimal, ${counts.signing} signing, ${counts.verification} verification (${argv[0] || 'docs/token-vectors.json'})`);
  console.log(`${passed} passed, ${failures.length} failed`);
  return failures.length === 0 && counts.decimal > 0 && counts.signing > 0 && counts.verification > 0 ? 0 : 1;
}

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (error) {
    console.error(`check-vectors: ${error.stack || error}`);
    process.exitCode = 2;
  }
}

module.exports = { main };
