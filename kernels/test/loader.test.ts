import { afterEach, describe, expect, it } from "vitest";
import { ADDON_ENV, ADDON_PATH_ENV, addonCandidates, loadAddon } from "../ts/loader.js";

const saved = { [ADDON_ENV]: process.env[ADDON_ENV], [ADDON_PATH_ENV]: process.env[ADDON_PATH_ENV] };

afterEach(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

describe("addon path overrides", () => {
  it("MODULORA_KERNELS_ADDON names the only path tried", () => {
    delete process.env[ADDON_PATH_ENV];
    process.env[ADDON_ENV] = "/opt/x/modulora_kernels.node";
    expect(ADDON_ENV).toBe("MODULORA_KERNELS_ADDON");
    expect(addonCandidates()).toEqual(["/opt/x/modulora_kernels.node"]);
  });
  it("MODULORA_KERNELS_PATH still works, and MODULORA_KERNELS_ADDON wins when both are set", () => {
    delete process.env[ADDON_ENV];
    process.env[ADDON_PATH_ENV] = "/opt/old/modulora_kernels.node";
    expect(addonCandidates()).toEqual(["/opt/old/modulora_kernels.node"]);
    process.env[ADDON_ENV] = "/opt/new/modulora_kernels.node";
    expect(addonCandidates()).toEqual(["/opt/new/modulora_kernels.node"]);
  });
  it("a missing file is an error naming the variable and the path", () => {
    delete process.env[ADDON_PATH_ENV];
    process.env[ADDON_ENV] = "/nowhere/modulora_kernels.node";
    expect(() => loadAddon()).toThrow(
      "MODULORA_KERNELS_ADDON=/nowhere/modulora_kernels.node points at a file that does not exist; set it to the path of a built modulora_kernels.node",
    );
  });
});
