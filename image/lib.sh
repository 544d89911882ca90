# Shared by image/build.sh and image/bundle.sh (sourced).

# The bundle signing pair: the installer's own (EDGEPBX_SIGNING_CERT and EDGEPBX_SIGNING_KEY), or a
# development pair made once per build machine and kept outside the repository. The image trusts
# the certificate it was built with, so a box accepts only bundles signed by the same key.
signing_pair() {
  if [ -n "${EDGEPBX_SIGNING_CERT:-}" ]; then
    SIGN_CERT=$EDGEPBX_SIGNING_CERT SIGN_KEY=${EDGEPBX_SIGNING_KEY:?EDGEPBX_SIGNING_KEY must name the key of EDGEPBX_SIGNING_CERT}
    return
  fi
  local dir=/var/cache/edgepbx/signing
  SIGN_CERT=$dir/development.cert.pem SIGN_KEY=$dir/development.key.pem
  mkdir -p "$dir" && chmod 0700 "$dir"
  # Under a lock: the tests build the x86 and the Pi image at the same time on a fresh machine.
  (
    flock 9
    if [ ! -s "$SIGN_CERT" ] || [ ! -s "$SIGN_KEY" ]; then
      openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -keyout "$SIGN_KEY.new" -out "$SIGN_CERT.new" \
        -subj "/O=edgepbx/CN=edgepbx development bundles ($(hostname))" 2>/dev/null
      chmod 0600 "$SIGN_KEY.new"
      mv "$SIGN_KEY.new" "$SIGN_KEY" && mv "$SIGN_CERT.new" "$SIGN_CERT"
    fi
  ) 9>"$dir/.lock"
}

# arm64 programs run under qemu-user through binfmt_misc (Debian's qemu-user-static registers it;
# a fresh container may not have the binfmt_misc file system mounted yet).
enable_binfmt_arm64() {
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "image: cannot run arm64 programs (binfmt_misc, qemu-user-static)" >&2; exit 1; }
}
