#!/usr/bin/env bash
# On the GPU host (no Node, no pnpm): unpacks the Node and the bundles that scripts/gpu/pack.sh
# put in .gpu/, builds the addon with CUDA (MODULORA_CUDA=ON, sm_90a, ninja with every core) into
# /tmp/kb, and exports MODULORA_KERNELS_ADDON and PATH for the commands that follow. Source it:
#   source scripts/gpu/host.sh && node packages/tensor/dist/conformance-runner.mjs --backend cuda
set -eo pipefail
xz -dc .gpu/node.xz > /tmp/node && chmod +x /tmp/node
mkdir -p /tmp/bin && ln -sf /tmp/node /tmp/bin/node
export PATH=/tmp/bin:$PATH
tar -xJf .gpu/js.tar.xz
t0=$(date +%s)
cmake -S kernels -B /tmp/kb -G Ninja -DCMAKE_BUILD_TYPE=Release -DMODULORA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DCMAKE_JS_INC="$PWD/.gpu/headers/node-api-headers/include;$PWD/.gpu/headers/node-addon-api" > /tmp/kb-configure.log 2>&1 \
  || { cat /tmp/kb-configure.log; return 1 2>/dev/null || exit 1; }
cmake --build /tmp/kb -j "$(nproc)" > /tmp/kb-build.log 2>&1 || { grep -E "error|FAILED" -A3 /tmp/kb-build.log | head -80; return 1 2>/dev/null || exit 1; }
echo "addon built in $(( $(date +%s) - t0 )) s ($(nproc) cores)"
export MODULORA_KERNELS_ADDON=/tmp/kb/modulora_kernels.node
set +e
