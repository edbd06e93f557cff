// csi-addons.js: tandem-csi's CSI-Addons endpoint through an independent
// gRPC implementation (@grpc/grpc-js + @grpc/proto-loader) loading the
// CSI-Addons protos as published (tests/spec/csi-addons, verbatim
// upstream copies: identity.proto, replication.proto).  replication.proto
// imports csi.proto by its upstream path; a scratch include dir maps that
// path to the verbatim CSI reference (tests/spec/csi/csi.proto), so no
// file is edited to fit.
//
//   node csi-addons.js call TARGET METHOD JSON
//       One call (METHOD: GetIdentity, GetCapabilities, Probe or a
//       replication.Controller method); prints the response as JSON on
//       one line and exits 0, or prints "ERR CODE_NAME details" and
//       exits 1.
//   node csi-addons.js conformance TARGET_A TARGET_B VOL
//       Every RPC, repeats and the error codes of replication.README.md,
//       through the endpoints of regions a and b, on a volume VOL that is
//       primary in a and NOT replicated yet (left not replicated, primary
//       in a); one "ok - ..." / "not ok - ..." line per check, exit 1 if
//       any failed.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const root = path.resolve(__dirname, '..', '..');
const specDir = path.join(root, 'tests', 'spec', 'csi-addons');
const csiRef = path.join(root, 'tests', 'spec', 'csi', 'csi.proto');
const CSI_IMPORT = 'github.com/container-storage-interface/spec/lib/go/csi';

function load() {
  const inc = fs.mkdtempSync(path.join(os.tmpdir(), 'addons-inc-'));
  try {
    fs.mkdirSync(path.join(inc, CSI_IMPORT), { recursive: true });
    fs.symlinkSync(csiRef, path.join(inc, CSI_IMPORT, 'csi.proto'));
    const def = protoLoader.loadSync(['identity.proto', 'replication.proto'], {
      keepCase: true, longs: String, enums: String, defaults: true,
      oneofs: true, includeDirs: [specDir, inc, '/usr/include'],
    });
    return grpc.loadPackageDefinition(def);
  } finally {
    fs.rmSync(inc, { recursive: true, force: true });
  }
}

const [mode, target, ...rest] = process.argv.slice(2);
if (!mode || !target) {
  console.error('usage: node csi-addons.js call TARGET METHOD JSON | ' +
                'conformance TARGET VOL');
  process.exit(2);
}
const pkg = load();
const creds = grpc.credentials.createInsecure();
const endpoint = (t) => ({
  identity: new pkg.identity.Identity(t, creds),
  replication: new pkg.replication.Controller(t, creds),
});
const A = endpoint(target);
const S = grpc.status;
const codeName = (c) => Object.keys(S).find((k) => S[k] === c) || String(c);
const clientOf = (ep, m) =>
  (['GetIdentity', 'GetCapabilities', 'Probe'].includes(m) ? ep.identity
                                                           : ep.replication);
const callOn = (ep, method, req, ms = 30000) => new Promise((resolve) =>
  clientOf(ep, method)[method](req, { deadline: new Date(Date.now() + ms) },
    (err, res) => resolve({ err, res })));
const call = (method, req, ms) => callOn(A, method, req, ms);
const code = (r) => (r.err ? r.err.code : S.OK);

if (mode === 'call') {
  const [method, json] = rest;
  call(method, JSON.parse(json || '{}')).then((r) => {
    if (r.err) {
      console.log(`ERR ${codeName(r.err.code)} ${r.err.details}`);
      process.exit(1);
    }
    console.log(JSON.stringify(r.res));
    process.exit(0);
  });
} else if (mode === 'conformance') {
  const B = endpoint(rest[0]);
  const vol = rest[1];
  const callB = (method, req) => callOn(B, method, req);
  let failed = 0;
  const ok = (cond, what) => {
    console.log(`${cond ? 'ok' : 'not ok'} - ${what}`);
    if (!cond) failed++;
  };
  const expectCode = (r, want, what) =>
    ok(code(r) === want, `${what}: ${codeName(code(r))}` +
       (r.err ? ` (${r.err.details})` : ''));
  const src = (id) => ({ volume: { volume_id: id } });
  const grp = { volumegroup: { volume_group_id: 'g1' } };
  const params = { mirroringMode: 'journal', schedulingInterval: '1m' };
  const ctl = ['EnableVolumeReplication', 'DisableVolumeReplication',
    'PromoteVolume', 'DemoteVolume', 'ResyncVolume',
    'GetVolumeReplicationInfo', 'GetReplicationDestinationInfo'];
  (async () => {
    // Identity.
    let r = await call('GetIdentity', {});
    ok(!r.err && r.res.name === 'tandem.csi.dev' && r.res.vendor_version,
       `GetIdentity name=${r.res && r.res.name}`);
    r = await call('GetCapabilities', {});
    const caps = r.res ? r.res.capabilities : [];
    const svc = caps.filter((c) => c.service).map((c) => c.service.type);
    const rep = caps.filter((c) => c.volume_replication)
      .map((c) => c.volume_replication.type).sort();
    const vg = caps.filter((c) => c.volume_group)
      .map((c) => c.volume_group.type).sort();
    ok(!r.err && caps.length === 8 && svc.join() === 'CONTROLLER_SERVICE' &&
       rep.join() === 'GET_REPLICATION_DESTINATION_INFO,VOLUME_REPLICATION' &&
       vg.join() === 'GET_VOLUME_GROUP,LIMIT_VOLUME_TO_ONE_VOLUME_GROUP,' +
         'LIST_VOLUME_GROUPS,MODIFY_VOLUME_GROUP,VOLUME_GROUP',
       `GetCapabilities: exactly controller + replication + volume groups (${JSON.stringify(caps)})`);
    r = await call('Probe', {});
    ok(!r.err && r.res.ready && r.res.ready.value === true, 'Probe ready');

    // Missing source / volume id: INVALID_ARGUMENT everywhere.
    for (const m of ctl) {
      expectCode(await call(m, {}), S.INVALID_ARGUMENT,
                 `${m} without replication_source`);
      expectCode(await call(m, { replication_source: src('') }),
                 S.INVALID_ARGUMENT, `${m} with empty volume_id`);
    }
    // A volume group source: UNIMPLEMENTED where the README's table has
    // it, INVALID_ARGUMENT for Enable/Disable (no UNIMPLEMENTED row).
    for (const m of ctl) {
      const want = m.startsWith('Enable') || m.startsWith('Disable')
        ? S.INVALID_ARGUMENT : S.UNIMPLEMENTED;
      expectCode(await call(m, { replication_source: grp, parameters: params }),
                 want, `${m} with a volumegroup source`);
    }
    // Unknown volume: NOT_FOUND.
    for (const m of ctl)
      expectCode(await call(m, { replication_source: src('no-such-vol-x'),
                                 parameters: params }),
                 S.NOT_FOUND, `${m} of an unknown volume`);
    // Not replicated yet: FAILED_PRECONDITION (Disable: nothing to do).
    for (const m of ['PromoteVolume', 'DemoteVolume', 'ResyncVolume',
      'GetVolumeReplicationInfo', 'GetReplicationDestinationInfo'])
      expectCode(await call(m, { replication_source: src(vol) }),
                 S.FAILED_PRECONDITION, `${m} of a volume not replicated`);
    expectCode(await call('DisableVolumeReplication',
                          { replication_source: src(vol) }),
               S.OK, 'DisableVolumeReplication of a volume not replicated');
    // Bad class parameters.
    expectCode(await call('EnableVolumeReplication', {
      replication_source: src(vol), parameters: { mirroringMode: 'snapshot' } }),
               S.INVALID_ARGUMENT, 'Enable with mirroringMode=snapshot');
    expectCode(await call('EnableVolumeReplication', {
      replication_source: src(vol), parameters: { bogus: '1' } }),
               S.INVALID_ARGUMENT, 'Enable with an unknown parameter');
    expectCode(await call('EnableVolumeReplication', {
      replication_source: src(vol), parameters: { peerRegion: 'nowhere' } }),
               S.INVALID_ARGUMENT, 'Enable with an unconfigured peerRegion');
    // Enable, twice (re-sent on every reconcile).
    for (const k of [1, 2])
      expectCode(await call('EnableVolumeReplication', {
        replication_source: src(vol), parameters: params,
        secrets: { x: 'y' } }), S.OK, `EnableVolumeReplication #${k}`);
    r = await call('GetReplicationDestinationInfo',
                   { replication_source: src(vol) });
    ok(!r.err && r.res.replication_destination &&
       r.res.replication_destination.volume &&
       r.res.replication_destination.volume.volume_id === vol,
       `GetReplicationDestinationInfo: same id (${JSON.stringify(r.res || r.err.details)})`);
    // Promote of a primary: OK, with and without force.
    expectCode(await call('PromoteVolume', { replication_source: src(vol) }),
               S.OK, 'PromoteVolume of a primary');
    expectCode(await call('PromoteVolume', { replication_source: src(vol),
                                             force: true }),
               S.OK, 'PromoteVolume(force) of a primary');
    // Resync of a primary: not demoted.
    expectCode(await call('ResyncVolume', { replication_source: src(vol) }),
               S.FAILED_PRECONDITION, 'ResyncVolume of a primary');
    // Info: from the replicator's positions, once the peer caught up.
    let info = null;
    for (let i = 0; i < 200; i++) {
      r = await call('GetVolumeReplicationInfo', { replication_source: src(vol) });
      if (r.err) break;
      if (r.res.status === 'HEALTHY' && /lag_entries=0 /.test(r.res.status_message)) {
        info = r.res;
        break;
      }
      await new Promise((res) => setTimeout(res, 100));
    }
    ok(info !== null, `GetVolumeReplicationInfo: HEALTHY, in sync (${JSON.stringify(r.res || (r.err && r.err.details))})`);
    if (info) {
      const t = Number(info.last_sync_time.seconds) * 1000 +
        info.last_sync_time.nanos / 1e6;
      ok(Math.abs(Date.now() - t) < 5000,
         `last_sync_time is now when in sync (${Date.now() - t} ms off)`);
      ok(info.last_sync_duration && Number(info.last_sync_duration.seconds) === 0,
         'last_sync_duration 0 in sync');
      ok(Number(info.last_sync_bytes) >= 0, `last_sync_bytes ${info.last_sync_bytes}`);
    }
    // Planned switchover a -> b: demote a (drains), twice; a secondary
    // has no replication info and cannot be disabled here.
    for (const k of [1, 2])
      expectCode(await call('DemoteVolume', { replication_source: src(vol) }),
                 S.OK, `DemoteVolume #${k}`);
    expectCode(await call('GetVolumeReplicationInfo',
                          { replication_source: src(vol) }),
               S.FAILED_PRECONDITION, 'GetVolumeReplicationInfo of a secondary');
    expectCode(await call('DisableVolumeReplication',
                          { replication_source: src(vol) }),
               S.FAILED_PRECONDITION, 'DisableVolumeReplication of a secondary');
    expectCode(await callB('ResyncVolume', { replication_source: src(vol) }),
               S.FAILED_PRECONDITION, 'ResyncVolume in b while a is not primary');
    // Promote in b (graceful: a is demoted and drained), twice.
    for (const k of [1, 2])
      expectCode(await callB('PromoteVolume', { replication_source: src(vol) }),
                 S.OK, `PromoteVolume in b #${k}`);
    expectCode(await callB('ResyncVolume', { replication_source: src(vol) }),
               S.FAILED_PRECONDITION, 'ResyncVolume of the primary in b');
    // Resync of the demoted copy in a (nothing diverged): ready, repeatedly.
    r = null;
    for (let i = 0; i < 100; i++) {
      r = await call('ResyncVolume', { replication_source: src(vol) });
      if (r.err || r.res.ready) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    ok(r && !r.err && r.res.ready === true,
       `ResyncVolume of the demoted copy in a: ready (${JSON.stringify(r && (r.res || r.err.details))})`);
    r = await call('ResyncVolume', { replication_source: src(vol) });
    ok(!r.err && r.res.ready === true, 'ResyncVolume repeated: ready');
    r = await callB('GetVolumeReplicationInfo', { replication_source: src(vol) });
    ok(!r.err && r.res.status !== 'ERROR',
       `GetVolumeReplicationInfo in b (${JSON.stringify(r.res || r.err.details)})`);
    // And back: demote b, promote a (graceful).
    expectCode(await callB('DemoteVolume', { replication_source: src(vol) }),
               S.OK, 'DemoteVolume in b');
    expectCode(await call('PromoteVolume', { replication_source: src(vol) }),
               S.OK, 'PromoteVolume in a after demote in b');
    expectCode(await call('PromoteVolume', { replication_source: src(vol) }),
               S.OK, 'PromoteVolume in a repeated');
    // Disable, twice: back to not replicated.
    for (const k of [1, 2])
      expectCode(await call('DisableVolumeReplication',
                            { replication_source: src(vol) }),
                 S.OK, `DisableVolumeReplication #${k}`);
    expectCode(await call('GetVolumeReplicationInfo',
                          { replication_source: src(vol) }),
               S.FAILED_PRECONDITION, 'GetVolumeReplicationInfo after disable');
    console.log(`# ${failed} failed`);
    process.exit(failed ? 1 : 0);
  })();
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
