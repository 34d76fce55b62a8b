#!/usr/bin/env bash
# The acceptance run on the GPU machine, as ONE device call from the repo root, carrying
# .whl (../shared/tools/gpu-wheels optuna-dashboard) and .fashion-gz (the four Fashion-MNIST
# .gz files), with a 600 s limit: installs the wheels into /tmp/site (WHEELS: another
# folder), prints the versions and the device, then runs python -m benchmarks.acceptance
# into $OUT with any extra flags (e.g. --quick). See benchmarks/README.md.
set -uo pipefail
# that machine has no network: albumentations' update check would wait on DNS
export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
start=$SECONDS
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "${WHEELS:-.whl}"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
echo "wheels installed in $((SECONDS - start)) s"
python3 -c '
import platform, albumentations, optuna, torch
name = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}),"
      f" optuna {optuna.__version__}, albumentations {albumentations.__version__}; device: {name}")
' || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv,noheader
exec python3 -m benchmarks.acceptance --out "${OUT:?set OUT to the folder for the results}" "$@"
