#!/usr/bin/env bash
# A venv for `bench/store_bench.py --store embedded`: pymilvus 2.5 and milvus-lite 2.5 (Milvus's C++
# engine, embedded in the client process's machine, serving a file), layered over the project's .venv
# (torch, the model, rag itself), which keeps pymilvus 3.0 for the tests. Usage: bash bench/milvus25-venv.sh [DIR]
set -euo pipefail
target=${1:-/tmp/mv25}
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/.venv/bin/python" -m venv "$target"
# pymilvus 2.5 imports pkg_resources, which setuptools 80 dropped
"$target/bin/pip" install -q "pymilvus==2.5.18" "milvus-lite==2.5.1" "setuptools<80"
"$target/bin/pip" uninstall -y -q numpy  # the project's numpy (faiss is built against it)
site=$("$target/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$root/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/zz_project.pth"
"$target/bin/python" -c 'import pymilvus, milvus_lite, rag; print("ok: pymilvus", pymilvus.__version__)'
