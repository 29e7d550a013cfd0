#!/usr/bin/env bash
# bart-chinese-pretrain launcher: sets up a virtual environment on first use, then runs a stage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${BART_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
# torch is installed on its own so that a build the user already has (a CUDA one) is kept.
# CPU-only machine: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu ./launch.sh demo
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

usage() {
  cat <<'EOF'
usage: ./launch.sh COMMAND [ARGS...]

  demo [--steps N] [--max-chars N]
                        set up, then run the whole pipeline on the embedded corpus (CPU, minutes):
                        vocab -> shards -> train configs/tiny.yaml -> HF export -> fill-in samples
  test [--fast] [PYTEST ARGS]
                        set up, then run the test suite (and the transformers 4.x export check);
                        --fast: the unit tree only (pytest tests/unit: trains nothing), about 40 s
  prep ARGS             python -m data_prep prepare ARGS
  data ARGS             python -m data_prep ARGS (vocab, prepare, noise, inspect, merge)
  train ARGS            accelerate launch -m pretrain ARGS
  report RUN_DIR        python -m pretrain.report RUN_DIR
  tensorboard [DIR]     serve the TensorBoard of the runs under DIR (default: runs/)
  setup                 only create/update the virtual environment

environment: BART_VENV (default .venv), TORCH_SPEC (default torch==2.13.0), TORCH_INDEX_URL,
             DEMO_DIR (default runs/demo)
EOF
}

log() { printf '\033[1m[launch]\033[0m %s\n' "$*" >&2; }

# Create the venv (reusing a torch the base interpreter already has) and install what is missing.
setup() {
  local extras="${1:-}"
  if [[ ! -x "$PY" ]]; then
    local base="${PYTHON:-python3}"
    command -v "$base" >/dev/null || { echo "launch.sh: error: python3 not found" >&2; exit 2; }
    local flags=()
    if "$base" -c "import torch" 2>/dev/null; then
      log "reusing the torch of $base ($("$base" -c 'import torch; print(torch.__version__)'))"
      flags+=(--system-site-packages)
    fi
    log "creating virtual environment $VENV"
    "$base" -m venv "${flags[@]}" "$VENV"
  fi
  if ! "$PY" -c "import torch" 2>/dev/null; then
    log "installing $TORCH_SPEC"
    "$PY" -m pip install -q --disable-pip-version-check ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
  fi
  local stamp="$VENV/.installed-$(cksum < "$ROOT/pyproject.toml" | cut -d' ' -f1)${extras:+-$extras}"
  if [[ ! -f "$stamp" ]]; then
    log "installing bart-chinese-pretrain${extras:+[$extras]} and its dependencies"
    "$PY" -m pip install -q --disable-pip-version-check -e "$ROOT${extras:+[$extras]}"
    touch "$stamp"
  fi
}

# transformers 4.x in a venv of its own: the seed card's Text2TextGenerationPipeline snippet.
setup_hf4() {
  local venv="$ROOT/.venv-hf4"
  if [[ ! -f "$venv/.ready" ]]; then
    log "creating $venv (transformers 4.x, for the export compatibility check)"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
      ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "transformers>=4.46,<5" safetensors
    touch "$venv/.ready"
  fi
}

cmd_test() {
  local args=() fast=0
  for arg in "$@"; do
    if [[ "$arg" == "--fast" ]]; then fast=1; else args+=("$arg"); fi
  done
  setup test
  cd "$ROOT"
  export BART_E2E_EXPORT="${BART_E2E_EXPORT:-$ROOT/runs/test-e2e-export}"
  rm -rf "$BART_E2E_EXPORT"
  local rc=0
  "$PY" -m ruff check "$ROOT" || rc=$?
  if (( fast )); then
    "$PY" -m pytest tests/unit "${args[@]}" || rc=$?
    return $rc
  fi
  "$PY" -m pytest "${args[@]}" || rc=$?
  if [[ -d "$BART_E2E_EXPORT" ]]; then
    setup_hf4
    log "transformers 4.x: seed card snippet on $BART_E2E_EXPORT"
    "$ROOT/.venv-hf4/bin/python" "$ROOT/tests/export_compat_4x.py" "$BART_E2E_EXPORT" || rc=$?
  else
    log "no end-to-end export was produced: transformers 4.x check skipped"
  fi
  return $rc
}

cmd_demo() {
  setup demo
  cd "$ROOT"
  exec "$PY" -m pretrain.demo --dir "${DEMO_DIR:-$ROOT/runs/demo}" "$@"
}

main() {
  [[ $# -ge 1 ]] || { usage; exit 2; }
  local cmd="$1"; shift
  case "$cmd" in
    -h|--help|help) usage ;;
    setup) setup test ;;
    demo) cmd_demo "$@" ;;
    test) cmd_test "$@" ;;
    prep) setup; exec "$PY" -m data_prep prepare "$@" ;;
    data) setup; exec "$PY" -m data_prep "$@" ;;
    train) setup; exec "$VENV/bin/accelerate" launch -m pretrain "$@" ;;
    report) setup; exec "$PY" -m pretrain.report "$@" ;;
    tensorboard)
      setup
      exec "$VENV/bin/tensorboard" --logdir "${1:-$ROOT/runs}" --samples_per_plugin "scalars=100000,text=1000" ;;
    *) echo "launch.sh: error: unknown command '$cmd' (try ./launch.sh --help)" >&2; exit 2 ;;
  esac
}

main "$@"
