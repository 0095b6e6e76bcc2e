#!/usr/bin/env bash
# Installs what the tests need (as root, on Debian, when missing) and runs every test:
# unit, property, integration over loopback, and end-to-end against a real Open vSwitch in
# network namespaces. Also checks formatting and lints, as CI does.
#
#   sudo tools/test.sh            everything
#   sudo tools/test.sh e2e        only the end-to-end tests
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(openvswitch-switch ethtool iputils-ping iproute2 tshark procps)
commands=(ovs-vswitchd ethtool ping ip tshark sysctl)
missing=()
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)  # chart text
for i in "${!commands[@]}"; do
    command -v "${commands[$i]}" >/dev/null 2>&1 || missing+=("${packages[$i]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "tools/test.sh: missing ${missing[*]}; run as root (sudo tools/test.sh) to install them" >&2
        exit 1
    fi
    echo "installing ${missing[*]} ..."
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
    echo "tools/test.sh: the end-to-end tests need root (network namespaces, Open vSwitch): sudo tools/test.sh" >&2
    exit 1
fi

# Everything is installed and we are root: an end-to-end test that cannot run is a failure
# here, not a skip (tests/e2e_ovs.rs).
export REFLEX_E2E=require

if [ "${1:-}" = e2e ]; then
    exec cargo test --release --test e2e_ovs -- --test-threads=1
fi

# The whole workspace: the daemon (root package) and crates/ (reflexctl, reflex-load,
# reflex-testkit). Integration tests find reflexctl and reflex-load under target/ (built
# on demand, tests/common/mod.rs: workspace_bin).
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --doc --quiet 2>&1 | tee -a "$log"
cargo test --workspace --all-targets 2>&1 | tee -a "$log"
# One closing line with the totals over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
