#!/usr/bin/env bash
# Installs zfold's build and test dependencies from Debian 12 packages; safe to run again.
set -euo pipefail
pkgs=(cmake ninja-build pkg-config gcc g++ bc
      openmpi-bin libopenmpi-dev
      libhdf5-dev hdf5-tools
      libopenblas-dev libopenblas-pthread-dev liblapacke-dev
      libfyaml-dev libcjson-dev libxxhash-dev libpcre2-dev libunistring-dev zlib1g-dev
      gnuplot-nox python3 python3-numpy time
      slurm-wlm munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
