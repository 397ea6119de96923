/**
 * Models by name: Hugging Face ids `org/name` resolved in the local Hugging Face cache, and
 * downloaded into it through `@huggingface/hub`.
 * @module
 */
export { HubError, type HubErrorCode } from "./errors.js";
export { looksLikeModelId, parseModelId, repoFolderName, type ModelId } from "./model-id.js";
export { checkRevision, describeCache, findCachedSnapshot, hubCache, type CachedSnapshot, type HubCache } from "./cache.js";
export { indexShards, missingModelFiles, OPTIONAL_MODEL_FILES, REQUIRED_MODEL_FILES } from "./model-files.js";
export { DEFAULT_HF_ENDPOINT, downloadModel, type DownloadModelOptions, type DownloadProgress, type DownloadResult } from "./download.js";
export { resolveModel, resolveModelSync, type ResolveCachedOptions, type ResolvedModel, type ResolveModelOptions } from "./resolve.js";
