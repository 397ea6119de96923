import { describe, expect, it } from "vitest";
import { expandSlurmNodelist, firstSlurmHost, resolveLaunch, slurmPortFromJobId } from "../src/index.js";

describe("resolveLaunch", () => {
  it("is a single process when nothing is set", () => {
    expect(resolveLaunch({})).toEqual({ rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: "127.0.0.1", masterPort: 0, source: "single" });
  });

  it("reads torchrun's variables", () => {
    const env = { RANK: "5", WORLD_SIZE: "8", LOCAL_RANK: "1", LOCAL_WORLD_SIZE: "4", MASTER_ADDR: "10.0.0.2", MASTER_PORT: "29500" };
    expect(resolveLaunch(env)).toEqual({ rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, masterAddr: "10.0.0.2", masterPort: 29500, source: "torchrun" });
  });

  it("reads a Kubernetes PyTorchJob pod (no LOCAL_RANK: one process per pod)", () => {
    const env = { RANK: "2", WORLD_SIZE: "4", MASTER_ADDR: "job-master-0", MASTER_PORT: "23456" };
    expect(resolveLaunch(env)).toMatchObject({ rank: 2, worldSize: 4, localRank: 0, localWorldSize: 1, masterAddr: "job-master-0", source: "torchrun" });
  });

  it("prefers torchrun's variables over Slurm's (torchrun under srun)", () => {
    const env = { RANK: "3", WORLD_SIZE: "4", LOCAL_RANK: "3", LOCAL_WORLD_SIZE: "4", MASTER_ADDR: "a", MASTER_PORT: "1234", SLURM_PROCID: "0", SLURM_NTASKS: "1" };
    expect(resolveLaunch(env)).toMatchObject({ rank: 3, source: "torchrun" });
  });

  it("reads Slurm's variables, the first host of the node list and a port from the job id", () => {
    const env = { SLURM_PROCID: "6", SLURM_NTASKS: "8", SLURM_LOCALID: "2", SLURM_NTASKS_PER_NODE: "4", SLURM_JOB_NODELIST: "gpu[07-08]", SLURM_JOB_ID: "123456" };
    expect(resolveLaunch(env)).toEqual({ rank: 6, worldSize: 8, localRank: 2, localWorldSize: 4, masterAddr: "gpu07", masterPort: slurmPortFromJobId(123456), source: "slurm" });
    expect(slurmPortFromJobId(123456)).toBe(15_000 + 3456);
  });

  it("reads SLURM_TASKS_PER_NODE, SLURM_NODELIST and MASTER_ADDR/MASTER_PORT under Slurm", () => {
    const base = { SLURM_PROCID: "8", SLURM_NTASKS: "11", SLURM_LOCALID: "0", SLURM_NODELIST: "n1,n2,n3", SLURM_JOB_ID: "9" };
    expect(resolveLaunch({ ...base, SLURM_TASKS_PER_NODE: "4(x2),3", SLURM_NODEID: "2" })).toMatchObject({ localWorldSize: 3, masterAddr: "n1", masterPort: 15_009 });
    expect(resolveLaunch({ ...base, SLURM_PROCID: "1", SLURM_NTASKS: "8", SLURM_TASKS_PER_NODE: "4(x2)" })).toMatchObject({ localWorldSize: 4 });
    expect(resolveLaunch({ ...base, SLURM_TASKS_PER_NODE: "4(x2),3", SLURM_NODEID: "2", MASTER_ADDR: "head", MASTER_PORT: "4000" })).toMatchObject({ masterAddr: "head", masterPort: 4000 });
  });

  it("names the variables that are missing, malformed or inconsistent", () => {
    expect(() => resolveLaunch({ RANK: "0" })).toThrow("WORLD_SIZE is not set but RANK is");
    expect(() => resolveLaunch({ WORLD_SIZE: "2" })).toThrow("RANK is not set but WORLD_SIZE is");
    expect(() => resolveLaunch({ RANK: "2", WORLD_SIZE: "2", MASTER_ADDR: "a", MASTER_PORT: "1" })).toThrow("RANK=2 must be below WORLD_SIZE=2");
    expect(() => resolveLaunch({ RANK: "x", WORLD_SIZE: "2" })).toThrow('RANK="x" is not a non-negative integer');
    expect(() => resolveLaunch({ RANK: "0", WORLD_SIZE: "2", MASTER_PORT: "29500" })).toThrow("MASTER_ADDR is not set but WORLD_SIZE=2");
    expect(() => resolveLaunch({ RANK: "0", WORLD_SIZE: "2", MASTER_ADDR: "a" })).toThrow("MASTER_PORT is not set but WORLD_SIZE=2");
    expect(() => resolveLaunch({ RANK: "0", WORLD_SIZE: "2", MASTER_ADDR: "a", MASTER_PORT: "70000" })).toThrow("MASTER_PORT=70000 is not a TCP port");
    expect(() => resolveLaunch({ RANK: "0", WORLD_SIZE: "4", LOCAL_RANK: "2", LOCAL_WORLD_SIZE: "2", MASTER_ADDR: "a", MASTER_PORT: "1" })).toThrow("LOCAL_RANK=2 must be below LOCAL_WORLD_SIZE=2");
    const slurm = { SLURM_PROCID: "0", SLURM_NTASKS: "2", SLURM_LOCALID: "0", SLURM_NTASKS_PER_NODE: "2", SLURM_JOB_NODELIST: "n[1-2]", SLURM_JOB_ID: "1" };
    expect(() => resolveLaunch({ ...slurm, SLURM_PROCID: "2" })).toThrow("SLURM_PROCID=2 must be below SLURM_NTASKS=2");
    expect(() => resolveLaunch({ ...slurm, SLURM_LOCALID: "2" })).toThrow("SLURM_LOCALID=2 must be below SLURM_NTASKS_PER_NODE=2");
    expect(() => resolveLaunch({ ...slurm, SLURM_JOB_ID: undefined })).toThrow("MASTER_PORT (or SLURM_JOB_ID) is not set but SLURM_NTASKS=2");
    expect(() => resolveLaunch({ ...slurm, SLURM_JOB_NODELIST: undefined })).toThrow("SLURM_JOB_NODELIST (or SLURM_NODELIST, or MASTER_ADDR) is not set");
    expect(() => resolveLaunch({ ...slurm, SLURM_NTASKS_PER_NODE: undefined })).toThrow("neither SLURM_NTASKS_PER_NODE nor SLURM_TASKS_PER_NODE is set");
    expect(() => resolveLaunch({ ...slurm, SLURM_NTASKS_PER_NODE: undefined, SLURM_TASKS_PER_NODE: "2,1" })).toThrow("SLURM_NODEID is not set but SLURM_TASKS_PER_NODE=2,1 differs between nodes");
    expect(() => resolveLaunch({ ...slurm, SLURM_NTASKS_PER_NODE: undefined, SLURM_TASKS_PER_NODE: "two" })).toThrow('SLURM_TASKS_PER_NODE="two" is not a list like "4(x2),3"');
  });
});

describe("Slurm node lists", () => {
  it("expand the compressed forms", () => {
    expect(expandSlurmNodelist("node[01-04,07]")).toEqual(["node01", "node02", "node03", "node04", "node07"]);
    expect(expandSlurmNodelist("gpu-a[1-2],gpu-b3")).toEqual(["gpu-a1", "gpu-a2", "gpu-b3"]);
    expect(expandSlurmNodelist("host1,host2")).toEqual(["host1", "host2"]);
    expect(expandSlurmNodelist("single")).toEqual(["single"]);
    expect(expandSlurmNodelist("r[1-2]-n[8-9]")).toEqual(["r1-n8", "r1-n9", "r2-n8", "r2-n9"]);
    expect(expandSlurmNodelist("c[098-101]-ib")).toEqual(["c098-ib", "c099-ib", "c100-ib", "c101-ib"]);
    expect(firstSlurmHost("node[01-04,07],big[1-2]")).toBe("node01");
    expect(firstSlurmHost("n[5]")).toBe("n5");
  });

  it("refuse malformed lists, naming the variable", () => {
    expect(() => firstSlurmHost("node[01-04", "SLURM_NODELIST")).toThrow('SLURM_NODELIST="node[01-04" is not a Slurm node list (unbalanced [)');
    expect(() => firstSlurmHost("node[4-1]")).toThrow('range "4-1" runs backwards');
    expect(() => firstSlurmHost("node[a-b]")).toThrow('range "a-b"');
    expect(() => firstSlurmHost("a,,b")).toThrow("empty entry");
  });
});
