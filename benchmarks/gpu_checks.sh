#!/usr/bin/env bash
# probe's GPU checks in one run, on a machine with a CUDA GPU and probe's dependencies:
# the CUDA tests, compare on CPU and GPU (benchmarks/compare_gpu.py), and the
# docs/sweep.toml grid on CPU and GPU.
# Usage: benchmarks/gpu_checks.sh [LOGDIR]    (logs: gpu_tests.log, gpu_bench.log, sweep_*.json)
set -u
log=${1:-.}
mkdir -p "$log"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch; print('torch', torch.__version__, '| GPU:', torch.cuda.get_device_name(0))" || exit 1
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py "tests/test_track.py::test_a_model_on_the_gpu_gives_the_cpu_reference" \
    2>&1 | tee "$log/gpu_tests.log"
python3 benchmarks/compare_gpu.py 2>&1 | tee "$log/gpu_bench.log"
for device in cuda cpu; do
    start=$(date +%s.%N)
    python3 -m probe sweep docs/sweep.toml --no-circuit --device "$device" --json "$log/sweep_$device.json" \
        >/dev/null 2>"$log/sweep_$device.err"
    echo "sweep docs/sweep.toml (6 cells) on $device: exit $?, $(python3 -c "import time; print(f'{time.time() - $start:.1f}')") s"
done
