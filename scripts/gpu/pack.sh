#!/usr/bin/env bash
# Prepares what a GPU-host run needs and the working tree does not hold (run here, from the repo
# root, after `pnpm install` and `pnpm build`): Node and the Node-API headers (.gpu/node.xz,
# .gpu/headers, from ../shared/gpu/pack-node.sh) and the bundled JavaScript entry points
# (.gpu/js.tar.xz: the conformance runner, the CLI, the throughput and scaling benchmarks, the NCCL check), each one file with
# every dependency inlined. `.gpu/` is git-ignored (.git/info/exclude) and carried by the device
# call; scripts/gpu/host.sh unpacks it there.
set -euo pipefail
cd "$(dirname "$0")/../.."
export TURBO_TELEMETRY_DISABLED=1
[ -f .gpu/node.xz ] || bash ../shared/gpu/pack-node.sh
(cd packages/tensor && pnpm exec tsup --config tsup.runner.config.ts >/dev/null)
(cd packages/cli && pnpm exec tsup --config tsup.bundle.config.ts >/dev/null)
files=(packages/tensor/dist/conformance-runner.mjs packages/cli/dist-bundle/modulora-bundle.js)
if [ -f benchmarks/throughput/package.json ]; then
  pnpm --filter ./benchmarks/throughput build >/dev/null
  files+=(benchmarks/throughput/dist/throughput.mjs)
fi
if [ -f benchmarks/scaling/package.json ]; then
  pnpm --filter ./benchmarks/scaling build >/dev/null
  files+=(benchmarks/scaling/dist/scaling.mjs benchmarks/scaling/dist/nccl-check.mjs benchmarks/scaling/dist/compare-adapters.mjs)
fi
tar -cJf .gpu/js.tar.xz "${files[@]}"
ls -l .gpu/js.tar.xz
