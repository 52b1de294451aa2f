#!/bin/sh
# Install the Debian packages the test suite needs (listed in tests/apt-packages.txt).
# Does nothing when they are all present; uses sudo when not root.
set -e
cd "$(dirname "$0")/.."
missing=""
for pkg in $(grep -v '^#' tests/apt-packages.txt); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends $missing
