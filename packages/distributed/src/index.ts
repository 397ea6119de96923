// @modulora/distributed: data-parallel training pieces that run on the CPU today (the NCCL
// communicator is the GPU implementation of the same Communicator, still to come).
export { formatRanks, type Communicator, type HostFloatArray, type ReduceOp } from "./communicator.js";
export { LocalGroup, type LocalGroupOptions } from "./local-group.js";
export { TcpCommunicator, type TcpCommunicatorOptions } from "./tcp.js";
export { rendezvous, type PeerInfo, type Rendezvous, type RendezvousOptions } from "./rendezvous.js";
export { expandSlurmNodelist, firstSlurmHost, resolveLaunch, slurmPortFromJobId, type LaunchEnv, type LaunchInfo, type LaunchSource } from "./launch-env.js";
export { findFreePort, spawnLocalRanks, RankFailedError, type RankExit, type SpawnLocalRanksOptions } from "./spawn.js";
export { GradientBucketer, averageGradients, type Bucket, type BucketOptions } from "./buckets.js";
export { shardBatch, shardIndices, type ShardRange } from "./shard.js";
export { DataParallel, dataParallel, type DataParallelOptions } from "./data-parallel.js";
export { NcclCommunicator, type NcclCommunicatorOptions } from "./nccl.js";
