# shellcheck shell=bash
# lib-deploy.sh: render deploy/'s kustomize overlays for the deploy tests
# (t0220, t0221, t0420); sourced by them from the repo root, not a test
# itself.  Their YAML checks share tests/e2e/deploy_lib.py.
#
#   deploy_render DIR   render every overlay deploy/regions/R (each dir with
#                       a kustomization.yaml) to DIR/R.yaml (the renderer's
#                       stderr, e.g. deprecation warnings, to DIR/R.err);
#                       sets DEPLOY_REGIONS ("a b") and DEPLOY_RENDERER (the
#                       renderer's version line).  Returns 1 with the reason
#                       in deploy_err when there is no renderer, no overlay
#                       or one does not render.
#
# The renderer is `kubectl kustomize` ($TANDEM_KUBECTL, else kubectl on
# PATH): Debian 12's package kubernetes-client (kubectl 1.20, kustomize
# v2.0.3), which scripts/install-deps.sh installs when no kubectl with a
# kustomize subcommand is there; any later kubectl renders the same
# overlays.  A missing renderer is a failure, not a skip: it is one
# apt-get away on every machine the tests run on.

deploy_render() { # DIR
    local dir=$1 k r f
    deploy_err=""
    DEPLOY_REGIONS=""
    k=${TANDEM_KUBECTL:-kubectl}
    if ! command -v "$k" >/dev/null 2>&1 || ! "$k" kustomize --help >/dev/null 2>&1; then
        deploy_err="no renderer: '$k kustomize' is not there (scripts/install-deps.sh installs Debian's kubernetes-client; TANDEM_KUBECTL names another kubectl)"
        return 1
    fi
    DEPLOY_RENDERER="$k $("$k" version --client 2>/dev/null | head -1 |
        sed -E 's/.*GitVersion:"([^"]+)".*/\1/; s/^Client Version: //')"
    mkdir -p "$dir" || { deploy_err="cannot make $dir"; return 1; }
    for f in deploy/regions/*/kustomization.yaml; do
        [ -f "$f" ] || continue
        r=${f%/kustomization.yaml}; r=${r##*/}
        if ! "$k" kustomize "deploy/regions/$r" >"$dir/$r.yaml" 2>"$dir/$r.err"; then
            deploy_err="deploy/regions/$r does not render: $(grep -v '^# Warning' "$dir/$r.err" | head -3 | tr '\n' ' ')"
            return 1
        fi
        DEPLOY_REGIONS="$DEPLOY_REGIONS $r"
    done
    DEPLOY_REGIONS=${DEPLOY_REGIONS# }
    [ -n "$DEPLOY_REGIONS" ] || { deploy_err="no overlay in deploy/regions/"; return 1; }
    return 0
}
