// A smoke test of one built addon, run by scripts/prebuild.mjs with the Node of the target (this
// machine's, or an arm64 Node under qemu-user): the parts the portable link touches. Each check
// compares with a plain JavaScript reference and exits non-zero on a mismatch.
//   node scripts/prebuild-smoke.cjs path/to/modulora_kernels.node
"use strict";
const m = require(process.argv[2]);
const fail = (what) => {
  console.error(`smoke: ${what}`);
  process.exit(1);
};
const close = (a, b, tol) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

// Worker threads of the pool (pthread_create, thread_local scratch with a destructor).
m.setNumThreads(2);

// SGEMM/DGEMM, C[m,n] = A[m,k] · B[k,n], against a triple loop.
for (const F of [Float32Array, Float64Array]) {
  const M = 67, N = 45, K = 38;
  const a = F.from({ length: M * K }, (_, i) => Math.sin(i) * 0.5);
  const b = F.from({ length: K * N }, (_, i) => Math.cos(i * 0.7));
  const c = new F(M * N);
  m.gemm(false, false, M, N, K, 1, a, K, 0, b, N, 0, 0, c, N, 0, 1);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let p = 0; p < K; p++) s += a[i * K + p] * b[p * N + j];
      if (!close(c[i * N + j], s, F === Float32Array ? 1e-5 : 1e-12)) fail(`gemm ${F.name} [${i},${j}] ${c[i * N + j]} != ${s}`);
    }
  }
}

// exp, log (the shimmed libm symbols), and pow, against Math.
const x = Float64Array.from({ length: 1000 }, (_, i) => (i - 500) / 37);
const y = new Float64Array(x.length);
m.unary(1, x, y); // exp
x.forEach((v, i) => close(y[i], Math.exp(v), 1e-15) || fail(`exp(${v}) = ${y[i]}`));
const pos = x.map((v) => Math.abs(v) + 0.01);
m.unary(2, pos, y); // log
pos.forEach((v, i) => close(y[i], Math.log(v), 1e-15) || fail(`log(${v}) = ${y[i]}`));
const e = Float64Array.from(x, (v) => v / 10);
m.binary(9, [x.length], pos, [1], e, [1], y); // pow
pos.forEach((v, i) => close(y[i], Math.pow(v, e[i]), 1e-14) || fail(`pow(${v}, ${e[i]}) = ${y[i]}`));
const xf = Float32Array.from(x);
const yf = new Float32Array(x.length);
m.unary(1, xf, yf);
xf.forEach((v, i) => close(yf[i], Math.exp(v), 1e-6) || fail(`expf(${v}) = ${yf[i]}`));

// A C++ exception crossing into JavaScript (the unwinder of libgcc_s, libstdc++'s typeinfo).
let threw;
try {
  m.gemm(false, false, 2, 2, 2, 1, new Float32Array(1), 2, 0, new Float32Array(4), 2, 0, 0, new Float32Array(4), 2, 0, 1);
} catch (err) {
  threw = err;
}
if (!(threw instanceof Error) || !/gemm/.test(threw.message)) fail(`a too-short operand did not throw a gemm error (${threw})`);

console.log(`smoke: ${process.arch} ${process.version}: gemm f32/f64, exp/log/pow, expf, threads, exceptions ok`);
