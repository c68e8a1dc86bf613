# Shared settings and set-up steps of the project's scripts; source it, do not run it.
#
# Everything built or installed lives outside the clone, under $BALLISTA_HOME (default
# ~/.cache/ballista-spark), so that every clone and CI run on a machine reuses it:
#   target/   Cargo's target directory (compiled dependencies are the slow part)
#   venv/     Python virtualenv with pyspark (spark-submit) of the project's Spark version
#   tools/    tpchgen-cli, pinned
#   tpch/     generated TPC-H data, one directory per scale factor
# Maven keeps its repository in ~/.m2 as usual.

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BALLISTA_HOME=${BALLISTA_HOME:-$HOME/.cache/ballista-spark}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$BALLISTA_HOME/target}
VENV=$BALLISTA_HOME/venv
TPCHGEN_VERSION=4.0.0
PYARROW_VERSION=26.0.1
MATPLOTLIB_VERSION=3.9.4
TPCHGEN=$BALLISTA_HOME/tools/bin/tpchgen-cli
# The Spark version is set once, in the root pom.xml.
SPARK_VERSION=$(sed -n 's:.*<spark.version>\(.*\)</spark.version>.*:\1:p' "$REPO_ROOT/pom.xml" | head -n 1)
PLUGIN_JAR_GLOB="$REPO_ROOT/spark-plugin/target/ballista-spark-3.5_2.12-*.jar"

log() { printf '\n==> %s\n' "$*"; }

require_toolchain() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
  fi
  local missing=()
  for tool in cargo java mvn python3 objcopy; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "missing tools: ${missing[*]} (Rust, Java 17, Maven, Python 3 and binutils are needed)" >&2
    exit 1
  fi
  mkdir -p "$BALLISTA_HOME"
}

# A virtualenv with pyspark $SPARK_VERSION, pyarrow and matplotlib; puts its spark-submit on
# PATH and points SPARK_HOME at its Spark distribution.
ensure_pyspark() {
  if [[ ! -x $VENV/bin/python ]]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c "import pyspark, sys; sys.exit(pyspark.__version__ != '$SPARK_VERSION')" 2>/dev/null; then
    log "installing pyspark==$SPARK_VERSION"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "pyspark==$SPARK_VERSION"
  fi
  if ! "$VENV/bin/python" -c "import pyarrow, sys; sys.exit(pyarrow.__version__ != '$PYARROW_VERSION')" 2>/dev/null; then
    log "installing pyarrow==$PYARROW_VERSION (Arrow Flight client of the shuffle tests)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "pyarrow==$PYARROW_VERSION"
  fi
  if ! "$VENV/bin/python" -c "import matplotlib, sys; sys.exit(matplotlib.__version__ != '$MATPLOTLIB_VERSION')" 2>/dev/null; then
    log "installing matplotlib==$MATPLOTLIB_VERSION (charts of bench/tpch_bench.py)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION"
  fi
  export PATH=$VENV/bin:$PATH
  export PYSPARK_PYTHON=$VENV/bin/python
  # The Spark distribution inside pyspark: local-cluster executors start from it.
  SPARK_HOME=$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
  export SPARK_HOME
}

ensure_tpchgen() {
  if [[ ! -x $TPCHGEN ]] || [[ $("$TPCHGEN" --version 2>/dev/null) != *"$TPCHGEN_VERSION"* ]]; then
    log "installing tpchgen-cli $TPCHGEN_VERSION (a few minutes, once)"
    cargo install tpchgen-cli --version "$TPCHGEN_VERSION" --locked --root "$BALLISTA_HOME/tools"
  fi
}

# tpch_data SCALE_FACTOR: generates the TPC-H tables as Parquet (once) and prints the directory.
tpch_data() {
  local sf=$1
  local dir=$BALLISTA_HOME/tpch/sf$sf
  if [[ ! -f $dir/.complete ]]; then
    log "generating TPC-H scale factor $sf in $dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    "$TPCHGEN" parquet -s "$sf" --output-dir "$dir" >&2
    touch "$dir/.complete"
  fi
  echo "$dir"
}

plugin_jar() {
  # shellcheck disable=SC2086
  ls $PLUGIN_JAR_GLOB 2>/dev/null | grep -v original | head -n 1
}

# bench_main SCRIPT DEFAULT_SCALE_FACTOR TITLE [ARGS...]: what the bench/*.sh wrappers do.
# Generates the TPC-H data of --scale-factor (once), takes the plugin jar from --jar or the
# build, and runs bench/SCRIPT with --data, --jar, --scale-factor and ARGS.
bench_main() {
  local script=$1 scale_factor=$2 title=$3
  shift 3
  local args=("$@") jar="" i data
  for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
      -h | --help) exec "$VENV/bin/python" "$REPO_ROOT/bench/$script" --help ;;
      --scale-factor) scale_factor=${args[i + 1]:-$scale_factor} ;;
      --scale-factor=*) scale_factor=${args[i]#*=} ;;
      --jar) jar=${args[i + 1]:-} ;;
      --jar=*) jar=${args[i]#*=} ;;
    esac
  done
  jar=${jar:-$(plugin_jar)}
  if [[ -z $jar ]]; then
    echo "no plugin jar matches $PLUGIN_JAR_GLOB: build it first, with dev/demo.sh or" >&2
    echo "  mvn -B -ntp -q -DskipTests -Dnative.profile=release -pl spark-plugin -am install" >&2
    exit 1
  fi
  ensure_tpchgen
  data=$(tpch_data "$scale_factor")
  log "$title at scale factor $scale_factor"
  # ARGS last: a --jar or --scale-factor given there wins over these.
  exec "$VENV/bin/python" "$REPO_ROOT/bench/$script" --data "$data" --jar "$jar" \
    --scale-factor "$scale_factor" "$@"
}
