'use strict';
/**
 * A small Node.js client library for Tessera: the .proto contract loaded at run time
 * with @grpc/proto-loader (no generated code), clients for the services, and the
 * mapping from an Order message to the fields the risk token signs.
 *
 *   const tessera = require('./tessera');
 *   const { risk, oms } = tessera.connect({ risk: '127.0.0.1:50051', oms: '127.0.0.1:50052' });
 *   const answer = await tessera.call(risk, 'ValidateOrder', { order: {...} }, { timeoutMs: 5000 });
 *
 * Messages are plain objects with the .proto field names (keepCase), enums as their
 * names ("SIDE_BUY"), 64-bit integers as strings, and every field present (defaults).
 */

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

/** The repository's proto/ directory (the contract). */
const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const SERVICE_FILES = [
  'tessera/risk/v1/risk.proto',
  'tessera/oms/v1/oms.proto',
  'tessera/exchange/v1/exchange.proto',
];
const LOADER_OPTIONS = {
  keepCase: true,
  enums: String,
  longs: String,
  defaults: true,
  oneofs: true,
  // proto/ for tessera/**; the google/protobuf well-known types (timestamp, struct)
  // are resolved from the copies protobufjs bundles with proto-loader.
  includeDirs: [PROTO_ROOT],
};
const DEFAULT_TIMEOUT_MS = 15000;

let loaded = null;

/** The loaded package definition as a grpc-js object tree (tessera.risk.v1.RiskService, ...). */
function load() {
  if (loaded === null) {
    const definition = protoLoader.loadSync(SERVICE_FILES, LOADER_OPTIONS);
    loaded = grpc.loadPackageDefinition(definition);
  }
  return loaded;
}

/** Client constructors for the three services. */
function services() {
  const tessera = load().tessera;
  return {
    RiskService: tessera.risk.v1.RiskService,
    OrderManagementService: tessera.oms.v1.OrderManagementService,
    ExchangeService: tessera.exchange.v1.ExchangeService,
  };
}

/** Plaintext channel credentials unless given others (grpc.credentials.createSsl(...)). */
function credentialsOr(credentials) {
  return credentials || grpc.credentials.createInsecure();
}

function riskClient(address, credentials, options) {
  return new (services().RiskService)(address, credentialsOr(credentials), options);
}

function omsClient(address, credentials, options) {
  return new (services().OrderManagementService)(address, credentialsOr(credentials), options);
}

function exchangeClient(address, credentials, options) {
  return new (services().ExchangeService)(address, credentialsOr(credentials), options);
}

/**
 * A client interceptor presenting `token` (a JWT naming the caller, docs/access.md) as
 * `authorization: Bearer <token>` metadata on every call; works on plaintext and TLS
 * channels alike.
 */
function bearerInterceptor(token) {
  const value = `Bearer ${String(token).trim()}`;
  return (options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('authorization', value);
      next(metadata, listener);
    },
  });
}

/**
 * TLS channel credentials from PEM files: `ca` (the CA the server's certificate chains
 * to), and `cert` with `key` for mutual TLS (the certificate then names the caller).
 */
function tlsCredentials({ ca, cert, key }) {
  const read = (path) => (path ? fs.readFileSync(path) : null);
  if (Boolean(cert) !== Boolean(key)) throw new Error('a TLS client certificate needs its key (and the key its certificate)');
  return grpc.credentials.createSsl(read(ca), read(key), read(cert));
}

/**
 * Clients for the addresses given: { risk, oms, exchange } (only those named).
 * `token`: the caller's bearer token, sent with every call; `tls`: { ca, cert, key,
 * serverName } PEM file paths for TLS (mutual with cert and key); or `credentials` made
 * by the caller.
 */
function connect(addresses, { credentials, options, token, tls } = {}) {
  // A client certificate without the CA would otherwise connect in plaintext.
  if (tls && !tls.ca && (tls.cert || tls.key)) throw new Error('a TLS client certificate needs tls.ca (the CA the server\'s certificate chains to)');
  if (tls && tls.ca) {
    credentials = tlsCredentials(tls);
    if (tls.serverName) options = { ...(options || {}), 'grpc.ssl_target_name_override': tls.serverName };
  }
  if (token) {
    options = { ...(options || {}), interceptors: [...((options && options.interceptors) || []), bearerInterceptor(token)] };
  }
  const clients = {};
  if (addresses.risk) clients.risk = riskClient(addresses.risk, credentials, options);
  if (addresses.oms) clients.oms = omsClient(addresses.oms, credentials, options);
  if (addresses.exchange) clients.exchange = exchangeClient(addresses.exchange, credentials, options);
  return clients;
}

function deadline(timeoutMs = DEFAULT_TIMEOUT_MS) {
  return new Date(Date.now() + timeoutMs);
}

/** Wait until a client's channel is connected, or reject at the deadline. */
function waitForReady(client, timeoutMs = DEFAULT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    client.waitForReady(deadline(timeoutMs), (error) => (error ? reject(error) : resolve()));
  });
}

/**
 * A unary call as a promise, always with a deadline. Rejects with the grpc-js
 * ServiceError (error.code is a grpc.status value, error.details the message,
 * error.metadata the trailers).
 */
function call(client, method, request, { timeoutMs = DEFAULT_TIMEOUT_MS, metadata = new grpc.Metadata() } = {}) {
  if (typeof client[method] !== 'function') throw new TypeError(`no method ${method} on this client`);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: deadline(timeoutMs) }, (error, response) => {
      if (error) reject(error);
      else resolve(response);
    });
  });
}

/** A server-streaming call, collected until the server ends it (or the deadline). */
function collect(client, method, request, { timeoutMs = DEFAULT_TIMEOUT_MS, metadata = new grpc.Metadata() } = {}) {
  return new Promise((resolve, reject) => {
    const messages = [];
    const stream = client[method](request, metadata, { deadline: deadline(timeoutMs) });
    stream.on('data', (message) => messages.push(message));
    stream.on('error', reject);
    stream.on('end', () => resolve(messages));
  });
}

/** The name of a status code (grpc.status.PERMISSION_DENIED -> "PERMISSION_DENIED"). */
function statusName(code) {
  return Object.keys(grpc.status).find((name) => grpc.status[name] === code) || String(code);
}

/** "ORDER_STATUS_FILLED" -> "FILLED" (the prefix is the enum's name, per the buf style). */
function enumValue(name, prefix) {
  if (typeof name !== 'string' || !name.startsWith(prefix)) {
    throw new TypeError(`expected a ${prefix}* enum name, got ${JSON.stringify(name)}`);
  }
  const value = name.slice(prefix.length);
  if (value === 'UNSPECIFIED') throw new TypeError(`${prefix}UNSPECIFIED has no token encoding`);
  return value;
}

/**
 * The fields the risk token signs, from a tessera.common.v1.Order message (as this
 * library loads it): enum names without their prefix, decimals as the strings on the
 * wire (an empty string means absent), booleans as they are. Feed the result to
 * token.canonicalOrderBody().
 */
function tokenFields(order) {
  return {
    order_id: order.order_id,
    client_order_id: order.client_order_id,
    account: order.account,
    venue: order.venue,
    market_type: enumValue(order.market_type, 'MARKET_TYPE_'),
    symbol: order.symbol,
    side: enumValue(order.side, 'SIDE_'),
    order_type: enumValue(order.order_type, 'ORDER_TYPE_'),
    quantity: order.quantity,
    price: order.price || null,
    stop_price: order.stop_price || null,
    time_in_force: enumValue(order.time_in_force, 'TIME_IN_FORCE_'),
    reduce_only: Boolean(order.reduce_only),
    post_only: Boolean(order.post_only),
    leverage: order.leverage || null,
    close_position: Boolean(order.close_position),
    // Unspecified is a value of its own here: the empty string (nothing is sent to the venue).
    working_type: !order.working_type || order.working_type === 'WORKING_TYPE_UNSPECIFIED'
      ? '' : enumValue(order.working_type, 'WORKING_TYPE_'),
    price_protect: Boolean(order.price_protect),
    activation_price: order.activation_price || null,
    callback_rate: order.callback_rate || null,
    quote_order_qty: order.quote_order_qty || null,
  };
}

/** Close every client of connect(). */
function close(clients) {
  for (const client of Object.values(clients)) client.close();
}

module.exports = {
  grpc,
  PROTO_ROOT,
  LOADER_OPTIONS,
  DEFAULT_TIMEOUT_MS,
  load,
  services,
  riskClient,
  omsClient,
  exchangeClient,
  connect,
  bearerInterceptor,
  tlsCredentials,
  close,
  waitForReady,
  call,
  collect,
  statusName,
  enumValue,
  tokenFields,
};
