#!/usr/bin/env bash
# `make demo`: the whole product on this machine, no cloud account.
#
# Starts etcd + kube-apiserver (RBAC on), the SAE simulator seeded with a demo app, installs the CRD
# and RBAC from deploy/, runs the controller as its ServiceAccount, applies deploy/samples and shows the
# objects as they move. Everything lives in $DEMO_DIR (default .tmp/demo); processes stop on Ctrl-C,
# or at once with DEMO_EXIT=1 (used by CI-like checks).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEMO_DIR="${DEMO_DIR:-$PWD/.tmp/demo}"
rm -rf "$DEMO_DIR" && mkdir -p "$DEMO_DIR"
ASSETS="$(.ci/install-control-plane.sh | tail -n 1)"
KUBECTL="$(command -v kubectl || echo "$ASSETS/kubectl")"
cargo build -q --bins
BIN="${CARGO_TARGET_DIR:-target}/debug"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

ETCD_PORT=$(free_port); PEER_PORT=$(free_port); API_PORT=$(free_port); SIM_PORT=$(free_port)
echo "== starting etcd and kube-apiserver v1.20.2 in $DEMO_DIR"
"$ASSETS/etcd" --data-dir "$DEMO_DIR/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-cluster "default=http://127.0.0.1:$PEER_PORT" \
  >"$DEMO_DIR/etcd.log" 2>&1 &
pids+=($!)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$DEMO_DIR/sa.key" -out "$DEMO_DIR/sa.crt" -days 1 -subj /CN=sa 2>/dev/null
ADMIN_TOKEN=$(openssl rand -hex 16); CTRL_TOKEN=$(openssl rand -hex 16)
cat >"$DEMO_DIR/tokens.csv" <<CSV
$ADMIN_TOKEN,admin,admin,"system:masters"
$CTRL_TOKEN,system:serviceaccount:sae-system:sae-controller,sae-controller,"system:serviceaccounts,system:serviceaccounts:sae-system"
CSV
"$ASSETS/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" --bind-address=127.0.0.1 \
  --secure-port="$API_PORT" --cert-dir="$DEMO_DIR/certs" --token-auth-file="$DEMO_DIR/tokens.csv" \
  --authorization-mode=RBAC --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$DEMO_DIR/sa.crt" --service-account-signing-key-file="$DEMO_DIR/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 >"$DEMO_DIR/kube-apiserver.log" 2>&1 &
pids+=($!)
kubeconfig() {
  cat <<YAML
apiVersion: v1
kind: Config
clusters: [{name: demo, cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}}]
users: [{name: $1, user: {token: "$2"}}]
contexts: [{name: demo, context: {cluster: demo, user: $1, namespace: default}}]
current-context: demo
YAML
}
kubeconfig admin "$ADMIN_TOKEN" >"$DEMO_DIR/admin.kubeconfig"
kubeconfig sae-controller "$CTRL_TOKEN" >"$DEMO_DIR/controller.kubeconfig"
export KUBECONFIG="$DEMO_DIR/admin.kubeconfig"
for _ in $(seq 120); do "$KUBECTL" get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
"$KUBECTL" get --raw /readyz >/dev/null

echo "== installing the CRD, namespace and RBAC (kubectl apply -k deploy/)"
"$KUBECTL" apply --validate=false -k deploy/ >/dev/null
"$KUBECTL" wait --for=condition=Established crd/saeinstancedeletions.sae.ops.dev --timeout=60s >/dev/null

echo "== starting the SAE simulator on 127.0.0.1:$SIM_PORT (seed: hack/demo-seed.json)"
"$BIN/sae-simulator" --listen "127.0.0.1:$SIM_PORT" --seed hack/demo-seed.json --change-order-seconds 3 \
  >"$DEMO_DIR/simulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$SIM_PORT/_sim/healthz" >/dev/null && break; sleep 0.2; done

echo "== starting sae-controller as system:serviceaccount:sae-system:sae-controller"
KUBECONFIG="$DEMO_DIR/controller.kubeconfig" \
  ALIBABA_CLOUD_ACCESS_KEY_ID=LTAIdemoAccessKey ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-access-key-secret \
  "$BIN/sae-controller" --sae-endpoint "http://127.0.0.1:$SIM_PORT" \
  --metrics-bind-address "127.0.0.1:$(free_port)" --health-probe-bind-address "127.0.0.1:$(free_port)" \
  >"$DEMO_DIR/controller.log" 2>&1 &
pids+=($!)

echo "== applying deploy/samples"
"$KUBECTL" apply -k deploy/samples/
echo
for _ in $(seq 60); do
  [[ -t 1 ]] && { clear 2>/dev/null || true; }
  echo "kubectl get saedel -o wide   ($(date +%T))"
  "$KUBECTL" get saedel -o wide
  pending=$("$KUBECTL" get saedel -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -cvE '^(Succeeded|Failed)$' || true)
  [[ "$pending" == 0 ]] && break
  sleep 2
done
echo
"$KUBECTL" get saedel -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,REASON:.status.conditions[?(@.type=="Ready")].reason,MESSAGE:.status.message'
cat <<TXT

The control plane, simulator and controller keep running until you press Ctrl-C. Try, in another shell:
  export KUBECONFIG=$DEMO_DIR/admin.kubeconfig
  kubectl explain saeinstancedeletion.spec.retry
  kubectl describe saedel demo-app-scale-in         # status, conditions and events
  curl -s http://127.0.0.1:$SIM_PORT/_sim/ledger  # every call SAE (the simulator) received
  curl -s -XPOST http://127.0.0.1:$SIM_PORT/_sim/faults -d '{"appId":"demo-app","faults":[{"kind":"error","code":"Application.ChangerOrderRunning","times":2}]}'
  kubectl apply -f - <<<'{"apiVersion":"sae.ops.dev/v1alpha1","kind":"SaeInstanceDeletion","metadata":{"name":"try-me"},"spec":{"regionId":"cn-hangzhou","appId":"demo-app","instanceIds":["demo-app-instance-5"]}}'
Logs: $DEMO_DIR/*.log
TXT
[[ -n "${DEMO_EXIT:-}" ]] && exit 0
wait
