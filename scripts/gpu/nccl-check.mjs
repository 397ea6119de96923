#!/usr/bin/env node
// NCCL check for the GPU host: NcclCommunicator with world size 1 in this process, then, when
// `nvidia-smi -L` lists two GPUs or more, with 2 ranks as child processes (this script again, with
// --rank). Every rank checks all-reduce sum/mean of f32 and bf16 tensors (1, 1000 and 4M elements)
// against the values computed here on the host, a broadcast and a barrier; rank 0 also times a
// 25 MiB f32 all-reduce (median of 20 after 3 warm-ups). Prints one table; exits 1 on a wrong value
// or a failed rank, 2 when NCCL or CUDA is unavailable.
//
//   MODULORA_KERNELS_ADDON=/tmp/kb/modulora_kernels.node node scripts/gpu/nccl-check.mjs
//   (MODULORA_NCCL_LIBRARY=<path to libnccl.so.2> when the addon did not find NCCL at configure time)
import { execFileSync } from "node:child_process";
import { performance } from "node:perf_hooks";
import { NcclCommunicator, findFreePort, spawnLocalRanks, resolveLaunch } from "@modulora/distributed";
import { bitsToNumber16, ncclInfo, tensorFrom } from "@modulora/tensor";

const SIZES = [1, 1000, 4 * 1024 * 1024];
const TIMED_BYTES = 25 * 1024 * 1024;
const TIMED_RUNS = 20;

// Rank r's value at i: small multiples of 1/4 (f32) and 1/2 (bf16), so every sum and every mean
// over 1 or 2 ranks is exact in the dtype, in any order of addition.
const valueF32 = (i, r) => ((i % 97) - 48) * 0.25 + r;
const valueBf16 = (i, r) => ((i % 17) - 8) * 0.5 + r;

function bf16Bits(x) {
  const u = new Uint32Array(new Float32Array([x]).buffer);
  return u[0] >>> 16; // exact: the values above have at most 8 significant bits
}

function makeTensor(dtype, n, rank, device) {
  if (dtype === "f32") return tensorFrom(Float32Array.from({ length: n }, (_, i) => valueF32(i, rank)), { device });
  const bits = Uint16Array.from({ length: n }, (_, i) => bf16Bits(valueBf16(i, rank)));
  return tensorFrom(bits, { dtype: "bf16", device });
}

async function hostValues(t) {
  const d = await t.data();
  return t.dtype === "bf16" ? Array.from(d, (b) => bitsToNumber16(b, "bf16")) : d;
}

/** Largest |got − want(i)| over the tensor (0 when every value is right). */
async function maxError(t, want) {
  const got = await hostValues(t);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want(i));
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  return worst;
}

/** One rank's checks; returns the table rows (each with `ok`). */
async function runRank({ rank, worldSize, masterAddr, masterPort, device }) {
  const dev = `cuda:${device}`;
  const comm = await NcclCommunicator.connect({ rank, worldSize, masterAddr, masterPort, device, timeoutMs: 120_000 });
  const rows = [];
  const ranks = [...Array(worldSize).keys()];
  try {
    for (const dtype of ["f32", "bf16"]) {
      const value = dtype === "f32" ? valueF32 : valueBf16;
      for (const op of ["sum", "mean"]) {
        // All sizes in one call: one NCCL group of three tensors.
        const ts = SIZES.map((n) => makeTensor(dtype, n, rank, dev));
        const t0 = performance.now();
        await comm.allReduce(ts, op);
        const ms = performance.now() - t0;
        for (const [k, t] of ts.entries()) {
          const sum = (i) => ranks.reduce((s, r) => s + value(i, r), 0);
          const err = await maxError(t, op === "sum" ? sum : (i) => sum(i) / worldSize);
          rows.push({ world: worldSize, check: `allReduce ${op}`, dtype, elements: SIZES[k], maxError: err, ms: k === 0 ? ms : null, ok: err === 0 });
          t.dispose();
        }
      }
    }
    const root = worldSize - 1;
    const b = makeTensor("f32", 1000, rank, dev);
    await comm.broadcast([b], root);
    const bErr = await maxError(b, (i) => valueF32(i, root));
    rows.push({ world: worldSize, check: `broadcast root ${root}`, dtype: "f32", elements: 1000, maxError: bErr, ms: null, ok: bErr === 0 });
    b.dispose();
    const t0 = performance.now();
    await comm.barrier();
    rows.push({ world: worldSize, check: "barrier", dtype: "", elements: 1, maxError: 0, ms: performance.now() - t0, ok: true });

    const n = TIMED_BYTES / 4;
    const big = tensorFrom(new Float32Array(n), { device: dev }); // zeros: a sum of zeros stays zero
    const times = [];
    for (let it = 0; it < 3 + TIMED_RUNS; it++) {
      const s = performance.now();
      await comm.allReduce([big], "sum");
      if (it >= 3) times.push(performance.now() - s);
    }
    times.sort((x, y) => x - y);
    const median = (times[TIMED_RUNS / 2 - 1] + times[TIMED_RUNS / 2]) / 2;
    const bigErr = await maxError(big, () => 0);
    const gbps = TIMED_BYTES / (median / 1e3) / 1e9;
    rows.push({ world: worldSize, check: `allReduce sum 25 MiB x${TIMED_RUNS} (median; ${gbps.toFixed(1)} GB/s algbw)`, dtype: "f32", elements: n, maxError: bigErr, ms: median, ok: bigErr === 0 });
    big.dispose();
  } finally {
    await comm.close();
  }
  return rows;
}

function printTable(rows) {
  const head = ["world", "check", "dtype", "elements", "max |err|", "ms", "result"];
  const body = rows.map((r) => [String(r.world), r.rank ? `${r.check} (rank ${r.rank})` : r.check, r.dtype, String(r.elements), r.maxError === 0 ? "0" : r.maxError.toExponential(2), r.ms == null ? "" : r.ms.toFixed(3), r.ok ? "ok" : "WRONG"]);
  const w = head.map((h, c) => Math.max(h.length, ...body.map((b) => b[c].length)));
  const line = (cells) => cells.map((x, c) => (c === 1 ? x.padEnd(w[c]) : x.padStart(w[c]))).join("  ");
  console.log(line(head));
  for (const b of body) console.log(line(b));
}

function gpuCount() {
  try {
    return execFileSync("nvidia-smi", ["-L"], { encoding: "utf8" }).split("\n").filter((l) => l.startsWith("GPU ")).length;
  } catch (err) {
    console.log(`nvidia-smi -L failed (${err.message.split("\n")[0]}): running world size 1 only`);
    return 1;
  }
}

if (process.argv.includes("--rank")) {
  // A child of the 2-rank run: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_* from spawnLocalRanks.
  const launch = resolveLaunch();
  try {
    const rows = await runRank({ ...launch, device: launch.localRank });
    for (const r of rows) if (launch.rank === 0 || !r.ok) console.log(`ROW ${JSON.stringify({ ...r, rank: launch.rank })}`);
    process.exit(rows.every((r) => r.ok) ? 0 : 1);
  } catch (err) {
    console.error(`rank ${launch.rank} failed: ${err.stack ?? err}`);
    process.exit(1);
  }
}

const info = ncclInfo();
console.log(`ncclInfo: ${JSON.stringify(info)}`);
console.log(`NCCL_NVLS_ENABLE=${process.env.NCCL_NVLS_ENABLE ?? "(unset; the addon sets 0 before NCCL starts)"}`);
if (!info.available) {
  console.error(`NCCL is unavailable: ${info.reason}`);
  process.exit(2);
}
const rows = [];
let failed = false;
try {
  rows.push(...(await runRank({ rank: 0, worldSize: 1, masterAddr: "127.0.0.1", masterPort: await findFreePort(), device: 0 })));
} catch (err) {
  console.error(`world size 1 failed: ${err.stack ?? err}`);
  failed = true;
}
const gpus = gpuCount();
if (gpus >= 2) {
  try {
    await spawnLocalRanks(2, [process.execPath, process.argv[1], "--rank"], {
      graceMs: 5_000,
      onLine: (rank, stream, line) => {
        if (stream === "stdout" && line.startsWith("ROW ")) rows.push(JSON.parse(line.slice(4)));
        else (stream === "stdout" ? process.stdout : process.stderr).write(`[rank ${rank}] ${line}\n`);
      },
    });
  } catch (err) {
    console.error(`2 ranks failed: ${err.message}`);
    failed = true;
  }
} else {
  console.log(`${gpus} GPU(s): the 2-rank run needs 2`);
}
printTable(rows);
const wrong = rows.filter((r) => !r.ok).length;
console.log(wrong || failed ? `FAILED: ${wrong} wrong row(s)${failed ? ", and a run failed (see above)" : ""}` : `all ${rows.length} checks right`);
process.exit(wrong || failed ? 1 : 0);
