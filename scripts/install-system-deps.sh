#!/usr/bin/env bash
# Installs the system packages LCE needs and does not find: the toolchains of the eight languages
# (as the sandbox sees them, under /usr/bin), bubblewrap, prlimit and redis-server.
# As root on Debian it installs them with apt-get; anywhere else it names what is missing and fails.
set -euo pipefail

# command under /usr/bin -> Debian package that provides it
declare -A PACKAGE_OF=(
  [python3]=python3
  [node]=nodejs
  [gcc]=gcc
  [g++]=g++
  [go]=golang-go
  [javac]=default-jdk-headless
  [php]=php-cli
  [ruby]=ruby
  [bwrap]=bubblewrap
  [prlimit]=util-linux
  [redis-server]=redis-server
)

missing=()
for command in "${!PACKAGE_OF[@]}"; do
  [ -x "/usr/bin/$command" ] || missing+=("${PACKAGE_OF[$command]}")
done
# `python3 -m venv` needs ensurepip, which Debian ships separately.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=(python3-venv)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "LCE needs these packages: ${missing[*]}. Install them (as root: apt-get install ${missing[*]})." >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
