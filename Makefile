# botify: two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install demo test lint fmt bench clean user-flow compose-test

install: $(STAMP) ## create .venv and install sim, botify and the dev tools

$(STAMP): sim/pyproject.toml botify/pyproject.toml requirements-dev.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e ./sim -e "./botify[offline,train,spark]" -r requirements-dev.txt
	@touch $@

demo: install ## world -> service on embedded Redis -> one simulated A/B day -> report
	$(BIN)/python -m botify demo

test: install ## lint + the whole test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The compose stack on a real Docker engine (root: installs docker.io, runs its own dockerd,
# stops it and restores the host at the end). Plain python3: the driver needs only the stdlib.
compose-test: ## docker compose build/up/scale/simulate/faults/down, as in the README
	$(PY) deploy/compose_test.py

lint: install
	$(BIN)/ruff check .

fmt: install
	$(BIN)/ruff check --fix .

user-flow: user-flow.png ## render the session-flow diagram (needs Graphviz `dot`)

user-flow.png: docs/user-flow.dot
	dot -Tpng -Gdpi=110 $< -o $@

clean:
	rm -rf $(VENV) data logs reports run .pytest_cache .ruff_cache

# Slide decks (slides/*.md) -> self-contained HTML in slides/build/, figures made by the project.
.PHONY: slides slides-figures slides-html

slides: install ## figures (simulator + A/B analysis), then the decks -> slides/build/*.html
	$(BIN)/python slides/figures.py --out slides/build/figures
	$(BIN)/python slides/render.py --figures slides/build/figures --out slides/build

slides-figures: install ## only the figures and tables of the decks
	$(BIN)/python slides/figures.py --out slides/build/figures

slides-html: install ## only re-render the decks (after editing slides/*.md)
	$(BIN)/python slides/render.py --figures slides/build/figures --out slides/build
