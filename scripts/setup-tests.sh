#!/usr/bin/env bash
# The test command's setup (scripts/test.sh runs it): the demo's (scripts/setup.sh), then what only the tests need
# — the lint components, Debian packages the tests start themselves and moto. Idempotent. As root with apt it
# installs what is missing; otherwise it names the missing package and the tests that need it, and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi
# PostgreSQL: setup.sh installs it when it can; the tests cannot do without it.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    echo "setup-tests: postgresql is required for the database and server tests (Debian: apt-get install postgresql)" >&2
    exit 1
fi
# Debian packages the tests start themselves: apt-get update once (a fresh machine has no package lists), then
# install what is missing.
updated=0
apt_install() {
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        if [ "$updated" = 0 ]; then apt-get update -qq >/dev/null || true; updated=1; fi
        apt-get install -y "$@" >/dev/null
    else
        echo "setup-tests: $* is required for the tests (Debian: apt-get install $*)" >&2
        exit 1
    fi
}
# redis-server: the shared rate-limit test starts a throwaway one.
if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
fi
# promtool (Debian's prometheus package): the tests check and unit-test deploy/prometheus/ alert rules and the
# nightly job's metrics file.
if ! command -v promtool >/dev/null 2>&1; then
    apt_install --no-install-recommends prometheus
fi
# Headless Chromium: the report test renders report.html in a real browser.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
    && ! command -v google-chrome >/dev/null 2>&1; then
    apt_install chromium
fi
# Slurm (slurmctld, slurmd, sbatch; brings munge): the sharded-run test starts a single-node cluster
# (scripts/slurm-local.sh) and submits deploy/slurm/ to it.
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    apt_install slurm-wlm munge
fi
# moto in server mode (PyPI): the S3-compatible server the object-store tests start (conditional puts included).
if ! python3 -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.1' >&2
fi
# buildah: the image test builds the container image (scripts/image.sh) without a daemon; patchelf points the
# image's binary at the libxgboost it carries (scripts/image-rootfs.sh).
if ! command -v buildah >/dev/null 2>&1; then
    apt_install --no-install-recommends buildah
fi
if ! command -v patchelf >/dev/null 2>&1; then
    apt_install patchelf
fi
# Polars for python3 (PyPI): docs/own-data.md's example, which the docs test runs as printed, writes its Hive and
# Arrow copies of the bundled data with it.
if ! python3 -c 'import polars' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'polars>=1.0' >&2
fi
