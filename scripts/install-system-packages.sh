#!/usr/bin/env bash
# Install the Debian packages dllab uses, when apt is available; otherwise say what is missing and go on.
set -u
packages=("$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "dllab setup: apt-get not found; install these yourself for the offline defaults: ${missing[*]}" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "dllab setup: not root and no sudo; install these yourself: ${missing[*]}" >&2
    exit 0
  fi
fi
echo "dllab setup: installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || echo "dllab setup: apt-get update failed; trying the install anyway" >&2
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "dllab setup: apt-get could not install ${missing[*]}; the features that need them will say so" >&2
fi
exit 0
