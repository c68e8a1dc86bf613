#!/usr/bin/env bash
# Builds the native library and copies it to where the JVM side loads it from.
#
#   dev/build-native.sh PROFILE OUTDIR
#
# PROFILE is a cargo profile (dev, release, ...). The library is copied, without debug
# info, to OUTDIR/linux-x86_64/libballista_spark.so (Maven passes target/classes, so the
# library ends up in the ballista-jvm jar). The copy is skipped when it is up to date.
#
# CARGO_TARGET_DIR defaults to a directory outside the clone, so that every clone and CI
# run on this machine reuses the compiled dependencies. Set BALLISTA_NATIVE_KEEP_DEBUG=1
# to copy the library with its debug info (line tables for panic backtraces).
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 PROFILE OUTDIR" >&2
  exit 2
fi
profile=$1
outdir=$2

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ballista-spark/target}

if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi

# Cargo puts the dev and test profiles into debug/, bench into release/, others by name.
case $profile in
  dev | test) profile_dir=debug ;;
  bench) profile_dir=release ;;
  *) profile_dir=$profile ;;
esac

echo "build-native: cargo build --profile $profile (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$repo_root" && cargo build --profile "$profile" -p ballista-spark-jni)

src=$CARGO_TARGET_DIR/$profile_dir/libballista_spark.so
dest_dir=$outdir/linux-x86_64
dest=$dest_dir/libballista_spark.so
if [[ ! -f $src ]]; then
  echo "build-native: $src not found after the build" >&2
  exit 1
fi

# The copy gets the source's modification time, so any difference (a rebuild, or a switch
# to another profile) means it is stale.
if [[ -f $dest && ! $src -nt $dest && ! $src -ot $dest ]]; then
  echo "build-native: $dest is up to date"
  exit 0
fi

mkdir -p "$dest_dir"
tmp=$(mktemp "$dest_dir/.libballista_spark.so.XXXXXX")
trap 'rm -f "$tmp"' EXIT
if [[ ${BALLISTA_NATIVE_KEEP_DEBUG:-0} == 1 ]]; then
  cp "$src" "$tmp"
else
  objcopy --strip-debug "$src" "$tmp"
fi
chmod 644 "$tmp"
touch -r "$src" "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
echo "build-native: copied $src to $dest ($(du -h "$dest" | cut -f1))"
