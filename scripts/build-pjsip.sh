#!/usr/bin/env bash
# Builds PJSIP (pjproject from Debian's asterisk source package) with edgepbx's limits and installs
# its pjsua2 Python module into a virtualenv:   scripts/build-pjsip.sh VENV_PYTHON
# or cross-builds the arm64 wheel for the Pi image (image/build.sh pi4), without installing it:
#                                               scripts/build-pjsip.sh --cross arm64 PYTHON
#
# The result is a wheel cached under $EDGEPBX_CACHE (default /var/cache/edgepbx as root, else
# ~/.cache/edgepbx), keyed by this script, scripts/pjsip/*, the CPU architecture and the Python
# version: an unchanged tree installs the cached wheel in seconds. Nothing here assumes x86; on an
# arm64 machine the same commands build natively. --cross uses Debian's cross compiler against an
# arm64 sysroot unpacked from Debian packages (mmdebstrap, no emulation): 6 min here, where a native
# build in an arm64 chroot under qemu-user took 24 (../shared/facts.md).
set -euo pipefail

cross=
if [ "${1:-}" = --cross ]; then
  cross=${2:?usage: build-pjsip.sh --cross arm64 PYTHON}; shift 2
  [ "$cross" = arm64 ] || { echo "build-pjsip: cross builds exist for arm64 only" >&2; exit 2; }
fi
python=$(realpath -s "${1:?usage: build-pjsip.sh [--cross arm64] VENV_PYTHON}")
here=$(cd "$(dirname "$0")" && pwd)
inputs="$here/pjsip"
# shellcheck source=pjsip/source.env
. "$inputs/source.env"

fail() { echo "build-pjsip: $*" >&2; exit 1; }
step() { echo "build-pjsip: $*"; }

arch=${cross:-$(dpkg --print-architecture)}
pyver=$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
key=$(cat "$0" "$inputs"/* | sha256sum | cut -c1-16)
default_cache=/var/cache/edgepbx; [ "$(id -u)" -eq 0 ] || default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/edgepbx
cache=${EDGEPBX_CACHE:-$default_cache}/pjsip-$PJPROJECT_VERSION-$arch-$pyver-$key
venv_stamp=$(dirname "$(dirname "$python")")/.pjsua2-$key

if [ -z "$cross" ] && [ -f "$venv_stamp" ] && "$python" -c 'import pjsua2' 2>/dev/null; then
  exit 0
fi

if ! ls "$cache"/pjsua2-*.whl >/dev/null 2>&1; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/edgepbx-pjsip.XXXXXX")
  [ -n "${EDGEPBX_KEEP_BUILD:-}" ] || trap 'rm -rf "$work"' EXIT
  log="$work/build.log"
  started=$(date +%s)

  # The binding's build tools first: better to fail now than after the libraries' build.
  "$python" -m pip install -q --disable-pip-version-check "wheel==0.45.1" "setuptools==75.8.0" >"$log" 2>&1 \
    || fail "could not install wheel/setuptools into the venv (pip: $(tail -1 "$log"))"

  # 1. Fetch the source with a private apt configuration: the system's sources stay untouched.
  mirror=$( (grep -rhE '^[[:space:]]*(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true) \
           | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  mkdir -p "$work/apt/lists/partial" "$work/src"
  echo "deb-src $mirror $DEBIAN_SUITE main" > "$work/apt/sources.list"
  apt_opts=(-o "Dir::Etc::sourcelist=$work/apt/sources.list" -o "Dir::Etc::sourceparts=-"
            -o "Dir::State::Lists=$work/apt/lists" -o "APT::Sandbox::User=root")
  step "fetching asterisk source lists ($DEBIAN_SUITE) from $mirror"
  apt-get -q "${apt_opts[@]}" update >>"$log" 2>&1 || fail "apt-get update of $DEBIAN_SUITE sources failed (see below)
$(tail -5 "$log")"
  offered=$(apt-cache "${apt_opts[@]}" showsrc asterisk 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -n1)
  [ -n "$offered" ] || fail "Debian $DEBIAN_SUITE offers no asterisk source package"
  version=$ASTERISK_SOURCE_VERSION
  if [ "$offered" != "$ASTERISK_SOURCE_VERSION" ]; then
    echo "build-pjsip: NOTE: Debian $DEBIAN_SUITE now has asterisk $offered; scripts/pjsip/source.env records $ASTERISK_SOURCE_VERSION" >&2
    if ! apt-get -q "${apt_opts[@]}" source --download-only "asterisk=$ASTERISK_SOURCE_VERSION" >/dev/null 2>&1 </dev/null; then
      echo "build-pjsip: NOTE: $ASTERISK_SOURCE_VERSION is no longer served; building $offered (update source.env after checking it)" >&2
      version=$offered
    fi
  fi
  step "downloading asterisk $version"
  (cd "$work/src" && apt-get -q "${apt_opts[@]}" source --download-only "asterisk=$version" >>"$log" 2>&1 </dev/null) \
    || fail "could not download asterisk $version source (see below)
$(tail -5 "$log")"
  tarball=$(ls "$work"/src/*orig-Xpjproject.tar.xz 2>/dev/null | head -n1)
  [ -n "$tarball" ] || fail "asterisk $version has no orig-Xpjproject component"
  sum=$(sha256sum "$tarball" | cut -d' ' -f1)
  if [ "$version" = "$ASTERISK_SOURCE_VERSION" ] && [ "$sum" != "$PJPROJECT_SHA256" ]; then
    fail "$(basename "$tarball") has sha256 $sum, source.env records $PJPROJECT_SHA256: refusing to build"
  fi
  step "unpacking with Debian's patches (sha256 $sum)"
  dpkg-source -x "$work"/src/*.dsc "$work/asterisk" >>"$log" 2>&1 || fail "dpkg-source could not unpack $version"
  pj="$work/asterisk/Xpjproject"
  found=$(sed -n 's/^export PJ_VERSION_MAJOR *:= *//p; s/^export PJ_VERSION_MINOR *:= *//p' "$pj/version.mak" | paste -sd.)
  [ "$found" = "$PJPROJECT_VERSION" ] || echo "build-pjsip: NOTE: the source is pjproject $found, source.env says $PJPROJECT_VERSION" >&2

  # 2. Build the libraries against Debian's codecs, SRTP and OpenSSL 3 (and speexdsp's resampler:
  #    libsamplerate's sinc converters cost a core at 50 calls), statically and position-
  #    independent, so the Python module is one self-contained shared object.
  cp "$inputs/config_site.h" "$pj/pjlib/include/pj/config_site.h"
  host_opts=()
  if [ -n "$cross" ]; then
    sysroot=$work/sysroot
    step "unpacking the arm64 sysroot (Debian's -dev packages, no emulation)"
    # Debian 12's, as on the image: the wheel links to bookworm's libssl3 and Python 3.11.
    mmdebstrap --arch=arm64 --variant=extract --include="$(grep -v '^#' "$inputs/cross-sysroot.txt" | paste -sd, -)" \
      --aptopt='Acquire::Check-Valid-Until "false"' bookworm "$sysroot" "deb $mirror bookworm main" >>"$log" 2>&1 \
      || fail "could not unpack the arm64 sysroot (see below)
$(tail -5 "$log")"
    export CC="aarch64-linux-gnu-gcc --sysroot=$sysroot" CXX="aarch64-linux-gnu-g++ --sysroot=$sysroot"
    export LDSHARED="$CXX -shared" PKG_CONFIG_SYSROOT_DIR=$sysroot
    export PKG_CONFIG_LIBDIR=$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig:$sysroot/usr/share/pkgconfig
    # configure turns TLS off when cross-compiling unless it is told where OpenSSL is.
    host_opts=(--host=aarch64-linux-gnu "--with-ssl=$sysroot/usr")
  fi
  step "configuring pjproject $found ($arch)"
  # NDEBUG: a failed PJSIP assertion then returns an error from that one call (PJ_ASSERT_RETURN)
  # instead of aborting the process with every call in it. Seen at 300 calls: pj_sockaddr_get_len
  # asserted on an RTP packet's source address in the stream's address-switch check.
  (cd "$pj" && CFLAGS="-O2 -fPIC -DNDEBUG" CXXFLAGS="-O2 -fPIC -DNDEBUG" ./configure --prefix=/usr "${host_opts[@]}" \
      --with-external-srtp --with-external-speex --with-external-gsm --enable-speex-resample \
      --disable-libyuv --disable-libwebrtc --disable-g7221-codec --disable-ilbc-codec \
      --disable-video --disable-sound --disable-v4l2 --disable-openh264 --disable-ffmpeg \
      --disable-sdl --disable-bcg729 --disable-silk --disable-upnp --disable-vpx --disable-lyra \
      --disable-opencore-amr --disable-android-mediacodec --enable-epoll) >>"$log" 2>&1 \
    || fail "configure failed (log: see below)
$(tail -20 "$log")"
  step "building the libraries on $(nproc) cores"
  (cd "$pj" && make dep >>"$log" 2>&1 && make -j"$(nproc)" lib >>"$log" 2>&1) \
    || fail "make failed (log: see below)
$(tail -25 "$log")"

  # 3. The SWIG binding, as a wheel built with the target interpreter.
  step "building the pjsua2 Python binding (swig)"
  wheel_env=()
  if [ -n "$cross" ]; then
    # The same CPython version, told it is building for Debian's arm64 interpreter (its sysconfig data).
    mkdir -p "$work/pysys" && cp "$sysroot"/usr/lib/python3*/_sysconfigdata__aarch64-linux-gnu.py "$work/pysys/"
    wheel_env=(_PYTHON_HOST_PLATFORM=linux-aarch64 _PYTHON_SYSCONFIGDATA_NAME=_sysconfigdata__aarch64-linux-gnu
               "PYTHONPATH=$work/pysys")
  fi
  (cd "$pj/pjsip-apps/src/swig/python" && make PYTHON_EXE="$python" pjsua2_wrap.cpp >>"$log" 2>&1 \
      && env "${wheel_env[@]}" "$python" setup.py -q bdist_wheel >>"$log" 2>&1) \
    || fail "the Python binding failed to build (log: see below)
$(tail -25 "$log")"
  mkdir -p "$cache.tmp"
  cp "$pj"/pjsip-apps/src/swig/python/dist/pjsua2-*.whl "$cache.tmp/"
  { echo "asterisk_source=$version"; echo "pjproject=$found"; echo "tarball_sha256=$sum"
    echo "arch=$arch"; echo "python=$pyver"; echo "built=$(date -u +%FT%TZ)"
    echo "build_seconds=$(( $(date +%s) - started ))"; } > "$cache.tmp/BUILD-INFO"
  rm -rf "$cache"; mv "$cache.tmp" "$cache"
  step "built in $(( $(date +%s) - started )) s, cached in $cache"
fi

if [ -n "$cross" ]; then
  step "arm64 wheel: $(ls "$cache"/pjsua2-*.whl)"
  exit 0
fi
"$python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$cache"/pjsua2-*.whl \
  || fail "could not install the cached wheel from $cache"
"$python" -c 'import pjsua2' || fail "pjsua2 does not import after install"
rm -f "$(dirname "$venv_stamp")"/.pjsua2-*
touch "$venv_stamp"
step "pjsua2 $(sed -n 's/^pjproject=//p' "$cache/BUILD-INFO") installed from $cache"
