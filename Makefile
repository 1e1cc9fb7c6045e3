# botify: two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# pip without -q: it prints each package it collects, downloads and installs (the progress).
PIP     := $(BIN)/python -m pip install
# What each command installs: `make demo` only the service, the simulator and the analysis
# (botify[offline]); training mf/sasrec (torch, implicit), Spark and JupyterLab are extras
# installed by the targets that need them; `make install` (make test, CI) installs all.
EXTRAS_DEMO      := offline
EXTRAS_TRAIN     := offline,train
EXTRAS_SPARK     := offline,spark
EXTRAS_NOTEBOOKS := offline,notebooks
EXTRAS_ALL       := offline,train,spark,notebooks

.PHONY: install demo test lint fmt bench clean user-flow compose-test
.PHONY: install-demo install-train install-spark install-notebooks notebooks

install: $(STAMP) ## create .venv and install sim, botify with every extra and the dev tools

$(BIN)/python:
	@echo "==> [venv] creating $(VENV) with $(PY)"
	$(PY) -m venv $(VENV)
	@echo "==> [venv] upgrading pip, setuptools, wheel"
	$(BIN)/python -m pip install --upgrade pip setuptools wheel

$(STAMP): sim/pyproject.toml botify/pyproject.toml requirements-dev.txt | $(BIN)/python
	@echo "==> [install] sim, botify[$(EXTRAS_ALL)] and the dev tools (torch and pyspark included: about 2.3 GB)"
	$(PIP) -e ./sim -e "./botify[$(EXTRAS_ALL)]" -r requirements-dev.txt
	@touch $@ $(VENV)/.installed-demo $(VENV)/.installed-train $(VENV)/.installed-spark $(VENV)/.installed-notebooks
	@echo "==> [install] done: $(VENV)"

install-demo: $(VENV)/.installed-demo ## only what `make demo` needs: sim, botify[offline]
install-train: $(VENV)/.installed-train ## + training mf (implicit) and sasrec (torch, CPU)
install-spark: $(VENV)/.installed-spark ## + the Spark engine (pyspark; needs Java 17+)
install-notebooks: $(VENV)/.installed-notebooks ## + JupyterLab

$(VENV)/.installed-demo: sim/pyproject.toml botify/pyproject.toml | $(BIN)/python
	@echo "==> [install-demo] sim and botify[$(EXTRAS_DEMO)]: the service, the simulator, the analysis"
	$(PIP) -e ./sim -e "./botify[$(EXTRAS_DEMO)]"
	@touch $@

$(VENV)/.installed-train: sim/pyproject.toml botify/pyproject.toml | $(BIN)/python
	@echo "==> [install-train] sim and botify[$(EXTRAS_TRAIN)] (torch CPU, implicit)"
	$(PIP) -e ./sim -e "./botify[$(EXTRAS_TRAIN)]"
	@touch $@ $(VENV)/.installed-demo

$(VENV)/.installed-spark: sim/pyproject.toml botify/pyproject.toml | $(BIN)/python
	@echo "==> [install-spark] sim and botify[$(EXTRAS_SPARK)] (pyspark)"
	$(PIP) -e ./sim -e "./botify[$(EXTRAS_SPARK)]"
	@touch $@ $(VENV)/.installed-demo

$(VENV)/.installed-notebooks: sim/pyproject.toml botify/pyproject.toml | $(BIN)/python
	@echo "==> [install-notebooks] sim and botify[$(EXTRAS_NOTEBOOKS)] (JupyterLab)"
	$(PIP) -e ./sim -e "./botify[$(EXTRAS_NOTEBOOKS)]"
	@touch $@ $(VENV)/.installed-demo

demo: install-demo ## world -> service on embedded Redis -> simulated A/B days -> report
	$(BIN)/python -m botify demo

notebooks: install-notebooks ## JupyterLab on jupyter/, reading the newest run's logs (make demo first)
	$(BIN)/python jupyter/start.py

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
	rm -rf $(VENV) data logs reports run runs artifacts .pytest_cache .ruff_cache

# Slide decks (slides/*.md) -> self-contained HTML in slides/build/, figures made by the project.
.PHONY: slides slides-figures slides-html

slides: install ## figures (simulator + A/B analysis), then the decks -> slides/build/*.html
	$(BIN)/python slides/figures.py --out slides/build/figures
	$(BIN)/python slides/render.py --figures slides/build/figures --out slides/build

slides-figures: install ## only the figures and tables of the decks
	$(BIN)/python slides/figures.py --out slides/build/figures

slides-html: install ## only re-render the decks (after editing slides/*.md)
	$(BIN)/python slides/render.py --figures slides/build/figures --out slides/build
