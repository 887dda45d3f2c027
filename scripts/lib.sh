# Shared helpers for scripts/run, scripts/test and scripts/package: install
# what is missing, quietly when it is already there. Sourced, not run.

# Debian packages the desktop app (Tauri 2 on WebKitGTK) builds and runs with.
TAURI_PACKAGES=(libwebkit2gtk-4.1-dev build-essential curl wget file libxdo-dev libssl-dev
  libayatana-appindicator3-dev librsvg2-dev pkg-config)
# What the tests add: a virtual display and session bus for the desktop app,
# WebKitWebDriver for tauri-driver, Python's DBus bindings for the stand-in
# tray host that reads the app's tray (tests/node/desktop/sni_watcher.py),
# Chromium for the web page, redis-server for the cluster tests (each test
# starts its own on a free port; the service the package may start is not
# used).
TEST_PACKAGES=(xvfb xauth dbus-x11 webkit2gtk-driver python3-dbus python3-gi chromium redis-server curl
  xdg-desktop-portal xdg-desktop-portal-gtk)

# apt_need PKG...: installs the Debian packages that are not installed yet.
apt_need() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing system packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >&2 || { echo "apt-get update failed: check the network or your apt sources" >&2; return 1; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || { echo "could not install ${missing[*]}" >&2; return 1; }
}

# need_rust: cargo must exist; say how to get it when it does not.
need_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 && return 0
  echo "cargo not found: install Rust with rustup (https://rustup.rs), then run this again" >&2
  return 1
}

# need_node: node 18+ and npm for the interop tests and the packager.
need_node() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_need nodejs npm
  fi
}

# need_tauri_driver: the WebDriver bridge for the desktop end-to-end test.
need_tauri_driver() {
  export PATH="$HOME/.cargo/bin:$PATH"
  command -v tauri-driver >/dev/null 2>&1 && return 0
  echo "installing tauri-driver (cargo install, about a minute)" >&2
  cargo install -q tauri-driver --locked >&2
}

# npm_ci DIR: `npm ci` in DIR unless node_modules already matches the lock file.
npm_ci() {
  local dir=$1 stamp="$1/node_modules/.whosin-lock-stamp" sum
  sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
    return 0
  fi
  echo "installing tools with npm ci in $dir" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || return 1
  echo "$sum" >"$stamp"
}
