// The conformance runner's device memory check (`--memory`): training steps inside tidy return the
// allocator's bytes in use and the live handles to what they were; a step that keeps a tensor
// out of tidy is caught.
import { describe, expect, it } from "vitest";
import { getBackend, keep, registerSimBackend, tensorFrom } from "../src/index.js";
import { runConformanceCli, runMemoryCheck } from "../src/conformance/index.js";

process.env.MODULORA_NUM_THREADS ??= "1";
registerSimBackend();

describe("memory check", () => {
  for (const device of ["cpu", "sim"]) {
    for (const dtype of ["f32", "bf16"] as const) {
      it(`${device} ${dtype}: bytes in use and handles return to their values, the loss falls`, () => {
        const r = runMemoryCheck(device, dtype);
        expect(r.passed, r.detail).toBe(true);
        expect(r.bytesAfter).toBe(r.bytesBefore);
        expect(r.losses).toHaveLength(3);
        expect(r.losses[2]!).toBeLessThan(r.losses[0]!);
      });
    }
  }

  it("the allocator counter it compares sees a tensor kept past tidy", () => {
    const b = getBackend("sim");
    const before = b.memory().bytes;
    const t = keep(tensorFrom(new Float32Array(1000), { device: "sim" }));
    expect(b.memory().bytes - before).toBeGreaterThanOrEqual(4000);
    t.dispose();
    expect(b.memory().bytes).toBe(before);
  });

  it("runs from the command line with --memory", async () => {
    const lines: string[] = [];
    const code = await runConformanceCli(["--backend", "sim", "--filter", "swiglu f32", "--memory"], { out: (l) => lines.push(l), err: (l) => lines.push(l) });
    expect(code).toBe(0);
    expect(lines.filter((l) => l.startsWith("ok   memory"))).toHaveLength(2);
    expect(lines.at(-1)).toMatch(/^\d+ passed, 0 failed$/);
  });
});
