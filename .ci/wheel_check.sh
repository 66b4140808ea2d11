#!/usr/bin/env bash
# The package as a user installs it: build the wheel, install it into a fresh venv, and from another
# working directory stylize with the bundled style (cpu and emu), train 2 iterations, check the
# bundled VGG-16 weights, and read the wheel's metadata (console scripts, extras). Called by .ci/run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m pip wheel -q --no-deps -w "$work/dist" "$repo"
wheel=$(ls "$work"/dist/microst-*.whl)
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel"
cd "$work"
export PATH="$work/venv/bin:$PATH"
python -c "import microst, sys; sys.exit(microst.__file__.startswith('$repo'))"  # the installed copy, not the clone
microst-stylize "$repo/samples/neuschwanstein.jpg" --model great_wave -o wave_cpu.jpg --device cpu --size 160
microst-stylize "$repo/samples/neuschwanstein.jpg" --model great_wave -o wave_emu.jpg --device emu --size 48
style=$(python -c "import microst.resources as r; print(r.weights_dir() / 'styles' / 'great_wave.jpg')")
mkdir photos && cp "$repo/samples/neuschwanstein.jpg" photos/a.jpg && cp "$repo/samples/neuschwanstein.jpg" photos/b.jpg
microst-train --style "$style" --data photos --out run --iterations 2 --image-size 32 --batch-size 1 --width 0.125 \
    --device cpu --no-progress
test -f run/great_wave.h5 && test -f wave_cpu.jpg && test -f wave_emu.jpg
python -m microst.weights check > /dev/null
unzip -p "$wheel" '*.dist-info/entry_points.txt' | grep -q "microst-stylize = microst.stylize:main"
unzip -p "$wheel" '*.dist-info/entry_points.txt' | grep -q "microst-train = microst.train:main"
unzip -p "$wheel" '*.dist-info/entry_points.txt' | grep -q "microst-optimize = microst.optimize:main"
meta=$(unzip -p "$wheel" '*.dist-info/METADATA')
for extra in cuda12 cuda13 onnx video ray test; do grep -q "Provides-Extra: $extra" <<< "$meta"; done
grep -q 'cupy-cuda13x\[ctk\]' <<< "$meta" && grep -q 'cupy-cuda12x\[ctk\]' <<< "$meta"
echo "wheel check: ok ($(basename "$wheel"), $(du -h "$wheel" | cut -f1))"
