#!/usr/bin/env bash
# deploy/build-static.sh: static (musl) release binaries of vip for
# x86_64 and aarch64, the inputs of deploy/Dockerfile, then proof that they
# start: the x86_64 one natively, the aarch64 one under qemu-user
# (`vip --version`, `vip manifest pod`, and the same pod from both).
#
#   bash deploy/build-static.sh            # writes target/dist/vip-amd64, target/dist/vip-arm64
#   OUT=/some/dir bash deploy/build-static.sh
#
# Not run by CI (two LTO release builds take several minutes on 2 cores).
# Needs root for apt-get when the Debian packages below are missing.
#
# How the cross build works on Debian 12: rustup's musl targets ship musl's
# libc.a and start files (self-contained), so a linker only has to drive
# the link: gcc-aarch64-linux-gnu's gcc for aarch64, the host's cc for
# x86_64. ring's C and assembly are compiled by musl-gcc (musl-tools) and
# aarch64-linux-gnu-gcc (CC_<target>); musl targets link statically by
# default (+crt-static), and the script checks the result is static.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$PWD/target/dist}
mkdir -p "$out"

need=()
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v file >/dev/null || need+=(file)
# etcd-client (vip-etcd) generates its gRPC code with protoc at build time.
command -v protoc >/dev/null || need+=(protobuf-compiler)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl >/dev/null

# x86_64: the host's cc links (rustc adds musl's self-contained start files
# and libc.a); musl-gcc as the *linker* would make a dynamic PIE.
export CC_x86_64_unknown_linux_musl=musl-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

# The production binary: without the `demo` feature (the namespace lab and
# the API-server stand-in), where vip-bin has one.
features=()
if grep -q '^demo *=' vip-bin/Cargo.toml; then features=(--no-default-features); fi

for pair in x86_64-unknown-linux-musl:amd64 aarch64-unknown-linux-musl:arm64; do
  target=${pair%%:*} arch=${pair##*:}
  t0=$(date +%s)
  cargo build -q --release --locked -p vip-bin --bin vip "${features[@]}" --target "$target"
  t1=$(date +%s)
  cp "$target_dir/$target/release/vip" "$out/vip-$arch"
  info=$(file -b "$out/vip-$arch")
  case "$info" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) echo "vip-$arch is not static: $info" >&2 && exit 1 ;;
  esac
  printf '%-28s %4ss  %9s bytes  %s\n' "$target" "$((t1 - t0))" "$(stat -c %s "$out/vip-$arch")" "$info"
done

brief=(manifest pod --distribution k3s --vip-address 192.168.20.140 --vip-interface end0 --vip-leasename kube-vip-cp)
echo "--- x86_64, native"
"$out/vip-amd64" --version
"$out/vip-amd64" "${brief[@]}" >"$out/pod-amd64.yaml"
echo "--- aarch64, $(qemu-aarch64-static --version | head -1)"
qemu-aarch64-static "$out/vip-arm64" --version
qemu-aarch64-static "$out/vip-arm64" "${brief[@]}" | tee "$out/pod-arm64.yaml"
cmp "$out/pod-amd64.yaml" "$out/pod-arm64.yaml"
echo "--- both architectures print the same pod"
rm -f "$out/pod-amd64.yaml" "$out/pod-arm64.yaml"
