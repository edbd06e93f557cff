#!/bin/bash
# t0200-csi-proto-compat: proto/csi.proto is wire-compatible with the CSI
# v1.12.0 reference (tests/spec/csi/csi.proto, a verbatim copy of the
# upstream file: tests/spec/README.md; TANDEM_CSI_REF_PROTO names another
# one).  It never skips: a missing reference is a failure.  Both files are compiled
# with protoc into descriptor sets, decoded to text with
# --decode=google.protobuf.FileDescriptorSet (no python protobuf module
# needed), and every message, field (name, number, type, label, type_name,
# oneof), enum value and service method of ours is compared with the
# reference.  A message or enum we define must carry every field/value the
# reference has, so nothing a CO sends is silently dropped.
set -u
. "$(dirname "$0")/lib.sh"
ref=${TANDEM_CSI_REF_PROTO:-tests/spec/csi/csi.proto}
[ -f "$ref" ] || fail "reference csi.proto not found ($ref)"
need_tools protoc python3
e2e_scratch t0200

mkdir -p "$tmp/ours" "$tmp/ref"
cp proto/csi.proto "$tmp/ours/csi.proto"
cp "$ref" "$tmp/ref/csi.proto"
for side in ours ref; do
    protoc -I"$tmp/$side" -I/usr/include --descriptor_set_out="$tmp/$side.pb" \
        "$tmp/$side/csi.proto" 2>"$tmp/$side.err" ||
        fail "protoc $side: $(cat "$tmp/$side.err")"
    protoc -I/usr/include --decode=google.protobuf.FileDescriptorSet \
        google/protobuf/descriptor.proto <"$tmp/$side.pb" >"$tmp/$side.txt" ||
        fail "decode $side descriptor set"
done
ok "both protos compile"

cat >"$tmp/cmp.py" <<'PY'
import sys

def parse(path):
    """Protobuf text format -> nested dict of lists (enough for descriptors)."""
    root = {}
    stack = [root]
    for raw in open(path):
        line = raw.strip()
        if not line:
            continue
        if line == '}':
            stack.pop()
        elif line.endswith('{'):
            node = {}
            stack[-1].setdefault(line[:-1].strip(), []).append(node)
            stack.append(node)
        else:
            k, v = line.split(':', 1)
            v = v.strip()
            if v.startswith('"'):
                v = v[1:-1]
            stack[-1].setdefault(k.strip(), []).append(v)
    return root

def one(d, k, default=''):
    return d.get(k, [default])[0]

def collect(fd):
    msgs, enums = {}, {}
    pkg = one(fd, 'package')
    def walk_enum(e, prefix):
        enums[prefix + '.' + one(e, 'name')] = {
            one(v, 'name'): one(v, 'number') for v in e.get('value', [])}
    def walk_msg(m, prefix):
        full = prefix + '.' + one(m, 'name')
        oneofs = [one(o, 'name') for o in m.get('oneof_decl', [])]
        fields = {}
        for f in m.get('field', []):
            oi = f.get('oneof_index')
            fields[one(f, 'number')] = dict(
                name=one(f, 'name'), type=one(f, 'type'),
                label=one(f, 'label'), type_name=one(f, 'type_name'),
                oneof=oneofs[int(oi[0])] if oi else '',
                proto3_optional=one(f, 'proto3_optional', 'false'))
        map_entry = any(one(o, 'map_entry', 'false') == 'true'
                        for o in m.get('options', []))
        msgs[full] = dict(fields=fields, map_entry=map_entry)
        for n in m.get('nested_type', []):
            walk_msg(n, full)
        for e in m.get('enum_type', []):
            walk_enum(e, full)
    for m in fd.get('message_type', []):
        walk_msg(m, '.' + pkg)
    for e in fd.get('enum_type', []):
        walk_enum(e, '.' + pkg)
    svcs = {}
    for s in fd.get('service', []):
        svcs[one(s, 'name')] = {
            one(m, 'name'): (one(m, 'input_type'), one(m, 'output_type'),
                             one(m, 'client_streaming', 'false'),
                             one(m, 'server_streaming', 'false'))
            for m in s.get('method', [])}
    return pkg, msgs, enums, svcs

ours = collect(parse(sys.argv[1])['file'][0])
ref = collect(parse(sys.argv[2])['file'][0])
errs = []
if ours[0] != ref[0]:
    errs.append('package %s != %s' % (ours[0], ref[0]))
nfields = nvalues = 0
for name, m in ours[1].items():
    r = ref[1].get(name)
    if r is None:
        errs.append('message %s not in the reference' % name)
        continue
    if m['map_entry'] != r['map_entry']:
        errs.append('%s: map_entry differs' % name)
    for num, f in m['fields'].items():
        nfields += 1
        rf = r['fields'].get(num)
        if rf is None:
            errs.append('%s: field %s (#%s) not in the reference' % (name, f['name'], num))
        elif f != rf:
            errs.append('%s #%s: ours %s, reference %s' % (name, num, f, rf))
    for num, rf in r['fields'].items():
        if num not in m['fields']:
            errs.append('%s: reference field %s (#%s) missing' % (name, rf['name'], num))
for name, e in ours[2].items():
    r = ref[2].get(name)
    if r is None:
        errs.append('enum %s not in the reference' % name)
        continue
    nvalues += len(e)
    if e != r:
        errs.append('enum %s: ours %s, reference %s' % (name, e, r))
for sname, meths in ours[3].items():
    r = ref[3].get(sname)
    if r is None:
        errs.append('service %s not in the reference' % sname)
    elif meths != r:
        errs.append('service %s: methods differ: ours %s, reference %s' % (sname, meths, r))
for sname in ('Identity', 'Controller', 'Node'):
    if sname not in ours[3]:
        errs.append('service %s missing' % sname)
for e in errs:
    print('  ' + e)
print('  compared %d messages, %d fields, %d enums, %d enum values, %d services'
      % (len(ours[1]), nfields, len(ours[2]), nvalues, len(ours[3])))
sys.exit(1 if errs else 0)
PY
python3 "$tmp/cmp.py" "$tmp/ours.txt" "$tmp/ref.txt" ||
    fail "descriptor comparison (see above)"
ok "messages, fields, enums and services match the reference"

# The comparison itself must be able to fail: a renumbered field and a
# changed type are caught.
for mut in 's/string vendor_version = 2;/string vendor_version = 4;/' \
           's/int64 limit_bytes = 2;/int32 limit_bytes = 2;/'; do
    sed "$mut" proto/csi.proto >"$tmp/ours/csi.proto"
    cmp -s proto/csi.proto "$tmp/ours/csi.proto" && fail "mutation $mut did not apply"
    protoc -I"$tmp/ours" -I/usr/include --descriptor_set_out="$tmp/bad.pb" \
        "$tmp/ours/csi.proto" || fail "protoc mutated"
    protoc -I/usr/include --decode=google.protobuf.FileDescriptorSet \
        google/protobuf/descriptor.proto <"$tmp/bad.pb" >"$tmp/bad.txt"
    if python3 "$tmp/cmp.py" "$tmp/bad.txt" "$tmp/ref.txt" >"$tmp/bad.out"; then
        fail "mutation $mut went unnoticed"
    fi
    ok "mutation caught: $(grep -m1 -v compared "$tmp/bad.out" | sed 's/^ *//')"
done
echo "1..$n"
