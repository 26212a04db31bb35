#!/usr/bin/env node
'use strict';
/**
 * A complete order flow against a running Tessera stack, from Node.js:
 *
 *   node order-flow.js [--risk HOST:PORT] [--oms HOST:PORT] [--symbol BTCUSDT]
 *                      [--quantity 0.01] [--account ACCOUNT] [--timeout SECONDS]
 *
 * Addresses default to TESSERA_RISK_ADDRESS / TESSERA_OMS_ADDRESS, then
 * 127.0.0.1:50051 / 127.0.0.1:50052. The stack must run in paper mode (market orders
 * fill at once).
 *
 *  1. CreateOrderManager (a batch for this run)
 *  2. RiskService.ValidateOrder of a market order: APPROVED with a risk token whose
 *     structure is docs/token.md's and whose body digest is SHA-256 of the canonical
 *     body computed here from the returned order (the signature needs the secret, which
 *     a client never has)
 *  3. SubmitOrder with the quantity changed: PERMISSION_DENIED, TOKEN_FIELDS_CHANGED
 *  4. SubmitOrder with a malformed quantity: INVALID_ARGUMENT naming quantity
 *  5. SubmitOrder as approved (the refusals did not use the token up): FILLED, one trade
 *  6. GetOrder: events PENDING, APPROVED, SUBMITTED, FILLED, and the trade
 *  7. ListTrades for the order: the trade
 *  8. StreamOrderEvents (history_only) for the order: the same four events
 *
 * Prints one line per check and "N passed, 0 failed"; exits 1 when any expectation
 * fails, 2 when the flow cannot run at all (stack unreachable, unexpected error).
 */

const crypto = require('node:crypto');
const fs = require('node:fs');
const tessera = require('./tessera');
const token = require('./token');

const { grpc } = tessera;
const EXPECTED_EVENTS = ['PENDING', 'APPROVED', 'SUBMITTED', 'FILLED'];
const LOCAL_TOKEN = 'var/auth/local.token';

function parseArgs(argv) {
  const options = {
    risk: process.env.TESSERA_RISK_ADDRESS || '127.0.0.1:50051',
    oms: process.env.TESSERA_OMS_ADDRESS || '127.0.0.1:50052',
    symbol: 'BTCUSDT',
    quantity: '0.01',
    account: `node-${crypto.randomBytes(6).toString('hex')}`,
    venue: 'aster',
    timeout: 15,
    'token-file': process.env.TESSERA_TOKEN_FILE || '',
    'tls-ca': process.env.TESSERA_CLIENT_TLS_CA_FILE || '',
    'tls-cert': process.env.TESSERA_CLIENT_TLS_CERT_FILE || '',
    'tls-key': process.env.TESSERA_CLIENT_TLS_KEY_FILE || '',
    'tls-server-name': process.env.TESSERA_CLIENT_TLS_SERVER_NAME || '',
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg, undefined];
    const name = flag.replace(/^--/, '');
    if (flag === '--help' || flag === '-h') {
      console.log('usage: node order-flow.js [--risk HOST:PORT] [--oms HOST:PORT] [--symbol S] [--quantity Q] [--account A] [--venue V] [--timeout SECONDS] [--token-file FILE] [--tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]]');
      process.exit(0);
    }
    if (!flag.startsWith('--') || !(name in options)) throw new Error(`unknown argument ${arg}`);
    const value = inline !== undefined ? inline : argv[(i += 1)];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    options[name] = value;
  }
  // The token `tessera up` writes for its local stack, when there is one here and no
  // client certificate names the caller (a token sent along would name it instead, and
  // go to wherever the client connects).
  if (!options['token-file'] && !options['tls-cert'] && fs.existsSync(LOCAL_TOKEN)) options['token-file'] = LOCAL_TOKEN;
  if ((options['tls-cert'] || options['tls-key']) && !options['tls-ca']) {
    throw new Error('--tls-cert needs --tls-ca (the CA the server\'s certificate chains to)');
  }
  options.timeout = Number(options.timeout);
  if (!(options.timeout > 0)) throw new Error('--timeout must be a positive number of seconds');
  return options;
}

class Checks {
  constructor() {
    this.passed = 0;
    this.failed = 0;
  }

  /** Record one expectation; returns whether it held. */
  expect(condition, label, detail = '') {
    if (condition) {
      this.passed += 1;
      console.log(`ok   ${label}`);
    } else {
      this.failed += 1;
      console.log(`FAIL ${label}${detail ? ` (${detail})` : ''}`);
    }
    return Boolean(condition);
  }

  /** Expect the promise to be rejected with `code`; returns the error (or null). */
  async expectError(promise, code, label) {
    try {
      const answer = await promise;
      this.expect(false, label, `unexpected success: ${JSON.stringify(answer).slice(0, 200)}`);
      return null;
    } catch (error) {
      if (error.code === undefined) throw error;
      this.expect(error.code === code, `${label}: ${tessera.statusName(error.code)}`,
        `expected ${tessera.statusName(code)}: ${error.details}`);
      return error;
    }
  }
}

const strip = (name, prefix) => (typeof name === 'string' && name.startsWith(prefix) ? name.slice(prefix.length) : name);
const statusOf = (name) => strip(name, 'ORDER_STATUS_');

async function run(options) {
  const checks = new Checks();
  const timeoutMs = options.timeout * 1000;
  const rpc = { timeoutMs };
  const bearer = options['token-file'] ? fs.readFileSync(options['token-file'], 'utf8').trim() : '';
  const tls = options['tls-ca'] ? {
    ca: options['tls-ca'], cert: options['tls-cert'], key: options['tls-key'], serverName: options['tls-server-name'],
  } : undefined;
  const clients = tessera.connect({ risk: options.risk, oms: options.oms }, { token: bearer, tls });
  try {
    console.log(`Tessera order flow from Node.js ${process.version}: risk ${options.risk}, oms ${options.oms}`);
    await Promise.all(['risk', 'oms'].map((name) => tessera.waitForReady(clients[name], timeoutMs).catch(() => {
      throw new Error(`cannot connect to ${name} at ${options[name]} within ${options.timeout} s`);
    })));

    // 1. An order manager (batch) for this run.
    const batchId = `node-flow-${crypto.randomUUID()}`;
    const created = await tessera.call(clients.oms, 'CreateOrderManager', {
      unique_identifier: batchId,
      target_account_uid: options.account,
      metadata: { fields: { source: { string_value: 'clients/node/order-flow.js' } } },
    }, rpc);
    checks.expect(created.created && created.order_manager.unique_identifier === batchId,
      `CreateOrderManager: ${batchId} (status ${created.order_manager.status})`, JSON.stringify(created));

    // 2. Risk approves a market order and signs it.
    const intent = {
      account: options.account,
      venue: options.venue,
      market_type: 'MARKET_TYPE_FUTURES',
      symbol: options.symbol,
      side: 'SIDE_BUY',
      order_type: 'ORDER_TYPE_MARKET',
      quantity: options.quantity,
      time_in_force: 'TIME_IN_FORCE_GTC',
      order_manager_id: batchId,
    };
    const validated = await tessera.call(clients.risk, 'ValidateOrder', { order: intent }, rpc);
    const order = validated.order;
    const riskToken = validated.risk_token;
    if (!checks.expect(statusOf(order.status) === 'APPROVED' && riskToken !== '',
      `ValidateOrder: ${statusOf(order.status)} ${order.order_id} (${strip(order.side, 'SIDE_')} ${order.quantity} ${order.symbol})`,
      JSON.stringify(validated.violations))) {
      return checks;
    }
    checks.expect(order.quantity === token.canonicalDecimal(options.quantity),
      `the order's quantity is canonical: ${order.quantity}`);

    // The token: its structure per docs/token.md, and its digest binds this very order.
    const parsed = token.parseToken(riskToken);
    checks.expect(parsed !== null, `risk token is well-formed v1 (${riskToken.length} chars)`, riskToken);
    if (parsed !== null) {
      const age = Date.now() / 1000 - parsed.issuedAt;
      checks.expect(Math.abs(age) < token.DEFAULT_TTL_SECONDS,
        `risk token: key id ${parsed.keyId}, issued ${age.toFixed(1)} s ago, nonce ${parsed.nonce}`);
      const digest = token.bodyDigest(token.canonicalOrderBody(tessera.tokenFields(order)));
      checks.expect(digest === parsed.digest,
        `risk token body digest = base64url(SHA-256(canonical body)) computed here: ${digest}`,
        `token carries ${parsed.digest}`);
    }

    // 3. A tampered quantity is refused; 4. so is a malformed one. Neither uses the token up.
    const tampered = { ...order, quantity: token.canonicalDecimal(options.quantity) === '2' ? '3' : '2' };
    const changed = await checks.expectError(
      tessera.call(clients.oms, 'SubmitOrder', { order: tampered, risk_token: riskToken }, rpc),
      grpc.status.PERMISSION_DENIED, `SubmitOrder with quantity ${tampered.quantity}`);
    if (changed) {
      checks.expect(changed.details.startsWith('TOKEN_FIELDS_CHANGED'), `  message: ${changed.details}`);
      checks.expect(changed.metadata.get('grpc-status-details-bin').length === 1,
        '  the status carries a google.rpc.Status detail (grpc-status-details-bin)');
    }
    const malformed = await checks.expectError(
      tessera.call(clients.oms, 'SubmitOrder', { order: { ...order, quantity: '1e5' }, risk_token: riskToken }, rpc),
      grpc.status.INVALID_ARGUMENT, 'SubmitOrder with quantity 1e5');
    if (malformed) checks.expect(/\bquantity\b/.test(malformed.details), `  message: ${malformed.details}`);

    // 5. Submitted as approved: filled on paper, with its trade.
    const submitted = await tessera.call(clients.oms, 'SubmitOrder', { order, risk_token: riskToken }, rpc);
    checks.expect(statusOf(submitted.order.status) === 'FILLED' && submitted.order.filled_quantity === order.quantity,
      `SubmitOrder: ${statusOf(submitted.order.status)} ${submitted.order.filled_quantity} @ ${submitted.order.average_fill_price}`,
      JSON.stringify(submitted.order));
    checks.expect(submitted.trades.length === 1, `SubmitOrder answered ${submitted.trades.length} trade(s)`);
    const trade = submitted.trades[0];
    if (trade) {
      checks.expect(trade.order_id === order.order_id && trade.quantity === order.quantity,
        `  trade ${trade.trade_id}: ${trade.quantity} @ ${trade.price}, commission ${trade.commission} ${trade.commission_asset}`);
    }

    // 6. GetOrder: the persisted lifecycle.
    const got = await tessera.call(clients.oms, 'GetOrder', { order_id: order.order_id }, rpc);
    const events = got.events.map((event) => statusOf(event.to_status));
    checks.expect(JSON.stringify(events) === JSON.stringify(EXPECTED_EVENTS), `GetOrder events: ${events.join(' > ')}`,
      `expected ${EXPECTED_EVENTS.join(' > ')}`);
    checks.expect(got.events.every((event, i) => Number(event.sequence) === i + 1), '  event sequence 1..n',
      got.events.map((event) => event.sequence).join(','));
    checks.expect(got.trades.length === 1 && (!trade || got.trades[0].trade_id === trade.trade_id),
      `  GetOrder trades: ${got.trades.map((t) => t.trade_id).join(', ')}`);

    // 7. ListTrades for the order.
    const listed = await tessera.call(clients.oms, 'ListTrades', { order_id: order.order_id, account: options.account }, rpc);
    checks.expect(trade && listed.trades.some((t) => t.trade_id === trade.trade_id),
      `ListTrades: ${listed.trades.length} trade(s) for the order, including ${trade ? trade.trade_id : '?'}`);

    // 8. StreamOrderEvents: the stored history of the order, then the server ends the stream.
    const streamed = await tessera.collect(clients.oms, 'StreamOrderEvents', { order_id: order.order_id, account: options.account, history_only: true }, rpc);
    const streamedEvents = streamed.map((message) => statusOf(message.event.to_status));
    checks.expect(JSON.stringify(streamedEvents) === JSON.stringify(EXPECTED_EVENTS),
      `StreamOrderEvents (history_only): ${streamedEvents.join(' > ')}`, `expected ${EXPECTED_EVENTS.join(' > ')}`);
    checks.expect(streamed.every((message) => message.event.order_id === order.order_id && Number(message.event.cursor) > 0),
      '  every streamed event is this order\'s, with a cursor');

    const manager = await tessera.call(clients.oms, 'GetOrderManager', { unique_identifier: batchId }, rpc);
    checks.expect(manager.orders.some((o) => o.order_id === order.order_id),
      `GetOrderManager: ${manager.orders.length} order(s), status ${manager.order_manager.status}`);
    return checks;
  } finally {
    tessera.close(clients);
  }
}

async function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`order-flow: ${error.message}`);
    return 2;
  }
  // A last resort: never hang (every call has its own deadline already).
  const watchdog = setTimeout(() => {
    console.error(`order-flow: gave up after ${4 * options.timeout} s`);
    process.exit(2);
  }, 4 * options.timeout * 1000);
  watchdog.unref();
  try {
    const checks = await run(options);
    console.log(`${checks.passed} passed, ${checks.failed} failed`);
    return checks.failed === 0 ? 0 : 1;
  } catch (error) {
    const status = error.code !== undefined ? `${tessera.statusName(error.code)}: ${error.details}`
      : error.message.startsWith('cannot connect') ? error.message : (error.stack || error);
    console.error(`order-flow: the flow could not run: ${status}`);
    return 2;
  }
}

if (require.main === module) {
  main().then((code) => {
    process.exitCode = code;
  });
}

module.exports = { run, parseArgs };
