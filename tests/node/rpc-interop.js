// rpc-interop.js: an independent gRPC implementation (@grpc/grpc-js) calls
// tandem's C core server (proto/rpc_server.c) in tests/rpc/echo-server.c.
//
//   node rpc-interop.js UNIX_TARGET TLS_TARGET CERT_DIR
//
// CERT_DIR holds ca.pem and node-client.pem/.key (scripts/gen-certs.sh).
// Prints one "ok - ..." or "not ok - ..." line per check (the e2e script
// numbers them) and exits 1 if any check failed.
'use strict';
const path = require('path');
const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [unixTarget, tlsTarget, certDir] = process.argv.slice(2);
if (!unixTarget || !tlsTarget || !certDir) {
  console.error('usage: node rpc-interop.js UNIX_TARGET TLS_TARGET CERT_DIR');
  process.exit(2);
}

const def = protoLoader.loadSync(path.join(__dirname, 'echo.proto'), {
  keepCase: true, longs: String, enums: String, defaults: true,
  includeDirs: ['/usr/include'], // google/protobuf/wrappers.proto
});
const Echo = grpc.loadPackageDefinition(def).tandem.test.Echo;
const opts = {
  'grpc.max_receive_message_length': 64 << 20,
  'grpc.max_send_message_length': 64 << 20,
};
const read = (f) => fs.readFileSync(path.join(certDir, f));
const mtls = () => grpc.credentials.createSsl(
  read('ca.pem'), read('node-client.key'), read('node-client.pem'));

let failed = 0;
const ok = (cond, what) => {
  console.log(`${cond ? 'ok' : 'not ok'} - ${what}`);
  if (!cond) failed++;
};
const call = (client, method, req, ms = 5000) => new Promise((resolve) =>
  client[method](req, { deadline: new Date(Date.now() + ms) },
    (err, res) => resolve({ err, res })));

(async () => {
  // 1. plaintext over the unix socket
  const plain = new Echo(unixTarget, grpc.credentials.createInsecure(), opts);
  let r = await call(plain, 'Echo', { value: 'hello from node' });
  ok(!r.err && r.res.value === 'hello from node',
     `plaintext unix Echo (${r.err ? r.err.message : JSON.stringify(r.res)})`);

  // 2. unknown method: UNIMPLEMENTED (12)
  r = await call(plain, 'NoSuchMethod', { value: 'x' });
  ok(r.err && r.err.code === 12,
     `unknown method gives code 12 (got ${r.err ? r.err.code : 'OK'})`);

  // 3. status code and message arrive intact
  r = await call(plain, 'Fail', { value: '5 volume pvc-1 not found: 100% "sure"' });
  ok(r.err && r.err.code === 5 && r.err.details === 'volume pvc-1 not found: 100% "sure"',
     `NOT_FOUND with its message (got ${r.err ? `${r.err.code} "${r.err.details}"` : 'OK'})`);

  // 4. the deadline travels to the server (grpc-timeout header)
  r = await call(plain, 'Sleep', { value: '0' }, 3000);
  const left = r.res ? Number(r.res.value) : -1;
  ok(!r.err && left > 1000 && left <= 3050,
     `server sees the client's deadline (${left} ms left of 3000)`);
  r = await call(plain, 'Sleep', { value: '20000' }, 300);
  ok(r.err && r.err.code === grpc.status.DEADLINE_EXCEEDED,
     `slow call ends with DEADLINE_EXCEEDED (got ${r.err ? r.err.code : 'OK'})`);

  // 5. undecodable request bytes: INVALID_ARGUMENT, server keeps serving
  const Raw = grpc.makeGenericClientConstructor({
    Echo: {
      path: '/tandem.test.Echo/Echo', requestStream: false, responseStream: false,
      requestSerialize: (b) => b, requestDeserialize: (b) => b,
      responseSerialize: (b) => b, responseDeserialize: (b) => b,
    },
  }, 'Raw');
  const raw = new Raw(unixTarget, grpc.credentials.createInsecure());
  r = await call(raw, 'Echo', Buffer.from([0x0a, 0x05, 0x61, 0x62]));
  ok(r.err && r.err.code === grpc.status.INVALID_ARGUMENT,
     `undecodable bytes give INVALID_ARGUMENT (got ${r.err ? r.err.code : 'OK'})`);
  raw.close();
  r = await call(plain, 'Echo', { value: 'again' });
  ok(!r.err && r.res.value === 'again', 'server still serves after bad bytes');

  // 6. a big response (above gRPC's 4 MiB default)
  r = await call(plain, 'Big', { value: String(8 << 20) }, 20000);
  let good = !r.err && r.res.value.length === 8 << 20;
  if (good) {
    const b = r.res.value;
    for (let i = 0; i < b.length; i += 4093)
      if (b[i] !== ((i * 7 + (i >> 13)) & 0xff)) { good = false; break; }
  }
  ok(good, `8 MiB response intact (${r.err ? r.err.message : 'ok'})`);
  plain.close();

  // 7. mutual TLS over TCP, and the server sees our certificate
  // The certificate names 127.0.0.1 too, but TLS SNI may not carry an IP
  // address: check the server under its DNS name instead.
  const tlsOpts = { ...opts, 'grpc.ssl_target_name_override': 'localhost' };
  const secure = new Echo(tlsTarget, mtls(), tlsOpts);
  r = await call(secure, 'Echo', { value: 'hello over mTLS' });
  ok(!r.err && r.res.value === 'hello over mTLS',
     `mTLS Echo (${r.err ? r.err.message : JSON.stringify(r.res)})`);
  r = await call(secure, 'Peer', { value: '' });
  ok(!r.err && r.res.value === 'node-client',
     `server verified our identity (${r.err ? r.err.message : r.res.value})`);
  secure.close();

  // 8. TLS without a client certificate: refused
  const anon = new Echo(tlsTarget, grpc.credentials.createSsl(read('ca.pem')), tlsOpts);
  r = await call(anon, 'Echo', { value: 'x' });
  ok(r.err && r.err.code === grpc.status.UNAVAILABLE,
     `no client certificate is refused (got ${r.err ? r.err.code : 'OK'})`);
  anon.close();

  process.exitCode = failed ? 1 : 0;
})().catch((e) => { console.log(`not ok - exception: ${e.stack}`); process.exit(1); });
