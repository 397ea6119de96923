#!/usr/bin/env bash
# Sourced by the GPU-host scripts (verify.sh, data-parallel.sh): unpacks the carried Node and the
# bundles (.gpu/, from scripts/gpu/pack.sh), puts node on the PATH, and loads the carried sm_90a
# addon (.gpu/addon.xz) into MODULORA_KERNELS_ADDON when it loads there and has the exports this
# checkout needs (NCCL's included); else builds it (scripts/gpu/host.sh) and leaves a copy in
# $OUT/addon.xz for the next call to carry.
xz -dc .gpu/node.xz > /tmp/node && chmod +x /tmp/node
mkdir -p /tmp/bin && ln -sf /tmp/node /tmp/bin/node
export PATH=/tmp/bin:$PATH
tar -xJf .gpu/js.tar.xz
addon_ok=0
if [ -f .gpu/addon.xz ]; then
  mkdir -p /tmp/kb && xz -dc .gpu/addon.xz > /tmp/kb/modulora_kernels.node
  export MODULORA_KERNELS_ADDON=/tmp/kb/modulora_kernels.node
  node -e 'const a = { exports: {} }; process.dlopen(a, process.env.MODULORA_KERNELS_ADDON); if (typeof a.exports.cuda?.ncclInfo !== "function") process.exit(1)' && addon_ok=1
fi
if [ $addon_ok = 0 ]; then
  source scripts/gpu/host.sh || { return 1 2>/dev/null || exit 1; }
  xz -T0 -c /tmp/kb/modulora_kernels.node > "${OUT:-/tmp/out}/addon.xz"
fi
