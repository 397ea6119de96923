/**
 * The checks behind `packages/pack-tests` (private, not published): pack every published
 * workspace package with pnpm, list what each tarball holds, and install the tarballs into an
 * empty consumer project with `npm install --offline`, third-party packages included (packed from
 * the copies pnpm installed in the workspace).
 * @packageDocumentation
 */
export { REPO_ROOT, readManifest, workspaceGlobs, workspacePackages, publishedPackages, type PackageManifest, type WorkspacePackage } from "./workspace.js";
export { tarballName, packPackage, addToTarball, copyTarballWithout, readTarball, manifestTargets, forbiddenFiles, kib, type TarEntry } from "./tarball.js";
export { thirdPartyClosure, packInstalled, writeConsumer, run, npmInstallOffline, npmRebuildOffline, binFolderWith, envWithout, BUILD_CHOICE_ENV, type InstalledPackage, type ConsumerSpec, type RunResult } from "./consumer.js";
