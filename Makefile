# sae-controller developer targets. `make test` is the one test command; CI (.ci/run) runs
# `make lint`, then `make test`.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
KUBECTL ?= kubectl
CRD_FILE := crds/saeinstancedeletions.sae.ops.dev.yaml
POLICY_CRD_FILE := crds/saedeletionpolicies.sae.ops.dev.yaml
# The crate version: the image tag `make image` builds and deploy/ installs (tests/packaging.rs keeps
# deploy/ equal to it).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DOCKER ?= docker
IMAGE ?= sae-controller

.PHONY: test lint bench liveness run install install-plugin deploy crds demo static static-check image version

# Provides etcd + kube-apiserver v1.20.2 (cached after the first build) and the Python venv with the
# official SAE SDK, proves the release binary is fully static (file/ldd/readelf), then runs every
# test target, and the OpenTelemetry test with the binary built `--features otel`.
test:
	assets="$$(.ci/install-control-plane.sh | tail -n 1)"; \
	export KUBEBUILDER_ASSETS="$$assets"; \
	export SAE_SDK_PYTHON="$$(.ci/setup-python.sh | tail -n 1)"; \
	hack/check-static.sh; \
	$(CARGO) test --all-targets; \
	$(CARGO) test --features otel --test otel

# Formatting, cargo-deny (licences, bans and sources as deny.toml says, advisories against the
# offline RustSec snapshot in ../shared/advisory-db), then clippy on every target and feature with
# warnings as errors and the [lints] table of Cargo.toml; the quick checks first. .ci/install-lint-tools.sh builds cargo-deny
# once into ~/.cache/sae-controller/tools and extracts the snapshot (about 3 minutes cold, instant
# after). `cargo fetch` first: `--offline` (which keeps cargo-deny from fetching the database) also
# stops cargo metadata from downloading the crates of other platforms that clippy did not need.
lint:
	tools="$$(.ci/install-lint-tools.sh | tail -n 1)"; \
	export PATH="$$tools:$$PATH"; \
	$(CARGO) fmt --check; \
	$(CARGO) fetch --quiet; \
	$(CARGO) deny --offline check --hide-inclusion-graph licenses bans sources advisories; \
	$(CARGO) clippy --all-targets --all-features -- -D warnings

# Signing and client->simulator round-trip figures (not part of `make test`).
# Then the controller end to end (tests/bench_controller.rs, ignored by `make test`): 1,000 objects
# over 50 apps, 200 on one app, a start over 10,000 finished objects, and 1,000 objects over 200
# AccessKeys (beside one key, and with one noisy key; three rounds, compared by medians); prints
# tables and one JSON line. About 15 minutes (SAE_BENCH_ONLY=classic or =tenants runs one half).
bench:
	$(CARGO) run --release --example bench_sae
	assets="$$(.ci/install-control-plane.sh | tail -n 1)"; \
	export KUBEBUILDER_ASSETS="$$assets"; \
	$(CARGO) test --release --test bench_controller -- --ignored --nocapture

# The full-size liveness run of tests/liveness.rs (ignored by `make test`): 80 objects on 80 apps
# behind 60 SAE calls a minute, 20 % lost answers, 20 % failing change orders, 20 s change orders,
# 5 SIGKILLs; every object must end within 6 minutes with what SAE did; then the same with 40 %
# lost answers (where strict priority once ended no object at all). About 12 minutes.
liveness:
	assets="$$(.ci/install-control-plane.sh | tail -n 1)"; \
	export KUBEBUILDER_ASSETS="$$assets"; \
	$(CARGO) test --test liveness -- --ignored --nocapture --test-threads 1 full_size_quota_pressure

# Runs the controller against the current kubeconfig context (install the CRD first: `make install`).
run:
	$(CARGO) run --

# --validate=false: kubectl's client-side check rejects the CRD's CEL rule on API servers < 1.25.
install:
	$(KUBECTL) apply --validate=false -k crds/

# The kubectl plugin (`kubectl sae …`): `kubectl-sae` into cargo's bin directory (~/.cargo/bin),
# which must be on PATH for kubectl to find it. PREFIX=/usr/local installs into /usr/local/bin.
install-plugin:
	$(CARGO) install --locked --path . --bin kubectl-sae $(if $(PREFIX),--root $(PREFIX))

deploy:
	$(KUBECTL) apply --validate=false -k deploy/

crds:
	$(CARGO) run -q -- crd > $(CRD_FILE).tmp || { rm -f $(CRD_FILE).tmp; exit 1; }
	mv $(CRD_FILE).tmp $(CRD_FILE)
	$(CARGO) run -q -- crd --policy > $(POLICY_CRD_FILE).tmp || { rm -f $(POLICY_CRD_FILE).tmp; exit 1; }
	mv $(POLICY_CRD_FILE).tmp $(POLICY_CRD_FILE)

# A local API server, the SAE simulator seeded with demo-app, the controller, and deploy/samples.
demo:
	hack/demo.sh

# Fully static release binary in target/static (glibc libc.a, no musl target needed), checked with
# file/ldd/readelf and run in an empty root; the Dockerfile runs the same script. Not part of
# `make test`: a cold release build takes several minutes.
static-check:
	hack/check-static.sh

# Only the build, no checks (the binary lands in target/static/<arch>-unknown-linux-gnu/release/).
static:
	hack/check-static.sh --build-only

# The image deploy/ runs, tagged with the crate version and labelled with the git commit (the build
# context has no .git, so the commit is passed in; the binary reports it in --version and
# sae_build_info).
image:
	$(DOCKER) build \
	  --build-arg SAE_CONTROLLER_GIT_COMMIT="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
	  -t $(IMAGE):$(VERSION) .

version:
	@echo $(VERSION)
