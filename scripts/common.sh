# Shared by scripts/start and scripts/test: install what is missing, build.
# shellcheck shell=bash
set -euo pipefail

LOOPD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOOPD_BUILD="${LOOPD_BUILD:-$LOOPD_ROOT/build}"

# Debian packages loopd builds, runs and tests with. jackd2 and libjack-jackd2-dev go in the same
# apt command as librtaudio-dev (RtAudio pulls a JACK library otherwise).
LOOPD_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  librtaudio-dev jackd2 libjack-jackd2-dev libasound2-dev librtmidi-dev
  liboscpack-dev librubberband-dev libsndfile1-dev libsamplerate0-dev libsoundtouch-dev
  libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libbenchmark-dev
  libqm-dsp-dev libaubio-dev
  ableton-link-dev libasio-dev ableton-link-utils iproute2 util-linux # Link; its tests run in a private network namespace
  libcpp-httplib-dev # the interval jam's HTTP server and client
  libpugixml-dev # Rekordbox XML (loopd sections)
  liblo-tools python3-liblo python3-numpy sox aubio-tools puredata-core
  sooperlooper supercollider-language xvfb xdotool imagemagick x11-utils tmux
  gdb # thread stacks of a test server that hangs (tests/e2e/test_robust.py)
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_deps() {
  local missing=()
  for p in "${LOOPD_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "loopd: installing ${missing[*]}" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${LOOPD_PACKAGES[@]}" >&2
  fi
}

# build DIR [cmake options...]
build() {
  local dir="$1"; shift
  cmake -S "$LOOPD_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}
