#!/bin/sh
# Install the Debian packages the test suite needs: those listed in
# tests/apt-packages.txt, and the build dependencies of the Debian package
# (debian/control's Build-Depends, through apt-get build-dep: the package
# test builds the .deb). Does nothing when all are present; uses sudo when
# not root.
set -e
cd "$(dirname "$0")/.."
missing=""
for pkg in $(grep -v '^#' tests/apt-packages.txt); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
builddeps=yes
dpkg-checkbuilddeps >/dev/null 2>&1 && builddeps=""
[ -z "$missing" ] && [ -z "$builddeps" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
if [ -n "$missing" ]; then
    echo "installing:$missing"
    $SUDO apt-get install -y -q --no-install-recommends $missing
fi
if [ -n "$builddeps" ]; then
    echo "installing the build dependencies of debian/control"
    $SUDO apt-get build-dep -y -q --no-install-recommends ./
fi
