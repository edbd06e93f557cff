// link-trust.js: an independent gRPC client (@grpc/grpc-js) replays the
// attacks of issue 8 against real tandem-replicators over mutual TLS
// (tests/e2e/t0320-link-trust.sh sets them up):
//
//   node link-trust.js CERT_DIR ADDR_A ADDR_B VOL PRIV
//
// Region a (ADDR_A) ships VOL to region b (ADDR_B); PRIV is a's volume that
// is not replicated.  CERT_DIR holds ca.pem and, signed by that CA, a, b,
// c (a third region), admin and nouri (no URI SAN) .pem/.key.  Every call
// here must be refused with PERMISSION_DENIED (7): the caller is who its
// certificate says, not what its request says.  Prints one "ok - ..." or
// "not ok - ..." line per check and exits 1 if any failed.
'use strict';
const path = require('path');
const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [certDir, addrA, addrB, vol, priv] = process.argv.slice(2);
if (!priv) {
  console.error('usage: node link-trust.js CERT_DIR ADDR_A ADDR_B VOL PRIV');
  process.exit(2);
}
const def = protoLoader.loadSync(
  path.join(__dirname, '..', '..', 'proto', 'tandem_repl.proto'),
  { keepCase: true, longs: String, enums: String, defaults: true });
const Link = grpc.loadPackageDefinition(def).tandem.repl.v1.Link;
const read = (f) => fs.readFileSync(path.join(certDir, f));
const client = (addr, who) => new Link(addr, grpc.credentials.createSsl(
  read('ca.pem'), read(`${who}.key`), read(`${who}.pem`)), {
  'grpc.ssl_target_name_override': 'localhost',
  'grpc.max_receive_message_length': 64 << 20,
});
const call = (c, method, req, ms = 10000) => new Promise((resolve) =>
  c[method](req, { deadline: new Date(Date.now() + ms) },
    (err, res) => resolve({ err, res })));

let failed = 0;
const ok = (cond, what) => {
  console.log(`${cond ? 'ok' : 'not ok'} - ${what}`);
  if (!cond) failed++;
};
const denied = (r) => r.err && r.err.code === grpc.status.PERMISSION_DENIED;
const said = (r) => (r.err ? `${r.err.code} "${r.err.details}"`
  : `OK ${JSON.stringify(r.res).slice(0, 160)}`);

const spec = {
  size: String(8 << 20), object_size: 1 << 20, start_seq: '1',
  meta: { 'csi.replication': 'async', 'csi.peer_region': 'b' },
};
const aaaa = Buffer.alloc(4096, 'A');

(async () => {
  // A third region's certificate (same CA) against b, claiming to be a.
  for (const who of ['c', 'admin', 'nouri']) {
    const c = client(addrB, who);
    let r = await call(c, 'DeleteReplica',
      { volume_id: vol, from_region: 'a', epoch: '18446744073709551615' });
    ok(denied(r), `DeleteReplica {from_region a, epoch 2^64-1} as ${who}: ${said(r)}`);
    r = await call(c, 'CopyRegions', {
      volume_id: vol, from_region: 'a', epoch: '1000', copy_id: 'evil',
      begin: true, spec, from_primary: true,
      regions: [{ offset: '0', length: '4096', data: aaaa }],
    });
    ok(denied(r), `CopyRegions {epoch 1000, begin, 4 KiB of 'A'} as ${who}: ${said(r)}`);
    r = await call(c, 'ShipBatch', {
      volume_id: vol, from_region: 'a', epoch: '1000', from_primary: true,
    });
    ok(denied(r), `ShipBatch probe at epoch 1000 as ${who}: ${said(r)}`);
    r = await call(c, 'Hello', { region: 'a', peer_region: 'b' });
    ok(denied(r), `Hello {region a} as ${who}: ${said(r)}`);
    c.close();
  }
  // Reading a's volume that is not replicated: as c, and as b (a's real
  // peer, which may read only what replicates with it).
  for (const who of ['c', 'b']) {
    const c = client(addrA, who);
    let r = await call(c, 'ReadRegions', {
      volume_id: priv, regions: [{ offset: '0', length: String(1 << 20) }],
    });
    ok(denied(r), `ReadRegions of 1 MiB of unreplicated ${priv} as ${who}: ${said(r)}`);
    r = await call(c, 'GetVolume', { volume_id: priv, from_region: 'b' });
    ok(denied(r), `GetVolume of ${priv} as ${who}: ${said(r)}`);
    r = await call(c, 'JournalRegions', { volume_id: priv, from_seq: '1' });
    ok(denied(r), `JournalRegions of ${priv} as ${who}: ${said(r)}`);
    c.close();
  }
  // The real peer with a field naming another region.
  const ca = client(addrB, 'a');
  let r = await call(ca, 'Hello', { region: 'c', peer_region: 'b' });
  ok(denied(r), `Hello {region c} with a's certificate: ${said(r)}`);
  r = await call(ca, 'GetVolume', { volume_id: vol, from_region: 'a' });
  ok(!r.err && r.res.exists && r.res.epoch === '1' && !r.res.copy_active,
     `a's certificate reads b's ${vol}: epoch 1, no copy begun (${said(r)})`);
  ca.close();
  process.exit(failed ? 1 : 0);
})();
