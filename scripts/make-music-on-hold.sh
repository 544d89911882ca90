#!/bin/sh
# Regenerates appliance/sounds/music-on-hold.wav: a calm 8 s loop (A major arpeggio over a soft
# E drone) synthesised with sox, 16 kHz mono 16-bit. Written for edgepbx; CC0 1.0.
# The drone keeps 659 Hz present at every moment: the tests recognise music on hold by it; no note lies near the test phones' tones.
set -eu
out="${1:-$(dirname "$0")/../appliance/sounds/music-on-hold.wav}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=0
for note in 880 1109 1480 1109 880 1109 1480 1760 1480 1109 880 1109 988 1109 880 988; do
    sox -n -r 16000 -c 1 -b 16 "$tmp/n$(printf %02d $i).wav" synth 0.5 sine "$note" fade q 0.04 0.5 0.2 vol 0.22
    i=$((i + 1))
done
sox "$tmp"/n*.wav "$tmp/melody.wav"
sox -n -r 16000 -c 1 -b 16 "$tmp/drone.wav" synth 8 sine 659.26 vol 0.12
sox -m "$tmp/melody.wav" "$tmp/drone.wav" -b 16 "$out" fade q 0.05 8 0.05
echo "wrote $out"
