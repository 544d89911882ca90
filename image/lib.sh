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
  if [ ! -s "$SIGN_CERT" ] || [ ! -s "$SIGN_KEY" ]; then
    mkdir -p "$dir" && chmod 0700 "$dir"
    openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -keyout "$SIGN_KEY" -out "$SIGN_CERT" \
      -subj "/O=edgepbx/CN=edgepbx development bundles ($(hostname))" 2>/dev/null
    chmod 0600 "$SIGN_KEY"
  fi
}
