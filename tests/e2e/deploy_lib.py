"""deploy_lib: reading rendered kustomize output for the deploy tests
(t0220, t0221, t0420; tests/e2e/lib-deploy.sh renders it).  Not a test.

load(path)            the documents of a rendered overlay (None dropped),
                      each checked to have apiVersion, kind and a name
find(docs, kind, name=None)  the documents of that kind (and name)
one(docs, kind, name=None)   exactly one such document, else AssertionError
containers(doc)       a workload's containers and initContainers
env_of(c, docs)       a container's environment as the kubelet would set
                      it: literal values, configMapKeyRef read from the
                      rendered ConfigMaps (AssertionError when the map or
                      key is missing and the ref is not optional), fieldRef
                      as '<fieldRef:PATH>'
expand(v, env)        Kubernetes' $(VAR) expansion in command/args
args_of(c, docs)      the container's args, expanded
flagmap(args)         {'--flag': value or True}
"""
import re
import yaml


def load(path):
    docs = []
    with open(path) as f:
        for d in yaml.safe_load_all(f):
            if d is None:
                continue
            for k in ('apiVersion', 'kind', 'metadata'):
                assert k in d, '%s: a document without %s' % (path, k)
            assert d['metadata'].get('name'), '%s: %s without a name' % (path, d['kind'])
            docs.append(d)
    return docs


def find(docs, kind, name=None):
    return [d for d in docs if d['kind'] == kind and
            (name is None or d['metadata']['name'] == name)]


def one(docs, kind, name=None):
    found = find(docs, kind, name)
    assert len(found) == 1, '%d %s%s (want exactly one)' % (
        len(found), kind, ' ' + name if name else '')
    return found[0]


def containers(doc):
    spec = doc['spec']['template']['spec']
    return spec.get('initContainers', []) + spec['containers']


def env_of(c, docs):
    env = {}
    for e in c.get('env', []):
        if 'value' in e:
            env[e['name']] = str(e['value'])
            continue
        vf = e.get('valueFrom', {})
        if 'configMapKeyRef' in vf:
            ref = vf['configMapKeyRef']
            cms = find(docs, 'ConfigMap', ref['name'])
            if cms and ref['key'] in cms[0].get('data', {}):
                env[e['name']] = str(cms[0]['data'][ref['key']])
            else:
                assert ref.get('optional'), '%s: env %s: ConfigMap %s key %s is not in the render' % (
                    c['name'], e['name'], ref['name'], ref['key'])
        elif 'fieldRef' in vf:
            env[e['name']] = '<fieldRef:%s>' % vf['fieldRef']['fieldPath']
        else:
            env[e['name']] = '<%s>' % ','.join(vf)
    return env


def expand(v, env):
    return re.sub(r'\$\((\w+)\)', lambda m: env.get(m.group(1), m.group(0)), v)


def args_of(c, docs):
    env = env_of(c, docs)
    return [expand(str(a), env) for a in c.get('args', [])]


def flagmap(args):
    out = {}
    for a in args:
        if a.startswith('--'):
            k, eq, v = a.partition('=')
            out[k] = v if eq else True
    return out
