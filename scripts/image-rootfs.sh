#!/usr/bin/env bash
# Assembles the runtime root filesystem of the stockcast image in DEST from a built binary:
#   scripts/image-rootfs.sh BINARY DEST
# the binary stripped, at /usr/local/bin/stockcast, its RUNPATH set to the bundled libxgboost (the build machine's
# path is gone); every shared library it loads (ldd: glibc, libstdc++, libgcc_s, libxgboost and its libgomp) at
# its path; a non-root user `stockcast` (uid/gid 10001) owning /data (the working directory) and /tmp; the bundled
# configs and datasets in /opt/stockcast (so `stockcast backtest --config /opt/stockcast/configs/backtest.toml`
# runs in the image). Used by scripts/image.sh (buildah, FROM scratch) and by the Containerfile's build stage.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1
dest=$2
command -v patchelf >/dev/null || { echo "image-rootfs: patchelf is required (Debian: apt-get install patchelf)" >&2; exit 1; }
mkdir -p "$dest"/{usr/local/bin,usr/lib/stockcast,etc,opt/stockcast,data,tmp}
install -m 755 "$bin" "$dest/usr/local/bin/stockcast"
strip --strip-unneeded "$dest/usr/local/bin/stockcast"
xgb=$(ldd "$bin" | awk '$1 == "libxgboost.so.3" {print $3}')
[ -n "$xgb" ] || { echo "image-rootfs: $bin does not load libxgboost.so.3" >&2; exit 1; }
# The XGBoost wheel's layout (xgboost/lib/libxgboost.so.3 finds ../../xgboost_cpu.libs/libgomp-*.so by $ORIGIN).
wheel_root=$(cd "$(dirname "$(readlink -f "$xgb")")/../.." && pwd)
mkdir -p "$dest/usr/lib/stockcast/xgboost/lib" "$dest/usr/lib/stockcast/xgboost_cpu.libs"
cp -L "$xgb" "$dest/usr/lib/stockcast/xgboost/lib/libxgboost.so.3"
cp -L "$wheel_root"/xgboost_cpu.libs/*.so* "$dest/usr/lib/stockcast/xgboost_cpu.libs/"
patchelf --set-rpath /usr/lib/stockcast/xgboost/lib "$dest/usr/local/bin/stockcast"
# System libraries at their own paths (the loader's included).
ldd "$bin" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}' | while read -r lib; do
    case "$lib" in "$wheel_root"/*) continue ;; esac
    mkdir -p "$dest$(dirname "$lib")"
    cp -L "$lib" "$dest$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nstockcast:x:10001:10001:stockcast:/data:/sbin/nologin\n' >"$dest/etc/passwd"
printf 'root:x:0:\nstockcast:x:10001:\n' >"$dest/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$dest/etc/hosts"
printf 'hosts: files dns\n' >"$dest/etc/nsswitch.conf"
cp -r configs datasets "$dest/opt/stockcast/"
chmod 1777 "$dest/tmp"
