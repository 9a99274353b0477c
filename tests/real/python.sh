# program: python3 --version
set -euo pipefail
export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
python3 "$(dirname "$0")/alloc_heavy.py"
