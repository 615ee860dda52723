#!/usr/bin/env bash
# zfold's libraries and the fixtures packed for a GPU machine that has CUDA but neither Debian's packages nor a
# network: `pack` on a Debian 12 machine (apt reachable), `use` sourced on the GPU machine (by tests/gpu/run.sh).
#
#   bash tests/gpu/carry.sh pack [DIR]       writes DIR/deps.tar.xz and DIR/fixtures.tar.xz (DIR: .gpu-carry)
#   . tests/gpu/carry.sh use DIR [PREFIX]    unpacks them (PREFIX: /tmp/zfdeps), relocates the packages there,
#                                            exports PATH, LD_LIBRARY_PATH, OPAL_PREFIX, PKG_CONFIG_* and
#                                            CMAKE_PREFIX_PATH, puts the fixtures in ../shared/fixtures (or in
#                                            PREFIX/shared) and exports ZF_FIXTURES
#
# The packages go under PREFIX as dpkg -x lays them out; Open MPI follows OPAL_PREFIX and PMIx PMIX_INSTALL_PREFIX,
# and the text files that name /usr (pkg-config files, h5cc) are rewritten at unpack. Libraries every CUDA machine
# has (libc, libgcc_s, libstdc++, libgomp) are not packed: the GPU machine's own compiler must keep its own.

# Runtime libraries of zfold, mpirun and the HDF5 wrapper, and the headers and link names the build needs.
ZF_CARRY_PKGS=(
  libopenmpi3 libopenmpi-dev openmpi-bin openmpi-common libpmix2 libhwloc15 libevent-core-2.1-7
  libevent-pthreads-2.1-7 libudev1 zlib1g zlib1g-dev
  libhdf5-103-1 libhdf5-dev hdf5-helpers libaec0 libaec-dev libsz2
  libcurl4 libcurl4-openssl-dev libssl3 libssl-dev libbrotli1 libgssapi-krb5-2 libk5crypto3 libkrb5-3
  libkrb5support0 libcom-err2 libkeyutils1 libldap-2.5-0 libsasl2-2 libnghttp2-14 libpsl5 librtmp1 libgnutls30
  libhogweed6 libnettle8 libgmp10 libidn2-0 libunistring2 libp11-kit0 libffi8 libtasn1-6 libssh2-1 libzstd1
  libopenblas0-pthread libopenblas-dev libopenblas-pthread-dev liblapacke liblapacke-dev libtmglib3 libgfortran5
  libquadmath0
  libfyaml0 libfyaml-dev libcjson1 libcjson-dev libxxhash0 libxxhash-dev
  pkgconf pkgconf-bin libpkgconf3
)

carry_pack() {
  set -euo pipefail
  local root dir fixtures stage
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  dir=$(mkdir -p "${1:-$root/.gpu-carry}" && cd "${1:-$root/.gpu-carry}" && pwd)
  fixtures=${ZF_FIXTURES:-$root/../shared/fixtures}
  [ -f "$fixtures/README.md" ] || { echo "carry: no fixtures at $fixtures (set ZF_FIXTURES)" >&2; return 1; }
  stage=$(mktemp -d "${TMPDIR:-/tmp}/zfcarry.XXXXXX")
  trap 'rm -rf "$stage"' RETURN
  mkdir -p "$stage/debs" "$stage/root"
  (cd "$stage/debs" && apt-get download "${ZF_CARRY_PKGS[@]}" > "$stage/download.log" 2>&1) ||
    { cat "$stage/download.log" >&2; echo "carry: apt-get download failed" >&2; return 1; }
  local deb
  for deb in "$stage"/debs/*.deb; do dpkg -x "$deb" "$stage/root"; done
  # Debian's alternatives (libopenblas.so, liblapack.so.3, mpicc, mpirun, hdf5.pc, ...) are made by the package
  # scripts, not shipped: recreate the ones of this machine that lead into the packed files, as relative links
  local link target rel
  while IFS= read -r link; do
    target=$(readlink -f "$link") || continue
    [ -e "$stage/root$target" ] && [ ! -e "$stage/root$link" ] || continue
    rel=$(realpath -m -s --relative-to="$(dirname "$link")" "$target")
    mkdir -p "$stage/root$(dirname "$link")"
    ln -s "$rel" "$stage/root$link"
  done < <(find /usr -lname '/etc/alternatives/*' 2>/dev/null)
  # links to an absolute path (libz.so -> /lib/...) would leave the tree: make them relative
  while IFS= read -r link; do
    target=$(readlink "$link")
    [ -e "$stage/root$target" ] || continue
    ln -sfn "$(realpath -m -s --relative-to="$(dirname "${link#"$stage/root"}")" "$target")" "$link"
  done < <(find "$stage/root" -type l -lname '/*')
  rm -rf "$stage"/root/usr/share/{doc,man,info,lintian,locale,bash-completion} "$stage"/root/etc/{init.d,logrotate.d} \
    "$stage"/root/usr/lib/x86_64-linux-gnu/fortran
  find "$stage/root" -name '*.a' -delete
  printf '%s\n' "${ZF_CARRY_PKGS[@]}" > "$stage/root/zfold-carry-packages.txt"
  tar -C "$stage/root" -cf - . | xz -T0 -6 > "$dir/deps.tar.xz"
  tar -C "$(dirname "$fixtures")" -cf - --exclude=fixtures/data/raw "$(basename "$fixtures")" | xz -T0 -6 \
    > "$dir/fixtures.tar.xz"
  ls -l "$dir"
  local mib
  mib=$(du -sm "$dir" | cut -f1)
  echo "carry: $dir holds $mib MiB"
  echo "on the GPU machine: bash tests/gpu/run.sh (it finds $(basename "$dir") in the repository root)"
}

# xz -dc FILE, or Python's lzma where xz is missing
carry_unxz() {
  if command -v xz > /dev/null; then xz -dc "$1"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}

carry_use() {
  local dir=${1:?usage: . tests/gpu/carry.sh use DIR [PREFIX]} prefix=${2:-/tmp/zfdeps} root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  [ -f "$dir/deps.tar.xz" ] || { echo "carry: no $dir/deps.tar.xz" >&2; return 1; }
  local glibc
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
  if [ -n "$glibc" ] && [ "$(printf '%s\n2.36\n' "$glibc" | sort -V | head -1)" != 2.36 ]; then
    echo "carry: this machine's C library is glibc $glibc; the packed Debian 12 libraries need 2.36 or newer" >&2
    return 1
  fi
  if [ ! -f "$prefix/zfold-carry-packages.txt" ]; then
    mkdir -p "$prefix" && carry_unxz "$dir/deps.tar.xz" | tar -C "$prefix" -xf - || return 1
    local f
    while IFS= read -r f; do
      sed -i -e "s#\"/usr\"#\"$prefix/usr\"#g" -e "s#=/usr\$#=$prefix/usr#" \
        -e "s#\([ =\"'IL]\)/usr/#\1$prefix/usr/#g" "$f"
    done < <(find "$prefix/usr/lib" "$prefix/usr/share" -name '*.pc' -type f
             find "$prefix/usr/bin" -name 'h5*' -type f)
  fi
  local u=$prefix/usr lib=$prefix/usr/lib/x86_64-linux-gnu
  export PATH=$u/bin:$PATH
  local libs=$lib:$prefix/lib/x86_64-linux-gnu:$lib/openmpi/lib:$lib/hdf5/serial:$lib/openblas-pthread
  export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export OPAL_PREFIX=$u PMIX_INSTALL_PREFIX=$lib/pmix2
  export OMPI_MCA_mca_base_component_show_load_errors=0   # plugins for fabrics this machine lacks
  export PKG_CONFIG_LIBDIR=$lib/pkgconfig:$u/share/pkgconfig PKG_CONFIG_PATH=
  export CMAKE_PREFIX_PATH=$u${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
  # the fixtures where the configs name them (../shared), or beside the packages where that cannot be written
  local shared=$root/../shared
  if [ ! -d "$shared/fixtures" ] && [ -f "$dir/fixtures.tar.xz" ]; then
    { mkdir -p "$shared" && [ -w "$shared" ]; } 2>/dev/null || shared=$prefix/shared
    mkdir -p "$shared" && carry_unxz "$dir/fixtures.tar.xz" | tar -C "$shared" -xf - || return 1
  fi
  if [ -d "$shared/fixtures" ]; then export ZF_FIXTURES=$(cd "$shared/fixtures" && pwd); fi
  echo "carry: Debian packages in $prefix, fixtures in ${ZF_FIXTURES:-(none)}"
}

case ${1:-} in
  pack) shift; carry_pack "$@" ;;
  use) shift; carry_use "$@" ;;
  *) echo "usage: bash tests/gpu/carry.sh pack [DIR] | . tests/gpu/carry.sh use DIR [PREFIX]" >&2; false ;;
esac
