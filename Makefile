# Tessera: `make demo` to see it work, `make test` to check it (README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
IMAGE ?= ghcr.io/tessera-sched/tessera:$(VERSION)
LOCK := requirements/image.lock
KUSTOMIZATION ?= manifests/base/kustomization.yaml

.PHONY: install demo test lint unit bench soak map clean image lock manifests browser

install: $(STAMP)

# The UI tests (tests/test_ui_browser.py) drive Debian's chromium through Playwright; nothing is
# downloaded by Playwright itself. Installed here where missing (CI starts from a clean machine).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { command -v apt-get >/dev/null 2>&1 && (apt-get update -q && apt-get install -y -q chromium) \
		|| echo "make browser: $(CHROMIUM) missing and apt-get could not install chromium; the browser tests will skip" >&2; }

# PYTHONWARNINGS: setuptools explains editable installs at length on every install; nothing to act on.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/tessera simulate --cluster examples/cluster.yaml --workload examples/workload.yaml

lint: install
	$(BIN)/ruff check allocator topology scheduler tests bench
	$(BIN)/mypy

unit: install browser
	$(BIN)/pytest

test: lint unit

bench: install
	$(BIN)/python -m bench.run

soak: install  # the live properties with many more examples and longer workloads (several minutes)
	TESSERA_SOAK=1 $(BIN)/pytest tests/test_live_properties.py tests/test_kill9.py

map: install  # the README's picture
	$(BIN)/tessera simulate --cluster examples/topology/cluster.yaml --workload examples/topology/workload.yaml \
		--map docs/topology-map.svg > /dev/null

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

image:  # the container image IMAGE (default ghcr.io/tessera-sched/tessera:VERSION), labelled with pyproject.toml's version
	@command -v docker >/dev/null 2>&1 || { echo "make image: docker is not installed here. Elsewhere: docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) ." >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make image: docker cannot reach a daemon here (docker info fails). Elsewhere: docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) ." >&2; exit 1; }
	DOCKER_BUILDKIT=1 docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) -t $(IMAGE) .

lock: install  # requirements/image.lock: the image's dependencies, pinned as installed in .venv
	$(BIN)/python -m tests.test_manifests lock $(LOCK)

# The one place the manifests take the image from: make manifests IMAGE=registry/tessera:tag (or @sha256:...)
manifests:
	@image='$(IMAGE)'; \
	case "$$image" in *[!A-Za-z0-9._:/@-]*|"") echo "make manifests: IMAGE='$$image' is not an image reference" >&2; exit 2;; esac; \
	name="$${image%%@*}"; last="$${name##*/}"; \
	case "$$last" in *:*) tag="$${last##*:}"; name="$${name%:*}";; *) tag="";; esac; \
	case "$$image" in *@*) ref="digest: $${image#*@}";; *) ref="newTag: \"$$tag\"";; esac; \
	if [ "$$ref" = 'newTag: ""' ]; then echo "make manifests: IMAGE=$$image needs a tag (name:tag) or a digest (name@sha256:...)" >&2; exit 2; fi; \
	sed -e "s|^  newName: .*|  newName: $$name|" -e "s|^  newTag: .*|  $$ref|" -e "s|^  digest: .*|  $$ref|" \
		$(KUSTOMIZATION) > $(KUSTOMIZATION).tmp || { rm -f $(KUSTOMIZATION).tmp; exit 1; }; \
	if ! grep -qx "  newName: $$name" $(KUSTOMIZATION).tmp || ! grep -qx "  $$ref" $(KUSTOMIZATION).tmp; then \
		rm -f $(KUSTOMIZATION).tmp; echo "make manifests: $(KUSTOMIZATION) has no images: entry with newName and newTag (or digest)" >&2; exit 1; fi; \
	mv $(KUSTOMIZATION).tmp $(KUSTOMIZATION); \
	echo "$(KUSTOMIZATION): image $$name, $$ref"
