/**
 * `@modulora/data`: datasets for fine-tuning. Reads `.txt` and `.jsonl` files with errors that
 * name the file and line; builds `text` (packed windows), `instruct`, `chat`, `classification`
 * and `summarization` examples with prompt tokens masked (−100); batches them padded, grouped by
 * length, in a seeded order that resumes at an exact position; and scores generations with ROUGE.
 * It needs only a {@link TokenizerLike} (which `LlamaTokenizer` of `@modulora/llama` satisfies).
 * @packageDocumentation
 */
export { DataError, locationString, type DataLocation } from "./errors.js";
export { specialIds, padIdOf, type TokenizerLike, type ChatMessage, type SpecialIds } from "./tokenizer.js";
export { readJsonl, streamJsonl, readTextDocuments, readDataFile, readTextCorpus, jsonTypeName, DATA_FILE_TYPES, type JsonlRecord, type TextDocument, type DataFile } from "./read.js";
export { fillTemplate, templateFields, type Templates } from "./template.js";
export {
  FORMAT_TRAITS,
  DATASET_FORMATS,
  INSTRUCT_TEMPLATES,
  CLASSIFICATION_TEMPLATES,
  SUMMARIZATION_TEMPLATES,
  formatTraits,
  validateRecord,
  labelString,
  type DatasetFormat,
  type FormatKind,
  type FormatTraits,
  type FieldSpec,
} from "./formats.js";
export { IGNORE_INDEX, encodePromptTarget, truncateKeepingTarget, type Example, type Truncation } from "./encode.js";
export { encodeChat, chatRenderer, ASSISTANT_ROLE } from "./chat.js";
export { packDocuments } from "./pack.js";
export { loadDataset, buildDataset, resolveTemplates, renderPromptTarget, type Dataset, type DatasetSpec, type DatasetOptions, type DatasetStats, type DatasetItem } from "./dataset.js";
export { Rng, splitmix32, shuffleInPlace } from "./random.js";
export { BatchSource, batches, collate, type Batch, type BatchOptions, type BatchPosition, type ExampleTokens } from "./batch.js";
export { classificationCandidates, promptIds, type ClassificationCandidate } from "./eval.js";
export { rougeScores, rougeN, rougeL, rougeTokens, lcsLength, meanRougeScores, type RougeScore, type RougeScores } from "./rouge.js";
