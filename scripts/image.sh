#!/usr/bin/env bash
# Builds the stockcast container image without a daemon: a release build, the runtime tree of
# scripts/image-rootfs.sh, then buildah (vfs storage, as root) FROM scratch: non-root user 10001, workdir /data,
# entrypoint `stockcast`. Writes an OCI archive and keeps the image in buildah's local storage as IMAGE.
#   bash scripts/image.sh [ARCHIVE]     (default: $CARGO_TARGET_DIR/image/stockcast-VERSION.oci.tar)
# IMAGE: $STOCKCAST_IMAGE, default stockcast:VERSION — the name deploy/k8s/*.yaml use (push it to your registry
# under that name, or edit the manifests). The Containerfile builds the same image where base images can be pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stockcast-target}"
command -v buildah >/dev/null || { echo "image: buildah is required (Debian: apt-get install buildah)" >&2; exit 1; }
version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
image="${STOCKCAST_IMAGE:-stockcast:$version}"
archive="${1:-$CARGO_TARGET_DIR/image/stockcast-$version.oci.tar}"
# STOCKCAST_BINARY: an already built binary (the image test passes the one it tests); else a release build here.
bin="${STOCKCAST_BINARY:-}"
if [ -z "$bin" ]; then
    scripts/setup.sh >&2
    cargo build --workspace --release --locked --bins --quiet
    bin="$CARGO_TARGET_DIR/release/stockcast"
fi
root=$(mktemp -d)
trap 'rm -rf "$root"; [ -n "${ctr:-}" ] && buildah --storage-driver vfs rm "$ctr" >/dev/null 2>&1 || true' EXIT
scripts/image-rootfs.sh "$bin" "$root"
b() { buildah --storage-driver vfs "$@"; }
ctr=$(b from --quiet scratch)
b copy --quiet "$ctr" "$root/" / >/dev/null
# buildah copy gives root everything; the working directory belongs to the image's user.
mnt=$(b mount "$ctr")
chown 10001:10001 "$mnt/data"
chmod 1777 "$mnt/tmp"
b umount "$ctr" >/dev/null
b config --user 10001:10001 --workingdir /data --entrypoint '["/usr/local/bin/stockcast"]' --cmd '["--help"]' \
    --env STOCKCAST_LOG_FORMAT=json --env OMP_WAIT_POLICY=passive \
    --label org.opencontainers.image.title=stockcast --label "org.opencontainers.image.version=$version" "$ctr"
b commit --quiet --rm "$ctr" "$image" >/dev/null
ctr=
mkdir -p "$(dirname "$archive")"
rm -f "$archive"
b push --quiet "$image" "oci-archive:$archive:$image"
echo "image: $image -> $archive ($(du -h "$archive" | cut -f1); binary $(du -h "$root/usr/local/bin/stockcast" | cut -f1) stripped)"
