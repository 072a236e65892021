#!/usr/bin/env bash
# Debian packages the tests use: ffmpeg, a real RTSP server (GStreamer), Chromium + ChromeDriver, redis-server,
# the Mosquitto MQTT broker and its clients (events out), and a C++ compiler with the Python headers for torch.compile (train.compile).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
packages=(ffmpeg redis-server mosquitto mosquitto-clients g++ python3-dev chromium chromium-driver gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi
          gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
          gstreamer1.0-plugins-ugly gstreamer1.0-libav)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd="sudo"
fi
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
